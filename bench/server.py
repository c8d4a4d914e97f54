"""Start a real termweb under gunicorn on a free loopback port, and a
redis-server of the benchmark's own when a scenario needs one; stop both by pid."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from termweb.pool import existing_servers
from termweb.tmux import TmuxError, TmuxServer

from . import procs

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
WORKER_SETTLE = 0.5  # seconds a new gunicorn worker gets to set its signal handlers


class BenchError(RuntimeError):
    """The benchmark could not measure what it meant to."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class Managed:
    """A server process used as a context manager: ``start()`` on entry (and
    ``stop()`` if that fails), ``stop()`` on exit. Subclasses define both."""

    name = "server"
    process: subprocess.Popen | None = None

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return ""

    def _wait_started(self, answers) -> None:
        """Poll ``answers()`` until it is true; BenchError (with the log's tail)
        if the process exits first or START_TIMEOUT passes."""
        deadline = time.monotonic() + START_TIMEOUT
        while not answers():
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not answer within {START_TIMEOUT:.0f} s:\n"
                                 f"{self.log_tail()}")
            time.sleep(0.05)

    def _end(self, first_signal: int = signal.SIGTERM) -> None:
        """Signal the process, SIGKILL it after STOP_TIMEOUT, and reap it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(first_signal)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class LoggedServer(Managed):
    """A Managed server logging to a temporary file, kept (and named on
    stderr) when the ``with`` block failed, removed otherwise."""

    def __init__(self):
        self._log = tempfile.NamedTemporaryFile(prefix=f"{self.name}-bench-", suffix=".log",
                                                delete=False)

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is None:
            os.unlink(self._log.name)
        else:
            print(f"{self.name} log kept at {self._log.name}", file=sys.stderr)

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])

    def _healthz(self) -> bytes | None:
        """The body of a 200 from ``/healthz``, or None."""
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as response:
                return response.read() if response.status == 200 else None
        except OSError:
            return None


@contextlib.contextmanager
def rc_free_shell():
    """The path of a shell for TERMWEB_SHELL: bash without any rc file.

    This machine's root bash runs pyenv's prompt hook, which forks `pyenv`
    scripts at every prompt (~60 ms of CPU each): a scenario with a prompt
    in every terminal at once would measure that instead of termweb.
    """
    with tempfile.TemporaryDirectory(prefix="termweb-bench-shell-") as directory:
        path = os.path.join(directory, "bash-norc")
        with open(path, "w") as f:
            # No history file either: the benchmark's commands stay out of ~/.bash_history.
            f.write('#!/bin/sh\nexport HISTFILE=\nexec /bin/bash --noprofile --norc "$@"\n')
        os.chmod(path, 0o755)
        yield path


class TermwebServer(LoggedServer):
    """One gunicorn + one tmux server on a socket of its own, with an instance
    folder (users, tokens, secret key) of its own in a temporary directory, so
    a benchmark never touches the repository's instance/. Use as a context manager."""

    name = "termweb"
    # Every benchmark server's settings unless ``extra_env`` overrides them.
    # Login off: terminado has no login in the benchmark, so the compared
    # scenarios run without (the auth scenario turns it on). Limits meant for
    # people, not for a benchmark opening a thousand terminals in a minute.
    BASE_ENV = {
        "TERMWEB_AUTH": "off",
        "TERMWEB_CREATE_RATE": "100000/minute",
        "TERMWEB_MAX_SESSIONS_PER_USER": "100000",
        "TERMWEB_LOGIN_RATE_IP": "10000/minute",
        "TERMWEB_LOGIN_RATE_ACCOUNT": "10000/minute",
        # The capacity ladder opens hundreds at once against one tmux server:
        # let them queue rather than hear `busy`.
        "TERMWEB_CREATE_WAIT_MS": "120000",
        # Warm shells would be refilled in the middle of memory and capacity
        # measurements; the pool group (run.termweb_pool) measures them.
        "TERMWEB_WARM_SESSIONS": "0",
    }

    def __init__(self, extra_env: dict[str, str] | None = None):
        super().__init__()
        self.port = free_port()
        self.tmux_socket = f"termweb-bench-{uuid.uuid4().hex[:12]}"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._instance = tempfile.TemporaryDirectory(prefix="termweb-bench-instance-")
        self.extra_env = extra_env or {}
        self.env = {**os.environ, "TERMWEB_PORT": str(self.port),
                    "TERMWEB_TMUX_SOCKET": self.tmux_socket, "TERMWEB_SHELL": "/bin/bash",
                    "TERMWEB_INSTANCE_PATH": os.path.join(self._instance.name, "instance"),
                    **self.BASE_ENV, **self.extra_env}
        self.process: subprocess.Popen | None = None

    # -- life cycle
    def start(self) -> "TermwebServer":
        self.process = subprocess.Popen(
            [_python(), "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
            # Out of the terminal's process group: a Ctrl-C reaches only the
            # benchmark, which then stops the server itself (below).
            start_new_session=True)
        self._wait_started(lambda: self._healthz() is not None)
        return self

    def stop(self) -> None:
        """SIGQUIT gunicorn (SIGKILL after a timeout), end any straggler by pid, kill tmux.

        QUIT is gunicorn's quick shutdown: TERM's graceful one takes a second
        more per server and only tells terminals the benchmark is done with.
        A worker loses a signal that comes before it has set its handlers (a
        worker just started in place of a killed one), and the master then
        waits its graceful_timeout (10 s): young workers get a moment first.
        """
        try:
            if self.process is not None and self.process.poll() is None:
                deadline = time.monotonic() + 2 * WORKER_SETTLE
                while (time.monotonic() < deadline
                       and any(procs.age(pid) < WORKER_SETTLE for pid in self.workers())):
                    time.sleep(0.05)
                children = procs.descendants(self.process.pid)
                self._end(signal.SIGQUIT)
                procs.kill_alive(children)  # workers orphaned by a killed master
        finally:
            # Removes the sockets and the in-memory instance lock too.
            for tmux in self.backends():
                tmux.kill_server()
            self._log.close()
            self._instance.cleanup()

    def cli(self, *args: str, stdin: str = "") -> str:
        """Run `termweb …` (users, tokens) on this server's store; its stdout.
        BenchError if it fails."""
        command = Path(_python()).with_name("termweb")
        argv = [str(command)] if command.exists() else [_python(), "-m", "termweb.cli"]
        done = subprocess.run([*argv, *args], cwd=ROOT, env=self.env, input=stdin, text=True,
                              capture_output=True, timeout=60)
        if done.returncode != 0:
            raise BenchError(f"termweb {' '.join(args[:2])} failed ({done.returncode}): "
                             f"{done.stderr.strip()}")
        return done.stdout

    # -- what the measurements need
    def backends(self) -> list[TmuxServer]:
        """The pool's tmux servers whose sockets exist (the first one always)."""
        first = TmuxServer(self.tmux_socket, "/bin/bash")
        return [first, *(tmux for _, tmux in existing_servers(self.tmux_socket, "/bin/bash", 1))]

    def tmux_server_pids(self) -> list[int]:
        pids = []
        for tmux in self.backends():
            try:
                out = tmux.run("display", "-p", "#{pid}").strip()
            except TmuxError:
                continue
            if out.isdigit():
                pids.append(int(out))
        return pids

    def tmux_server_pid(self) -> int | None:
        """The first backend's tmux server."""
        pids = self.tmux_server_pids()
        return pids[0] if pids else None

    def workers(self) -> list[int]:
        """The pids of gunicorn's workers now (the master's live children)."""
        if self.process is None:
            return []
        return [pid for pid in procs.children_by_parent().get(self.process.pid, [])
                if procs.alive(pid)]

    def session_workers(self) -> dict[str, int]:
        """Session id -> pid of the worker serving it: the parent of the
        session's ``tmux ... attach-session -t =<id>`` client."""
        children = procs.children_by_parent()
        served = {}
        for worker in self.workers():
            for pid in children.get(worker, []):
                args = procs.cmdline(pid)
                if "attach-session" in args and "-t" in args[:-1]:
                    served[args[args.index("-t") + 1].lstrip("=")] = worker
        return served

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one of this server's workers (gunicorn's master starts another)."""
        if pid not in self.workers():
            raise BenchError(f"pid {pid} is not a worker of this termweb")
        os.kill(pid, signal.SIGKILL)

    def process_groups(self) -> dict[str, list[int]]:
        """The server's processes by role: gunicorn, tmux attach clients, tmux server, shells."""
        tree = procs.descendants(self.process.pid) if self.process else []
        gunicorn = [self.process.pid] if self.process else []
        clients = []
        for pid in tree:  # tmux renames itself "tmux: client"
            (clients if procs.comm(pid).startswith("tmux") else gunicorn).append(pid)
        tmux_server = self.tmux_server_pids()  # every backend of the pool
        shells = [pid for tmux_pid in tmux_server for pid in procs.descendants(tmux_pid)]
        return {"gunicorn": gunicorn, "attach_clients": clients, "tmux_server": tmux_server,
                "shells": [pid for pid in shells if pid not in set(gunicorn + clients)]}


class RedisServer(Managed):
    """A redis-server of the benchmark's own on a free loopback port, without
    persistence (never the machine's Redis). Use as a context manager."""

    name = "redis-server"

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="termweb-bench-redis-")
        self._client = None

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server is not installed (apt-get install redis-server); "
                             "the Redis scenarios need one")
        log = open(os.path.join(self._dir.name, "redis.log"), "ab")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self._dir.name, "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        self._wait_started(self._answers)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        path = Path(self._dir.name) / "redis.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def command_calls(self) -> dict[str, int]:
        """Calls so far by command, from ``INFO commandstats`` (one INFO call
        itself, counted in the next reading). Commands that Lua scripts run
        count too, besides the EVALSHA that ran them."""
        if self._client is None:
            import redis
            self._client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        stats = self._client.info("commandstats")
        return {name.removeprefix("cmdstat_"): values["calls"] for name, values in stats.items()}

    def stop(self) -> None:
        """Stop the server; ``start()`` may start it again on the same port."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._end()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self._dir.cleanup()
