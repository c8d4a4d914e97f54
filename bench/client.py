"""A minimal terminal client for termweb's wire protocol (docs/protocol.md).

The scenarios use only ``send_keys``, ``recv_output``, ``fileno``, ``end``
and ``close`` (the reattach scenarios also ``session_id``, ``ready``,
``ready_at``, ``opened_at``, ``drop`` and ``disconnect``), so a client for
another server (terminado's JSON messages, say) can stand in for this one.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import time
from urllib.parse import urlencode, urlsplit

import websocket

NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

# Escape sequences a terminal swallows: CSI, OSC, DCS/PM/APC strings, charset
# designations and the other two-byte escapes.
_ESCAPES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"
    rb"|\x1b[\]PX^_].*?(?:\x07|\x1b\\)"
    rb"|\x1b[()*+][0-~]"
    rb"|\x1b[ -/]*[0-~]",
    re.S)
_CONTROLS = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
# A shell prompt's last visible character: bash's `$ ` / `# `, zsh's `% `, `> `.
PROMPT_END = re.compile(rb"[$#%>]\s*\Z")
CSRF_FIELD = re.compile(rb'name="csrf_token" value="([^"]+)"')


def visible(data: bytes) -> bytes:
    """The printable text of terminal output: escape sequences and controls removed."""
    if b"\x1b" in data:
        data = _ESCAPES.sub(b"", data)
    return _CONTROLS.sub(b"", data)


class Closed(Exception):
    """The server closed the connection (or the shell exited)."""


class TermClient:
    """One termweb terminal over a WebSocket: binary frames both ways."""

    def __init__(self, base_url: str, cols: int = 120, rows: int = 30, timeout: float = 10.0,
                 session: str | None = None, restore: bool = True,
                 headers: dict[str, str] | None = None, query: dict[str, str] | None = None):
        """Open a new terminal, or with ``session`` reattach that one (its
        history first unless ``restore`` is false); return once ``ready`` came.
        ``headers`` (a login cookie, ``Authorization``) go with the handshake,
        ``query`` (``token``) into its URL.

        Raises Closed when the server refuses or drops the connection, and
        websocket-client's or the socket's errors when it cannot be reached
        (a refused handshake: websocket.WebSocketBadStatusException).
        """
        params = {"cols": cols, "rows": rows, **(query or {})}
        if session is not None:
            params["session"] = session
            if not restore:
                params["restore"] = 0
        url = base_url.replace("http", "ws", 1) + "/ws?" + urlencode(params)
        self.ws = websocket.create_connection(url, timeout=timeout, sockopt=NODELAY,
                                              header=headers or {})
        self.opened_at = time.perf_counter()  # the upgrade (HTTP 101) is done
        self._timeout = timeout
        try:
            opcode, data = self.ws.recv_data()
        except (websocket.WebSocketException, OSError) as exc:
            self.ws.shutdown()
            raise Closed(f"no ready message: {exc}") from None
        self.ready_at = time.perf_counter()  # when the ready message arrived
        ready = json.loads(data) if opcode == websocket.ABNF.OPCODE_TEXT else {}
        if ready.get("payload", {}).get("action") != "ready":
            self.close()
            raise Closed(f"expected a ready message first, got opcode {opcode}: {data[:200]!r}")
        self.session_id = ready.get("sessionId")
        self.ready = ready["payload"]  # cols, rows, created, restored (bytes of history), ...

    def fileno(self) -> int:
        return self.ws.sock.fileno()

    def send_keys(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def recv_output(self, timeout: float) -> bytes | None:
        """The next output bytes; b"" for a frame that is not output; None after ``timeout``."""
        if timeout <= 0:
            return None
        frame = self._recv_frame(timeout)
        if frame is None:
            return None
        opcode, data = frame
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return data
        if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
            return b""
        message = json.loads(data)
        if message.get("type") == "output":
            return message["payload"].encode()
        if message.get("type") == "control" and message.get("payload", {}).get("action") == "exit":
            raise Closed("the shell exited")
        return b""

    def _recv_frame(self, timeout: float) -> tuple[int, bytes] | None:
        """The next frame as (opcode, data); None after ``timeout``; Closed
        when the socket closes or a close frame comes."""
        if timeout != self._timeout:  # settimeout costs syscalls: only when it changes
            self.ws.settimeout(timeout)
            self._timeout = timeout
        try:
            # control_frame: return after a ping (answered inside) instead of
            # waiting on for the next data frame.
            opcode, data = self.ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError) as exc:
            raise Closed(str(exc)) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise Closed(f"close frame {data[:2].hex()} {data[2:]!r}")
        return opcode, data

    def end(self, timeout: float = 2.0) -> None:
        """Exit the shell (so no session is left behind), wait briefly for the close, close."""
        try:
            # Ctrl-C on its own: the pty discards input queued behind it, so
            # an `exit` in the same write may lose its first letters.
            self.send_keys(b"\x03")
            drain(self, quiet=0.02, limit=0.2)
            self.send_keys(b"\x15exit\r")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.recv_output(min(0.5, max(0.01, deadline - time.monotonic())))
        except (Closed, OSError, websocket.WebSocketException):
            pass
        self.close()

    def drop(self) -> None:
        """Lose the connection abruptly, as a network failure would: the TCP
        socket is shut down and closed without a WebSocket close frame."""
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ws.shutdown()

    def disconnect(self, timeout: float = 2.0) -> None:
        """Close as a page does (close frame), and wait for the server's close frame."""
        try:
            self.ws.send_close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.recv_output(min(0.5, max(0.01, deadline - time.monotonic())))
        except (Closed, OSError, websocket.WebSocketException):
            pass
        self.ws.shutdown()

    def close(self) -> None:
        # Not ws.close(): it waits for the server's close frame inside a bare
        # `except: pass`, which would swallow a Ctrl-C landing there.
        try:
            self.ws.send_close()
        except Exception:  # already closed by the server
            pass
        self.ws.shutdown()


def drain(term, quiet: float = 0.05, limit: float = 2.0) -> bytes:
    """Read output until none arrives for ``quiet`` s (at most ``limit`` s); return it."""
    chunks, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        data = term.recv_output(min(quiet, max(0.001, deadline - time.monotonic())))
        if data is None:
            break
        chunks.append(data)
    return b"".join(chunks)


def wait_for_prompt(term, quiet: float = 0.3, limit: float = 30.0) -> float:
    """``time.perf_counter()`` at the arrival of the frame that completed the prompt.

    The prompt is complete when the visible text received so far ends with a
    prompt character (`$`, `#`, `%` or `>`, then optional spaces) **and** no
    more output follows for ``quiet`` s. Output after a candidate (a `$` in a
    motd, a prompt redrawn) makes the next matching frame the candidate, so
    the time is that of the last frame before the terminal went quiet at a
    prompt. The quiet period itself is not part of the time returned.
    """
    text, candidate = b"", None
    deadline = time.monotonic() + limit
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no prompt within {limit} s; visible output ends {text[-200:]!r}")
        data = term.recv_output(min(quiet, remaining) if candidate else min(1.0, remaining))
        arrived = time.perf_counter()
        if data is None:
            if candidate is not None:
                return candidate
            continue
        if not data:
            continue
        text = (text + visible(data))[-4096:]
        candidate = arrived if PROMPT_END.search(text) else None


# -- logging in: termweb's login form, as a browser fills it in -------------------

def http_request(base_url: str, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a new connection (no redirects followed): status, headers, body."""
    where = urlsplit(base_url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def _cookies(headers: http.client.HTTPMessage, jar: dict[str, str]) -> dict[str, str]:
    """``jar`` updated with the response's Set-Cookie name=value pairs."""
    jar = dict(jar)
    for line in headers.get_all("Set-Cookie") or []:
        name, _, value = line.split(";", 1)[0].partition("=")
        jar[name.strip()] = value.strip()
    return jar


def cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in jar.items())}


def login_form(base_url: str) -> tuple[dict[str, str], str]:
    """GET /login: the cookies it set (the session holding the CSRF token) and the form's token."""
    status, headers, body = http_request(base_url, "GET", "/login")
    found = CSRF_FIELD.search(body)
    if status != 200 or not found:
        raise Closed(f"GET /login answered {status} without a csrf_token field")
    return _cookies(headers, {}), found.group(1).decode()


def post_login(base_url: str, jar: dict[str, str], csrf: str, user: str,
               password: str) -> tuple[int, dict[str, str]]:
    """POST /login with the form's fields: the status (302 logged in, 401 refused)
    and the cookies after it (``termweb_session``: the login)."""
    form = urlencode({"csrf_token": csrf, "username": user, "password": password, "next": "/"})
    status, headers, _ = http_request(
        base_url, "POST", "/login", form.encode(),
        {"Content-Type": "application/x-www-form-urlencoded", **cookie_header(jar)})
    return status, _cookies(headers, jar)
