"""The session router with a real tmux server and the in-memory store:
ownership, ended sessions, and what a create request may ask for."""
from __future__ import annotations

import pytest

from termweb.sessions import (REASON_ENDED_BY_USER, REASON_VANISHED, InvalidRequest, SessionEnded,
                              SessionNotFound, SessionRouter)
from termweb.store import MemoryStore

from .helpers import wait_until


@pytest.fixture
def router(tmux):
    return SessionRouter(MemoryStore(3600), tmux)


def test_another_users_session_reads_exactly_like_a_missing_one(router):
    mine = router.create("alice", 80, 24)
    with pytest.raises(SessionNotFound) as someone_elses:
        router.attach(mine.session_id, "bob", 80, 24)
    with pytest.raises(SessionNotFound) as missing:
        router.attach("x" * 22, "bob", 80, 24)
    assert str(someone_elses.value) == str(missing.value)
    with pytest.raises(SessionNotFound):
        router.destroy(mine.session_id, "bob")
    assert router.list("bob") == []
    assert router.tmux.has_session(mine.session_id)
    assert router.store.get(mine.session_id).connection_count == 0  # bob's tries counted nothing


@pytest.mark.parametrize("session_id", ["", "short", "../../etc/passwd", "=x:y", "a" * 65, None, 7])
def test_ids_outside_the_id_alphabet_are_not_found(router, session_id):
    with pytest.raises(SessionNotFound):
        router.get(session_id, "alice")


def test_attach_counts_and_detach_counts_out(router):
    state = router.create("alice", 80, 24)
    attachment = router.attach(state.session_id, "alice", 80, 24, created=True)
    try:
        assert attachment.state.connection_count == 1
        assert attachment.history == b""
    finally:
        attachment.bridge.close()
        router.detach(state.session_id)
    assert router.store.get(state.session_id).connection_count == 0


def test_an_ended_session_says_why(router):
    state = router.create("alice", 80, 24)
    router.destroy(state.session_id, "alice")
    assert not router.tmux.has_session(state.session_id)
    with pytest.raises(SessionEnded, match=REASON_ENDED_BY_USER):
        router.attach(state.session_id, "alice", 80, 24)
    assert router.list("alice") == []


def test_a_session_killed_behind_our_back_is_ended_on_attach(router):
    state = router.create("alice", 80, 24)
    router.tmux.kill_session(state.session_id)
    with pytest.raises(SessionEnded, match=REASON_VANISHED):
        router.attach(state.session_id, "alice", 80, 24, history_lines=100)
    assert router.store.get(state.session_id).ended_reason == REASON_VANISHED


@pytest.mark.parametrize("directory, environment", [
    ("relative/path", None),
    ("/no/such/directory", None),
    (None, {"BAD NAME": "x"}),
    (None, {"X": 1}),
    (None, {"X": "nul\0byte"}),
    (None, {f"V{i}": "x" for i in range(65)}),
    (None, ["X=1"]),
])
def test_bad_create_requests_are_refused_before_anything_starts(router, directory, environment):
    with pytest.raises(InvalidRequest):
        router.create("alice", 80, 24, directory, environment)
    assert router.tmux.list_sessions() == []
    assert router.store.list() == []


def test_values_ending_in_a_semicolon_reach_the_shell_whole(router, tmp_path):
    """tmux ends a command at an argument ending in ';': values are escaped."""
    directory = tmp_path / "odd;"
    directory.mkdir()
    state = router.create("alice", 80, 24, str(directory), {"SEMI": "a;", "NEXT": "b"})
    router.tmux.run("send-keys", "-t", f"={state.session_id}:", 'echo "[$SEMI|$NEXT|$PWD]"', "Enter")
    wait_until(lambda: f"[a;|b|{directory}]" in router.tmux.run(
        "capture-pane", "-p", "-t", f"={state.session_id}:"), message="the values did not arrive whole")
