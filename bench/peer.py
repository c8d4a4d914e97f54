"""Jupyter's terminado as the benchmark's reference peer (issue #6).

``TerminadoServer`` and ``TerminadoClient`` stand in for ``server.TermwebServer``
and ``client.TermClient``, so the scenarios can run against both:

* the server is a small tornado program (``main`` below, run as
  ``python -m bench.peer``) with terminado's ``NamedTermManager`` and
  ``TermSocket`` at ``/websocket/<name>``, plus ``/healthz``, in a process
  of its own on a free 127.0.0.1 port;
* the client speaks terminado's protocol: JSON arrays in text frames,
  ``["stdin", text]`` and ``["set_size", rows, cols]`` up, ``["setup", {}]``,
  ``["stdout", text]`` and ``["disconnect", 1]`` down.

What terminado does differently from termweb, as far as the scenarios see:

* A terminal lives in the server process, named by the URL; any connection
  to a name attaches to it, creating it first if the name is unknown (so a
  reattach to a terminal that is gone silently gets a new shell). A dropped
  or closed connection leaves the shell running; only its exit ends it.
* ``setup`` comes once the shell has been spawned (in the same callback),
  before the shell has printed anything: it is this client's ``ready``.
* On a reattach the server replays its read buffer (the last 1000 pty
  reads, not the screen) as one ``stdout`` message right behind ``setup``.
  The client reads it before returning (``ready["restored"]`` is its size)
  and hands it out as the first ``recv_output``. There is no redraw: what
  was on the screen arrives only inside that replay.
"""
from __future__ import annotations

import argparse
import json
import re
import secrets
import select
import subprocess
import sys
import time

import websocket

from termweb.tmux import clean_environment

from . import procs
from .client import NODELAY, Closed, TermClient
from .server import ROOT, BenchError, LoggedServer, _python, free_port

REAPED_TIMEOUT = 5.0     # for SIGKILLed leftovers to be gone
# On a reattach, how long to wait after ``setup`` for the replay's first
# bytes. terminado writes both in one callback, but without TCP_NODELAY
# (tornado's default) Nagle's algorithm may hold the replay until the client
# acknowledges ``setup``: up to a delayed ACK, 40-200 ms on Linux. The bound
# only costs time when there is nothing to replay (a terminal just created).
REPLAY_WAIT = 0.5
NAME = re.compile(r"\w+", re.ASCII)


class TerminadoServer(LoggedServer):
    """Jupyter's terminado: a tornado app with a NamedTermManager running the
    shell, as a subprocess of its own on a free 127.0.0.1 port. Use as a
    context manager."""

    name = "terminado"

    def __init__(self, shell: str = "/bin/bash", extra_env: dict[str, str] | None = None,
                 max_terminals: int = 2000, nodelay: bool = False):
        """``extra_env``: variables added to the shells' environment (which is
        otherwise termweb's clean one: PATH, HOME, SHELL, LANG, TERM, ...).

        ``nodelay``: set TCP_NODELAY on the server's WebSockets, as termweb
        does. Off by default, as in terminado and Jupyter Server: Nagle's
        algorithm then holds a small frame sent while another is unacknowledged.
        """
        super().__init__()
        self.shell = shell
        self.nodelay = nodelay
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.max_terminals = max_terminals
        self.process: subprocess.Popen | None = None

    # -- life cycle
    def start(self) -> "TerminadoServer":
        # The server's environment is the shells' (terminado copies its own
        # into every terminal and adds TERM, COLUMNS, LINES and PYXTERM_DIMENSIONS).
        env = {**clean_environment(self.shell), **self.extra_env}
        self.process = subprocess.Popen(
            [_python(), "-m", "bench.peer", "--port", str(self.port), "--shell", self.shell,
             "--max-terminals", str(self.max_terminals)] + (["--nodelay"] if self.nodelay else []),
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            # Out of the terminal's process group: a Ctrl-C reaches only the
            # benchmark, which then stops the server itself.
            start_new_session=True)
        self._wait_started(lambda: self._health() is not None)
        return self

    def _health(self) -> dict | None:
        body = self._healthz()
        try:
            return json.loads(body) if body is not None else None
        except ValueError:
            return None

    def stop(self) -> None:
        """End the server, then SIGKILL by pid whatever it had started that is
        still alive, and wait until all of it is gone.

        SIGTERM ends the server at once (its default action): its ptys close,
        so the kernel hangs up every shell. Not terminado's own shutdown
        (``kill_all``): closing each terminal blocks its event loop for
        ptyprocess's ``delayafterclose`` (0.1 s), so it takes 0.1 s a terminal.
        """
        try:
            if self.process is None:
                return
            started = procs.descendants(self.process.pid)  # before the server can no longer be asked
            self._end()
            procs.kill_alive(started)  # shells (and their children) that outlived the server
            deadline = time.monotonic() + REAPED_TIMEOUT
            while any(procs.alive(pid) for pid in started) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            self._log.close()

    # -- what the measurements need
    def process_groups(self) -> dict[str, list[int]]:
        """The server's processes by role: the tornado process, and the shells
        with everything they started (all of its descendants)."""
        if self.process is None:
            return {"server": [], "shells": []}
        return {"server": [self.process.pid], "shells": procs.descendants(self.process.pid)}

    def terminal_names(self) -> list[str]:
        """The names of the terminals the server holds now (from /healthz)."""
        health = self._health()
        if health is None:
            raise BenchError(f"terminado does not answer /healthz:\n{self.log_tail()}")
        return health["terminals"]


class TerminadoClient(TermClient):
    """One terminado terminal over its WebSocket protocol (JSON arrays:
    ["stdin", text], ["stdout", text], ["set_size", rows, cols], ["setup", {}],
    ["disconnect", ...]), with the methods the scenarios use on bench.client.TermClient.

    ``end``, ``drop``, ``disconnect``, ``close`` and ``fileno`` are
    TermClient's own: they only use the socket, ``send_keys`` and ``recv_output``.
    """

    def __init__(self, base_url: str, session: str | None = None, cols: int = 120, rows: int = 30,
                 timeout: float = 10.0, **ignored):
        """Open a new terminal under a fresh random name, or with ``session``
        attach to the terminal of that name; return once ``setup`` came (and,
        on a reattach, the replay right behind it).

        ``ready`` is ``{"created": bool, "restored": bytes replayed}``.
        terminado does not say whether it created the terminal: a reattach
        that replays nothing counts as created (terminado makes a new
        terminal under an unknown name; a live shell has printed its prompt).
        ``ignored`` takes TermClient's other options (``restore``): terminado
        always replays.

        Raises Closed when the server refuses or drops the connection (its
        max_terminals reached, say), and websocket-client's or the socket's
        errors when it cannot be reached.
        """
        if session is not None and not NAME.fullmatch(session):
            raise ValueError(f"a terminado terminal name is \\w+, not {session!r}")
        self.session_id = session if session is not None else secrets.token_hex(8)
        self._pending: bytes | None = None  # the replay, read before ``ready`` was returned
        url = base_url.replace("http", "ws", 1) + "/websocket/" + self.session_id
        # No Origin header: TermSocket (tornado) checks one only when it is sent.
        self.ws = websocket.create_connection(url, timeout=timeout, sockopt=NODELAY,
                                              suppress_origin=True)
        self.opened_at = time.perf_counter()  # the upgrade (HTTP 101) is done
        self._timeout = timeout
        try:
            # Before setup: terminado reads it once the terminal is there, and
            # sizes the pty to the smallest of its clients.
            self.ws.send(json.dumps(["set_size", rows, cols]))
            opcode, data = self.ws.recv_data()
        except (websocket.WebSocketException, OSError) as exc:
            self.ws.shutdown()
            raise Closed(f"no setup message: {exc}") from None
        self.ready_at = time.perf_counter()  # when the setup message arrived
        message = _decode(opcode, data)
        if not (isinstance(message, list) and message and message[0] == "setup"):
            self.close()
            raise Closed(f"expected a setup message first, got opcode {opcode}: {data[:200]!r}")
        restored = 0
        if session is not None:
            try:
                if select.select([self.ws.sock], [], [], REPLAY_WAIT)[0]:
                    self._pending = self._read(timeout)
            except Closed:
                self.close()
                raise
            restored = len(self._pending or b"")
        self.ready = {"created": restored == 0, "restored": restored}

    def send_keys(self, data: bytes) -> None:
        """Send ``data`` (UTF-8: terminado carries text, not bytes) as ["stdin", text]."""
        self.ws.send(json.dumps(["stdin", data.decode()]))

    def recv_output(self, timeout: float) -> bytes | None:
        """The next stdout (UTF-8), b"" for a message that is not output, None
        after ``timeout``; raises Closed when the socket closes or terminado
        says the terminal is gone (``disconnect``).

        A replay read by the constructor comes first, though ``fileno()``
        does not show it to select().
        """
        if self._pending is not None:
            data, self._pending = self._pending, None
            return data
        if timeout <= 0:
            return None
        return self._read(timeout)

    def _read(self, timeout: float) -> bytes | None:
        frame = self._recv_frame(timeout)
        if frame is None:
            return None
        opcode, data = frame
        message = _decode(opcode, data)
        if not isinstance(message, list) or not message:
            return b""
        if message[0] == "stdout" and len(message) > 1 and isinstance(message[1], str):
            return message[1].encode()
        if message[0] == "disconnect":
            raise Closed("the terminal is gone (disconnect)")
        return b""


def _decode(opcode: int, data: bytes):
    """A text frame's JSON; None for any other frame or for JSON that does not parse."""
    if opcode != websocket.ABNF.OPCODE_TEXT:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


# -- the server process -------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """Serve terminado on 127.0.0.1 until SIGTERM (see TerminadoServer.stop)."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shell", default="/bin/bash")
    parser.add_argument("--max-terminals", type=int, default=2000)
    parser.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on the WebSockets")
    args = parser.parse_args(argv)

    import asyncio
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args.port, args.shell, args.max_terminals, args.nodelay))


async def _serve(port: int, shell: str, max_terminals: int, nodelay: bool) -> None:
    import asyncio

    import tornado.web
    from terminado import NamedTermManager, TermSocket

    manager = NamedTermManager(shell_command=[shell], max_terminals=max_terminals)

    class Health(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write({"terminals": sorted(manager.terminals)})

    class NoDelayTermSocket(TermSocket):
        def open(self, url_component=None) -> None:
            self.set_nodelay(True)  # before open() writes setup and the replay
            super().open(url_component)

    app = tornado.web.Application([
        (r"/websocket/(\w+)", NoDelayTermSocket if nodelay else TermSocket, {"term_manager": manager}),
        (r"/healthz", Health),
    ])
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()  # until a signal ends the process


if __name__ == "__main__":
    main()
