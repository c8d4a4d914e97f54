"""Login, API tokens, the first-run link, the CLI, and handshakes refused before any pty."""
from __future__ import annotations

import http.client
import json
import os
import re
import stat
import subprocess
import time
import urllib.parse

import pytest
import websocket

from .conftest import PASSWORDS
from .helpers import HttpSession, TermClient, wait_until


def attach_clients(server) -> list[str]:
    """`tmux attach-session` clients running against this server's tmux socket."""
    out = subprocess.run(["ps", "-ww", "-eo", "args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "attach-session" in line and server.tmux.socket in line]


def handshake_status(server, query: str = "", headers: dict | None = None, origin: str | None = None):
    """Try to open /ws; return the HTTP status and JSON body of the refusal."""
    url = server.url.replace("http", "ws", 1) + "/ws" + query
    kwargs = {"origin": origin} if origin else {}
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=10, header=headers or {}, **kwargs)
    return refused.value.status_code, json.loads(refused.value.resp_body or b"{}")


def test_login_failure_success_and_logout(auth_server):
    client = HttpSession(auth_server.url)
    status, headers, _ = client.request("GET", "/?session=abc")
    assert status == 302 and headers["Location"] == "/login?next=/?session%3Dabc"

    assert client.login("alice", "not-her-password") == 401
    assert client.api("GET", "/api/me")[0] == 401
    assert client.login("alice", PASSWORDS["alice"]) == 302
    status, me = client.api("GET", "/api/me")
    assert (status, me["user"]) == (200, {"name": "alice", "role": "user"})
    cookie = next(c for c in client.jar if c.name == "termweb_session")
    assert cookie.has_nonstandard_attr("HttpOnly") and not cookie.secure

    status, headers, _ = client.form("/logout", {"csrf_token": client.csrf})
    assert status == 302 and headers["Location"] == "/login"
    assert client.api("GET", "/api/me")[0] == 401
    assert client.request("GET", "/")[0] == 302


def test_login_form_needs_its_csrf_token(auth_server):
    client = HttpSession(auth_server.url)
    status, _, body = client.form("/login", {"username": "alice", "password": PASSWORDS["alice"]})
    assert status == 400 and b"expired" in body
    assert client.api("GET", "/api/me")[0] == 401


def test_next_only_leads_within_the_site(auth_server):
    client = HttpSession(auth_server.url)
    _, _, body = client.request("GET", "/login?next=//evil.example/")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    status, headers, _ = client.form("/login", {"username": "bob", "password": PASSWORDS["bob"],
                                                "csrf_token": token, "next": "//evil.example/"})
    assert status == 302 and headers["Location"] == "/"


def test_first_run_link_logs_in_until_a_user_exists(gunicorn_factory):
    server = gunicorn_factory(auth="on")
    link = wait_until(lambda: re.search(r"http://\S+/login\?token=\S+", server.log),
                      message=lambda: f"no login link in the log:\n{server.log}").group(0)
    client = HttpSession(server.url)
    status, headers, _ = client.request("GET", link[len(server.url):])
    assert status == 302 and headers["Location"] == "/"
    assert client.api("GET", "/api/me")[1]["user"] == {"name": "local", "role": "admin"}
    t = TermClient(server.url, headers=client.cookie_header())
    t.run("echo first-$((40+2))", "first-42")
    t.close()

    assert HttpSession(server.url).request("GET", "/login?token=" + "x" * 43)[0] == 401
    server.add_user("carol", "carol-pass-1234", "admin")
    # The link has done its job, and the built-in user is gone with it.
    assert HttpSession(server.url).request("GET", link[len(server.url):])[0] == 401
    assert client.api("GET", "/api/me")[0] == 401


def test_password_from_the_environment(gunicorn_factory):
    server = gunicorn_factory(auth="on", password="env-pass-5678")
    assert "login?token=" not in server.log
    assert HttpSession(server.url).login("local", "wrong-pass-5678") == 401
    client = server.session("local", "env-pass-5678")
    assert client.api("GET", "/api/me")[1]["user"] == {"name": "local", "role": "admin"}


def test_cli_manages_users_and_tokens(auth_server):
    listing = auth_server.cli("user", "list").stdout
    assert re.search(r"^alice\tuser\t", listing, re.M) and re.search(r"^admin\tadmin\t", listing, re.M)
    for args, stdin, error in (
            (("user", "add", "alice", "--password-stdin"), "another-pass-1\n", "already exists"),
            (("user", "add", "dave", "--password-stdin"), "short\n", "8 to 1024 characters"),
            (("user", "add", "Dave!",), "", "user names are"),
            (("user", "remove", "nobody"), "", "no user nobody"),
            (("token", "create", "nobody"), "", "no user nobody"),
            (("token", "revoke", "0123456789abcdef"), "", "no token")):
        done = auth_server.cli(*args, stdin=stdin)
        assert done.returncode == 1 and error in done.stderr, (args, done.stderr)

    old = auth_server.session("alice")
    assert auth_server.cli("user", "passwd", "alice", "--password-stdin",
                           stdin="alice-new-pass-1\n").returncode == 0
    assert old.api("GET", "/api/me")[0] == 401  # a new password ends the old logins
    assert HttpSession(auth_server.url).login("alice", PASSWORDS["alice"]) == 401
    assert HttpSession(auth_server.url).login("alice", "alice-new-pass-1") == 302

    token = auth_server.token("bob", "--label", "ci")
    bearer = {"Authorization": f"Bearer {token}"}
    assert auth_server.api("GET", "/api/me", headers=bearer)[1]["user"]["name"] == "bob"
    token_id = re.search(r"^([0-9a-f]{16})\tbob\tci\t", auth_server.cli("token", "list").stdout, re.M).group(1)
    assert token not in auth_server.cli("token", "list").stdout  # only its id is shown
    assert auth_server.cli("token", "revoke", token_id).returncode == 0
    assert auth_server.api("GET", "/api/me", headers=bearer)[0] == 401

    assert auth_server.cli("user", "role", "bob", "admin").returncode == 0
    assert auth_server.session("bob").api("GET", "/api/me")[1]["user"]["role"] == "admin"
    token = auth_server.token("bob")
    assert auth_server.cli("user", "remove", "bob").returncode == 0
    assert auth_server.api("GET", "/api/me", headers={"Authorization": f"Bearer {token}"})[0] == 401
    assert HttpSession(auth_server.url).login("bob", PASSWORDS["bob"]) == 401


def test_accounts_file_is_private(auth_server):
    path = auth_server.env["TERMWEB_INSTANCE_PATH"] + "/accounts.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    text = open(path).read()
    assert PASSWORDS["alice"] not in text and "$argon2id$" in text


def test_handshakes_without_a_valid_login_are_refused_before_any_pty(auth_server):
    expired = auth_server.token("alice", "--expires", "1s")
    revoked_check = auth_server.token("alice")
    wait_until(lambda: auth_server.api("GET", "/api/me",
                                       headers={"Authorization": f"Bearer {expired}"})[0] == 401,
               timeout=5, message="the 1 s token never expired")
    logged_in = auth_server.session("alice")
    cases = [
        ("anonymous", "", {}, None, 401, "log in first"),
        ("wrong token", "?token=tw_0123456789abcdef_" + "A" * 43, {}, None, 401, "unknown or revoked"),
        ("wrong bearer", "", {"Authorization": "Bearer nonsense"}, None, 401, "unknown or revoked"),
        ("expired token", f"?token={expired}", {}, None, 401, "expired"),
        ("forged cookie", "", {"Cookie": "termweb_session=eyJfdXNlcl9pZCI6ImFsaWNlOjAifQ.x.y"}, None,
         401, "log in first"),
        ("cross-origin with a login", "", logged_in.cookie_header(), "http://evil.example", 403,
         "cross-origin"),
    ]
    for name, query, headers, origin, status, message in cases:
        got, body = handshake_status(auth_server, query, headers, origin)
        assert got == status, name
        assert message in body["error"]["message"], (name, body)
    assert auth_server.tmux.list_sessions() == []
    assert attach_clients(auth_server) == []

    # The same credentials work when they are valid.
    for headers, query in ((logged_in.cookie_header(), {}), ({}, {"token": revoked_check}),
                           ({"Authorization": f"Bearer {revoked_check}"}, {})):
        t = TermClient(auth_server.url, headers=headers, **query)
        t.run("echo in-$((3*3))", "in-9")
        t.close()


def test_api_token_clients_skip_csrf_but_cookies_need_it(auth_server):
    alice = auth_server.session("alice")
    assert alice.api("POST", "/api/sessions", {}, headers={"X-CSRF-Token": ""})[0] == 403
    status, body = alice.request("POST", "/api/sessions", b"{}", {"Content-Type": "application/json"})[0:3:2]
    assert status == 403 and json.loads(body)["error"]["code"] == "csrf_failed"
    assert alice.api("POST", "/api/sessions", {})[0] == 201
    bearer = {"Authorization": f"Bearer {auth_server.token('alice')}"}
    status, created = auth_server.api("POST", "/api/sessions", {}, headers=bearer)
    assert status == 201
    ids = {s["sessionId"] for s in alice.api("GET", "/api/sessions")[1]["sessions"]}
    assert created["session"]["sessionId"] in ids and len(ids) == 2


def test_security_headers_and_cookie_flags(gunicorn_factory):
    server = gunicorn_factory(auth="on", password="env-pass-5678", trusted_proxies="1")
    client = HttpSession(server.url)
    for path in ("/login", "/healthz", "/static/js/main.js", "/api/me"):
        _, headers, _ = client.request("GET", path)
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "Strict-Transport-Security" not in headers

    def log_in(extra: dict) -> tuple[int, str, http.client.HTTPMessage]:
        """Log in with these extra headers; return the status, the session cookie and headers."""
        browser = HttpSession(server.url)
        _, _, body = browser.request("GET", "/login", headers=extra)
        token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", "/login", body=urllib.parse.urlencode(
            {"username": "local", "password": "env-pass-5678", "csrf_token": token}), headers={
            **extra, "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{c.name}={c.value}" for c in browser.jar)})
        response = connection.getresponse()
        cookie = next(c for c in response.headers.get_all("Set-Cookie") if c.startswith("termweb_session="))
        return response.status, cookie, response.headers

    status, cookie, headers = log_in({})
    assert status == 302 and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie and "Expires" not in cookie  # remember-me is off
    # Behind a TLS-terminating proxy (one trusted hop), the cookie is Secure.
    status, cookie, headers = log_in({"X-Forwarded-Proto": "https"})
    assert status == 302 and "; Secure" in cookie
    assert headers["Strict-Transport-Security"]


def test_open_terminals_end_with_their_login_or_token(auth_server):
    alice = auth_server.session("alice")
    by_cookie = TermClient(auth_server.url, headers=alice.cookie_header())
    token = auth_server.token("bob")
    by_token = TermClient(auth_server.url, token=token)
    for t in (by_cookie, by_token):
        t.run("echo open-$((8*8))", "open-64")

    assert auth_server.cli("user", "passwd", "alice", "--password-stdin",
                           stdin="alice-new-pass-2\n").returncode == 0
    assert by_cookie.next_message("error")["payload"]["code"] == "unauthorized"
    assert by_cookie.wait_closed().code == 4401
    by_token.run("echo bob-still-$((1+1))", "bob-still-2")  # others are untouched
    assert auth_server.cli("token", "revoke", token.split("_")[1]).returncode == 0
    assert by_token.wait_closed().code == 4401
    # Only the views ended: both terminals run on for their owners.
    assert len(auth_server.tmux.list_sessions()) == 2


def test_a_dead_redis_refuses_logins_clearly_and_keeps_open_terminals(gunicorn_factory, own_redis,
                                                                      redis_prefix):
    server = gunicorn_factory(auth="on", redis_url=own_redis.url, redis_prefix=redis_prefix)
    server.add_user("alice", PASSWORDS["alice"])
    alice = server.session("alice")
    live = TermClient(server.url, headers=alice.cookie_header())
    live.run("echo before-$((1+1))", "before-2")
    pids = server.worker_pids()

    own_redis.stop()
    live.run("echo during-$((2+2))", "during-4")
    for client, method, path in ((alice, "GET", "/api/me"), (alice, "GET", "/api/sessions"),
                                 (HttpSession(server.url), "GET", "/login")):
        status, headers, body = client.request(method, path)
        assert status == 503 and json.loads(body)["error"]["code"] == "store_unavailable", path
        assert headers["Retry-After"] == "5"
    status, body = handshake_status(server, headers=alice.cookie_header())
    assert (status, body["error"]["code"]) == (503, "store_unavailable")
    live.run("echo still-$((3+3))", "still-6")
    assert server.worker_pids() == pids
    live.close()


def test_remember_me_is_off_unless_configured_and_then_asked_for(gunicorn_factory):
    server = gunicorn_factory(auth="on", remember_days="7")
    server.add_user("alice", PASSWORDS["alice"])

    def log_in(remember: bool) -> HttpSession:
        client = HttpSession(server.url)
        _, _, body = client.request("GET", "/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
        fields = {"username": "alice", "password": PASSWORDS["alice"], "csrf_token": token}
        assert client.form("/login", {**fields, **({"remember": "on"} if remember else {})})[0] == 302
        return client

    assert not [c for c in log_in(False).jar if c.name == "termweb_remember"]
    remembered = [c for c in log_in(True).jar if c.name == "termweb_remember"]
    assert remembered and 6 * 86400 < remembered[0].expires - time.time() <= 7 * 86400
    # The remember cookie alone logs a new browser session in, until the password changes.
    later = HttpSession(server.url)
    later.jar.set_cookie(remembered[0])
    assert later.api("GET", "/api/me")[1]["user"]["name"] == "alice"
    server.cli("user", "passwd", "alice", "--password-stdin", stdin="alice-new-pass-3\n")
    fresh = HttpSession(server.url)
    fresh.jar.set_cookie(remembered[0])
    assert fresh.api("GET", "/api/me")[0] == 401
