"""SessionRouter: terminals by id, each one tmux session.

Issue #3 adds the session store, ownership and lifecycle; for now tmux itself
is the only record of which sessions exist.
"""
from __future__ import annotations

import re
import secrets

from .bridge import PtyBridge
from .tmux import TmuxServer

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


class SessionNotFound(LookupError):
    def __str__(self) -> str:
        return "no running terminal has this session id"


class SessionRouter:
    def __init__(self, tmux: TmuxServer):
        self.tmux = tmux

    def create(self, cols: int, rows: int) -> str:
        """Start a new terminal and return its unguessable id (128 random bits)."""
        session_id = secrets.token_urlsafe(16)
        self.tmux.new_session(session_id, cols, rows)
        return session_id

    def exists(self, session_id: str) -> bool:
        # The id reaches tmux as a target: only our own id alphabet may pass.
        return bool(SESSION_ID.fullmatch(session_id)) and self.tmux.has_session(session_id)

    def attach(self, session_id: str, cols: int, rows: int) -> PtyBridge:
        if not self.exists(session_id):
            raise SessionNotFound(session_id)
        return PtyBridge(self.tmux.attach_command(session_id), self.tmux.env, cols, rows)

    def clear(self, session_id: str) -> None:
        self.tmux.clear(session_id)

    def backend_running(self) -> bool:
        return self.tmux.running()

    def destroy(self, session_id: str) -> None:
        if self.exists(session_id):
            self.tmux.kill_session(session_id)
