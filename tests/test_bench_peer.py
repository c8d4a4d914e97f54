"""The benchmark's reference peer (bench/peer.py): a real terminado, its
terminals reached and shared by name, and nothing left running after stop."""
from __future__ import annotations

import time

import pytest

from bench import procs
from bench.client import Closed, visible
from bench.peer import TerminadoClient, TerminadoServer
from bench.server import rc_free_shell

from .helpers import wait_until


def read_until(term, needle: bytes, timeout: float = 5.0) -> bytes:
    """Read until ``needle`` is in the visible output; return the visible text."""
    raw, deadline = b"", time.monotonic() + timeout
    while needle not in visible(raw):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {needle!r} within {timeout} s; output ends {visible(raw)[-200:]!r}")
        data = term.recv_output(remaining)
        if data:
            raw += data
    return visible(raw)


@pytest.fixture
def server(tmp_path):
    (tmp_path / "home").mkdir()
    with rc_free_shell() as shell, TerminadoServer(shell, extra_env={"HOME": str(tmp_path / "home"),
                                                                     "PEER_TEST": "yes"}) as server:
        yield server


def test_terminal_shared_by_name_and_nothing_left_after_stop(server):
    first = TerminadoClient(server.base_url, cols=100, rows=20)
    second = None
    try:
        assert first.ready == {"created": True, "restored": 0}
        assert first.opened_at <= first.ready_at
        assert server.terminal_names() == [first.session_id]
        first.send_keys(b"echo peer-$((6*7)) $PEER_TEST $TERM $(stty size)\r")
        assert b"peer-42 yes xterm-256color 20 100" in read_until(first, b"peer-42 yes")
        shells = server.process_groups()["shells"]
        assert shells and all(procs.alive(pid) for pid in shells)

        first.send_keys(b"export X=shared-$((2*3)); echo set-$X\r")
        read_until(first, b"set-shared-6")
        # By name: the same shell, its output so far replayed first.
        second = TerminadoClient(server.base_url, session=first.session_id)
        assert second.ready["created"] is False and second.ready["restored"] > 0
        replay = second.recv_output(1.0)
        assert len(replay) == second.ready["restored"] and b"peer-42" in visible(replay)
        second.send_keys(b"echo got-$X\r")
        read_until(second, b"got-shared-6")
        read_until(first, b"got-shared-6")  # both clients see the shell's output
        assert server.terminal_names() == [first.session_id]
    finally:
        first.end()
        if second is not None:
            with pytest.raises(Closed):  # the shell exited: terminado says so, then closes
                while True:
                    second.recv_output(5.0)
            second.end()

    wait_until(lambda: server.terminal_names() == [], timeout=5)
    third = TerminadoClient(server.base_url)  # left open: stop must end its shell
    # ... and a child that ignores the hangup: stop kills it by pid.
    third.send_keys(b"nohup sleep 300 >/dev/null 2>&1 & echo bg-$((1+1))\r")
    read_until(third, b"bg-2")
    wait_until(lambda: any(procs.comm(pid) == "sleep" for pid in server.process_groups()["shells"]),
               timeout=5)
    started = [server.process.pid] + server.process_groups()["shells"]
    server.stop()
    third.close()
    assert [pid for pid in started if procs.alive(pid)] == []
