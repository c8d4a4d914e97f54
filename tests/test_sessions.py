"""Sessions that survive: reattach, several clients, the REST API, the
lifecycle, and the store (in memory, and a real redis-server) under gunicorn."""
from __future__ import annotations

import os
import signal
import threading
import urllib.error
import urllib.request
import uuid

import pytest

from .conftest import TEST_SHELL, child_pids, start_gunicorn, stop_process
from .helpers import TermClient, free_port, reattach, refusal, wait_until

SET_MARK = "export MARK={mark}; echo set-$((40+2))"


def sessions(server) -> dict[str, dict]:
    status, body = server.api("GET", "/api/sessions")
    assert status == 200, body
    return {s["sessionId"]: s for s in body["sessions"]}


def redis_settings(redis_server, prefix, **more):
    return {"redis_url": redis_server.url, "redis_prefix": prefix, **more}


# -- reattach -----------------------------------------------------------------

def test_reconnect_keeps_the_shell_and_restores_earlier_output(term):
    first = term()
    first.run(SET_MARK.format(mark="kept") + "; seq -f 'history-%g' 1 60; echo done-$((6*7))", "done-42")
    first.drop()

    again = term(session=first.session_id)
    assert again.ready["payload"]["created"] is False
    assert again.ready["payload"]["restored"] > 0
    # history-1 scrolled off tmux's screen long ago: only the restore brings it back.
    output = again.expect("done-42")  # on the screen tmux redraws after the history
    assert 0 <= output.find(b"history-1\r\n") < output.find(b"history-60")
    again.run('echo "mark-$MARK"', "mark-kept")


def test_restore_can_be_declined(term):
    first = term()
    first.run("seq -f 'history-%g' 1 60; echo done-$((6*7))", "done-42")
    first.close()
    again = term(session=first.session_id, restore=0)
    assert again.ready["payload"]["restored"] == 0
    again.run("echo back-$((1+1))", "back-2")
    assert b"history-1\r\n" not in again.output


def test_two_clients_on_one_session_see_each_others_typing(term):
    a = term()
    b = term(session=a.session_id, restore=0)
    a.run("echo from-a-$((1+1))", "from-a-2")
    b.expect("from-a-2")
    b.run("echo from-b-$((2+2))", "from-b-4")
    a.expect("from-b-4")


def test_a_session_whose_shell_exited_says_so_on_reconnect(term, gunicorn_server):
    client = term()
    client.type("exit\r")
    assert client.next_message("control")["payload"] == {"action": "exit", "reason": "the shell exited"}
    error, code = refusal(gunicorn_server.url, session=client.session_id)
    assert (error["code"], code) == ("session_ended", 4404)
    assert "the shell exited" in error["message"]
    assert client.session_id not in sessions(gunicorn_server)


# -- REST ---------------------------------------------------------------------

def test_rest_creates_lists_and_ends_sessions(gunicorn_server, term):
    status, body = gunicorn_server.api("POST", "/api/sessions", {
        "environment": {"GREETING": "hello"}, "workingDirectory": "/tmp", "cols": 100, "rows": 30})
    assert status == 201, body
    session_id = body["session"]["sessionId"]
    assert body["session"]["status"] == "disconnected"
    assert gunicorn_server.tmux.has_session(session_id)

    client = term(session=session_id)
    client.run('echo "$GREETING from $PWD"', "hello from /tmp")
    listed = sessions(gunicorn_server)[session_id]
    assert (listed["status"], listed["connectionCount"]) == ("active", 1)
    assert listed["url"] == f"/?session={session_id}"

    assert gunicorn_server.api("DELETE", f"/api/sessions/{session_id}")[0] == 204
    assert client.next_message("control")["payload"] == {"action": "exit", "reason": "ended by its owner"}
    assert client.wait_closed().code == 1000
    assert not gunicorn_server.tmux.has_session(session_id)
    assert session_id not in sessions(gunicorn_server)
    status, body = gunicorn_server.api("DELETE", f"/api/sessions/{session_id}")
    assert (status, body["error"]["code"]) == (410, "session_ended")
    error, code = refusal(gunicorn_server.url, session=session_id)
    assert (error["code"], code) == ("session_ended", 4404)


@pytest.mark.parametrize("method, path, body, headers, status, code", [
    ("GET", "/api/sessions/doesnotexist-0000000", None, {}, 404, "session_not_found"),
    ("DELETE", "/api/sessions/doesnotexist-0000000", None, {}, 404, "session_not_found"),
    ("DELETE", "/api/sessions/..%2F..%2Fetc", None, {}, 404, None),
    ("GET", "/api/no-such-endpoint", None, {}, 404, "not_found"),
    ("PUT", "/api/sessions", {}, {}, 405, "method_not_allowed"),
    ("POST", "/api/sessions", {"cols": 5000}, {}, 400, "invalid_size"),
    ("POST", "/api/sessions", {"workingDirectory": "relative/dir"}, {}, 400, "invalid_field"),
    ("POST", "/api/sessions", {"workingDirectory": "/no/such/dir"}, {}, 400, "invalid_field"),
    ("POST", "/api/sessions", {"environment": {"BAD NAME": "x"}}, {}, 400, "invalid_field"),
    ("POST", "/api/sessions", {"environment": ["A=1"]}, {}, 400, "invalid_field"),
    ("POST", "/api/sessions", {}, {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("POST", "/api/sessions", {}, {"Origin": "http://evil.example"}, 403, "forbidden_origin"),
])
def test_rest_refuses_bad_requests_with_a_json_error(gunicorn_server, method, path, body, headers,
                                                     status, code):
    got_status, got = gunicorn_server.api(method, path, body, headers)
    assert got_status == status
    if code is not None:
        assert got["error"]["code"] == code and got["error"]["message"]
    assert gunicorn_server.tmux.list_sessions() == []


def test_rest_refuses_malformed_json(gunicorn_server):
    request = urllib.request.Request(gunicorn_server.url + "/api/sessions", data=b"{not json",
                                     method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert b"invalid_json" in refused.value.read()


# -- lifecycle ------------------------------------------------------------------

def test_a_session_nobody_reconnects_to_is_ended_after_the_ttl(gunicorn_factory):
    server = gunicorn_factory(session_ttl=1, reconcile_interval=1)
    client = TermClient(server.url)
    session_id = client.session_id
    client.run("echo hi-$((1+1))", "hi-2")
    client.close()
    wait_until(lambda: not server.tmux.has_session(session_id), timeout=15,
               message="the session outlived its TTL")
    error, code = refusal(server.url, session=session_id)
    assert (error["code"], code) == ("session_ended", 4404)
    assert "TERMWEB_SESSION_TTL" in error["message"]


def test_connected_sessions_are_not_ended_by_the_ttl(gunicorn_factory):
    server = gunicorn_factory(session_ttl=1, reconcile_interval=1)
    client = TermClient(server.url)
    client.expect_nothing(3.5)  # three sweeps
    client.run("echo alive-$((1+1))", "alive-2")


def test_an_orphan_tmux_session_is_adopted_by_its_owner(gunicorn_factory):
    server = gunicorn_factory(reconcile_interval=1)
    orphan = "orphan" + uuid.uuid4().hex[:16]
    server.tmux.new_session(orphan, 80, 24, owner="local")
    wait_until(lambda: orphan in sessions(server), timeout=10, message="the orphan was not adopted")
    client = TermClient(server.url, session=orphan)
    client.run("echo adopted-$((1+1))", "adopted-2")


def test_orphans_are_reaped_when_configured(gunicorn_factory):
    server = gunicorn_factory(reconcile_interval=1, orphans="reap")
    orphan = "orphan" + uuid.uuid4().hex[:16]
    server.tmux.new_session(orphan, 80, 24, owner="local")
    wait_until(lambda: not server.tmux.has_session(orphan), timeout=10, message="the orphan lives on")
    assert orphan not in sessions(server)


# -- start-up checks -------------------------------------------------------------

def _start_expecting_exit(tmp_path, **env) -> str:
    workdir = tmp_path / uuid.uuid4().hex[:8]
    workdir.mkdir()
    process = start_gunicorn(workdir, {"TERMWEB_SHELL": TEST_SHELL, **env})
    try:
        process.wait(20)
    finally:
        stop_process(process)
    assert process.returncode not in (None, 0)
    return (workdir / "gunicorn.log").read_text()


def test_several_workers_without_redis_are_refused_at_start(tmp_path):
    log = _start_expecting_exit(tmp_path, TERMWEB_WORKERS="2", TERMWEB_PORT="1",
                                TERMWEB_TMUX_SOCKET=f"termweb-test-{uuid.uuid4().hex[:12]}")
    assert "2 workers need a shared session store: set TERMWEB_REDIS_URL" in log


def test_a_second_in_memory_instance_on_one_tmux_server_is_refused(gunicorn_factory, tmp_path):
    first = gunicorn_factory()
    log = _start_expecting_exit(tmp_path, TERMWEB_PORT=str(free_port()),
                                TERMWEB_TMUX_SOCKET=first.tmux.socket)
    assert "another termweb instance already serves tmux socket" in log


# -- several workers and Redis ----------------------------------------------------

def test_two_workers_sessions_survive_a_killed_worker_and_a_deploy(gunicorn_factory, redis_server,
                                                                 redis_prefix):
    server = gunicorn_factory(workers=2, reconcile_interval=1,
                              **redis_settings(redis_server, redis_prefix))
    clients = [TermClient(server.url) for _ in range(6)]
    for i, client in enumerate(clients):
        client.run(SET_MARK.format(mark=f"m{i}"), "set-42")
    ids = [c.session_id for c in clients]
    victim = server.worker_of(ids[0])
    assert victim in server.worker_pids()
    on_victim = [i for i, sid in enumerate(ids) if server.worker_of(sid) == victim]

    os.kill(victim, signal.SIGKILL)
    for i in on_victim:
        assert clients[i].wait_closed().code in (None, 1006)  # dropped without a close frame
        clients[i] = reattach(server.url, ids[i], restore=0)
        assert server.worker_of(ids[i]) not in (None, victim)
    for i, client in enumerate(clients):
        client.run(f'echo "mark-$MARK-{i}"', f"mark-m{i}-{i}")
    # The killed worker never counted its clients out: the sweep sets the
    # counts from tmux's attached clients.
    wait_until(lambda: all(sessions(server)[sid]["connectionCount"] == 1 for sid in ids),
               timeout=15, message=lambda: "connection counts stayed wrong after the worker was "
               f"killed: {[sessions(server)[sid]['connectionCount'] for sid in ids]}")

    old_workers = set(server.worker_pids())
    server.process.send_signal(signal.SIGHUP)  # a deploy
    for client in clients:
        assert client.wait_closed().code == 1012
    for i, session_id in enumerate(ids):
        # Kept: a client dropped by the garbage collector closes its socket,
        # and its session rightly counts one connection less.
        clients[i] = reattach(server.url, session_id, restore=0)
        clients[i].run('echo "again-$MARK"', f"again-m{i}")
    # Reattaches that reached an old worker in its last moments were sent on
    # too, so the old workers are done well before gunicorn's graceful timeout.
    wait_until(lambda: not old_workers & set(server.worker_pids()), timeout=8,
               message="old workers lingered after the deploy")
    wait_until(lambda: all(sessions(server)[sid]["connectionCount"] == 1 for sid in ids),
               timeout=15, message=lambda: "connection counts drifted after the deploy: "
               f"{[sessions(server)[sid]['connectionCount'] for sid in ids]}")


def test_fifty_clients_coming_and_going_at_once_leave_an_exact_count(gunicorn_factory, redis_server,
                                                                    redis_prefix):
    server = gunicorn_factory(workers=2, **redis_settings(redis_server, redis_prefix))
    status, body = server.api("POST", "/api/sessions", {})
    session_id = body["session"]["sessionId"]
    count = 50
    clients: list[TermClient] = []
    failures: list[Exception] = []
    lock = threading.Lock()
    connect_together = threading.Barrier(count)
    leave_together = threading.Barrier(count + 1)

    def come_and_go():
        try:
            connect_together.wait(30)
            client = TermClient(server.url, session=session_id, restore=0)
            with lock:
                clients.append(client)
        except Exception as exc:  # noqa: BLE001 -- reported below
            failures.append(exc)
        leave_together.wait(60)
        if clients and client in clients:
            client.close()

    threads = [threading.Thread(target=come_and_go) for _ in range(count)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(clients) + len(failures) == count, timeout=60)
    assert not failures, failures[:3]
    assert sessions(server)[session_id]["connectionCount"] == count
    leave_together.wait(30)
    for thread in threads:
        thread.join(30)
    wait_until(lambda: sessions(server)[session_id]["connectionCount"] == 0, timeout=15,
               message=f"count is {sessions(server)[session_id]['connectionCount']}, not 0")
    assert sessions(server)[session_id]["status"] == "disconnected"


def test_redis_stopping_mid_run_keeps_live_terminals_and_recovers(gunicorn_factory, own_redis,
                                                                   redis_prefix):
    server = gunicorn_factory(reconcile_interval=1, **redis_settings(own_redis, redis_prefix))
    live = TermClient(server.url)
    live.run(SET_MARK.format(mark="through-outage"), "set-42")

    own_redis.stop()
    live.run("echo still-typing-$((2+3))", "still-typing-5")
    error, code = refusal(server.url)
    assert (error["code"], code) == ("store_unavailable", 1013)
    error, code = refusal(server.url, session=live.session_id)
    assert (error["code"], code) == ("store_unavailable", 1013)
    status, body = server.api("GET", "/api/sessions")
    assert (status, body["error"]["code"]) == (503, "store_unavailable")
    live.run("echo after-refusals-$((3+4))", "after-refusals-7")

    # Redis comes back empty (no persistence): the sweep adopts the running
    # session from tmux, so the terminal can be reattached again.
    own_redis.start()
    again = reattach(server.url, live.session_id, timeout=15, restore=0)
    again.run('echo "mark-$MARK"', "mark-through-outage")
    TermClient(server.url).run("echo new-$((4+4))", "new-8")
    live.close()
    assert "session store (Redis) is unavailable" in server.log


def test_a_binary_upgrade_hands_terminals_to_the_new_master(gunicorn_factory):
    """gunicorn's USR2 starts a new master beside the old; TERM to the old one
    then closes its sockets with 1012, and the pages reattach to the new one."""
    server = gunicorn_factory()
    client = TermClient(server.url)
    client.run(SET_MARK.format(mark="upgraded"), "set-42")
    old_workers = set(server.worker_pids())

    server.process.send_signal(signal.SIGUSR2)
    new_master = wait_until(lambda: next(
        (pid for pid in child_pids(server.process.pid) if pid not in old_workers), None),
        timeout=20, message="USR2 started no new master")
    try:
        wait_until(lambda: child_pids(new_master), timeout=20, message="the new master has no worker")
        server.process.send_signal(signal.SIGTERM)
        assert client.wait_closed().code == 1012
        server.process.wait(20)
        again = reattach(server.url, client.session_id, restore=0)
        again.run('echo "mark-$MARK"', "mark-upgraded")
    finally:
        try:
            os.kill(new_master, signal.SIGQUIT)
        except ProcessLookupError:
            pass
        wait_until(lambda: not os.path.exists(f"/proc/{new_master}"), timeout=20,
                   message="the new master did not stop")
