"""Gateway: one worker's state, below the WebSocket route and the API.

Settings, the session router and its backend pool, the accounts, the
metrics and the health monitor, and the live terminal connections; the
background loops that keep them (the session sweep, the backend monitor, the
credential watcher); and the checks every new terminal passes.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import gevent

from . import ratelimit
from .accounts import Accounts
from .config import Settings
from .health import BackendMonitor
from .keeper import SessionKeeper
from .metrics import Metrics
from .ratelimit import RateLimited
from .sessions import SessionRouter
from .store import ACTIVE, DISCONNECTED, IDLE, SessionState, StoreUnavailable, derived_status

if TYPE_CHECKING:
    from .gateway import TerminalConnection

log = logging.getLogger("termweb.gateway")
# How often each worker checks that its connections' credentials still hold
# (a share link revoked through this worker closes its viewers at once).
CREDENTIAL_RECHECK_SECONDS = 2.0


class Gateway:
    """Per-worker state: settings, the session router and the live connections."""

    def __init__(self, settings: Settings, router: SessionRouter, accounts: Accounts,
                 metrics: Metrics):
        self.settings = settings
        self.router = router
        self.accounts = accounts
        self.metrics = metrics
        self.monitor = BackendMonitor(router, settings.health_interval_ms / 1000)
        self.keeper = SessionKeeper(router, settings)
        self.live: set[TerminalConnection] = set()
        self.stopping = False
        self._background: list[gevent.Greenlet] = []

    def start_background(self) -> None:
        """Start the periodic session sweep (in a gunicorn worker, once it runs)."""
        if not self._background:
            self._background.append(gevent.spawn(self.keeper.run_forever))
            self._background.append(gevent.spawn(self._watch_credentials))
            self._background.append(gevent.spawn(self.monitor.run_forever))
            self.metrics.start()

    def create_session(self, user_id: str, cols: int, rows: int, working_directory: str | None = None,
                       environment: dict[str, str] | None = None) -> SessionState:
        """A new terminal for ``user_id`` (limits checked first), timed for /metrics."""
        self.check_new_session(user_id)
        with self.metrics.creates.time():
            return self.router.create(user_id, cols, rows, working_directory, environment)

    def session_counts(self) -> dict[str, int]:
        """Running sessions by status (idle derived as the API derives it)."""
        counts = dict.fromkeys((ACTIVE, IDLE, DISCONNECTED), 0)
        now = time.time()
        for state in self.router.list(None):
            counts[derived_status(state, self.settings.idle_after, now)] += 1
        return counts

    def _watch_credentials(self) -> None:
        """Close connections whose credential ended since they opened: a
        revoked share link or API token, a removed user, a changed password."""
        while True:
            gevent.sleep(CREDENTIAL_RECHECK_SECONDS)
            try:
                for connection in self._revoked([c for c in self.live if c.credential]):
                    connection.close_revoked()
            except Exception as exc:  # noqa: BLE001 -- a dead store: look again later
                log.warning("could not check the connections' credentials: %s", exc)

    def _revoked(self, connections: list[TerminalConnection]):
        kinds = {c.credential[0] for c in connections}
        shares = self.accounts.share_ids() if "share" in kinds else set()
        now = time.time()
        tokens = ({t.id for t in self.accounts.tokens() if not t.expired(now)}
                  if "token" in kinds else set())
        logins: dict[str, str | None] = {}  # user name -> "name:epoch" now
        for connection in connections:
            kind, key = connection.credential
            if kind == "share":
                alive = key in shares
            elif kind == "token":
                alive = key in tokens
            else:
                name = key.partition(":")[0]
                if name not in logins:
                    user = self.accounts.user(name)
                    logins[name] = user and f"{user.name}:{user.epoch}"
                alive = logins[name] == key
            if not alive:
                yield connection

    def check_new_session(self, user_id: str) -> None:
        """RateLimited when ``user_id`` may not start another terminal now."""
        try:
            running = len(self.router.list(user_id))
        except StoreUnavailable:
            return  # creating will fail and say so
        limit = self.settings.max_sessions_per_user
        if running >= limit:
            raise RateLimited(f"you already have {running} terminals, the most allowed "
                              f"(TERMWEB_MAX_SESSIONS_PER_USER={limit}); end one first", 60)
        ratelimit.check_creation(user_id)

    def revoke_viewers(self, share_id: str) -> None:
        for connection in list(self.live):
            if connection.credential == ("share", share_id):
                connection.close_revoked()

    def close_all(self) -> None:
        """Tell every live terminal the server is restarting (close 1012).

        The worker may still accept connections for a moment (gunicorn's
        loop notices the stop within a second): those are sent away with
        1012 as well, rather than being held until the graceful timeout.
        """
        self.stopping = True
        for connection in list(self.live):
            connection.close_for_restart()

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        if not origin:  # command-line clients send none; browsers always do
            return True
        if origin.rstrip("/") in self.settings.allowed_origins:
            return True
        return urlsplit(origin).netloc == host
