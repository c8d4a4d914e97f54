"""The admin page (/admin) in headless Chromium against the real server.

What an admin sees and does: the readiness line, the tmux backend (its real
pid, and a new one after the server is killed), every user's sessions with
their owners, ending another user's session; who may see the page at all; a
failed refresh that keeps the last data; a pool's backends (more fields,
missing ones) rendered without fuss; and scaling the pool from the page.
"""
import json
import os
import re
import signal
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORDS
from .helpers import wait_until

pytestmark = pytest.mark.browser

BACKENDS = "#backends tbody tr[data-backend-id]"
SESSIONS = "#sessions tbody tr[data-session-id]"
REFRESH_TIMEOUT_MS = 15_000  # a refresh every 5 s, a dead tmux replaced within 1 s


@pytest.fixture
def viewport() -> dict:
    return {"width": 1280, "height": 800}


def path_of(url: str) -> str:
    return urlsplit(url).path


def log_in(page, server, name: str, start: str = "/admin"):
    """Go to `start`, which sends a stranger to /login; log in as `name` and come back."""
    page.goto(server.url + start)
    page.wait_for_url(lambda url: path_of(url) == "/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: path_of(url) == start)


def wait_loaded(page):
    page.wait_for_function("() => document.body.dataset.loaded === 'true'")


def session_row(page, session_id):
    return page.locator(f'{SESSIONS}[data-session-id="{session_id}"]')


def tmux_pid(server) -> int:
    return int(server.tmux.run("display", "-p", "#{pid}"))


def create(client) -> str:
    status, body = client.api("POST", "/api/sessions", {})
    assert status == 201, body
    return body["session"]["sessionId"]


def test_admin_sees_the_backend_and_ends_another_users_session(auth_server, page):
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    alice = auth_server.session("alice")
    alices = create(alice)
    own = create(auth_server.session("admin"))
    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    # The backend's count comes from its latest probe (every TERMWEB_HEALTH_INTERVAL_MS).
    admin_api = auth_server.session("admin")
    wait_until(lambda: admin_api.api("GET", "/api/admin/backends")[1]["backends"][0]["sessions"] == 2,
               message="the probe does not count the two sessions")
    log_in(page, auth_server, "admin")
    wait_loaded(page)

    # The header: who is logged in, Log out, the way back to the other pages.
    header = page.locator("header")
    expect(page.get_by_role("heading", level=1)).to_have_text("Admin")
    expect(header.locator(".account-name")).to_have_text("admin")
    expect(header.get_by_role("button", name="Log out")).to_be_visible()
    expect(header.get_by_role("link", name="Your terminals")).to_have_attribute("href", "/sessions")
    expect(header.get_by_role("link", name="New terminal")).to_have_attribute("href", "/")

    # Ready, and the one tmux server with its real pid.
    expect(page.get_by_role("status")).to_have_text("Ready for new terminals")
    expect(page.locator("#readiness")).to_have_attribute("data-ready", "true")
    backends = page.get_by_role("table", name="tmux backends")
    expect(backends.locator("tbody tr")).to_have_count(1)
    backend = page.locator(BACKENDS)
    expect(backend.locator(".state")).to_have_attribute("data-up", "true")
    expect(backend.locator(".state")).to_have_text("up")  # a pool's usual "active" goes without saying
    expect(backend.locator(".pid")).to_have_text(str(tmux_pid(auth_server)))
    expect(backend.locator(".load-text")).to_have_text(re.compile(r"^2 / \d+$"))
    expect(backend.locator(".probe")).to_have_text(re.compile(r"^\d+(\.\d)? (ms|s)$"))
    expect(backend.locator(".problem")).to_have_text("")

    # Every user's sessions, with their owners; Open only on the admin's own.
    expect(page.get_by_role("table", name="Every user's terminals").locator("tbody tr")).to_have_count(2)
    theirs, mine = session_row(page, alices), session_row(page, own)
    expect(theirs.locator(".owner")).to_have_text("alice")
    expect(theirs.locator("[data-status]")).to_have_attribute("data-status", "disconnected")
    expect(theirs.locator(".connections")).to_have_text("0")
    expect(theirs.get_by_title(alices)).to_have_text(alices[:8])
    expect(theirs.get_by_role("link", name=re.compile("^Open"))).to_have_count(0)
    expect(mine.locator(".owner")).to_have_text("admin (you)")
    expect(mine.get_by_role("link", name=re.compile("^Open"))).to_have_attribute("href", f"/?session={own}")

    # Ending alice's session from the page ends it for her too.
    theirs.get_by_role("button", name=re.compile("^End")).click()
    expect(theirs).to_have_count(0)
    expect(mine).to_have_count(1)
    assert len(dialogs) == 1 and "alice's" in dialogs[0] and alices[:8] in dialogs[0], dialogs
    status, body = alice.api("GET", "/api/sessions")
    assert status == 200 and alices not in [s["sessionId"] for s in body["sessions"]], body
    wait_until(lambda: not auth_server.tmux.has_session(alices), message="alice's session is still in tmux")
    expect(page.get_by_role("alert")).to_be_hidden()

    violations = [line for line in console if "Content Security Policy" in line or "Refused to" in line]
    assert not violations, violations


def test_only_admins_get_the_page(auth_server, page):
    # A stranger is sent to log in, and comes back to /admin after it…
    page.goto(auth_server.url + "/admin")
    page.wait_for_url(lambda url: path_of(url) == "/login")
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/admin"]
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORDS["alice"])
    # …where alice, not an admin, is refused.
    with page.expect_response(lambda r: path_of(r.url) == "/admin" and r.request.method == "GET") as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 403
    assert page.goto(auth_server.url + "/admin").status == 403

    alice = auth_server.session("alice")
    assert alice.api("GET", "/api/admin/backends") == \
        (403, {"error": {"code": "forbidden", "message": "only an admin may see the backends"}})
    stranger = auth_server.session()
    status, headers, _ = stranger.request("GET", "/admin")
    assert status == 302 and path_of(headers["Location"]) == "/login"
    assert stranger.api("GET", "/api/admin/backends")[0] == 401


def test_a_killed_tmux_server_is_shown_replaced(auth_server, page):
    doomed = create(auth_server.session("alice"))
    log_in(page, auth_server, "admin")
    wait_loaded(page)
    pid_cell = page.locator(BACKENDS).locator(".pid")
    old = tmux_pid(auth_server)
    expect(pid_cell).to_have_text(str(old))
    expect(session_row(page, doomed)).to_have_count(1)

    os.kill(old, signal.SIGKILL)
    # A later refresh shows the new server's pid,
    # and the session that was in the dead one is gone.
    expect(pid_cell).to_have_text(re.compile(rf"^(?!{old}$)\d+$"), timeout=REFRESH_TIMEOUT_MS)
    shown = int(pid_cell.text_content())
    assert shown != old
    assert shown == tmux_pid(auth_server)
    expect(page.locator(BACKENDS).locator(".state")).to_have_attribute("data-up", "true",
                                                                       timeout=REFRESH_TIMEOUT_MS)
    expect(session_row(page, doomed)).to_have_count(0, timeout=REFRESH_TIMEOUT_MS)
    expect(page.locator("#readiness")).to_have_attribute("data-ready", "true")


def test_a_failed_refresh_keeps_the_data_and_says_so(gunicorn_server, page):
    """Login off: everyone is the admin `local`, whose own sessions can be opened."""
    session = create(gunicorn_server)
    page.clock.install()
    page.goto(gunicorn_server.url + "/admin")
    wait_loaded(page)
    expect(page.locator(SESSIONS)).to_have_count(1)
    expect(session_row(page, session).locator(".owner")).to_have_text("local (you)")
    expect(session_row(page, session).get_by_role("link", name=re.compile("^Open"))).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    pid = page.locator(BACKENDS).locator(".pid").text_content()

    def unavailable(route):
        route.fulfill(status=503, content_type="application/json",
                      body=json.dumps({"error": {"code": "store_unavailable",
                                                 "message": "the session store is unavailable"}}))

    data_calls = re.compile(r"/api/(admin/backends|sessions\?all=1)$")
    page.route(data_calls, unavailable)
    page.clock.run_for(5_000)
    expect(page.get_by_role("alert")).to_have_text(re.compile(
        r"^Could not refresh the backends and the sessions: the session store is unavailable; "
        r"showing what was loaded at .+; retrying…$"))
    expect(session_row(page, session)).to_have_count(1)
    expect(page.locator(BACKENDS).locator(".pid")).to_have_text(pid)
    expect(page.locator("#sessions")).to_have_attribute("data-stale", "true")

    page.unroute(data_calls)
    page.clock.run_for(5_000)
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(page.locator("#sessions")).not_to_have_attribute("data-stale", "true")
    expect(session_row(page, session)).to_have_count(1)


def test_a_pools_backends_render_gracefully(gunicorn_server, page):
    """Fields a backend lacks show as "—"; new ones (state, warm, …) get shown too."""
    now = int(time.time() * 1000)
    pool = [
        {"id": "host/a", "up": True, "state": "active", "warm": 3, "pid": 4242, "sessions": 1900,
         "capacity": 2000, "probeSeconds": 0.0042, "problem": "", "checkedAt": now, "zone": "eu-1"},
        {"id": "host/b", "up": False, "state": "draining", "pid": None, "sessions": 0,
         "capacity": 2000, "problem": "tmux list-sessions did not answer within 2 s"},
        {"up": True},
    ]
    page.route("**/api/admin/backends", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps({"backends": pool})))
    page.route("**/readyz", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body=json.dumps({"ready": False, "problems": ["the session store is unavailable"],
                         "backends": pool})))
    create(gunicorn_server)
    page.goto(gunicorn_server.url + "/admin")
    wait_loaded(page)

    expect(page.get_by_role("status")).to_have_text("Not ready: the session store is unavailable")
    expect(page.locator("#readiness")).to_have_attribute("data-ready", "false")
    assert page.title().startswith("Not ready")
    rows = page.locator(BACKENDS)
    expect(rows).to_have_count(3)
    expect(page.get_by_role("columnheader", name="Warm")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Details")).to_be_visible()

    a, b, unnamed = rows.nth(0), rows.nth(1), rows.nth(2)
    expect(a.locator(".state")).to_have_text("up")
    expect(a.locator(".state")).to_have_attribute("data-state", "active")
    expect(a.locator(".load-text")).to_have_text("1900 / 2000")
    expect(a.locator(".load")).to_have_attribute("data-level", "high")
    expect(a.locator(".warm")).to_have_text("3")
    expect(a.locator(".probe")).to_have_text("4.2 ms")
    expect(a.locator(".extra")).to_have_text("zone: eu-1")

    expect(b.locator(".state")).to_have_attribute("data-up", "false")
    expect(b.locator(".badge-state")).to_have_text("draining")
    expect(b.locator(".pid")).to_have_text("—")
    expect(b.locator(".probe")).to_have_text("—")
    expect(b.locator(".checked")).to_have_text("—")
    expect(b.locator(".problem")).to_have_text("tmux list-sessions did not answer within 2 s")

    expect(unnamed.locator(".backend-id")).to_have_text("(unnamed)")
    expect(unnamed.locator(".load-text")).to_have_text("—")
    expect(unnamed.locator(".load-bar")).to_be_hidden()

    # Several backends: each session says which one holds it.
    expect(page.locator("#sessions-table").get_by_role("columnheader", name="Backend")).to_be_visible()
    expect(page.locator(SESSIONS).locator(".backend")).not_to_have_text("—")


def scale_form(page):
    """The "Scale the pool" form's number input and button."""
    form = page.get_by_role("form", name="Scale the pool")
    return form.get_by_label("tmux servers"), form.get_by_role("button", name="Scale")


def test_an_admin_grows_and_shrinks_the_pool(gunicorn_factory, page):
    """Login off: everyone is the admin. Growing starts a second tmux server;
    shrinking drains it, and having no sessions it stops."""
    server = gunicorn_factory(health_interval_ms="200")
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(server.url + "/admin")
    wait_loaded(page)
    rows = page.locator(BACKENDS)
    size, scale = scale_form(page)
    expect(rows).to_have_count(1)
    expect(size).to_have_value("1")

    size.fill("2")
    scale.click()
    expect(rows).to_have_count(2)
    second_id = rows.nth(1).get_attribute("data-backend-id")
    assert second_id.endswith("-1"), second_id
    for row in (rows.nth(0), rows.nth(1)):
        expect(row.locator(".state")).to_have_attribute("data-up", "true")
        expect(row.locator(".state")).to_have_text("up")
    expect(size).to_have_value("2")
    second = page.locator(f'{BACKENDS}[data-backend-id="{second_id}"]')
    expect(second.locator(".pid")).to_have_text(re.compile(r"^\d+$"))
    second_pid = int(second.locator(".pid").text_content())
    expect(page.get_by_role("alert")).to_be_hidden()

    # Shrinking: the second server shows as draining at once (the page's
    # refresh after it is held here, as an empty server may stop before then)…
    held = []

    def hold(route):
        if held is not None and route.request.method == "GET":
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/admin/backends", hold)
    size.fill("1")
    scale.click()
    expect(second.locator(".state")).to_have_attribute("data-state", "draining")
    expect(second.locator(".badge-state")).to_have_text("draining")
    expect(size).to_have_value("1")
    assert held, "the refresh after scaling did not ask for the backends"
    for route in held:
        route.continue_()
    held = None
    page.unroute("**/api/admin/backends", hold)
    # …and, having no sessions, stops and leaves the table.
    expect(second).to_have_count(0, timeout=REFRESH_TIMEOUT_MS)
    expect(rows).to_have_count(1)
    expect(rows.locator(".state")).to_have_text("up")
    expect(size).to_have_value("1")
    assert [b["id"] for b in server.api("GET", "/api/admin/backends")[1]["backends"]] == \
        [rows.first.get_attribute("data-backend-id")]
    wait_until(lambda: not os.path.exists(f"/proc/{second_pid}"), timeout=5,
               message="the drained tmux server still runs")
    expect(page.get_by_role("alert")).to_be_hidden()
    violations = [line for line in console if "Content Security Policy" in line or "Refused to" in line]
    assert not violations, violations


def refreshed(page):
    """Refresh as the page does when its tab shows again (the focus stays put), and wait for it."""
    before = page.locator("#updated time").get_attribute("datetime")
    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_function("before => document.querySelector('#updated time').dateTime !== before",
                           arg=before)


def test_the_pool_size_keeps_what_the_admin_types_and_says_what_the_server_refuses(auth_server, page):
    log_in(page, auth_server, "admin")
    wait_loaded(page)
    size, scale = scale_form(page)
    expect(size).to_have_value("1")

    # Typed into and still focused: a refresh leaves it.
    size.fill("7")
    refreshed(page)
    expect(size).to_be_focused()
    expect(size).to_have_value("7")
    # Left alone since the last refresh: the next one shows the pool again.
    size.blur()
    refreshed(page)
    expect(size).to_have_value("1")
    # Typed into, then left: the next refresh still leaves it; the one after does not.
    size.fill("5")
    size.blur()
    refreshed(page)
    expect(size).to_have_value("5")
    refreshed(page)
    expect(size).to_have_value("1")

    # The server's refusal, in its words; the size goes as JSON, with the page's CSRF token.
    size.fill("65")
    with page.expect_request(lambda r: path_of(r.url) == "/api/admin/backends"
                             and r.method == "POST") as request:
        scale.click()
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token and request.value.headers.get("x-csrf-token") == token
    assert request.value.post_data_json == {"size": 65}
    expect(page.get_by_role("alert")).to_have_text(
        "Could not scale the pool: size must be a whole number from 1 to 64.")
    expect(page.locator(BACKENDS)).to_have_count(1)
    expect(size).to_have_value("65")
    assert len(auth_server.session("admin").api("GET", "/api/admin/backends")[1]["backends"]) == 1
