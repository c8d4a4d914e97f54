"""The sweep that reconciles the store with tmux, driven directly: a real tmux
server per test and the in-memory store (the store contract itself is
tests/test_store.py's)."""
from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from termweb.config import Settings
from termweb.keeper import CREATE_GRACE_SECONDS, SessionKeeper
from termweb.sessions import REASON_EXPIRED, REASON_VANISHED, SessionRouter
from termweb.store import ACTIVE, DISCONNECTED, ENDED, MemoryStore

from .conftest import TEST_SHELL
from .helpers import wait_until

LONG_AGO = time.time() - 10 * CREATE_GRACE_SECONDS


@pytest.fixture
def router(tmux):
    return SessionRouter(MemoryStore(3600), tmux)


def keeper_for(router, **settings) -> SessionKeeper:
    return SessionKeeper(router, Settings(shell=TEST_SHELL, **settings))


def made(router, **fields):
    """A session made the normal way, with some fields of its record changed."""
    state = router.create("alice", 80, 24)
    if fields:
        record = router.store.get(state.session_id)
        router.store.delete(state.session_id)
        router.store.create(dataclasses.replace(record, **fields))
    return state.session_id


def test_a_record_whose_tmux_session_vanished_is_ended(router):
    old, young = made(router, created_at=LONG_AGO), made(router)
    for session_id in (old, young):
        router.tmux.kill_session(session_id)
    assert keeper_for(router).sweep()["ended"] == 1
    assert (router.store.get(old).status, router.store.get(old).ended_reason) == (ENDED, REASON_VANISHED)
    # A record younger than the grace may belong to a session still starting.
    assert router.store.get(young).status == DISCONNECTED


def test_orphans_are_adopted_with_their_owner_from_tmux(router):
    orphan = "orphan" + uuid.uuid4().hex[:16]
    router.tmux.new_session(orphan, 80, 24, owner="bob")
    router.tmux.new_session("named-by-hand", 80, 24)  # not an id: cannot be addressed, so reaped
    report = keeper_for(router).sweep()
    assert (report["adopted"], report["reaped"]) == (1, 1)
    adopted = router.get(orphan, "bob")
    assert (adopted.status, adopted.connection_count, adopted.user_id) == (DISCONNECTED, 0, "bob")
    assert not router.tmux.has_session("named-by-hand")


def test_orphans_are_killed_in_reap_mode(router):
    orphan = "orphan" + uuid.uuid4().hex[:16]
    router.tmux.new_session(orphan, 80, 24, owner="bob")
    assert keeper_for(router, orphans="reap").sweep()["reaped"] == 1
    assert not router.tmux.has_session(orphan)
    assert router.store.get(orphan) is None


def test_a_session_disconnected_longer_than_the_ttl_is_killed(router):
    stale = made(router, disconnected_at=time.time() - 120)
    fresh = made(router)
    assert keeper_for(router, session_ttl=60).sweep()["expired"] == 1
    assert not router.tmux.has_session(stale)
    assert router.store.get(stale).ended_reason == REASON_EXPIRED
    assert router.tmux.has_session(fresh)


def test_an_ended_record_whose_session_still_runs_gets_it_killed(router):
    session_id = made(router)
    router.store.end(session_id, "ended by its owner", time.time())
    assert keeper_for(router).sweep()["killed"] == 1
    assert not router.tmux.has_session(session_id)


def test_a_count_tmux_contradicts_twice_in_a_row_is_corrected(router):
    """As after a worker was killed: its 3 connections were never counted out."""
    session_id = made(router, connection_count=3, status=ACTIVE, disconnected_at=0.0)
    keeper = keeper_for(router)
    assert keeper.sweep()["corrected"] == 0  # once could be a client still attaching
    assert router.store.get(session_id).connection_count == 3
    assert keeper.sweep()["corrected"] == 1
    corrected = router.store.get(session_id)
    assert (corrected.connection_count, corrected.status) == (0, DISCONNECTED)
    assert corrected.disconnected_at > 0  # the TTL clock runs from now


def test_activity_and_working_directory_come_from_tmux(router, tmp_path):
    session_id = made(router, last_activity=1.0)
    router.tmux.run("send-keys", "-t", f"={session_id}:", f"cd {tmp_path}", "Enter")
    keeper = keeper_for(router)

    def swept_to_new_directory() -> bool:
        keeper.sweep()
        return router.store.get(session_id).working_directory == str(tmp_path)

    wait_until(swept_to_new_directory, interval=0.05, message="the working directory never showed")
    assert router.store.get(session_id).last_activity > time.time() - 60


def test_only_one_worker_sweeps_at_a_time(router):
    first, second = keeper_for(router), keeper_for(router)
    second.holder = "another-worker"
    assert first.sweep_if_leader() is not None
    assert second.sweep_if_leader() is None
