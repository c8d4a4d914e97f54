"""BackendPool: several tmux servers, each with a few warm sessions.

A backend is one tmux server with its own socket: ``TERMWEB_TMUX_SOCKET``
for the first, ``<socket>-1``, ``<socket>-2``… for the others. tmux
daemonizes into a session of its own, so worker deaths and deploys leave the
servers (and their shells) running, and one crashed server takes down only
its own sessions. New sessions go to the least loaded healthy backend with
room.

Warm sessions are shells started ahead of time, named ``warm+<hex>`` (no
session id can have a ``+``). Taking one is a ``rename-session``, which tmux
does atomically, so two workers never get the same one; its shell printed
its prompt long ago. tmux is the record of which warm sessions exist, so
workers need no other coordination about them.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket as socketlib
from dataclasses import dataclass, field

from .tmux import OWNER_OPTION, TmuxError, TmuxServer

log = logging.getLogger("termweb.pool")
WARM_PREFIX = "warm+"
ACTIVE, DRAINING = "active", "draining"
# Backends beyond the pool's size that still run (draining ones, after a
# restart) are found by their sockets, up to this index.
MAX_BACKENDS = 64


class NoRoom(RuntimeError):
    """No healthy backend has room for another session."""


def backend_socket(socket: str, index: int) -> str:
    return socket if index == 0 else f"{socket}-{index}"


def existing_servers(socket: str, shell: str, first: int = 0) -> list[tuple[int, TmuxServer]]:
    """The pool's tmux servers whose sockets exist, from index ``first`` on."""
    found = []
    for index in range(first, MAX_BACKENDS):
        tmux = TmuxServer(backend_socket(socket, index), shell)
        if os.path.exists(tmux.socket_path):
            found.append((index, tmux))
    return found


@dataclass(eq=False)
class Backend:
    index: int
    tmux: TmuxServer
    id: str
    state: str = ACTIVE  # DRAINING: no new sessions; stopped once empty
    up: bool = True
    sessions: int = 0  # user sessions (warm ones apart)
    warm: list[str] = field(default_factory=list)
    pid: int | None = None


class BackendPool:
    """The tmux servers of this host, as one worker sees them."""

    def __init__(self, socket: str, shell: str, history_limit: int = 50000, size: int = 1,
                 max_sessions: int = 2000, warm_per_backend: int = 0):
        self.socket, self.shell, self.history_limit = socket, shell, history_limit
        self.max_sessions = max_sessions
        self.warm_per_backend = warm_per_backend
        self.host = socketlib.gethostname()
        self.backends: list[Backend] = []
        self.size = 0
        self.scale(size)

    @classmethod
    def of(cls, tmux: TmuxServer, **options) -> "BackendPool":
        """A pool of one existing tmux server (tests, tools)."""
        pool = cls(tmux.socket, tmux.shell, tmux.history_limit, size=0, **options)
        pool.backends = [Backend(0, tmux, f"{pool.host}/{tmux.socket}")]
        pool.size = 1
        return pool

    # -- membership ----------------------------------------------------------

    def _backend(self, index: int) -> Backend:
        for backend in self.backends:
            if backend.index == index:
                return backend
        tmux = TmuxServer(backend_socket(self.socket, index), self.shell, self.history_limit)
        backend = Backend(index, tmux, f"{self.host}/{tmux.socket}")
        self.backends.append(backend)
        self.backends.sort(key=lambda b: b.index)
        return backend

    def scale(self, size: int) -> None:
        """Grow to ``size`` backends, or drain the ones beyond it. A draining
        backend takes no new sessions and stops once its last one ends; no
        live session is ever killed by scaling."""
        self.size = size
        for index in range(size):
            self._backend(index).state = ACTIVE
        for backend in self.backends:
            if backend.index >= size:
                backend.state = DRAINING

    def discover(self) -> None:
        """Take in running servers beyond the size (left draining by a
        scale-down before a restart)."""
        for index, _ in existing_servers(self.socket, self.shell, first=self.size):
            self._backend(index).state = DRAINING

    def start(self) -> None:
        for backend in self.backends:
            if backend.state == ACTIVE:
                backend.tmux.start()

    def get(self, backend_id: str) -> Backend | None:
        return next((b for b in self.backends if b.id == backend_id), None)

    @property
    def first(self) -> Backend:
        return self.backends[0]

    # -- placing sessions ----------------------------------------------------

    def acquire(self) -> Backend:
        """The least loaded healthy, active backend with room; NoRoom if none."""
        candidates = [b for b in self.backends
                      if b.state == ACTIVE and b.up and b.sessions < self.max_sessions]
        if not candidates:
            raise NoRoom(f"no tmux backend is up with room (TERMWEB_MAX_SESSIONS_PER_BACKEND="
                         f"{self.max_sessions})")
        return min(candidates, key=lambda b: (b.sessions, b.index))

    def take_warm(self, backend: Backend, name: str, owner: str) -> bool:
        """Rename one of the backend's warm sessions to ``name``, owned by
        ``owner``; False when none was left to take."""
        while backend.warm:
            warm = backend.warm.pop()
            try:
                # One tmux command line: if the rename fails (another worker
                # took this one), the owner is not set on anything.
                backend.tmux.run("rename-session", "-t", f"={warm}", name,
                                 ";", "set-option", "-t", f"={name}:", OWNER_OPTION, owner)
            except TmuxError:
                continue
            backend.sessions += 1
            return True
        return False

    def refill(self, backend: Backend) -> int:
        """Start warm sessions up to the target; return how many started."""
        if backend.state != ACTIVE or not backend.up:
            return 0
        started = 0
        while (len(backend.warm) < self.warm_per_backend
               and backend.sessions + len(backend.warm) < self.max_sessions):
            name = WARM_PREFIX + secrets.token_hex(6)
            backend.tmux.new_session(name, 80, 24)
            backend.warm.append(name)
            started += 1
        return started

    def drop_warm(self, backend: Backend) -> None:
        """A draining backend keeps no warm sessions."""
        for name in backend.warm:
            try:
                backend.tmux.kill_session(name)
            except TmuxError:
                pass
        backend.warm = []

    # -- what tmux says ------------------------------------------------------

    @staticmethod
    def observe(backend: Backend, names: list[str]) -> None:
        """Set a backend's counts from its session names (a probe)."""
        backend.warm = [n for n in names if n.startswith(WARM_PREFIX)]
        backend.sessions = len(names) - len(backend.warm)

    def retire(self, backend: Backend) -> None:
        """Stop a drained backend and forget it."""
        backend.tmux.kill_server()
        self.backends.remove(backend)
        log.info("tmux backend %s drained and stopped", backend.id)
