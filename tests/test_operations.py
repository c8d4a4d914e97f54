"""What operators rely on: a dead or hung tmux server is replaced, /readyz,
/metrics, and bursts of new terminals that never hang."""
from __future__ import annotations

import json
import os
import signal
import threading
import urllib.error
import urllib.request

import websocket
from prometheus_client.parser import text_string_to_metric_families

from .helpers import TermClient, close_code, wait_until


def get(server, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(server.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def ready(server) -> tuple[int, dict]:
    status, body = get(server, "/readyz")
    return status, json.loads(body)


def samples(server, headers: dict | None = None) -> dict[tuple, float]:
    """/metrics parsed by prometheus_client: {(name, sorted labels): value}."""
    status, body = get(server, "/metrics", headers)
    assert status == 200, body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def value(metrics: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in metrics.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


def test_a_killed_tmux_server_is_noticed_recorded_and_replaced(gunicorn_factory):
    server = gunicorn_factory(health_interval_ms="500")
    live = TermClient(server.url)
    live.run("echo live-$((1+1))", "live-2")
    status, created = server.api("POST", "/api/sessions", {})
    idle_id = created["session"]["sessionId"]
    old_pid = ready(server)[1]["backends"][0]["pid"]

    os.kill(old_pid, signal.SIGKILL)
    assert live.next_message("error")["payload"]["code"] == "session_lost"
    assert live.wait_closed().code == 4404
    # Without any new terminal asking for it, a new server is running…
    wait_until(lambda: ready(server)[1]["backends"][0]["pid"] not in (None, old_pid), timeout=10,
               message="no replacement tmux server")
    # …and the store says why the detached session is gone.
    state = server.api("GET", f"/api/sessions/{idle_id}")[1]["session"]
    assert (state["status"], state["endedReason"]) == ("ended", "the tmux server behind it stopped")
    TermClient(server.url).run("echo after-$((2+2))", "after-4")
    assert "sessions lost, a new server started" in server.log


def test_a_hung_tmux_server_is_ended_and_replaced(gunicorn_factory):
    server = gunicorn_factory(health_interval_ms="500")
    TermClient(server.url).run("echo up-$((1+1))", "up-2")
    hung = ready(server)[1]["backends"][0]["pid"]
    os.kill(hung, signal.SIGSTOP)
    try:
        wait_until(lambda: ready(server)[1]["backends"][0]["pid"] not in (None, hung), timeout=15,
                   message="the hung tmux server was not replaced")
        wait_until(lambda: not os.path.exists(f"/proc/{hung}"), timeout=5,
                   message="the hung server is still there")
    finally:
        if os.path.exists(f"/proc/{hung}"):
            os.kill(hung, signal.SIGKILL)
    TermClient(server.url).run("echo again-$((3+3))", "again-6")


def test_readyz_needs_the_store_and_a_backend_with_room(gunicorn_factory, own_redis, redis_prefix):
    server = gunicorn_factory(redis_url=own_redis.url, redis_prefix=redis_prefix,
                              max_sessions_per_backend="1", health_interval_ms="300")
    status, body = ready(server)
    assert status == 200 and body["ready"] and body["backends"][0]["up"]

    own_redis.stop()
    status, body = ready(server)
    assert status == 503 and "unavailable" in " ".join(body["problems"])
    own_redis.start()
    wait_until(lambda: ready(server)[0] == 200, timeout=10, message="not ready after Redis returned")

    first = TermClient(server.url)  # the one session this backend may hold
    wait_until(lambda: ready(server)[0] == 503, timeout=5, message="a full backend still reads ready")
    assert "room" in " ".join(ready(server)[1]["problems"])
    status, body = server.api("POST", "/api/sessions", {})
    assert (status, body["error"]["code"]) == (503, "busy")
    first.close()


def test_a_burst_of_new_terminals_gets_terminals_or_busy_and_never_hangs(gunicorn_factory):
    server = gunicorn_factory(create_concurrency="2", create_wait_ms="200", create_rate="1000/minute")
    url = server.url.replace("http", "ws", 1) + "/ws"
    results: list = [None] * 50

    def open_one(i: int) -> None:
        try:
            ws = websocket.create_connection(url, timeout=20)
            first = json.loads(ws.recv())
            results[i] = ("ready", None) if first["payload"].get("action") == "ready" else (
                first["payload"]["code"], close_code(ws))
            ws.close()
        except Exception as exc:  # noqa: BLE001 -- reported below
            results[i] = ("failed", repr(exc))

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a connection hung"
    outcomes = {result[0] for result in results}
    assert outcomes <= {"ready", "busy"}, results
    assert all(code == 1013 for kind, code in results if kind == "busy")
    assert "ready" in outcomes
    assert len(server.tmux.list_sessions()) == sum(kind == "ready" for kind, _ in results)


def test_metrics_add_up_across_workers_and_move(gunicorn_factory, redis_server, redis_prefix):
    server = gunicorn_factory(workers="2", redis_url=redis_server.url, redis_prefix=redis_prefix)
    before = samples(server)
    clients = [TermClient(server.url) for _ in range(3)]
    for i, t in enumerate(clients):
        t.run(f"echo m-$(({i}+40))", f"m-{40 + i}")
    clients[0].send_json({"type": "heartbeat", "payload": {"clientTime": 1, "rttMs": 4.5}})
    clients[0].next_message("heartbeat")

    during = samples(server)
    assert value(during, "termweb_connections") == 3
    assert value(during, "termweb_sessions", status="active") == 3
    assert value(during, "termweb_session_create_seconds_count") - value(
        before, "termweb_session_create_seconds_count") == 3
    assert value(during, "termweb_input_bytes_total") > value(before, "termweb_input_bytes_total")
    assert value(during, "termweb_output_bytes_total") > value(before, "termweb_output_bytes_total")
    assert value(during, "termweb_echo_rtt_seconds_count") >= 1
    assert value(during, "termweb_backend_up") == 1 and value(during, "termweb_store_up") == 1
    # Every worker reports its memory once it runs (the second may still be
    # booting when the first has served all three terminals).
    def rss_pids() -> set[str]:
        return {dict(labels)["pid"] for (name, labels) in samples(server)
                if name == "termweb_worker_resident_memory_bytes"}
    wait_until(lambda: rss_pids() == {str(pid) for pid in server.worker_pids()}, timeout=10,
               message=lambda: f"RSS reported by {rss_pids()}, workers {server.worker_pids()}")

    for t in clients:
        t.close()
    wait_until(lambda: value(samples(server), "termweb_connections") == 0, timeout=10,
               message="connections did not go back to 0")
    assert value(samples(server), "termweb_sessions", status="disconnected") == 3


def test_metrics_and_backends_are_for_admins(auth_server):
    assert get(auth_server, "/metrics")[0] == 401
    alice = auth_server.session("alice")
    assert alice.request("GET", "/metrics")[0] == 403
    assert alice.api("GET", "/api/admin/backends")[1]["error"]["code"] == "forbidden"
    backends = auth_server.session("admin").api("GET", "/api/admin/backends")[1]["backends"]
    assert [(b["up"], b["pid"]) for b in backends] == [
        (True, int(auth_server.tmux.run("display", "-p", "#{pid}")))]
    assert auth_server.session("admin").request("GET", "/metrics")[0] == 200
    bearer = {"Authorization": f"Bearer {auth_server.token('admin')}"}
    assert value(samples(auth_server, bearer), "termweb_backend_up") == 1
    assert get(auth_server, "/readyz")[0] == 200  # for load balancers: no login


def test_readyz_fails_while_no_tmux_server_can_run(gunicorn_factory, tmp_path):
    """The socket's directory is replaced by a file: tmux cannot start there
    until it is back, and readiness says so meanwhile."""
    directory = tmp_path / "sockets"
    directory.mkdir()
    server = gunicorn_factory(tmux_socket=str(directory / "termweb"), health_interval_ms="300")
    assert ready(server)[0] == 200
    os.kill(ready(server)[1]["backends"][0]["pid"], signal.SIGKILL)
    for leftover in directory.iterdir():
        leftover.unlink()
    directory.rmdir()
    directory.write_text("not a directory")
    wait_until(lambda: ready(server)[0] == 503, timeout=10, message="still ready without tmux")
    assert "no tmux backend is up" in " ".join(ready(server)[1]["problems"])
    directory.unlink()
    directory.mkdir()
    wait_until(lambda: ready(server)[0] == 200, timeout=10, message="not ready once tmux could run")
    TermClient(server.url).run("echo back-$((2+3))", "back-5")
