"""The page in headless Chromium against the real server (gunicorn, tmux, bash).

Terminal text is read from xterm.js's buffer (`window.termweb.term`), not
scraped from the DOM, so the tests hold for the WebGL and DOM renderers alike.
Predicates for `wait_for_function` are written as functions ("() => ..."):
Playwright evaluates bare expressions with eval(), which a CSP without
'unsafe-eval' refuses.
"""
import os
import signal
from urllib.parse import parse_qs, urlsplit

import pytest

from .helpers import wait_for_foreground, wait_until

pytestmark = pytest.mark.browser

# Generous: a shell's rc files are slow on a busy 2-core machine.
PROMPT_TIMEOUT_MS = 30_000

# The buffer as lines of text, oldest first.
BUFFER_LINES = """() => {
  const buffer = window.termweb.term.buffer.active;
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines;
}"""
HAS_LINE = f"want => ({BUFFER_LINES})().some(line => line.trim() === want)"
# The shell has printed its prompt: text on the cursor's line, before the cursor.
AT_PROMPT = """() => {
  const buffer = window.termweb.term.buffer.active;
  const line = buffer.getLine(buffer.baseY + buffer.cursorY).translateToString(true);
  return buffer.cursorX > 0 && line.trim() !== '';
}"""
# Every data-state the page goes through from now on, in window.seenStates.
RECORD_STATES = """() => {
  window.seenStates = [];
  new MutationObserver(() => window.seenStates.push(document.body.dataset.state))
    .observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state']});
}"""


def open_terminal(page, url=None):
    """Go to `url` (or stay) and wait until the shell shows its prompt."""
    if url is not None:
        page.goto(url)
    wait_for_state(page, "connected")
    page.wait_for_function(AT_PROMPT, timeout=PROMPT_TIMEOUT_MS)


def wait_for_state(page, state, timeout=PROMPT_TIMEOUT_MS):
    page.wait_for_function("state => document.body.dataset.state === state", arg=state, timeout=timeout)


def run(page, command, expected_line, timeout=PROMPT_TIMEOUT_MS):
    """Type `command` and Enter; wait for a line that is exactly `expected_line`."""
    page.keyboard.type(command)
    page.keyboard.press("Enter")
    page.wait_for_function(HAS_LINE, arg=expected_line, timeout=timeout)


def terminal_size(page):
    return page.evaluate("[window.termweb.term.rows, window.termweb.term.cols]")


def status_text(page):
    return page.locator("#status .status-text").inner_text()


def test_page_shows_a_prompt_and_runs_a_command(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    run(page, "echo $((6*7))", "42")
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight"
                         " && document.documentElement.scrollWidth <= window.innerWidth")
    session = page.evaluate("document.body.dataset.session")
    assert session and parse_qs(urlsplit(page.url).query)["session"] == [session]
    page.wait_for_function(
        r"() => /^connected · \d+ ms$/.test(document.querySelector('#status .status-text').textContent)")


def test_window_resize_changes_stty_size(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    before = terminal_size(page)
    run(page, 'echo "size:$(stty size)"', "size:%d %d" % tuple(before))

    page.set_viewport_size({"width": 1200, "height": 420})
    page.wait_for_function("([rows, cols]) => window.termweb.term.rows !== rows"
                           " && window.termweb.term.cols !== cols", arg=before)
    after = terminal_size(page)
    assert after[0] < before[0] and after[1] > before[1]
    run(page, 'echo "size:$(stty size)"', "size:%d %d" % tuple(after))


def test_output_scrolled_off_the_screen_stays_in_the_page_scrollback(gunicorn_server, page):
    """tmux draws on the normal screen, so lines it scrolls off land in xterm.js's
    scrollback, where the mouse wheel and the search box reach them. (A burst
    of more than a screenful at once is redrawn by tmux as its last screen:
    see docs/configuration.md.)"""
    open_terminal(page, gunicorn_server.url + "/")
    run(page, "for i in $(seq 1 80); do echo row-$i; sleep 0.005; done; echo end-$((5*5))", "end-25")
    assert page.evaluate(HAS_LINE, "row-3")  # long scrolled off the visible rows
    bottom = page.evaluate("() => window.termweb.term.buffer.active.viewportY")
    assert bottom > 0
    page.mouse.move(400, 300)
    page.mouse.wheel(0, -3000)
    page.wait_for_function("y => window.termweb.term.buffer.active.viewportY < y", arg=bottom)


def test_ctrl_c_reaches_the_shell(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    page.keyboard.type("sleep 60; echo not-interrupted")
    page.keyboard.press("Enter")
    session_id = page.evaluate("() => document.body.dataset.session")
    wait_for_foreground(gunicorn_server.tmux, session_id, "sleep")
    page.keyboard.press("Control+C")
    run(page, "echo after-$((1+1))", "after-2")
    assert not page.evaluate(HAS_LINE, "not-interrupted")


def test_ctrl_shift_c_copies_and_ctrl_shift_v_pastes(gunicorn_server, page):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gunicorn_server.url)
    open_terminal(page, gunicorn_server.url + "/")
    run(page, "echo copy-me-$((2*4))", "copy-me-8")
    row = page.evaluate(f"({BUFFER_LINES})().findIndex(line => line.trim() === 'copy-me-8')")
    page.evaluate("row => window.termweb.term.select(0, row, 9)", row)
    page.keyboard.press("Control+Shift+C")
    wait_until(lambda: page.evaluate("navigator.clipboard.readText()") == "copy-me-8")

    page.keyboard.type("echo pasted:")
    page.keyboard.press("Control+Shift+V")
    page.keyboard.press("Enter")
    page.wait_for_function(HAS_LINE, arg="pasted:copy-me-8", timeout=PROMPT_TIMEOUT_MS)


def test_reload_reattaches_the_same_terminal_with_its_scrollback(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    run(page, "MARK=kept; seq -f 'earlier-%g' 1 80; echo set-$((2+3))", "set-5")
    session = page.evaluate("document.body.dataset.session")

    page.reload()
    open_terminal(page)
    assert page.evaluate("document.body.dataset.session") == session
    # Far above the screen tmux redraws: only the restored history has it.
    page.wait_for_function(HAS_LINE, arg="earlier-1")
    lines = page.evaluate(BUFFER_LINES)
    assert [line.strip() for line in lines].count("earlier-1") == 1
    run(page, 'echo "mark-$MARK"', "mark-kept")


def test_two_tabs_share_one_terminal(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    session = page.evaluate("document.body.dataset.session")
    other = page.context.new_page()
    open_terminal(other, f"{gunicorn_server.url}/?session={session}")
    assert other.evaluate("document.body.dataset.session") == session

    run(page, "echo from-first-$((1+1))", "from-first-2")
    other.wait_for_function(HAS_LINE, arg="from-first-2", timeout=PROMPT_TIMEOUT_MS)
    run(other, "echo from-second-$((2+2))", "from-second-4")
    page.wait_for_function(HAS_LINE, arg="from-second-4", timeout=PROMPT_TIMEOUT_MS)


def test_going_offline_and_online_reconnects_by_itself(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    run(page, "MARK=offline-proof; echo set-$((4+5))", "set-9")
    session = page.evaluate("document.body.dataset.session")

    page.context.set_offline(True)
    wait_for_state(page, "reconnecting")
    page.context.set_offline(False)
    wait_for_state(page, "connected")
    assert page.evaluate("document.body.dataset.session") == session
    run(page, 'echo "mark-$MARK"', "mark-offline-proof")


def _kill_worker(server):
    worker, = server.worker_pids()
    os.kill(worker, signal.SIGKILL)  # the socket drops without a close frame (1006)


def _deploy(server):
    server.process.send_signal(signal.SIGHUP)  # the socket closes with 1012


@pytest.mark.parametrize("disruption", [_kill_worker, _deploy], ids=["worker-killed", "deploy"])
def test_reconnects_to_the_same_terminal(gunicorn_server, page, disruption):
    open_terminal(page, gunicorn_server.url + "/")
    run(page, "MARK=survived; echo set-$((3+4))", "set-7")
    session = page.evaluate("document.body.dataset.session")
    page.evaluate(RECORD_STATES)

    disruption(gunicorn_server)

    page.wait_for_function("() => window.seenStates.includes('reconnecting')"
                           " && document.body.dataset.state === 'connected'", timeout=20_000)
    assert page.evaluate("document.body.dataset.session") == session
    run(page, 'echo "mark-$MARK"', "mark-survived")


def test_exit_offers_a_new_terminal(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    first = page.evaluate("document.body.dataset.session")
    page.keyboard.type("exit")
    page.keyboard.press("Enter")
    wait_for_state(page, "closed")
    assert status_text(page) == "closed: session ended (the shell exited)"
    assert page.get_by_role("link", name="your terminals").is_visible()

    link = page.get_by_role("link", name="new terminal")
    assert "session" not in urlsplit(link.get_attribute("href")).query
    with page.expect_navigation():
        link.click()
    open_terminal(page)
    assert page.evaluate("document.body.dataset.session") not in ("", first)


def test_ending_a_session_from_the_api_tells_the_page_why(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    session = page.evaluate("document.body.dataset.session")
    assert gunicorn_server.api("DELETE", f"/api/sessions/{session}")[0] == 204
    wait_for_state(page, "closed")
    assert status_text(page) == "closed: session ended (ended by its owner)"

    page.reload()  # the URL still names the ended session
    wait_for_state(page, "closed")
    assert "this terminal has ended: ended by its owner" in status_text(page)
    assert page.get_by_role("link", name="new terminal").is_visible()


def test_disconnect_asked_for_does_not_reconnect(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    page.evaluate(RECORD_STATES)
    page.evaluate("window.termweb.disconnect()")
    wait_for_state(page, "closed")
    assert status_text(page) == "closed: disconnected"
    assert page.get_by_role("link", name="reconnect").is_visible()
    states = page.evaluate("window.seenStates")
    assert "reconnecting" not in states, states


def test_unknown_session_is_closed_without_reconnecting(gunicorn_server, page):
    page.add_init_script(f"({RECORD_STATES})()")
    page.goto(gunicorn_server.url + "/?session=no-such-session")
    wait_for_state(page, "closed")
    assert status_text(page).startswith("closed:")
    assert page.get_by_role("link", name="new terminal").is_visible()
    states = page.evaluate("window.seenStates")
    assert "closed" in states and "reconnecting" not in states, states


def test_search_box_opens_and_closes(gunicorn_server, page):
    open_terminal(page, gunicorn_server.url + "/")
    run(page, "echo needle-$((5*5))", "needle-25")
    page.keyboard.press("Control+Shift+F")
    search = page.locator("#search")
    search.locator("input").wait_for(state="visible")
    page.keyboard.type("needle-25")
    page.wait_for_function(r"() => /^\d+ of \d+$/.test(document.querySelector('#search output').value)")
    page.keyboard.press("Escape")
    search.wait_for(state="hidden")


def test_works_without_webgl(gunicorn_server, page):
    """Machines without WebGL2 get xterm's DOM renderer."""
    page.add_init_script("""(() => {
      const getContext = HTMLCanvasElement.prototype.getContext;
      HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {
        return kind === 'webgl2' ? null : getContext.call(this, kind, ...rest);
      };
    })()""")
    open_terminal(page, gunicorn_server.url + "/")
    assert page.evaluate("window.termweb.renderer") == "dom"
    run(page, "echo $((6*7))", "42")
