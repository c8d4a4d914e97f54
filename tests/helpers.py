"""Test helpers: waiting on conditions and a small WebSocket terminal client."""
from __future__ import annotations

import http.cookiejar
import json
import re
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

import websocket


def wait_until(fn, timeout: float = 10.0, interval: float = 0.02, message: str = ""):
    """Poll ``fn()`` until it returns something truthy; return it, or fail after ``timeout`` s
    with ``message`` (a string, or a function returning one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            if callable(message):  # built only now, to show the state at the failure
                message = message()
            raise AssertionError(message or f"condition not met within {timeout} s: {fn}")
        time.sleep(interval)


def wait_for_foreground(tmux, session_id: str, command: str) -> None:
    """Wait until ``command`` runs in the foreground of the session's pane.

    A Ctrl-C sent while the shell is still starting the command can reach
    the shell instead of the command, and the command then runs on.
    """
    wait_until(lambda: tmux.run("display", "-p", "-t", f"={session_id}:",
                                "#{pane_current_command}").strip() == command,
               message=f"{command} never became the foreground command")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_connect(base_url: str, params: dict, origin: str | None = None) -> websocket.WebSocket:
    """A bare WebSocket to /ws, for handshakes the server refuses."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    kwargs = {"origin": origin} if origin else {"suppress_origin": True}
    return websocket.create_connection(f"{base_url.replace('http', 'ws', 1)}/ws?{query}", timeout=10,
                                       **kwargs)


def close_code(ws: websocket.WebSocket) -> int | None:
    """Read up to the server's close frame; return its code."""
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


def refusal(base_url: str, **params) -> tuple[dict, int | None]:
    """Connect expecting a refusal: return the error payload and the close code."""
    ws = raw_connect(base_url, params)
    try:
        message = json.loads(ws.recv())
        assert message["type"] == "error", f"expected a refusal, got {message}"
        return message["payload"], close_code(ws)
    finally:
        ws.close()


class Closed(Exception):
    def __init__(self, code: int | None, reason: str):
        super().__init__(f"closed with {code}: {reason}")
        self.code, self.reason = code, reason


class TermClient:
    """A WebSocket terminal client that records output bytes and JSON messages."""

    def __init__(self, base_url: str, headers: dict | None = None, **params):
        query = urlencode({k: v for k, v in params.items() if v is not None})
        url = base_url.replace("http", "ws", 1) + "/ws" + (f"?{query}" if query else "")
        self.ws = websocket.create_connection(url, timeout=10, header=headers or {},
                                              sockopt=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.output = bytearray()
        self.messages: list[dict] = []
        self.closed: Closed | None = None
        self.ready = self.next_message("control")
        self.session_id = self.ready["sessionId"]

    # -- sending
    def type(self, text: str | bytes) -> None:
        self.ws.send_binary(text.encode() if isinstance(text, str) else text)

    def send_json(self, obj) -> None:
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def control(self, action: str, **fields) -> None:
        self.send_json({"type": "control", "payload": {"action": action, **fields}})

    # -- receiving
    def _pump(self, timeout: float) -> None:
        """Take one frame (or none within ``timeout``) into output/messages."""
        if self.closed:
            raise self.closed
        self.ws.settimeout(timeout)
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return
        except (websocket.WebSocketConnectionClosedException, ConnectionError) as exc:
            self.closed = Closed(None, str(exc))
            raise self.closed from None
        if opcode == websocket.ABNF.OPCODE_BINARY:
            self.output += data
        elif opcode == websocket.ABNF.OPCODE_TEXT:
            self.messages.append(json.loads(data))
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            self.closed = Closed(code, data[2:].decode(errors="replace"))
            raise self.closed

    def expect(self, needle: str | bytes, timeout: float = 10.0) -> bytes:
        """Wait until the output contains ``needle``; return all output so far."""
        needle = needle.encode() if isinstance(needle, str) else needle
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen in {timeout} s; output ends "
                                     f"{bytes(self.output[-400:])!r}")
            self._pump(min(left, 0.5))
        return bytes(self.output)

    def expect_nothing(self, seconds: float) -> None:
        """Keep reading (and so answering pings) for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._pump(left)

    def next_message(self, kind: str | None = None, timeout: float = 10.0) -> dict:
        """The first not yet taken JSON message (of ``kind`` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.messages):
                if kind is None or msg["type"] == kind:
                    return self.messages.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind or 'JSON'} message within {timeout} s")
            self._pump(min(left, 0.5))

    def wait_closed(self, timeout: float = 10.0) -> Closed:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"connection still open after {timeout} s")
            try:
                self._pump(0.5)
            except Closed:
                break
        return self.closed

    def run(self, command: str, marker: str, timeout: float = 10.0) -> bytes:
        """Type ``command`` and Enter; wait for ``marker`` in the output."""
        self.type(command + "\r")
        return self.expect(marker, timeout)

    def drop(self) -> None:
        """Cut the connection without a close frame, like a network that went away."""
        self.ws.sock.shutdown(socket.SHUT_RDWR)
        self.ws.shutdown()

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # already closed by the server
            pass


def reattach(base_url: str, session_id: str, timeout: float = 20.0, **params) -> TermClient:
    """Connect to ``session_id``, retrying while the server restarts, as the page does."""
    def attempt():
        try:
            return TermClient(base_url, session=session_id, **params)
        except (Closed, OSError, websocket.WebSocketException):
            return None
    return wait_until(attempt, timeout=timeout, interval=0.1,
                      message=f"could not reattach session {session_id} within {timeout} s")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class HttpSession:
    """A browser-like HTTP client: keeps cookies, does not follow redirects,
    and sends the page's CSRF token with state changes."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                   _NoRedirect())
        self._csrf: str | None = None

    def request(self, method: str, path: str, data: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        """Return (status, headers, body) whatever the status."""
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers=headers or {})
        try:
            with self._opener.open(req, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def form(self, path: str, fields: dict) -> tuple[int, dict, bytes]:
        return self.request("POST", path, urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def login(self, name: str, password: str) -> int:
        status, _, body = self.request("GET", "/login")
        assert status == 200, f"GET /login answered {status}"
        token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
        status, _, _ = self.form("/login", {"username": name, "password": password,
                                            "csrf_token": token, "next": "/"})
        self._csrf = None
        return status

    @property
    def csrf(self) -> str:
        """The CSRF token the terminal page carries for this login."""
        if self._csrf is None:
            status, _, body = self.request("GET", "/")
            assert status == 200, f"GET / answered {status}"
            self._csrf = re.search(rb'name="csrf-token" content="([^"]+)"', body).group(1).decode()
        return self._csrf

    def api(self, method: str, path: str, body: dict | None = None,
            headers: dict | None = None) -> tuple[int, dict | None]:
        """Call the REST API as this login; return (status, JSON body or None)."""
        extra = {"X-CSRF-Token": self.csrf} if method not in ("GET", "HEAD") else {}
        if body is not None:
            extra["Content-Type"] = "application/json"
        status, _, raw = self.request(method, path, None if body is None else json.dumps(body).encode(),
                                      {**extra, **(headers or {})})
        return status, (json.loads(raw) if raw else None)

    def cookie_header(self) -> dict:
        """Headers for a WebSocket handshake as this login (websocket-client
        adds a same-origin Origin itself)."""
        return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in self.jar)}
