"""The tmux backends' health: probed every TERMWEB_HEALTH_INTERVAL_MS, replaced when dead.

Each worker probes every backend of its pool. A backend that died (killed,
crashed) or stopped answering is noticed within one interval: its sessions
are recorded as lost, so their pages hear `session_lost` and returning pages
hear why, and a new tmux server is started in its place. New sessions never
go to a backend the last probe found down.

The same loop keeps the pool's shape: it follows the size an admin set (the
store's ``pool-size`` setting, shared by every worker), stops drained
backends once empty, and refills warm sessions (one worker per backend at a
time, holding a lease in the store).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time

import gevent

from .pool import ACTIVE, DRAINING, Backend
from .sessions import SessionRouter
from .store import StoreUnavailable
from .tmux import TmuxError

log = logging.getLogger("termweb.health")
PROBE_TIMEOUT_SECONDS = 2.0
POOL_SIZE_SETTING = "pool-size"


class BackendMonitor:
    def __init__(self, router: SessionRouter, interval: float):
        self.router = router
        self.pool = router.pool
        self.interval = interval
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.last: dict[str, dict] = {}  # backend id -> its latest probe
        self._asked_at: dict[str, float] = {}  # backend id -> when that probe began

    # -- probing -------------------------------------------------------------

    def probe(self, backend: Backend) -> dict:
        """Ask a tmux server for its pid and sessions, and how long it took."""
        started, asked_at = time.perf_counter(), time.time()
        try:
            out = backend.tmux.run("list-sessions", "-F", "#{pid} #{session_name}",
                                   timeout=PROBE_TIMEOUT_SECONDS)
            rows = [line.split(" ", 1) for line in out.splitlines() if " " in line]
            pid = int(rows[0][0]) if rows else int(backend.tmux.run(
                "display", "-p", "#{pid}", timeout=PROBE_TIMEOUT_SECONDS))
            self.pool.observe(backend, [name for _, name in rows])
            backend.up, backend.pid, problem = True, pid, ""
        except (TmuxError, ValueError) as exc:
            backend.up, problem = False, str(exc)
        self.last[backend.id] = {
            "id": backend.id, "state": backend.state, "up": backend.up,
            "pid": backend.pid if backend.up else None, "sessions": backend.sessions,
            "warm": len(backend.warm), "capacity": self.pool.max_sessions,
            "probeSeconds": round(time.perf_counter() - started, 6), "problem": problem,
            "checkedAt": int(time.time() * 1000)}
        self._asked_at[backend.id] = asked_at
        return self.last[backend.id]

    def health(self) -> list[dict]:
        """Every backend's latest probe (probing those never probed), with
        its state now (a scale-down drains at once, before the next probe)."""
        return [dict(self.last.get(b.id) or self.probe(b), state=b.state)
                for b in list(self.pool.backends)]

    # -- keeping the pool ----------------------------------------------------

    def check(self) -> None:
        """One round: follow the size, probe, replace, retire, refill."""
        self._follow_size()
        for backend in list(self.pool.backends):
            self.probe(backend)
            if backend.state == DRAINING:
                self._drain(backend)
            elif not backend.up:
                self.replace(backend)
            elif self.pool.warm_per_backend and len(backend.warm) < self.pool.warm_per_backend:
                self._refill(backend)

    def replace(self, backend: Backend) -> None:
        """End a hung server, record its sessions as lost, start a new one."""
        problem = self.last.get(backend.id, {}).get("problem", "")
        if backend.pid is not None and "did not answer" in problem:
            try:
                os.kill(backend.pid, signal.SIGKILL)  # the server we saw: hung, not gone
            except ProcessLookupError:
                pass
        backend.pid = None
        try:
            # Only sessions older than the failed probe: another worker may
            # have replaced the server already, and new sessions live on it.
            lost = self.router.mark_backend_lost(backend.id,
                                                 before=self._asked_at.get(backend.id, time.time()))
        except StoreUnavailable as exc:
            lost = 0
            log.error("could not record the lost sessions (the sweep will): %s", exc)
        try:
            backend.tmux.start()
        except TmuxError as exc:
            log.error("tmux backend %s is down and would not start again: %s", backend.id, exc)
            return
        log.warning("tmux backend %s was down (%s): %d sessions lost, a new server started",
                    backend.id, problem or "no answer", lost)
        self.probe(backend)

    def _refill(self, backend: Backend) -> None:
        try:
            if not self.router.store.lead(f"warm:{backend.id}", self.holder, self.interval * 3):
                return
            self.pool.refill(backend)
        except (StoreUnavailable, TmuxError) as exc:
            log.warning("warm sessions of %s not refilled: %s", backend.id, exc)

    def _drain(self, backend: Backend) -> None:
        if backend.warm:
            self.pool.drop_warm(backend)
        if not backend.up:  # died while draining: nothing to replace it with
            try:
                self.router.mark_backend_lost(backend.id)
            except StoreUnavailable:
                return  # retired once its sessions are recorded
        if backend.sessions == 0 or not backend.up:
            self.pool.retire(backend)
            self.last.pop(backend.id, None)

    def _follow_size(self) -> None:
        try:
            wanted = self.router.store.get_setting(POOL_SIZE_SETTING)
        except StoreUnavailable:
            return
        if wanted is not None and int(wanted) != self.pool.size:
            self.scale(int(wanted), store=False)

    def scale(self, size: int, store: bool = True) -> None:
        """Grow or drain the pool to ``size`` backends (every worker follows
        within an interval, through the store)."""
        if store:
            self.router.store.set_setting(POOL_SIZE_SETTING, str(size))
        before = self.pool.size
        self.pool.scale(size)
        for backend in self.pool.backends:
            if backend.state == ACTIVE and backend.index >= before:
                backend.tmux.start()
        if size != before:
            log.info("backend pool: %d -> %d", before, size)

    def run_forever(self) -> None:
        while True:
            gevent.sleep(self.interval)
            try:
                self.check()
            except Exception:  # noqa: BLE001 -- keep watching
                log.exception("backend health check failed")
