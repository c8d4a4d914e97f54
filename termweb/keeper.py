"""SessionKeeper: reconciles the store with tmux, the ground truth.

One sweep, at start-up and then every ``TERMWEB_RECONCILE_INTERVAL`` s (by
one worker at a time, under a lease in the store):

* a record whose tmux session vanished is marked ended;
* a tmux session without a record (the store was lost: a restarted worker
  with the in-memory store, a flushed Redis) is adopted, its owner read from
  the session's ``@termweb_user`` option, or killed (``TERMWEB_ORPHANS``);
* a session nobody reconnected to within ``TERMWEB_SESSION_TTL`` is killed;
* last activity and working directory are copied from tmux, which sees every
  keystroke and every byte of output, so the keystroke path never writes
  the store;
* a connection count that disagrees with tmux's attached clients twice in a
  row (a worker was killed and could not count its clients out) is set to
  tmux's count.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter

import gevent

from .config import Settings
from .sessions import (DEFAULT_USER, REASON_EXPIRED, REASON_VANISHED, SESSION_ID,
                       SessionRouter)
from .store import ACTIVE, DISCONNECTED, SessionState, StoreUnavailable
from .pool import WARM_PREFIX, Backend
from .tmux import TmuxError

log = logging.getLogger("termweb.keeper")

# A record younger than this may be one whose tmux session is still starting.
CREATE_GRACE_SECONDS = 10.0


class SessionKeeper:
    def __init__(self, router: SessionRouter, settings: Settings):
        self.router = router
        self.settings = settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        # id -> (store count, tmux count) seen at the last sweep, when they differed
        self._suspects: dict[str, tuple[int, int]] = {}
        self._store_was_down = False

    def sweep(self, backend: Backend | None = None) -> Counter:
        """Reconcile one backend (every one by default); return what was done
        (adopted, ended, expired, ...)."""
        if backend is None:
            return sum((self.sweep(b) for b in list(self.router.pool.backends)), Counter())
        router, store, now = self.router, self.router.store, time.time()
        report: Counter = Counter()
        # tmux first, then the store: a session is created after its record,
        # so every session listed here has its record in the read that follows.
        # Warm sessions are the pool's, not anyone's.
        infos = {info.name: info for info in backend.tmux.session_info()
                 if not info.name.startswith(WARM_PREFIX)}
        records = {s.session_id: s for s in store.list() if s.backend_id == backend.id}
        for sid, state in records.items():
            info = infos.get(sid)
            if state.ended:
                if info is not None:  # ended, but the kill did not happen
                    router.kill(sid, backend.id)
                    report["killed"] += 1
            elif info is None:
                if now - state.created_at > CREATE_GRACE_SECONDS:
                    store.end(sid, REASON_VANISHED, now)
                    report["ended"] += 1
            else:
                self._reconcile(state, info, now, report)
        for sid, info in infos.items():
            if sid not in records and store.get(sid) is None:
                self._orphan(backend, sid, info, now, report)
        for sid in set(self._suspects) - set(infos):
            del self._suspects[sid]
        if any(report.values()):
            log.info("session sweep: %s", dict(report))
        return report

    def _reconcile(self, state: SessionState, info, now: float, report: Counter) -> None:
        store, sid = self.router.store, state.session_id
        count = state.connection_count
        if count != info.attached:
            pair = (count, info.attached)
            if self._suspects.pop(sid, None) == pair:
                if store.correct_count(sid, count, info.attached, now):
                    log.warning("session %s: %d connections counted, tmux has %d clients; "
                                "corrected", sid, count, info.attached)
                    report["corrected"] += 1
                    count = info.attached
                    if count == 0:
                        state.disconnected_at = now
            else:
                self._suspects[sid] = pair
        else:
            self._suspects.pop(sid, None)
        if count == 0 and state.disconnected_at and now - state.disconnected_at > self.settings.session_ttl:
            store.end(sid, REASON_EXPIRED, now)
            self.router.kill(sid, state.backend_id)
            report["expired"] += 1
            return
        # Refreshes the record's TTL too.
        store.update(sid, last_activity=max(state.last_activity, info.activity),
                     working_directory=info.working_directory or state.working_directory)

    def _orphan(self, backend: Backend, sid: str, info, now: float, report: Counter) -> None:
        if self.settings.orphans == "reap" or not SESSION_ID.fullmatch(sid):
            # A session named by hand cannot be addressed by id: never adopted.
            self.router.kill(sid, backend.id)
            report["reaped"] += 1
            return
        self.router.store.create(SessionState(
            session_id=sid, user_id=info.owner or DEFAULT_USER, backend_id=backend.id,
            status=ACTIVE if info.attached else DISCONNECTED, last_activity=info.activity,
            connection_count=info.attached, working_directory=info.working_directory,
            created_at=info.created, disconnected_at=0.0 if info.attached else now))
        report["adopted"] += 1

    def sweep_if_leader(self) -> Counter | None:
        """Sweep unless another worker holds the lease; never raises."""
        interval = self.settings.reconcile_interval
        try:
            report: Counter = Counter()
            led = False
            for backend in list(self.router.pool.backends):
                if backend.up and self.router.store.lead(f"sweep:{backend.id}", self.holder,
                                                         interval * 1.5):
                    led = True
                    report += self.sweep(backend)
            if not led:
                return None
        except StoreUnavailable as exc:
            if not self._store_was_down:
                log.warning("session sweep skipped: %s", exc)
            self._store_was_down = True
            return None
        except TmuxError as exc:
            log.warning("session sweep skipped: tmux: %s", exc)
            return None
        except Exception:  # noqa: BLE001 -- the loop must outlive any one sweep
            log.exception("session sweep failed")
            return None
        if self._store_was_down:
            log.info("session store is reachable again")
            self._store_was_down = False
        return report

    def run_forever(self) -> None:
        while True:
            gevent.sleep(self.settings.reconcile_interval)
            self.sweep_if_leader()
