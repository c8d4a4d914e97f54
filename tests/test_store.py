"""The session store contract, run against both stores: in memory and in a
real redis-server the test session started on a free port."""
from __future__ import annotations

import threading
import time

import pytest

from termweb.store import (ACTIVE, DISCONNECTED, ENDED, MemoryStore, RedisStore, SessionState,
                           StoreUnavailable)

from .helpers import free_port, wait_until


@pytest.fixture(params=["memory", "redis"])
def make_store(request, redis_server, redis_prefix):
    """Build a store of the parametrized kind; ``make_store(record_ttl=..., ended_retention=...)``."""
    made = []

    def make(record_ttl: float = 3600, ended_retention: float = 3600):
        if request.param == "memory":
            store = MemoryStore(record_ttl, ended_retention)
        else:
            store = RedisStore(redis_server.url, prefix=redis_prefix, record_ttl=record_ttl,
                               ended_retention=ended_retention)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()


def new_state(session_id="s" * 22, user_id="alice", **fields) -> SessionState:
    now = time.time()
    return SessionState(session_id=session_id, user_id=user_id, backend_id="host/termweb",
                        last_activity=now, created_at=now, disconnected_at=now, **fields)


def test_a_created_record_reads_back_whole(store):
    state = new_state(working_directory="/srv", environment={"LANG": "C.UTF-8", "X": "a b=c"})
    store.create(state)
    assert store.get(state.session_id) == state
    assert store.get("unknown-session-id-000") is None


def test_list_returns_every_record_or_one_users(store):
    store.create(new_state("a" * 22, "alice"))
    store.create(new_state("b" * 22, "alice"))
    store.create(new_state("c" * 22, "bob"))
    assert sorted(s.session_id for s in store.list("alice")) == ["a" * 22, "b" * 22]
    assert [s.session_id for s in store.list("bob")] == ["c" * 22]
    assert store.list("carol") == []
    assert len(store.list()) == 3


def test_attach_and_detach_count_connections_and_set_the_status(store):
    state = new_state()
    store.create(state)
    first = store.attach(state.session_id, 100.0)
    assert (first.connection_count, first.status, first.last_activity) == (1, ACTIVE, 100.0)
    assert first.disconnected_at == 0
    assert store.attach(state.session_id, 101.0).connection_count == 2
    one_left = store.detach(state.session_id, 102.0)
    assert (one_left.connection_count, one_left.status) == (1, ACTIVE)
    none_left = store.detach(state.session_id, 103.0)
    assert (none_left.connection_count, none_left.status, none_left.disconnected_at) == (0, DISCONNECTED, 103.0)
    assert store.detach(state.session_id, 104.0).connection_count == 0  # never below zero
    assert store.get(state.session_id).connection_count == 0


def test_unknown_or_ended_sessions_cannot_be_attached(store):
    assert store.attach("unknown-session-id-000", 1.0) is None
    assert store.detach("unknown-session-id-000", 1.0) is None
    state = new_state()
    store.create(state)
    store.attach(state.session_id, 1.0)
    store.end(state.session_id, "the shell exited", 2.0)
    ended = store.get(state.session_id)
    assert (ended.status, ended.ended_reason, ended.connection_count) == (ENDED, "the shell exited", 0)
    assert store.attach(state.session_id, 3.0) is None
    assert store.update(state.session_id, working_directory="/tmp") is None
    store.end(state.session_id, "a second reason", 4.0)  # the first reason stays
    assert store.get(state.session_id).ended_reason == "the shell exited"


def test_update_changes_fields_but_not_the_count(store):
    state = new_state()
    store.create(state)
    store.attach(state.session_id, 1.0)
    updated = store.update(state.session_id, working_directory="/var/log", last_activity=50.0,
                           connection_count=99)
    assert (updated.working_directory, updated.last_activity, updated.connection_count) == ("/var/log", 50.0, 1)
    assert store.get(state.session_id) == updated
    assert store.update("unknown-session-id-000", working_directory="/") is None


def test_correct_count_only_replaces_the_count_it_expects(store):
    state = new_state()
    store.create(state)
    for _ in range(3):
        store.attach(state.session_id, 1.0)
    assert not store.correct_count(state.session_id, 2, 0, 5.0)
    assert store.get(state.session_id).connection_count == 3
    assert store.correct_count(state.session_id, 3, 0, 5.0)
    corrected = store.get(state.session_id)
    assert (corrected.connection_count, corrected.status, corrected.disconnected_at) == (0, DISCONNECTED, 5.0)


def test_delete_forgets_the_record(store):
    state = new_state()
    store.create(state)
    store.delete(state.session_id)
    assert store.get(state.session_id) is None
    assert store.list("alice") == []


def test_records_expire_unless_refreshed(make_store):
    store = make_store(record_ttl=1, ended_retention=1)
    kept, dropped, ended = new_state("k" * 22), new_state("d" * 22), new_state("e" * 22)
    for state in (kept, dropped, ended):
        store.create(state)
    store.end(ended.session_id, "the shell exited", time.time())

    def dropped_expired() -> bool:
        store.update(kept.session_id, last_activity=time.time())  # keeps refreshing one
        return store.get(dropped.session_id) is None

    wait_until(dropped_expired, timeout=5, interval=0.1, message="the record never expired")
    assert store.get(kept.session_id) is not None
    assert store.get(ended.session_id) is None
    assert [s.session_id for s in store.list()] == [kept.session_id]


def test_a_lease_has_one_holder_until_it_lapses(store):
    assert store.lead("sweep", "worker-1", 0.5)
    assert store.lead("sweep", "worker-1", 0.5)  # the holder renews
    assert not store.lead("sweep", "worker-2", 0.5)
    wait_until(lambda: store.lead("sweep", "worker-2", 0.5), timeout=5)
    assert not store.lead("sweep", "worker-1", 0.5)


def test_concurrent_attaches_and_detaches_keep_the_count_exact(store):
    """50 clients come and go at once, many times: no count is lost."""
    state = new_state()
    store.create(state)
    clients, rounds = 50, 10
    barrier = threading.Barrier(clients)
    failures = []

    def client():
        try:
            barrier.wait(10)
            for _ in range(rounds):
                store.attach(state.session_id, time.time())
                store.detach(state.session_id, time.time())
            store.attach(state.session_id, time.time())
        except Exception as exc:  # noqa: BLE001 -- reported below
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures
    assert store.get(state.session_id).connection_count == clients


def test_a_dead_redis_fails_fast_with_store_unavailable(redis_prefix):
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", prefix=redis_prefix, timeout=0.5)
    started = time.monotonic()
    for call in (lambda: store.get("s" * 22), lambda: store.create(new_state()),
                 lambda: store.attach("s" * 22, 1.0), lambda: store.list("alice"),
                 lambda: store.lead("sweep", "me", 1), store.ping):
        with pytest.raises(StoreUnavailable, match="unavailable"):
            call()
    # Six calls; redis-py's default of ten retries would take far longer.
    assert time.monotonic() - started < 10
