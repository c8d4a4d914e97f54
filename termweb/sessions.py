"""SessionRouter: terminals by id. Each is a tmux session with a store record.

The router is the one place that checks who may reach a session: every
lookup takes the caller's user id, and someone else's session is reported
exactly like a nonexistent one (admins may look up and end any). The
caller's id comes from the login (termweb.auth); with login off, everyone
is `DEFAULT_USER`.
"""
from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass

from .bridge import PtyBridge
from .store import SessionState, SessionStore
from .pool import Backend, BackendPool, NoRoom
from .tmux import TmuxError, TmuxServer

log = logging.getLogger("termweb.sessions")

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
DEFAULT_USER = "local"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_ENV_VARS = 64
MAX_ENV_VALUE = 4096

# Why sessions end, as the page and the session list show it.
REASON_EXITED = "the shell exited"
REASON_ENDED_BY_USER = "ended by its owner"
REASON_VANISHED = "its tmux session is gone"
REASON_LOST = "the tmux server behind it stopped"
REASON_EXPIRED = "nobody reconnected within TERMWEB_SESSION_TTL"


class SessionNotFound(LookupError):
    """No session with this id belongs to the caller (it may exist for someone else)."""

    def __str__(self) -> str:
        return "no terminal session with this id"


class SessionEnded(LookupError):
    """The session existed and has ended; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"this terminal has ended: {self.reason}"


class InvalidRequest(ValueError):
    """A create request with a bad directory, environment or size."""


class Busy(RuntimeError):
    """Too many terminals are starting at once, or the backend is full; try again shortly."""


class NoShellAccount(TmuxError):
    """TERMWEB_RUN_AS=user, and this user has no OS account to run shells as.
    Answered like any backend failure: no shell can be started."""


def shell_account(user_id: str) -> pwd.struct_passwd:
    """The OS account of the same name as a termweb user, with a login shell."""
    try:
        account = pwd.getpwnam(user_id)
    except KeyError:
        raise NoShellAccount(f"no OS account named {user_id!r} to run this user's shells "
                             "(TERMWEB_RUN_AS=user)") from None
    if not account.pw_shell or os.path.basename(account.pw_shell) in ("nologin", "false"):
        raise NoShellAccount(f"the OS account {user_id!r} has no login shell")
    return account


@dataclass
class Attachment:
    state: SessionState
    bridge: PtyBridge
    history: bytes  # earlier output for the page's scrollback, b"" if none was asked


class SessionRouter:
    def __init__(self, store: SessionStore, backends: BackendPool | TmuxServer,
                 run_as_users: bool = False, create_concurrency: int = 4, create_wait: float = 5.0):
        self.store = store
        self.pool = backends if isinstance(backends, BackendPool) else BackendPool.of(backends)
        # TERMWEB_RUN_AS=user: each user's shells run as their own OS account.
        self.run_as_users = run_as_users
        # A burst of new terminals (a login storm) starts a few shells at a
        # time; the rest wait up to create_wait seconds, then hear `busy`.
        self._creating = threading.BoundedSemaphore(create_concurrency)
        self.create_wait = create_wait

    @property
    def tmux(self) -> TmuxServer:
        """The first backend's tmux server (the only one of a pool of one)."""
        return self.pool.first.tmux

    def backend(self, backend_id: str) -> Backend:
        """The backend running a session; TmuxError when this host has none such."""
        backend = self.pool.get(backend_id)
        if backend is None:
            raise TmuxError(f"this terminal runs on backend {backend_id}, which this instance "
                            "cannot reach")
        return backend

    # -- lookups ------------------------------------------------------------

    def get(self, session_id: str, user_id: str, admin: bool = False) -> SessionState:
        """The caller's session (any session for an admin), ended or not;
        SessionNotFound otherwise, the same for another user's as for none.

        Raises StoreUnavailable when the store cannot be asked.
        """
        # The id reaches Redis and tmux: only our own id alphabet may pass.
        if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
            raise SessionNotFound(session_id)
        state = self.store.get(session_id)
        if state is None or (state.user_id != user_id and not admin):
            raise SessionNotFound(session_id)
        return state

    def list(self, user_id: str | None) -> list[SessionState]:
        """The caller's running sessions (everyone's for None), the most
        recently active first."""
        states = [s for s in self.store.list(user_id) if not s.ended]
        return sorted(states, key=lambda s: s.last_activity, reverse=True)

    def exists(self, session_id: str, backend_id: str) -> bool:
        """Whether tmux still runs the session (tmux is the ground truth)."""
        return bool(SESSION_ID.fullmatch(session_id)) and self.backend(backend_id).tmux.has_session(
            session_id)

    # -- life cycle ---------------------------------------------------------

    def create(self, user_id: str, cols: int, rows: int, working_directory: str | None = None,
               environment: dict[str, str] | None = None) -> SessionState:
        """Start a new terminal with an unguessable id (128 random bits).

        The record is written before tmux starts the session, so a sweep
        never sees the session without its record and takes it for an orphan.
        """
        if not self._creating.acquire(timeout=self.create_wait):
            raise Busy("too many terminals are starting at once; try again in a moment")
        try:
            return self._create(user_id, cols, rows, working_directory, environment)
        finally:
            self._creating.release()

    def _create(self, user_id, cols, rows, working_directory, environment) -> SessionState:
        environment = validate_environment(environment)
        try:
            backend = self.pool.acquire()
        except NoRoom as exc:
            raise Busy(f"{exc}; try again later") from None
        home, command = backend.tmux.env["HOME"], None
        if self.run_as_users:
            home, command = self._shell_as(user_id, environment)
        if working_directory is not None:
            if not (isinstance(working_directory, str) and working_directory.startswith("/")):
                raise InvalidRequest("workingDirectory must be an absolute path")
            if not os.path.isdir(working_directory):
                raise InvalidRequest(f"workingDirectory {working_directory[:200]!r} is not a directory")
        now = time.time()
        state = SessionState(
            session_id=secrets.token_urlsafe(16), user_id=user_id, backend_id=backend.id,
            last_activity=now, working_directory=working_directory or home,
            environment=environment, created_at=now, disconnected_at=now)
        self.store.create(state)
        # A warm shell when nothing about it was asked for: a rename, no start-up.
        plain = working_directory is None and not environment and command is None
        try:
            if not (plain and self.pool.take_warm(backend, state.session_id, user_id)):
                backend.tmux.new_session(state.session_id, cols, rows, working_directory or home,
                                         None if command else environment, owner=user_id,
                                         command=command)
                backend.sessions += 1
        except Exception:
            self._forget(state.session_id)  # no record of a session that never started
            raise
        return state

    def _shell_as(self, user_id: str, environment: dict[str, str]) -> tuple[str, list[str]]:
        """The user's home and the command that starts their login shell as
        their OS account.

        runuser runs as root, so the caller's variables must not reach it
        (LD_PRELOAD would run as root): env sets them after the switch.
        """
        account = shell_account(user_id)
        runuser = shutil.which("runuser", path=self.pool.first.tmux.env["PATH"]) or "runuser"
        assignments = [f"{name}={value}" for name, value in environment.items()]
        return account.pw_dir, [runuser, "-u", account.pw_name, "--", "env", *assignments,
                                account.pw_shell, "-l"]

    def attach(self, session_id: str, user_id: str, cols: int, rows: int,
               history_lines: int = 0, created: bool = False, read_only: bool = False) -> Attachment:
        """Attach a new tmux client to the caller's session and count it.

        With ``history_lines``, also capture that much of the session's
        history for the page's scrollback (the attach redraws only the screen).
        The caller must `detach` once the bridge is closed. A ``read_only``
        client (a viewer) can neither type nor change the window's size.
        """
        state = self.get(session_id, user_id)
        if state.ended:
            raise SessionEnded(state.ended_reason)
        history = b""
        tmux = self.backend(state.backend_id).tmux
        if not created:
            try:
                if history_lines > 0:  # capturing also proves the session is there
                    history = tmux.capture_history(session_id, history_lines)
                    if not history.strip(b"\n"):
                        history = b""
                elif not tmux.has_session(session_id):
                    raise TmuxError("can't find session")
            except TmuxError as exc:
                if tmux.running() and not tmux.has_session(session_id):
                    self.store.end(session_id, REASON_VANISHED, time.time())
                    raise SessionEnded(REASON_VANISHED) from None
                raise exc
        counted = self.store.attach(session_id, time.time())
        if counted is None:  # ended between our two reads
            raise SessionEnded(REASON_EXITED)
        try:
            bridge = PtyBridge(tmux.attach_command(session_id, read_only), tmux.env, cols, rows)
        except Exception:
            self.detach(session_id)
            raise
        return Attachment(counted, bridge, history)

    def detach(self, session_id: str) -> None:
        """Count one connection out. Raises StoreUnavailable; the reconciler
        corrects the count from tmux if this could not be written."""
        self.store.detach(session_id, time.time())

    def end(self, session_id: str, reason: str) -> str:
        """Record that a session ended (its shell exited); return the reason
        the record holds, which may be an earlier one (e.g. ended by its owner)."""
        state = self.store.get(session_id)
        if state is not None and state.ended:
            return state.ended_reason or reason
        self.store.end(session_id, reason, time.time())
        return reason

    def destroy(self, session_id: str, user_id: str, reason: str = REASON_ENDED_BY_USER,
                admin: bool = False) -> None:
        """End the caller's session (an admin's: anyone's): kill its shell,
        keep the record a while."""
        state = self.get(session_id, user_id, admin)
        if state.ended:
            raise SessionEnded(state.ended_reason)
        backend = self.backend(state.backend_id)
        # The record first, so attached pages are told who ended the session.
        self.store.end(session_id, reason, time.time())
        self.kill(session_id, backend.id)

    def mark_backend_lost(self, backend_id: str, before: float | None = None) -> int:
        """Record every running session of a backend (created ``before``
        then, if given) as lost: its tmux server died. Return how many."""
        now, lost = time.time(), 0
        for state in self.store.list(None):
            if (not state.ended and state.backend_id == backend_id
                    and (before is None or state.created_at < before)):
                self.store.end(state.session_id, REASON_LOST, now)
                lost += 1
        return lost

    def kill(self, session_id: str, backend_id: str) -> None:
        """Kill a tmux session if it is there."""
        tmux = self.backend(backend_id).tmux
        try:
            tmux.kill_session(session_id)
        except TmuxError as exc:
            if tmux.has_session(session_id):
                raise
            log.debug("kill %s: already gone (%s)", session_id, exc)

    def _forget(self, session_id: str) -> None:
        try:
            self.store.delete(session_id)
        except Exception:  # noqa: BLE001 -- best effort; the sweep ends stale records
            log.exception("could not delete the record of failed session %s", session_id)

    # -- commands -----------------------------------------------------------

    def clear(self, session_id: str, backend_id: str) -> None:
        self.backend(backend_id).tmux.clear(session_id)

    def backend_running(self, backend_id: str) -> bool:
        backend = self.pool.get(backend_id)
        return backend is not None and backend.tmux.running()


def validate_environment(environment) -> dict[str, str]:
    if environment is None:
        return {}
    if not isinstance(environment, dict) or len(environment) > MAX_ENV_VARS:
        raise InvalidRequest(f"environment must be an object of at most {MAX_ENV_VARS} variables")
    for name, value in environment.items():
        if not ENV_NAME.fullmatch(name):
            raise InvalidRequest(f"invalid environment variable name {name[:40]!r}")
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE or "\0" in value:
            raise InvalidRequest(f"environment variable {name} must be a string of at most "
                                 f"{MAX_ENV_VALUE} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"environment variable {name} holds a lone surrogate") from None
    return dict(environment)

