"""PtyBridge: one ``tmux attach`` client in a pty, read and written cooperatively.

Reads wait for readiness with gevent (never a blocking read on the hub,
PITFALLS #2); closing the bridge ends the attach client only, never the tmux
session behind it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import struct
import termios
import types

import gevent.os
import ptyprocess.ptyprocess
from gevent import monkey, sleep
from gevent.socket import wait_read, wait_write

READ_BYTES = 64 * 1024
# A read at least this large means output is streaming: take what else is
# already waiting before sending. Smaller reads (a keystroke's echo) go out at
# once (PITFALLS #9).
COALESCE_THRESHOLD = 1024
REAP_SECONDS = 2.0


class _StdlibCloseOs(types.ModuleType):
    """``os`` for ptyprocess, with the unpatched ``os.close``.

    Under gevent >= 25.8 the patched close is deferred to the next loop turn,
    so ``PtyProcess.spawn`` blocks forever reading its own exec pipe
    (PITFALLS #1). ptyprocess only closes its private pipe ends and fds it
    owns, none of which gevent watches, so the plain close is safe there.
    """

    close = staticmethod(monkey.get_original("os", "close"))

    def __getattr__(self, name: str):
        return getattr(os, name)


ptyprocess.ptyprocess.os = _StdlibCloseOs("os")


class PtyBridge:
    """A child process on a pty whose output is read without blocking the hub."""

    def __init__(self, argv: list[str], env: dict[str, str], cols: int, rows: int):
        self.process = ptyprocess.ptyprocess.PtyProcess.spawn(argv, env=env, dimensions=(rows, cols))
        # Our own descriptor for the pty, closed only through gevent (which
        # wakes anything waiting on it). ptyprocess's file object would
        # otherwise close the same number again when garbage-collected, by
        # then perhaps another terminal's fd: libev aborts the worker on that.
        self.fd = os.dup(self.process.fd)
        self.process.fileobj.close()
        self.process.closed = True
        os.set_blocking(self.fd, False)
        self.closed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def read(self) -> bytes:
        """Wait for output and return it; b"" once the child or the bridge is gone."""
        # After close() the number in self.fd may already belong to another
        # connection's socket: never touch it again (every wait can yield).
        while not self.closed:
            try:
                data = os.read(self.fd, READ_BYTES)
            except BlockingIOError:
                try:
                    wait_read(self.fd)
                except OSError:  # fd closed under us by close()
                    return b""
                continue
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):  # EIO: the pty's other side closed
                    return b""
                raise
            if len(data) < COALESCE_THRESHOLD:
                return data
            return data + self._drain(READ_BYTES - len(data))
        return b""

    def _drain(self, limit: int) -> bytes:
        chunks = []
        while limit > 0:
            try:
                chunk = os.read(self.fd, limit)
            except OSError:  # EAGAIN: nothing more waiting; EIO: caught by the next read
                break
            if not chunk:
                break
            chunks.append(chunk)
            limit -= len(chunk)
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting cooperatively while the pty is full."""
        view = memoryview(data)
        while view and not self.closed:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                wait_write(self.fd)
                continue
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):  # the child is gone; read() reports it
                    return
                raise
            view = view[written:]

    def resize(self, cols: int, rows: int) -> None:
        """Set the pty size; the kernel sends SIGWINCH to the attach client."""
        if self.closed:
            return
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self) -> None:
        """End the attach client (SIGHUP, as a closed terminal would) and reap it."""
        if self.closed:
            return
        self.closed = True
        try:
            os.kill(self.process.pid, signal.SIGHUP)
        except ProcessLookupError:
            pass
        try:
            # gevent's close wakes a reader waiting on this fd, patched or not.
            gevent.os.close(self.fd)
        except OSError:
            pass
        self._reap()

    def _reap(self) -> None:
        waited = 0.0
        while waited < REAP_SECONDS:
            try:
                pid, _ = os.waitpid(self.process.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped (gevent's child watcher)
                return
            if pid:
                return
            sleep(0.01)
            waited += 0.01
        os.kill(self.process.pid, signal.SIGKILL)
        try:
            os.waitpid(self.process.pid, 0)
        except ChildProcessError:
            pass
