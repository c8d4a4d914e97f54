"""The session list page (/sessions) in headless Chromium against the real server.

Sessions are made through the REST API from Python; the page is checked for
what a user sees and does: rows, statuses, Open, End, New terminal.
"""
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from .helpers import wait_until

pytestmark = pytest.mark.browser

ROWS = "#sessions tbody tr[data-session-id]"


@pytest.fixture
def viewport() -> dict:
    return {"width": 1100, "height": 700}


def create_session(server) -> dict:
    status, body = server.api("POST", "/api/sessions", {})
    assert status == 201, body
    return body["session"]


def open_list(page, server):
    page.goto(server.url + "/sessions")
    page.wait_for_function("() => document.body.dataset.loaded === 'true'")


def row(page, session_id):
    return page.locator(f'{ROWS}[data-session-id="{session_id}"]')


def session_in_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.path != "/":
        return None
    return parse_qs(parts.query).get("session", [None])[0]


def test_lists_sessions_and_opens_one(gunicorn_server, page):
    first, second = create_session(gunicorn_server), create_session(gunicorn_server)
    open_list(page, gunicorn_server)

    expect(page.locator(ROWS)).to_have_count(2)
    assert set(page.locator(ROWS).evaluate_all("rows => rows.map(r => r.dataset.sessionId)")) \
        == {first["sessionId"], second["sessionId"]}
    for session in (first, second):
        r = row(page, session["sessionId"])
        status = r.locator("[data-status]")
        expect(status).to_have_attribute("data-status", "disconnected")
        expect(status).to_have_text("disconnected")
        expect(r.locator(".connections")).to_have_text("0")
        short = r.get_by_title(session["sessionId"])
        expect(short).to_have_text(session["sessionId"][:8])
        expect(r.locator(".activity")).to_have_text(re.compile(r"^(just now|\d+ s ago)$"))
        expect(r.locator(".cwd")).to_have_text(session["workingDirectory"])
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.get_by_role("alert")).to_be_hidden()

    row(page, first["sessionId"]).get_by_role("link", name="Open").click()
    page.wait_for_url(lambda url: session_in_url(url) == first["sessionId"])


def test_end_removes_the_row_and_the_tmux_session(gunicorn_server, page):
    doomed, kept = create_session(gunicorn_server), create_session(gunicorn_server)
    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    open_list(page, gunicorn_server)
    expect(page.locator(ROWS)).to_have_count(2)

    row(page, doomed["sessionId"]).get_by_role("button", name="End").click()
    expect(row(page, doomed["sessionId"])).to_have_count(0)
    expect(row(page, kept["sessionId"])).to_have_count(1)
    assert len(dialogs) == 1 and doomed["sessionId"][:8] in dialogs[0]
    wait_until(lambda: not gunicorn_server.tmux.has_session(doomed["sessionId"]),
               message="the ended session is still in tmux")
    assert gunicorn_server.tmux.has_session(kept["sessionId"])


def test_end_dismissed_keeps_the_session(gunicorn_server, page):
    session = create_session(gunicorn_server)
    page.on("dialog", lambda dialog: dialog.dismiss())
    open_list(page, gunicorn_server)
    with page.expect_event("dialog"):
        row(page, session["sessionId"]).get_by_role("button", name="End").click()
    expect(row(page, session["sessionId"])).to_have_count(1)
    assert gunicorn_server.tmux.has_session(session["sessionId"])


def test_new_terminal_opens_a_fresh_session(gunicorn_server, page):
    open_list(page, gunicorn_server)
    page.get_by_role("button", name="New terminal").click()
    page.wait_for_url(lambda url: session_in_url(url) is not None)
    session_id = session_in_url(page.url)
    assert gunicorn_server.tmux.has_session(session_id)


def test_empty_state(gunicorn_server, page):
    open_list(page, gunicorn_server)
    expect(page.get_by_text("No running terminals")).to_be_visible()
    expect(page.locator(ROWS)).to_have_count(0)
    expect(page.locator("#sessions table")).to_be_hidden()
    expect(page.get_by_role("button", name="New terminal")).to_have_count(1)


def test_store_errors_show_an_alert_and_keep_the_list(gunicorn_server, page):
    """A failed refresh says why and keeps the last list; the next good one clears it."""
    session = create_session(gunicorn_server)
    page.clock.install()
    open_list(page, gunicorn_server)
    expect(page.locator(ROWS)).to_have_count(1)

    def unavailable(route):
        route.fulfill(status=503, content_type="application/json",
                      body=json.dumps({"error": {"code": "store_unavailable",
                                                 "message": "the session store is unavailable"}}))

    page.route("**/api/sessions", unavailable)
    page.clock.run_for(5_000)
    expect(page.get_by_role("alert")).to_have_text("The session store is unavailable; retrying…")
    expect(row(page, session["sessionId"])).to_have_count(1)

    page.unroute("**/api/sessions")
    page.clock.run_for(5_000)
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(row(page, session["sessionId"])).to_have_count(1)
