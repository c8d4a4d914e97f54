"""Users reach only their own terminals; admins may list and end any; read-only share links."""
from __future__ import annotations

import json

import pytest
import redis
import websocket

from .helpers import HttpSession, TermClient, close_code

MISSING = "doesnotexist-00000000"  # a well-formed id nobody has


def connect(server, client: HttpSession, **params) -> TermClient:
    return TermClient(server.url, headers=client.cookie_header(), **params)


def ws_refusal(server, client: HttpSession | dict, **params) -> tuple[dict, int | None]:
    """Open /ws as a login (or with these headers) expecting a refusal after
    the upgrade: (error payload, close code)."""
    headers = client if isinstance(client, dict) else client.cookie_header()
    url = server.url.replace("http", "ws", 1) + "/ws?" + "&".join(f"{k}={v}" for k, v in params.items())
    ws = websocket.create_connection(url, timeout=10, header=headers)
    try:
        message = json.loads(ws.recv())
        assert message["type"] == "error", message
        return message["payload"], close_code(ws)
    finally:
        ws.close()


def same_answer(a: tuple[int, dict], b: tuple[int, dict], real_id: str) -> bool:
    """Two REST answers alike once the asked-for ids are set aside."""
    return a[0] == b[0] and json.dumps(a[1]).replace(real_id, "ID") == json.dumps(b[1]).replace(MISSING, "ID")


def test_another_user_cannot_see_reach_or_end_a_session(auth_server):
    alice, bob = auth_server.session("alice"), auth_server.session("bob")
    t = connect(auth_server, alice, cols=100, rows=30)
    sid = t.session_id
    t.run("export SECRET=alice-$((20+22)); echo $SECRET", "alice-42")

    assert bob.api("GET", "/api/sessions") == (200, {"sessions": []})
    # Every door answers bob exactly as it would for an id that does not exist.
    for method, path, body in (("GET", "/api/sessions/{}", None), ("DELETE", "/api/sessions/{}", None),
                               ("GET", "/api/sessions/{}/shares", None),
                               ("POST", "/api/sessions/{}/shares", {})):
        real = bob.api(method, path.format(sid), body)
        missing = bob.api(method, path.format(MISSING), body)
        assert real[0] == 404 and real[1]["error"]["code"] == "session_not_found", (method, path, real)
        assert same_answer(real, missing, sid), (method, path, real, missing)
    real, missing = ws_refusal(auth_server, bob, session=sid), ws_refusal(auth_server, bob, session=MISSING)
    assert real[1] == missing[1] == 4404
    assert real[0]["code"] == missing[0]["code"] == "session_not_found"
    assert real[0]["message"].replace(sid, "ID") == missing[0]["message"].replace(MISSING, "ID")
    # An API token is bob too.
    bearer = {"Authorization": f"Bearer {auth_server.token('bob')}"}
    assert auth_server.api("DELETE", f"/api/sessions/{sid}", headers=bearer)[0] == 404
    assert ws_refusal(auth_server, bearer, session=sid) == real

    # Nothing bob did reached alice's terminal: same size, one connection, her shell intact.
    assert auth_server.tmux.run("display", "-p", "-t", f"={sid}:", "#{window_width}x#{window_height}"
                                ).strip() == "100x30"
    status, listing = alice.api("GET", "/api/sessions")
    assert [(s["sessionId"], s["connectionCount"]) for s in listing["sessions"]] == [(sid, 1)]
    t.run("echo $SECRET-still", "alice-42-still")
    t.close()


def test_admin_lists_and_ends_any_session_but_users_cannot(auth_server):
    alice, admin, bob = (auth_server.session(n) for n in ("alice", "admin", "bob"))
    t = connect(auth_server, alice)
    t.run("echo ready-$((1+1))", "ready-2")

    assert bob.api("GET", "/api/sessions?all=1")[1]["error"]["code"] == "forbidden"
    assert admin.api("GET", "/api/sessions")[1] == {"sessions": []}  # an admin's own list
    everyone = admin.api("GET", "/api/sessions?all=1")[1]["sessions"]
    assert [(s["sessionId"], s["userId"]) for s in everyone] == [(t.session_id, "alice")]
    assert admin.api("GET", f"/api/sessions/{t.session_id}")[1]["session"]["userId"] == "alice"

    # An admin may end sessions, not type into them.
    assert ws_refusal(auth_server, admin, session=t.session_id)[0]["code"] == "session_not_found"
    assert admin.api("DELETE", f"/api/sessions/{t.session_id}")[0] == 204
    exit_message = t.next_message("control", timeout=15)
    assert exit_message["payload"] == {"action": "exit", "reason": "ended by admin admin"}


def test_viewer_link_shows_output_refuses_input_and_ends_on_revoke(auth_server):
    alice = auth_server.session("alice")
    owner = connect(auth_server, alice, cols=90, rows=25)
    sid = owner.session_id
    owner.run("echo before-$((1+2))", "before-3")
    status, created = alice.api("POST", f"/api/sessions/{sid}/shares")
    assert status == 201
    link = created["share"]["url"]
    assert link.startswith("/view/ts_")
    assert alice.api("GET", f"/api/sessions/{sid}/shares")[1]["shares"] == [
        {k: created["share"][k] for k in ("id", "sessionId", "createdAt")}]

    # Anyone with the link may watch, without logging in.
    page = HttpSession(auth_server.url).request("GET", link)
    assert page[0] == 200
    viewer = TermClient(auth_server.url, view=link.rsplit("/", 1)[1], cols=40, rows=10)
    assert viewer.session_id == sid and viewer.ready["payload"]["readOnly"] is True
    viewer.expect("before-3")
    owner.run("echo live-$((4+5))", "live-9")
    viewer.expect("live-9")

    viewer.type("echo VIEWER-TYPED\r")
    assert viewer.next_message("error")["payload"]["code"] == "read_only"
    viewer.control("resize", cols=30, rows=8)
    assert viewer.next_message("error")["payload"]["code"] == "read_only"
    owner.run("echo after-$((5+5))", "after-10")
    viewer.expect("after-10")
    screen = auth_server.tmux.run("capture-pane", "-p", "-t", f"={sid}:")
    assert "VIEWER-TYPED" not in screen
    assert auth_server.tmux.run("display", "-p", "-t", f"={sid}:", "#{window_width}x#{window_height}"
                                ).strip() == "90x25"

    assert alice.api("DELETE", f"/api/sessions/{sid}/shares/{created['share']['id']}")[0] == 204
    assert viewer.next_message("error")["payload"]["code"] == "share_revoked"
    assert viewer.wait_closed().code == 4403
    assert alice.api("GET", f"/api/sessions/{sid}/shares")[1]["shares"] == []
    assert HttpSession(auth_server.url).request("GET", link)[0] == 404
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        TermClient(auth_server.url, view=link.rsplit("/", 1)[1])
    assert refused.value.status_code == 404
    owner.run("echo owner-$((6+6))", "owner-12")  # the owner never noticed
    owner.close()


def test_share_revoked_elsewhere_closes_its_viewers_on_every_worker(gunicorn_factory, redis_server,
                                                                    redis_prefix):
    server = gunicorn_factory(auth="on", workers="2", redis_url=redis_server.url,
                              redis_prefix=redis_prefix)
    server.add_user("alice", "alice-pass-1234")
    alice = server.session("alice")
    # The login cookie works on every worker (the secret key is in Redis).
    assert all(alice.api("GET", "/api/me")[0] == 200 for _ in range(20))
    owner = connect(server, alice)
    share = alice.api("POST", f"/api/sessions/{owner.session_id}/shares")[1]["share"]
    viewers = [TermClient(server.url, view=share["url"].rsplit("/", 1)[1]) for _ in range(4)]
    # Revoked by another worker or instance: each worker's watcher notices.
    with redis.Redis(host="127.0.0.1", port=redis_server.port) as direct:
        assert direct.hdel(f"{redis_prefix}accounts:shares", share["id"]) == 1
    for viewer in viewers:
        assert viewer.wait_closed(timeout=10).code == 4403
    owner.run("echo still-$((7+7))", "still-14")
    owner.close()
