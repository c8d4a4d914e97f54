"""The WebSocket route: the only code that knows about WebSocket objects.

Each connection is a `TerminalConnection`: a greenlet pumps pty output to the
socket, and simple-websocket's reader greenlet hands each client message to
the pty as it arrives. Whichever side ends first ends the other; the tmux
session outlives them both.
"""
from __future__ import annotations

import codecs
import logging
import threading
import time

import gevent
from gevent.event import Event
from flask import Blueprint, current_app, g, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from wsproto.utilities import LocalProtocolError

from . import auth
from . import protocol as p
from .accounts import Share
from .bridge import PtyBridge
from .protocol import ProtocolError
from .ratelimit import RateLimited, TokenBucket
from .service import Gateway
from .sessions import REASON_EXITED, REASON_LOST, Busy, SessionEnded, SessionNotFound
from .store import StoreUnavailable
from .tmux import TmuxError
from .transport import PING_FRAME, SendAllSocket, binary_frame, tune_socket

log = logging.getLogger("termweb.gateway")
bp = Blueprint("gateway", __name__)
sock = Sock()
CLOSE_WAIT_SECONDS = 2.0


class Refusal(Exception):
    """Why a connection cannot go on: an error code, a message and a close code."""

    def __init__(self, code: str, message: str, close_code: int):
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


def gateway() -> Gateway:
    return current_app.extensions["termweb"]


def current_user_id() -> str:
    """Whose terminals this request may reach (auth.require_login let it in)."""
    return auth.principal().user_id


def _refuse(status: int, code: str, message: str):
    log.warning("refused /ws from %s: %s", request.remote_addr, message)
    return auth.error_response(status, code, message)


@bp.before_app_request
def guard_handshake():
    """Refusals that must come before the upgrade (so before any pty or tmux
    work): origin and share link; then socket set-up. Login was checked by
    auth.require_login. (Creation limits answer after the upgrade, so that a
    browser can show why.)"""
    if request.path != "/ws":
        return None
    gw = gateway()
    origin = request.headers.get("Origin")
    if not gw.origin_allowed(origin, request.host):
        return _refuse(403, "forbidden_origin", f"cross-origin handshake from {origin!r} refused")
    if "view" in request.args:
        g.share = gw.accounts.check_share(request.args["view"])
        if g.share is None:
            return _refuse(404, "share_not_found", "this share link is not valid, or was revoked")
    raw = request.environ.get("gunicorn.socket")
    if raw is not None:
        tune_socket(raw, gw.settings.send_buffer_bytes)
        request.environ["gunicorn.socket"] = SendAllSocket(raw)
    if not gw.settings.ws_compression:
        # Deflate costs CPU on every frame and latency on every keystroke.
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    return None


@sock.route("/ws", bp=bp)
def terminal_socket(ws):
    share = g.get("share")
    if share is not None:
        user_id, credential = share.owner, ("share", share.id)
    else:
        who = auth.principal()
        user_id = who.user_id
        credential = {"cookie": ("login", who.credential), "token": ("token", who.credential)}.get(who.via)
    TerminalConnection(ws, gateway(), request.args, user_id, share, credential).serve()


class TerminalConnection:
    def __init__(self, ws, gw: Gateway, args, user_id: str, share: Share | None = None,
                 credential: tuple[str, str] | None = None):
        self.ws = ws
        self.gw = gw
        self.args = args
        self.user_id = user_id
        self.share = share  # a viewer through this share link: output only
        self.credential = credential  # (kind, key) to check again while open
        self._read_only_told = 0.0
        limits = gw.settings
        self._messages = TokenBucket(limits.ws_messages_per_second, 2 * limits.ws_messages_per_second)
        self._bytes = TokenBucket(limits.ws_input_bytes_per_second,
                                  max(limits.ws_input_bytes_per_second, limits.max_message_bytes))
        self._limited_told = 0.0
        self.session_id: str | None = None
        self.backend_id: str | None = None  # the tmux server it runs on
        self.bridge: PtyBridge | None = None
        self.counted = False  # the store counts this connection: detach at the end
        self._gauged = False  # counted in termweb_connections
        self.json_mode = False
        self.disconnect_requested = False
        self._dispatching = False
        self._input_stop = Event()
        self._input_failure: Exception | None = None
        self._send_lock = threading.Lock()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    # -- life cycle -------------------------------------------------------

    def serve(self) -> None:
        """Run the connection to its end.

        Nothing may escape: after the upgrade, an exception would make Flask
        write an HTTP 500 into the WebSocket stream (PITFALLS #4).
        """
        try:
            self._serve()
        except Exception:  # noqa: BLE001 -- the last line of defence, logged
            log.exception("terminal connection failed while closing (session=%s)", self.session_id)

    def _serve(self) -> None:
        try:
            self._open()
            self._run()
        except Refusal as refusal:
            log.info("closing /ws session=%s: %s", self.session_id, refusal.message)
            self._close_with_error(refusal.code, refusal.message, refusal.close_code)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("terminal connection failed (session=%s)", self.session_id)
            self._close_with_error("internal_error", "internal server error", p.CLOSE_INTERNAL)
        finally:
            self.gw.live.discard(self)
            if self._gauged:
                self.gw.metrics.connections.dec()
            if self.bridge is not None:
                self.bridge.close()
            self._count_out()
            # Once simple-websocket's reader is done, drain the socket so that
            # gunicorn's close does not reset it under our last frame.
            self.ws.thread.join(CLOSE_WAIT_SECONDS)
            if not self.ws.thread.is_alive() and isinstance(self.ws.sock, SendAllSocket):
                self.ws.sock.drain()

    def _open(self) -> None:
        cols, rows, encoding = self._handshake_args()
        self.json_mode = encoding == "json"
        if self.gw.stopping:
            raise Refusal("server_restarting", "this worker is stopping; reconnect",
                          p.CLOSE_RESTART)
        if len(self.gw.live) >= self.gw.settings.max_terminals:
            raise Refusal("too_many_terminals",
                          f"this worker already serves {self.gw.settings.max_terminals} terminals",
                          p.CLOSE_TRY_AGAIN)
        self.gw.live.add(self)
        router = self.gw.router
        requested = self.share.session_id if self.share else self.args.get("session")
        restore = self.args.get("restore", "1") != "0"
        try:
            if requested:
                self.session_id = requested
            else:
                self.session_id = self.gw.create_session(self.user_id, cols, rows).session_id
            attachment = router.attach(
                self.session_id, self.user_id, cols, rows, created=not requested,
                history_lines=self.gw.settings.restore_lines if restore else 0,
                read_only=self.share is not None)
        except RateLimited as exc:
            raise Refusal("rate_limited", exc.message, p.CLOSE_TRY_AGAIN) from None
        except Busy as exc:
            raise Refusal("busy", str(exc), p.CLOSE_TRY_AGAIN) from None
        except SessionNotFound as exc:
            raise Refusal("session_not_found", str(exc), p.CLOSE_NOT_FOUND) from None
        except SessionEnded as exc:
            raise Refusal("session_ended", str(exc), p.CLOSE_NOT_FOUND) from None
        except StoreUnavailable as exc:
            log.error("session store unavailable: %s", exc)
            self._abandon_new_session(requested)
            raise Refusal("store_unavailable", "the session store is unavailable; "
                          "try again shortly", p.CLOSE_TRY_AGAIN) from None
        except (TmuxError, OSError) as exc:
            log.error("tmux failed for session %s: %s", self.session_id, exc)
            self._abandon_new_session(requested)
            raise Refusal("backend_unavailable", f"could not start the terminal: {exc}",
                          p.CLOSE_INTERNAL) from None
        self.bridge, self.counted = attachment.bridge, True
        self.backend_id = attachment.state.backend_id
        self.gw.metrics.connections.inc()
        self._gauged = True
        self.send(p.message(p.CONTROL, self.session_id, {
            "action": p.READY, "cols": cols, "rows": rows, "encoding": encoding,
            "created": not requested, "restored": len(attachment.history),
            "readOnly": self.share is not None, "pingInterval": self.gw.settings.ping_interval}))
        if attachment.history:
            self._send_history(attachment.history, rows)

    def _send_history(self, history: bytes, rows: int) -> None:
        """Earlier output into the page's scrollback, ahead of tmux's redraw.

        The lines go in one frame, followed by enough newlines to scroll them
        all off the screen, which tmux then repaints.
        """
        data = history.rstrip(b"\n").replace(b"\n", b"\r\n") + b"\r\n" * rows
        if self.json_mode:
            self.send(p.message(p.OUTPUT, self.session_id, data.decode("utf-8", "replace")))
        else:
            self._send_frame(binary_frame(data))

    def _abandon_new_session(self, requested: str | None) -> None:
        """A session made for this client, who cannot reach it, is killed."""
        if self.session_id and not requested:
            try:
                self.gw.router.destroy(self.session_id, self.user_id, "could not be attached")
            except Exception:  # noqa: BLE001 -- the sweep ends what is left
                log.warning("could not clean up session %s", self.session_id)

    def _count_out(self) -> None:
        if not self.counted:
            return
        self.counted = False
        try:
            self.gw.router.detach(self.session_id)
        except StoreUnavailable as exc:
            # The sweep corrects the count from tmux once the store is back.
            log.warning("session %s: could not count the connection out: %s", self.session_id, exc)

    def _handshake_args(self) -> tuple[int, int, str]:
        try:
            cols = int(self.args.get("cols", 80))
            rows = int(self.args.get("rows", 24))
            p.validate_size(cols, rows)
        except (ValueError, ProtocolError):
            raise Refusal("invalid_handshake",
                          f"cols must be {p.MIN_COLS}-{p.MAX_COLS} and rows {p.MIN_ROWS}-{p.MAX_ROWS}",
                          p.CLOSE_BAD_HANDSHAKE) from None
        encoding = self.args.get("encoding", "binary")
        if encoding not in p.ENCODINGS:
            raise Refusal("invalid_handshake", "encoding must be 'binary' or 'json'",
                          p.CLOSE_BAD_HANDSHAKE)
        return cols, rows, encoding

    def _run(self) -> None:
        output = gevent.spawn(self._pump_output)
        reader_done = gevent.spawn(self.ws.thread.join)
        pinger = gevent.spawn(self._ping, self.gw.settings.ping_interval)
        self.ws.event.on_set = self._dispatch_input
        self._dispatch_input()  # what arrived before the hook was in place
        try:
            gevent.wait([output, reader_done, self._input_stop], count=1)
        finally:
            reader_done.kill()
            pinger.kill()
        if not output.dead:
            # The client left or asked to: end our attach client, let the
            # output greenlet see EOF and finish its last frame.
            self.bridge.close()
            output.join(CLOSE_WAIT_SECONDS)
            output.kill()
            if self._input_failure is not None:
                raise self._input_failure
            if self.disconnect_requested:
                self._close(p.CLOSE_NORMAL, "disconnect requested")
            return
        output.get()  # re-raises a failure of the output side
        router, backend_id = self.gw.router, self.backend_id
        if router.exists(self.session_id, backend_id):
            raise Refusal("backend_unavailable", "the terminal's tmux client ended unexpectedly",
                          p.CLOSE_INTERNAL)
        # Lost if the server is gone, or was already found dead and replaced.
        running = router.backend_running(backend_id)
        reason = self._record_end(REASON_EXITED if running else REASON_LOST)
        if reason == REASON_LOST:
            raise Refusal("session_lost", "the tmux server behind this terminal stopped; "
                          "its shell is gone", p.CLOSE_NOT_FOUND)
        self.send(p.message(p.CONTROL, self.session_id, {"action": p.EXIT, "reason": reason}))
        self._close(p.CLOSE_NORMAL, "session ended")

    def _record_end(self, reason: str) -> str:
        """Mark the session ended in the store; return the reason it holds."""
        self.counted = False  # an ended record counts no connections
        try:
            return self.gw.router.end(self.session_id, reason)
        except StoreUnavailable as exc:
            log.warning("session %s ended (%s) but the store could not record it: %s",
                        self.session_id, reason, exc)
            return reason

    def _ping(self, interval: int) -> None:
        """Ping every ``interval`` s; close with 1008 when the last ping got no pong.

        Ours rather than simple-websocket's, whose reader would set up a timed
        wait for every incoming frame (measured: +40 us on each keystroke).
        """
        if interval <= 0:
            return
        while True:
            gevent.sleep(interval)
            if not self.ws.pong_received:
                log.info("closing /ws session=%s: no pong within %s s", self.session_id, interval)
                self._close(p.CLOSE_POLICY, "ping timeout")
                self._input_stop.set()
                return
            self.ws.pong_received = False  # simple-websocket sets it on every pong
            try:
                self._send_frame(PING_FRAME)
            except (ConnectionClosed, ConnectionError):
                return

    # -- the two pumps ----------------------------------------------------

    def _pump_output(self) -> None:
        read = self.bridge.read
        sent = self.gw.metrics.bytes_out.inc
        try:
            while data := read():
                sent(len(data))
                if self.json_mode:
                    self.send(p.message(p.OUTPUT, self.session_id, self._decoder.decode(data)))
                else:
                    self._send_frame(binary_frame(data))
        except (ConnectionClosed, ConnectionError):  # the client went away mid-send
            pass

    def _dispatch_input(self) -> None:
        """Handle every queued client message, in the greenlet that queued it.

        Runs inside simple-websocket's reader (see `InputDispatchEvent`); it
        must not raise there, so a failure is kept for `_run` to report.
        """
        if self._dispatching:  # the running call drains what was just queued
            return
        self._dispatching = True
        queue = self.ws.input_buffer
        try:
            while queue and not self._input_stop.is_set():
                frame = queue.pop(0)
                self._throttle(len(frame))
                if self.share is not None:
                    self._refuse_viewer_input(frame)
                elif isinstance(frame, bytes):
                    self.gw.metrics.bytes_in.inc(len(frame))
                    self.bridge.write(frame)
                else:
                    self._handle_text(frame)
        except (ConnectionClosed, ConnectionError):
            self._input_stop.set()
        except Exception as exc:  # noqa: BLE001 -- re-raised by _run
            self._input_failure = exc
            self._input_stop.set()
        finally:
            self._dispatching = False

    def _throttle(self, size: int) -> None:
        """Hold this client's input to TERMWEB_WS_MESSAGES_PER_SECOND and
        TERMWEB_WS_INPUT_BYTES_PER_SECOND.

        Over the limit, the reader waits (so TCP slows the client down and no
        keystroke is lost) and the client is told ``rate_limited``. Only the
        reader waits: were another greenlet to, the reader would go on
        queueing the client's messages in memory meanwhile.
        """
        wait = max(self._messages.take(1), self._bytes.take(size))
        if not wait:
            return
        now = time.monotonic()
        if now - self._limited_told > 5:
            self._limited_told = now
            self.send(p.error(self.session_id, "rate_limited",
                              "input is arriving faster than this server accepts; it is being slowed down"))
        if threading.current_thread() is self.ws.thread:
            gevent.sleep(wait)

    def _refuse_viewer_input(self, frame: str | bytes) -> None:
        """A viewer's heartbeats are answered; anything else is refused
        (tmux's read-only client would ignore it anyway)."""
        if isinstance(frame, str):
            try:
                msg = p.parse_client_message(frame)
            except ProtocolError as exc:
                self.send(p.error(self.session_id, exc.code, exc.message, exc.reply_to))
                return
            if msg.type == p.HEARTBEAT or msg.action == p.DISCONNECT:
                self._handle_text(frame)
                return
            self.send(p.error(self.session_id, "read_only", "this is a view-only link: "
                              "typing and resizing are off", msg.message_id))
            return
        now = time.monotonic()
        if now - self._read_only_told > 1:  # one notice per second of typing
            self._read_only_told = now
            self.send(p.error(self.session_id, "read_only",
                              "this is a view-only link: typing and resizing are off"))

    # -- messages ---------------------------------------------------------

    def _handle_text(self, text: str) -> None:
        try:
            msg = p.parse_client_message(text)
        except ProtocolError as exc:
            self.send(p.error(self.session_id, exc.code, exc.message, exc.reply_to))
            return
        if msg.type == p.HEARTBEAT:
            if msg.payload.get("rttMs") is not None:
                self.gw.metrics.rtt.observe(msg.payload["rttMs"] / 1000)
            payload = {"clientTime": msg.payload.get("clientTime"), "serverTime": int(time.time() * 1000)}
            if msg.message_id is not None:
                payload["replyTo"] = msg.message_id
            self.send(p.message(p.HEARTBEAT, self.session_id, payload))
        elif msg.type == p.INPUT:
            self.bridge.write(msg.payload.encode())
        elif msg.type == p.COMMAND:
            self.bridge.write(msg.payload["command"].encode() + b"\r")
        elif msg.action == p.RESIZE:
            self.bridge.resize(msg.payload["cols"], msg.payload["rows"])
        elif msg.action == p.INTERRUPT:
            self.bridge.write(b"\x03")
        elif msg.action == p.CLEAR:
            self._clear(msg)
        elif msg.action == p.DISCONNECT:
            self.disconnect_requested = True
            self._input_stop.set()

    def _clear(self, msg: p.ClientMessage) -> None:
        try:
            self.gw.router.clear(self.session_id, self.backend_id)
        except TmuxError as exc:
            self.send(p.error(self.session_id, "backend_unavailable", str(exc), msg.message_id))

    def close_revoked(self) -> None:
        """The credential ended: a viewer's link was revoked (4403), or the
        user's login or token (4401). The terminal itself runs on."""
        if self.bridge is None:
            return
        self.gw.live.discard(self)
        if self.share is not None:
            self._close_with_error("share_revoked", "the owner revoked this share link",
                                   p.CLOSE_FORBIDDEN)
        else:
            self._close_with_error("unauthorized", "your login has ended (password changed, user "
                                   "removed or token revoked); log in again", p.CLOSE_UNAUTHORIZED)
        self._input_stop.set()

    def close_for_restart(self) -> None:
        """Close with 1012; the client's close reply then ends both pumps."""
        if self.bridge is not None:
            self._close(p.CLOSE_RESTART, "server restarting")

    # -- sending ----------------------------------------------------------

    def send(self, text: str) -> None:
        # Encoding and writing a frame happen under one lock, so frames from
        # the two greenlets never interleave.
        with self._send_lock:
            self.ws.send(text)

    def _send_frame(self, frame: bytes) -> None:
        """Send a frame built by `transport`, unless the socket is already closing."""
        with self._send_lock:
            if not self.ws.connected:
                raise ConnectionClosed(self.ws.close_reason, self.ws.close_message)
            self.ws.sock.send(frame)

    def _close(self, code: int, reason: str) -> None:
        try:
            with self._send_lock:
                self.ws.close(reason=code, message=reason)
        except (ConnectionClosed, OSError):
            pass

    def _close_with_error(self, code: str, message: str, close_code: int) -> None:
        try:
            self.send(p.error(self.session_id, code, message))
        except (ConnectionClosed, OSError, LocalProtocolError):  # already closing
            return
        self._close(close_code, message[:120])
