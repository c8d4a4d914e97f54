"""The tmux backend's health: probed every TERMWEB_HEALTH_INTERVAL_MS, replaced when dead.

A backend that died (killed, crashed) or stopped answering is noticed within
one interval: its sessions are recorded as lost, so their pages hear
`session_lost` and returning pages hear why, and a new tmux server is
started, so new terminals work again at once. The latest probe serves
/readyz and /metrics without asking tmux again.
"""
from __future__ import annotations

import logging
import os
import signal
import time

import gevent

from .sessions import SessionRouter
from .store import StoreUnavailable
from .tmux import TmuxError

log = logging.getLogger("termweb.health")
PROBE_TIMEOUT_SECONDS = 2.0


class BackendMonitor:
    def __init__(self, router: SessionRouter, interval: float):
        self.router = router
        self.interval = interval
        self.last: dict | None = None  # the latest probe
        self._pid: int | None = None  # the server's pid, to end a hung one

    def probe(self) -> dict:
        """Ask the tmux server for its pid and sessions; how long it took."""
        tmux = self.router.tmux
        started = time.perf_counter()
        try:
            out = tmux.run("list-sessions", "-F", "#{pid}", timeout=PROBE_TIMEOUT_SECONDS)
            pids = out.split()
            pid = int(pids[0]) if pids else int(tmux.run("display", "-p", "#{pid}",
                                                         timeout=PROBE_TIMEOUT_SECONDS))
            up, sessions, problem = True, len(pids), ""
        except (TmuxError, ValueError) as exc:
            pid, up, sessions, problem = None, False, 0, str(exc)
        self.last = {"id": self.router.backend_id, "up": up, "pid": pid, "sessions": sessions,
                     "capacity": self.router.max_sessions,
                     "probeSeconds": round(time.perf_counter() - started, 6), "problem": problem,
                     "checkedAt": int(time.time() * 1000)}
        if pid is not None:
            self._pid = pid
        return self.last

    def check(self) -> dict:
        """Probe; replace a dead or hung server. Returns the probe after it."""
        health = self.probe()
        if not health["up"]:
            self.replace(health["problem"])
            health = self.probe()
        return health

    def replace(self, problem: str) -> None:
        """End a hung server, record its sessions as lost, start a new one."""
        if self._pid is not None and "did not answer" in problem:
            try:
                os.kill(self._pid, signal.SIGKILL)  # the server we saw: hung, not gone
            except ProcessLookupError:
                pass
        self._pid = None
        try:
            lost = self.router.mark_backend_lost()
        except StoreUnavailable as exc:
            lost = 0
            log.error("could not record the lost sessions (the sweep will): %s", exc)
        try:
            self.router.tmux.start()
        except TmuxError as exc:
            log.error("tmux backend %s is down and would not start again: %s",
                      self.router.backend_id, exc)
            return
        log.warning("tmux backend %s was down (%s): %d sessions lost, a new server started",
                    self.router.backend_id, problem or "no answer", lost)

    def run_forever(self) -> None:
        while True:
            gevent.sleep(self.interval)
            try:
                self.check()
            except Exception:  # noqa: BLE001 -- keep watching
                log.exception("backend health check failed")
