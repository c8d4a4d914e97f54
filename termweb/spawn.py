"""Run a short command and collect its output, cheaply inside a gevent worker.

gevent's ``subprocess`` forks the whole worker (60-90 MB) and runs Python in
the child before ``exec``; measured, a ``tmux capture-pane`` took 10-12 ms
that way against ~2 ms with ``os.posix_spawn``, which vforks and execs at
once (bench/RESULTS.md, issue #3). Inside a gevent-patched process this
module spawns that way and waits cooperatively: the pipes are read with
gevent and the exit is taken from gevent's own child watcher, since libev
reaps every child. Elsewhere (tests, the benchmark, scripts) it is plain
``subprocess.run``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

import gevent
import gevent.socket
from gevent import monkey
from gevent.event import AsyncResult

_close = monkey.get_original("os", "close")  # gevent's close is deferred (PITFALLS #1)


class CommandTimeout(Exception):
    pass


def run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, stderr) of ``argv``; stdin is /dev/null.

    Raises CommandTimeout (the command is killed) and OSError (it cannot start).
    """
    if not monkey.is_module_patched("os"):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CommandTimeout from None
        return done.returncode, done.stdout, done.stderr
    return _spawn_and_wait(argv, env, timeout)


def _spawn_and_wait(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, bytes, bytes]:
    executable = argv[0]
    if not os.path.isabs(executable):  # callers on a hot path pass an absolute path
        executable = shutil.which(executable, path=env.get("PATH")) or executable
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawn(executable, argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ])
    except BaseException:
        for fd in (out_r, err_r):
            _close(fd)
        raise
    finally:
        for fd in (out_w, err_w, null):
            _close(fd)
    # Watch before anything yields: libev reaps the child in the loop, and
    # hands its status only to a watcher that exists by then.
    exited = AsyncResult()
    watcher = gevent.get_hub().loop.child(pid, False)
    watcher.start(lambda: exited.set(watcher.rstatus))
    errors = gevent.spawn(_read_all, err_r)
    try:
        with gevent.Timeout(timeout, CommandTimeout):
            out = _read_all(out_r)
            err = errors.get()
            status = exited.get()
    except CommandTimeout:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        exited.wait(1.0)
        raise
    finally:
        errors.kill()
        watcher.stop()
        for fd in (out_r, err_r):
            _close(fd)
    return os.waitstatus_to_exitcode(status), out, err


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        gevent.socket.wait_read(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
