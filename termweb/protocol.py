"""The wire protocol of docs/protocol.md: names defined once, frames parsed once.

Binary frames are raw terminal bytes and never pass through here; this module
parses client text frames into `ClientMessage`s and builds the server's JSON.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

# Message types.
CONTROL = "control"
HEARTBEAT = "heartbeat"
INPUT = "input"
COMMAND = "command"
OUTPUT = "output"
ERROR = "error"

# Control actions.
READY = "ready"
EXIT = "exit"
RESIZE = "resize"
INTERRUPT = "interrupt"
CLEAR = "clear"
DISCONNECT = "disconnect"
CLIENT_ACTIONS = (RESIZE, INTERRUPT, CLEAR, DISCONNECT)

# Close codes beyond RFC 6455's own.
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_BAD_HANDSHAKE = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

MIN_COLS, MAX_COLS = 2, 1000
MIN_ROWS, MAX_ROWS = 1, 1000
MAX_COMMAND_CHARS = 4096
MAX_MESSAGE_ID_CHARS = 64
MAX_RTT_MS = 600_000
ENCODINGS = ("binary", "json")


class ProtocolError(Exception):
    """A client message the server refuses; `code` is the stable error code."""

    def __init__(self, code: str, message: str, reply_to: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reply_to = reply_to

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class ClientMessage:
    type: str
    payload: Any
    message_id: str | None = None

    @property
    def action(self) -> str | None:
        return self.payload.get("action") if self.type == CONTROL else None


def parse_client_message(text: str) -> ClientMessage:
    """Parse and validate one client text frame, or raise ProtocolError."""
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ProtocolError("invalid_json", f"text frame is not valid JSON ({exc.msg})") from None
    except ValueError as exc:  # a number out of range (int() caps its digits)
        raise ProtocolError("invalid_json", f"text frame is not usable JSON ({exc})"[:200]) from None
    except RecursionError:
        raise ProtocolError("invalid_json", "text frame is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", "a message must be a JSON object")
    message_id = data.get("messageId")
    if message_id is not None and not (
            isinstance(message_id, str) and len(message_id) <= MAX_MESSAGE_ID_CHARS):
        raise ProtocolError("invalid_field",
                            f"messageId must be a string of at most {MAX_MESSAGE_ID_CHARS} characters")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_message", "a message needs a string 'type'", message_id)
    validate = _VALIDATORS.get(kind)
    if validate is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}", message_id)
    try:
        payload = validate(data.get("payload"))
    except ProtocolError as exc:
        exc.reply_to = message_id
        raise
    return ClientMessage(kind, payload, message_id)


def _control(payload: Any) -> dict:
    if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
        raise ProtocolError("invalid_field", "control needs a payload object with a string 'action'")
    action = payload["action"]
    if action not in CLIENT_ACTIONS:
        raise ProtocolError("unknown_action", f"unknown control action {action[:40]!r}")
    if action == RESIZE:
        cols, rows = payload.get("cols"), payload.get("rows")
        validate_size(cols, rows)
        return {"action": action, "cols": cols, "rows": rows}
    return {"action": action}


def _heartbeat(payload: Any) -> dict:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ProtocolError("invalid_field", "heartbeat payload must be an object")
    client_time = payload.get("clientTime")
    if client_time is not None and (
            isinstance(client_time, bool) or not isinstance(client_time, (int, float))):
        raise ProtocolError("invalid_field", "heartbeat clientTime must be a number")
    rtt = payload.get("rttMs")
    if rtt is not None and (isinstance(rtt, bool) or not isinstance(rtt, (int, float))
                            or not 0 <= rtt <= MAX_RTT_MS):
        raise ProtocolError("invalid_field", f"heartbeat rttMs must be a number from 0 to {MAX_RTT_MS}")
    return {"clientTime": client_time, "rttMs": rtt}


def _input(payload: Any) -> str:
    if not isinstance(payload, str):
        raise ProtocolError("invalid_field", "input payload must be a string")
    return _unicode(payload, "input payload")


def _command(payload: Any) -> dict:
    if not isinstance(payload, dict) or not isinstance(payload.get("command"), str):
        raise ProtocolError("invalid_field", "command needs a payload object with a string 'command'")
    command = _unicode(payload["command"], "command")
    if len(command) > MAX_COMMAND_CHARS:
        raise ProtocolError("invalid_field", f"command is longer than {MAX_COMMAND_CHARS} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in command):
        raise ProtocolError("invalid_field", "command must be one line without control characters")
    for name in ("workingDirectory", "environment"):
        if payload.get(name) is not None:
            raise ProtocolError("unsupported", f"command {name} is not supported yet")
    return {"command": command}


_VALIDATORS = {CONTROL: _control, HEARTBEAT: _heartbeat, INPUT: _input, COMMAND: _command}


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def _unicode(text: str, what: str) -> str:
    """``text`` if it can be written as UTF-8 (JSON's \\ud800 escapes can make
    lone surrogates that cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("invalid_field", f"{what} holds a lone surrogate; send valid Unicode") from None
    return text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_size(cols: Any, rows: Any) -> None:
    if not (_is_int(cols) and _is_int(rows)):
        raise ProtocolError("invalid_field", "cols and rows must be whole numbers")
    if not (MIN_COLS <= cols <= MAX_COLS and MIN_ROWS <= rows <= MAX_ROWS):
        raise ProtocolError(
            "invalid_size",
            f"size {cols}x{rows} is outside {MIN_COLS}-{MAX_COLS} columns "
            f"by {MIN_ROWS}-{MAX_ROWS} rows")


def message(kind: str, session_id: str | None, payload: Any) -> str:
    """One server TerminalMessage as a JSON text frame."""
    return json.dumps({
        "type": kind,
        "sessionId": session_id,
        "payload": payload,
        "timestamp": int(time.time() * 1000),
        "messageId": secrets.token_hex(8),
    }, separators=(",", ":"))


def error(session_id: str | None, code: str, text: str, reply_to: str | None = None) -> str:
    payload = {"code": code, "message": text}
    if reply_to is not None:
        payload["replyTo"] = reply_to
    return message(ERROR, session_id, payload)
