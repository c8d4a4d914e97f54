"""The load generator, run in its own process by scenarios.echo_under_load.

It opens N terminals, starts a printing loop in each, and keeps reading all
of them (a client that stops reading would stop the load through
backpressure). Protocol over the pipe:

    child -> {"producing": n, "setup_s": s}    every terminal has printed a load line
    parent -> "mark"                           start counting
    parent -> "stop"                           stop counting, end the terminals
    child -> {"lines": n, "seconds": s, "lines_per_s": r, "terminals_seen": k, ...}
or  child -> {"error": "..."} at any point.
"""
from __future__ import annotations

import re
import selectors
import signal
import time

# The load: ~20 lines/s per terminal. Each `sleep` is a fork and an
# exec: 100 of these loops want ~2.3 cores of this 2-core machine by themselves.
LOAD_LOOPS = {
    "sleep": b'while :; do echo "load $RANDOM $RANDOM"; sleep 0.05; done\r',
    # The same output without a process per line: `read -t` on a pipe nobody
    # writes to waits 50 ms inside bash (~0.1 core for 100 loops).
    "read": b'exec 9<> <(:); while :; do echo "load $RANDOM $RANDOM"; read -t 0.05 -u 9; done\r',
}
# The printed lines, not the typed command (whose echo reads `"load $RANDOM`).
LOAD_LINE = re.compile(rb"load \d+ \d+")
SETUP_SECONDS_PER_TERMINAL = 2.0
MAX_RUN_SECONDS = 900.0


def receive(conn, timeout: float, worker=None) -> dict:
    """The child's next message, or an error if none comes within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.2):
            return conn.recv()
        if worker is not None and not worker.is_alive():
            return {"error": f"load process exited with {worker.exitcode}"}
    return {"error": f"no answer from the load process within {timeout:.0f} s"}


def main(conn, base_url: str, count: int, loop: str = "sleep", connect=None) -> None:
    """``connect``: the client class (bench.client.TermClient unless given;
    a class pickles by name, so it crosses to this spawned process)."""
    # Ctrl-C reaches the whole process group; the parent ends us, cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    load = Load(conn, count, LOAD_LOOPS[loop], connect)
    try:
        load.run(base_url)
    except Exception as exc:  # reported to the parent, which decides
        try:
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        except OSError:
            pass
    finally:
        load.close()


class Load:
    def __init__(self, conn, count: int, command: bytes, connect=None):
        self.conn, self.count, self.command, self.connect = conn, count, command, connect
        self.sel = selectors.DefaultSelector()
        self.sel.register(conn, selectors.EVENT_READ, None)
        self.terms: list = []
        self.producing: set[int] = set()
        self.counting, self.lines, self.seen, self.mark = False, 0, set(), 0.0
        self.started = time.monotonic()
        self.done = False

    def run(self, base_url: str) -> None:
        from .client import TermClient

        # Open every terminal first, reading those already open as we go (they
        # must answer the server's pings), then start all the loops at once.
        for _ in range(self.count):
            term = (self.connect or TermClient)(base_url)
            self.terms.append(term)
            self.sel.register(term, selectors.EVENT_READ, term)
            self._pump(0)
        for term in self.terms:
            term.send_keys(self.command)
        setup_deadline = time.monotonic() + 30 + SETUP_SECONDS_PER_TERMINAL * self.count
        end = self.started + MAX_RUN_SECONDS
        while not self.done:
            if time.monotonic() > end:
                raise TimeoutError(f"load ran past {MAX_RUN_SECONDS:.0f} s without a stop")
            if len(self.producing) < self.count and time.monotonic() > setup_deadline:
                raise TimeoutError(f"only {len(self.producing)} of {self.count} load terminals printed")
            self._pump(0.5)

    def _pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout=timeout):
            if key.data is None:
                self._command(self.conn.recv())
            else:
                self._output(key.data, key.data.recv_output(5.0) or b"")

    def _command(self, command: str) -> None:
        if command == "mark":
            self.counting, self.lines, self.seen, self.mark = True, 0, set(), time.monotonic()
        elif command == "stop":
            seconds = time.monotonic() - self.mark
            rate = self.lines / seconds if seconds else 0.0
            self.conn.send({"lines": self.lines, "seconds": seconds, "lines_per_s": rate,
                            "lines_per_s_per_terminal": rate / self.count,
                            "terminals_seen": len(self.seen), "terminals": self.count})
            self.done = True

    def _output(self, term, data: bytes) -> None:
        found = len(LOAD_LINE.findall(data))
        if not found:
            return
        if len(self.producing) < self.count:
            self.producing.add(id(term))
            if len(self.producing) == self.count:
                self.conn.send({"producing": self.count, "setup_s": time.monotonic() - self.started})
        if self.counting:
            self.lines += found
            self.seen.add(id(term))

    def close(self) -> None:
        # Ctrl-C on its own first: the pty discards input queued behind it.
        for keys in (b"\x03", b"\x15exit\r"):
            for term in self.terms:
                try:
                    term.send_keys(keys)
                except Exception:
                    pass
            time.sleep(0.1)
        for term in self.terms:
            term.close()
