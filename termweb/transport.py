"""What termweb adds to simple-websocket's server side, below the gateway.

The socket wrapper that makes sends whole and closes safe, the event that lets
the gateway handle each message where it arrives, and the two frames the
gateway writes itself (RFC 6455 section 5.2).
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time

from gevent.event import Event
from gevent.exceptions import ConcurrentObjectUseError

log = logging.getLogger("termweb.transport")
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024
PING_FRAME = b"\x89\x00"  # FIN + ping opcode, empty payload


class SendAllSocket:
    """The upgraded socket, with every send made whole and atomic.

    simple-websocket 1.1.0 writes frames with ``socket.send`` and ignores
    partial writes, which corrupts the stream to a slow client (PITFALLS #3);
    its reader thread also sends pongs while our greenlets send output.
    """

    def __init__(self, raw: socket.socket):
        self._raw = raw
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._lock:
            self._raw.sendall(data)
        return len(data)

    def close(self) -> None:
        """Half-close only: gunicorn, the socket's owner, closes it after `drain`.

        simple-websocket closes the socket from its reader thread; a second
        closer racing gunicorn's own close can release a descriptor number
        that a new connection then reuses.
        """
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def drain(self) -> None:
        """Read and drop what the client still sends, until it closes too.

        Closing with unread input makes the kernel send a reset, which can
        destroy our last frame before the client reads it, e.g. the 1009
        close that answers an oversize message.
        """
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        try:
            self._raw.settimeout(LINGER_SECONDS)
            while drained < LINGER_BYTES and time.monotonic() < deadline:
                chunk = self._raw.recv(64 * 1024)
                if not chunk:
                    break
                drained += len(chunk)
        except (OSError, ConcurrentObjectUseError):  # closed, or still read elsewhere
            pass

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


class InputDispatchEvent(Event):
    """simple-websocket's "message queued" event, able to run a hook when set.

    simple-websocket sets this event in its reader greenlet right after it
    queues each incoming message. The connection's hook handles the message
    there and then: a keystroke reaches the pty without a hand-off to another
    greenlet, and while the pty is full the reader waits instead of queueing
    more of the client's messages in memory.
    """

    on_set = None

    def set(self) -> None:
        super().set()
        if self.on_set is not None:
            self.on_set()


def binary_frame(data: bytes) -> bytes:
    """One unfragmented, unmasked binary frame: the output hot path.

    Framing it here skips wsproto's general machinery. A whole frame leaves
    wsproto's state untouched, and an uncompressed message is valid even
    where permessage-deflate was negotiated.
    """
    size = len(data)
    if size < 126:
        header = bytes((0x82, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x82, 126, size)
    else:
        header = struct.pack("!BBQ", 0x82, 127, size)
    return header + data


def tune_socket(raw: socket.socket, send_buffer_bytes: int) -> None:
    try:
        # Small replies go out at once, not after the peer's delayed ACK (PITFALLS #21).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A slow client backs up into the pty and tmux, not into megabytes of
        # kernel buffer it would see seconds late (PITFALLS #8).
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    except OSError as exc:
        log.debug("could not tune socket: %s", exc)
