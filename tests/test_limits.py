"""Every limit trips with a clear `rate_limited` answer, loses nothing, and recovers."""
from __future__ import annotations

import json

import websocket

from .conftest import PASSWORDS
from .helpers import HttpSession, TermClient, close_code, wait_until


def test_failed_logins_per_account_lock_it_for_a_while(gunicorn_factory):
    server = gunicorn_factory(auth="on", login_rate_account="3 per 4 seconds",
                              login_rate_ip="1000/minute")
    server.add_user("alice", PASSWORDS["alice"])
    server.add_user("bob", PASSWORDS["bob"])
    for _ in range(3):
        assert HttpSession(server.url).login("alice", "wrong-password") == 401
    # Even the right password waits now, with a page that says how long.
    browser = HttpSession(server.url)
    _, _, form = browser.request("GET", "/login")
    token = form.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    status, headers, page = browser.form("/login", {"username": "alice", "password": PASSWORDS["alice"],
                                                    "csrf_token": token})
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 4
    assert b"too many attempts; try again in" in page
    assert HttpSession(server.url).login("bob", PASSWORDS["bob"]) == 302  # other accounts are fine
    wait_until(lambda: HttpSession(server.url).login("alice", PASSWORDS["alice"]) == 302,
               timeout=10, interval=0.5, message="alice stayed locked out")
    # Successful logins use up nothing.
    assert all(HttpSession(server.url).login("alice", PASSWORDS["alice"]) == 302 for _ in range(5))


def test_failed_logins_per_address_trip_across_accounts(gunicorn_factory):
    server = gunicorn_factory(auth="on", login_rate_ip="4 per 4 seconds",
                              login_rate_account="1000/minute")
    server.add_user("alice", PASSWORDS["alice"])
    for name in ("a1", "a2", "a3", "a4"):
        assert HttpSession(server.url).login(name, "wrong-password") == 401
    assert HttpSession(server.url).login("alice", PASSWORDS["alice"]) == 429
    wait_until(lambda: HttpSession(server.url).login("alice", PASSWORDS["alice"]) == 302,
               timeout=10, interval=0.5, message="the address stayed locked out")


def test_session_creation_rate_is_shared_by_rest_and_websocket(gunicorn_factory):
    server = gunicorn_factory(auth="on", create_rate="2 per 4 seconds")
    server.add_user("alice", PASSWORDS["alice"])
    server.add_user("bob", PASSWORDS["bob"])
    alice = server.session("alice")
    assert alice.api("POST", "/api/sessions", {})[0] == 201
    first = TermClient(server.url, headers=alice.cookie_header())
    status, body = alice.api("POST", "/api/sessions", {})
    assert status == 429 and body["error"]["code"] == "rate_limited"
    # The page's socket is told why (a browser cannot read a refused handshake).
    ws = websocket.create_connection(server.url.replace("http", "ws", 1) + "/ws", timeout=10,
                                     header=alice.cookie_header())
    refused = json.loads(ws.recv())
    assert refused["payload"]["code"] == "rate_limited" and "try again" in refused["payload"]["message"]
    assert close_code(ws) == 1013
    ws.close()
    assert server.tmux.list_sessions().__len__() == 2  # nothing was started for the refusals
    # Reattaching is not creating, and bob has his own allowance.
    TermClient(server.url, headers=alice.cookie_header(), session=first.session_id).close()
    assert server.session("bob").api("POST", "/api/sessions", {})[0] == 201
    wait_until(lambda: alice.api("POST", "/api/sessions", {})[0] == 201, timeout=10, interval=0.5,
               message="alice could not create again")
    first.close()


def test_concurrent_sessions_per_user(gunicorn_factory):
    server = gunicorn_factory(auth="on", max_sessions_per_user="2")
    server.add_user("alice", PASSWORDS["alice"])
    alice = server.session("alice")
    ids = [alice.api("POST", "/api/sessions", {})[1]["session"]["sessionId"] for _ in range(2)]
    status, body = alice.api("POST", "/api/sessions", {})
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert "TERMWEB_MAX_SESSIONS_PER_USER" in body["error"]["message"]
    assert alice.api("DELETE", f"/api/sessions/{ids[0]}")[0] == 204
    assert alice.api("POST", "/api/sessions", {})[0] == 201


def test_websocket_messages_are_slowed_not_dropped(gunicorn_factory):
    server = gunicorn_factory(ws_messages_per_second="20")
    t = TermClient(server.url)
    t.run("echo go-$((1+1))", "go-2")
    t.type("V=")
    for _ in range(80):  # twice the burst, one keystroke per message
        t.type("x")
    t.type("; echo length-${#V}\r")
    assert t.next_message("error")["payload"]["code"] == "rate_limited"
    t.expect("length-80", timeout=15)  # every keystroke arrived
    t.run("echo after-$((3+3))", "after-6")  # and typing goes on
    t.close()


def test_websocket_input_bytes_are_slowed_not_dropped(gunicorn_factory):
    server = gunicorn_factory(ws_input_bytes_per_second="2000", max_message_bytes="2000")
    t = TermClient(server.url)
    t.run("head -c 8000 | wc -c | sed s/^/count=/", "head -c 8000")
    for _ in range(8):  # four seconds' worth of input
        t.type("a" * 999 + "\n")
    assert t.next_message("error")["payload"]["code"] == "rate_limited"
    t.expect("count=8000", timeout=20)  # every byte arrived
    t.close()
