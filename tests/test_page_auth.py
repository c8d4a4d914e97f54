"""The pages with login on (TERMWEB_AUTH=on), in headless Chromium against the real server.

What a user sees: the login form and its errors, the terminal after logging
in, logging out, read-only share links (made on /sessions, watched in a
second browser that is not logged in, revoked), a page whose login ended
while it was open, the admin's "All users" list, and no Content Security
Policy violations on any page.
"""
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from .test_page import BUFFER_LINES, HAS_LINE, PROMPT_TIMEOUT_MS, RECORD_STATES, open_terminal, run, wait_for_state

pytestmark = pytest.mark.browser

PASSWORDS = {"alice": "alice-pass-1234", "bob": "bob-pass-1234", "admin": "admin-pass-1234"}
ROWS = "#sessions tbody tr[data-session-id]"


@pytest.fixture
def viewport() -> dict:
    return {"width": 1100, "height": 700}


def path_of(url: str) -> str:
    return urlsplit(url).path


def log_in(page, server, name: str = "alice", start: str = "/"):
    """Go to `start`, which sends a stranger to /login; log in as `name` and come back."""
    page.goto(server.url + start)
    page.wait_for_url(lambda url: path_of(url) == "/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: path_of(url) == urlsplit(start).path)


def open_list(page, server):
    page.goto(server.url + "/sessions")
    page.wait_for_function("() => document.body.dataset.loaded === 'true'")


def row(page, session_id):
    return page.locator(f'{ROWS}[data-session-id="{session_id}"]')


def status_text(page):
    return page.locator("#status .status-text")


def test_login_terminal_and_logout(auth_server, page):
    page.goto(auth_server.url + "/")
    page.wait_for_url(lambda url: path_of(url) == "/login")
    assert parse_qs(urlsplit(page.url).query)["next"] == ["/"]
    expect(page.get_by_role("heading", name="Log in to termweb")).to_be_visible()
    username, password = page.get_by_label("User name"), page.get_by_label("Password")
    expect(username).to_be_focused()
    expect(username).to_have_attribute("autocomplete", "username")
    expect(password).to_have_attribute("autocomplete", "current-password")
    expect(page.get_by_label(re.compile("Keep me logged in"))).to_have_count(0)  # remember_days is 0

    username.fill("alice")
    password.fill("not-her-password")
    with page.expect_response(lambda r: path_of(r.url) == "/login" and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
    assert path_of(page.url) == "/login"
    expect(username).to_have_value("alice")
    expect(password).to_be_focused()  # the first empty field

    password.fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: path_of(url) == "/")
    open_terminal(page)
    run(page, "echo $((6*7))", "42")
    expect(page.locator("#status")).to_contain_text("alice")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(lambda url: path_of(url) == "/login")
    page.goto(auth_server.url + "/")
    page.wait_for_url(lambda url: path_of(url) == "/login")
    expect(page.get_by_label("User name")).to_be_visible()


def test_login_offers_remember_me_when_configured(gunicorn_factory, page):
    server = gunicorn_factory(auth="on", remember_days=14)
    server.add_user("alice", PASSWORDS["alice"])
    page.goto(server.url + "/login")
    remember = page.get_by_label("Keep me logged in for 14 days")
    expect(remember).to_be_visible()
    expect(remember).not_to_be_checked()


def test_pages_have_no_csp_violations(auth_server, page):
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

    response = page.goto(auth_server.url + "/login")
    assert "script-src 'self'" in response.headers.get("content-security-policy", "")
    log_in(page, auth_server)
    open_terminal(page)
    session = page.evaluate("() => document.body.dataset.session")

    open_list(page, auth_server)
    expect(row(page, session)).to_have_count(1)
    row(page, session).get_by_role("button", name="Share").click()
    link = page.get_by_role("dialog").get_by_label("View-only link")
    expect(link).to_have_value(re.compile(r"/view/"))
    url = link.input_value()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()

    page.goto(url)
    wait_for_state(page, "connected")
    page.goto(auth_server.url + "/view/no-such-link")
    wait_for_state(page, "closed")
    expect(status_text(page)).to_have_text("This share link is not valid, or was revoked")

    violations = [line for line in console if "Content Security Policy" in line or "Refused to" in line]
    assert not violations, violations


def test_share_link_watches_without_typing_and_revoking_ends_it(auth_server, browser, page, viewport):
    log_in(page, auth_server)
    open_terminal(page)
    session = page.evaluate("() => document.body.dataset.session")

    # The owner's list, in a second tab of the same login.
    owner_list = page.context.new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=auth_server.url)
    open_list(owner_list, auth_server)
    row(owner_list, session).get_by_role("button", name="Share").click()
    dialog = owner_list.get_by_role("dialog")
    link = dialog.get_by_label("View-only link")
    expect(link).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/view/[^/?#]+$"))
    url = link.input_value()
    expect(dialog).to_contain_text("Anyone with this link can watch (not type)")
    expect(dialog.locator(".share-count")).to_have_text("1")
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_role("button", name="Copied")).to_be_visible()
    assert owner_list.evaluate("() => navigator.clipboard.readText()") == url
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(row(owner_list, session).get_by_role("button", name=re.compile("1 active view link"))).to_be_visible()

    # Someone without a login opens the link.
    stranger = browser.new_context(viewport=viewport)
    try:
        viewer = stranger.new_page()
        sent = []
        viewer.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
        viewer.goto(url)
        wait_for_state(viewer, "connected")
        expect(viewer.locator("#status")).to_contain_text("view only")
        expect(viewer.get_by_role("button", name="Log out")).to_have_count(0)
        assert viewer.url == url  # no ?session= for a viewer
        assert viewer.evaluate("() => window.termweb.term.options.disableStdin") is True

        run(page, "echo shared-$((2+3))", "shared-5")
        viewer.wait_for_function(HAS_LINE, arg="shared-5", timeout=PROMPT_TIMEOUT_MS)

        viewer.locator("#terminal").click()
        viewer.keyboard.type("echo VIEWER-TYPED")
        viewer.keyboard.press("Enter")
        # Anything the viewer's keys had done would be on the owner's screen before this.
        run(page, "echo owner-$((3+4))", "owner-7")
        viewer.wait_for_function(HAS_LINE, arg="owner-7", timeout=PROMPT_TIMEOUT_MS)
        owner_lines = page.evaluate(BUFFER_LINES)
        assert not any("VIEWER-TYPED" in line for line in owner_lines), owner_lines
        # Nothing but heartbeats went out: no keystrokes, no resize.
        kinds = [payload if isinstance(payload, bytes) else json.loads(payload)["type"] for payload in sent]
        assert kinds and set(kinds) == {"heartbeat"}, kinds

        # The owner revokes the link: the viewer is told and does not come back.
        viewer.evaluate(RECORD_STATES)
        row(owner_list, session).get_by_role("button", name=re.compile("1 active view link")).click()
        expect(dialog).to_be_visible()
        expect(dialog.locator(".share-list li")).to_have_count(1)
        dialog.get_by_role("button", name=re.compile("^Revoke")).click()
        expect(dialog.locator(".share-count")).to_have_text("0")
        expect(dialog).to_contain_text("No active links")
        expect(status_text(viewer)).to_have_text("This share link was revoked", timeout=10_000)
        assert viewer.evaluate("() => document.body.dataset.state") == "closed"
        assert "reconnecting" not in viewer.evaluate("() => window.seenStates")
        dialog.get_by_role("button", name="Close").click()
        expect(row(owner_list, session).get_by_role("button", name=re.compile("active view link"))).to_be_hidden()

        viewer.reload()
        wait_for_state(viewer, "closed")
        expect(status_text(viewer)).to_have_text("This share link is not valid, or was revoked")
        run(page, "echo still-$((1+1))", "still-2")  # the owner's terminal is unaffected
    finally:
        stranger.close()


def test_page_whose_login_ended_offers_to_log_in_again(auth_server, page):
    log_in(page, auth_server)
    open_terminal(page)
    run(page, "MARK=kept; echo set-$((4+5))", "set-9")
    session = page.evaluate("() => document.body.dataset.session")

    page.context.clear_cookies()
    page.context.set_offline(True)
    wait_for_state(page, "reconnecting")
    page.context.set_offline(False)
    wait_for_state(page, "closed")
    expect(status_text(page)).to_have_text("You are logged out")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    login = page.get_by_role("link", name="Log in")
    expect(login).to_be_visible()
    href = urlsplit(login.get_attribute("href"))
    assert href.path == "/login" and parse_qs(href.query)["next"] == [f"/?session={session}"]

    # Logging in again comes back to the same terminal.
    login.click()
    page.wait_for_url(lambda url: path_of(url) == "/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("session") == [session])
    open_terminal(page)
    run(page, 'echo "mark-$MARK"', "mark-kept")


def test_admin_lists_every_users_terminals(auth_server, page):
    alice = auth_server.session("alice")
    status, body = alice.api("POST", "/api/sessions", {})
    assert status == 201, body
    alices = body["session"]["sessionId"]

    log_in(page, auth_server, "admin", start="/sessions")
    page.wait_for_function("() => document.body.dataset.loaded === 'true'")
    expect(page.locator("header")).to_contain_text("admin")
    expect(page.get_by_text("No running terminals")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Owner")).to_be_hidden()

    page.get_by_label("All users").check()
    expect(row(page, alices)).to_have_count(1)
    expect(row(page, alices).locator(".owner")).to_have_text("alice")
    expect(row(page, alices).get_by_role("button", name="Share")).to_have_count(0)  # hers to share
    expect(page.get_by_role("columnheader", name="Owner")).to_be_visible()
    assert parse_qs(urlsplit(page.url).query)["all"] == ["1"]
    page.reload()  # the choice stays with the URL
    expect(page.get_by_label("All users")).to_be_checked()
    expect(row(page, alices)).to_have_count(1)

    page.get_by_label("All users").uncheck()
    expect(page.get_by_text("No running terminals")).to_be_visible()

    # Not for anyone else.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(lambda url: path_of(url) == "/login")
    log_in(page, auth_server, "alice", start="/sessions")
    page.wait_for_function("() => document.body.dataset.loaded === 'true'")
    expect(row(page, alices)).to_have_count(1)
    expect(page.get_by_label("All users")).to_have_count(0)
    expect(page.get_by_role("columnheader", name="Owner")).to_be_hidden()
