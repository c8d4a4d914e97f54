"""The backend pool: several tmux servers, warm sessions, scaling, a dead server."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import uuid

import pytest

from termweb.pool import BackendPool, backend_socket
from termweb.sessions import Busy, SessionRouter
from termweb.store import MemoryStore

from .conftest import TEST_SHELL
from .helpers import TermClient, wait_until


def backends(server) -> list[dict]:
    with urllib.request.urlopen(server.url + "/readyz", timeout=10) as response:
        return json.loads(response.read())["backends"]


def backend_of(server, session_id: str) -> str:
    return server.api("GET", f"/api/sessions/{session_id}")[1]["session"]["backendId"]


@pytest.fixture
def pool(tmp_path):
    """Three tmux servers of two sessions each, no warm ones; all stopped afterwards."""
    made = BackendPool(f"termweb-test-{uuid.uuid4().hex[:12]}", TEST_SHELL, size=3, max_sessions=2)
    for backend in made.backends:
        backend.tmux.env["HOME"] = str(tmp_path)
    made.start()
    yield made
    for backend in made.backends:
        backend.tmux.kill_server()


def test_sessions_spread_over_backends_within_capacity(pool):
    router = SessionRouter(MemoryStore(3600), pool)
    placed = [router.create("alice", 80, 24).backend_id for _ in range(6)]
    assert sorted(placed) == sorted(b.id for b in pool.backends for _ in range(2))
    assert placed[:3] == [b.id for b in pool.backends]  # least loaded first
    with pytest.raises(Busy, match="no tmux backend is up with room"):
        router.create("alice", 80, 24)
    for backend in pool.backends:
        assert len(backend.tmux.list_sessions()) == 2


def test_a_killed_backend_takes_only_its_own_sessions(gunicorn_factory):
    server = gunicorn_factory(backend_pool_size="2", health_interval_ms="300")
    wait_until(lambda: all(b["up"] for b in backends(server)) and len(backends(server)) == 2,
               message="the second backend did not come up")
    terms = [TermClient(server.url) for _ in range(4)]
    for i, t in enumerate(terms):
        t.run(f"export MARK=m{i}; echo set-$MARK", f"set-m{i}")
    placed = {t.session_id: backend_of(server, t.session_id) for t in terms}
    assert len(set(placed.values())) == 2
    victim = backends(server)[1]
    os.kill(victim["pid"], signal.SIGKILL)

    for t in terms:
        if placed[t.session_id] == victim["id"]:
            assert t.next_message("error")["payload"]["code"] == "session_lost"
        else:
            t.run("echo still-$MARK", "still-m")
    wait_until(lambda: backends(server)[1]["pid"] not in (None, victim["pid"]), timeout=10,
               message="the killed backend was not replaced")
    fresh = TermClient(server.url)  # the replacement, now the least loaded, serves it
    assert backend_of(server, fresh.session_id) == victim["id"]
    fresh.run("echo fresh-$((1+1))", "fresh-2")


SLOW_SHELL = """#!/bin/bash
# A shell whose start-up takes a while, and says when it began.
export STARTED_AT=$(date +%s.%N)
sleep 0.5
exec /bin/bash --noprofile --norc
"""


@pytest.mark.parametrize("warm", [2, 0])
def test_warm_sessions_have_started_before_anyone_asks(gunicorn_factory, tmp_path, warm):
    shell = tmp_path / "slow-shell"
    shell.write_text(SLOW_SHELL)
    shell.chmod(0o755)
    server = gunicorn_factory(shell=str(shell), warm_sessions=str(warm), health_interval_ms="200")
    wait_until(lambda: backends(server)[0]["warm"] == warm, timeout=10, message="no warm sessions")
    asked_at = time.time()
    t = TermClient(server.url)
    t.run('echo "started=$STARTED_AT"', "started=1")
    started_at = float(bytes(t.output).split(b"started=")[-1].split()[0])
    if warm:  # the shell was already running: it only had to be renamed
        assert started_at < asked_at
        # …and the pool makes up for it.
        wait_until(lambda: backends(server)[0]["warm"] == warm, timeout=10, message="no refill")
    else:
        assert started_at > asked_at
    assert backends(server)[0]["sessions"] == 1


def test_scaling_up_and_down_kills_no_session(gunicorn_factory):
    server = gunicorn_factory(health_interval_ms="200")
    first = TermClient(server.url)
    first.run("export MARK=first; echo ok-$MARK", "ok-first")
    status, body = server.api("POST", "/api/admin/backends", {"size": 2})
    assert status == 200
    wait_until(lambda: [b["up"] for b in backends(server)] == [True, True], timeout=10,
               message="the pool did not grow")
    second = TermClient(server.url)  # the new backend is the least loaded
    second.run("export MARK=second; echo ok-$MARK", "ok-second")
    grown = backends(server)[1]
    assert backend_of(server, second.session_id) == grown["id"]

    assert server.api("POST", "/api/admin/backends", {"size": 1})[0] == 200
    wait_until(lambda: backends(server)[1]["state"] == "draining", timeout=5, message="no drain")
    second.run("echo still-$MARK", "still-second")  # draining keeps its sessions
    third = TermClient(server.url)
    assert backend_of(server, third.session_id) == backends(server)[0]["id"]
    second.run("exit", "")  # its last session ends: the drained server stops
    wait_until(lambda: len(backends(server)) == 1, timeout=10, message="the drained backend stayed")
    wait_until(lambda: not os.path.exists(f"/proc/{grown['pid']}"), timeout=5,
               message="the drained tmux server still runs")
    first.run("echo still-$MARK", "still-first")
    assert server.api("POST", "/api/admin/backends", {"size": 0})[1]["error"]["code"] == "invalid_field"


def test_backend_sockets_are_named_after_the_first():
    assert [backend_socket("termweb", i) for i in range(3)] == ["termweb", "termweb-1", "termweb-2"]
