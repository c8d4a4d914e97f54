"""Real parts for every test: a throw-away tmux server, a gunicorn subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.server import RedisServer
from termweb.pool import existing_servers
from termweb.tmux import TmuxServer

from .helpers import HttpSession, TermClient, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
TEST_SHELL = "/bin/bash"


@pytest.fixture
def tmux(tmp_path) -> TmuxServer:
    """A tmux server on a socket of its own, killed after the test; its shells
    get a throw-away HOME (their rc files and history stay out of root's)."""
    server = TmuxServer(f"termweb-test-{uuid.uuid4().hex[:12]}", TEST_SHELL)
    server.env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    server.start()
    yield server
    server.kill_server()


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    """One redis-server of the test session's own, on a free port without
    persistence (never the machine's); tests keep apart by key prefix."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis() -> RedisServer:
    """A redis-server for one test, which may stop and restart it (same port)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


@dataclass
class GunicornServer:
    url: str
    port: int
    process: subprocess.Popen
    tmux: TmuxServer
    log_path: Path
    env: dict[str, str]

    def wait_started(self, timeout: float = 20) -> None:
        wait_until(lambda: answers(self.url + "/healthz") or self.process.poll() is not None,
                   timeout=timeout, message="gunicorn did not come up")
        assert self.process.poll() is None, f"gunicorn exited:\n{self.log}"

    def stop(self) -> None:
        """Stop gunicorn and every tmux server of its pool."""
        stop_process(self.process)
        for backend in self.backends():
            backend.kill_server()

    def backends(self) -> list[TmuxServer]:
        """The pool's tmux servers that exist: the first, and <socket>-1… after it."""
        return [self.tmux, *(tmux for _, tmux in existing_servers(self.tmux.socket, TEST_SHELL, 1))]

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """Run `termweb …` against this server's store."""
        return subprocess.run([str(Path(sys.executable).with_name("termweb")), *args], input=stdin,
                              env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=30)

    def add_user(self, name: str, password: str, role: str = "user") -> None:
        done = self.cli("user", "add", name, "--password-stdin",
                        *(["--admin"] if role == "admin" else []), stdin=password + "\n")
        assert done.returncode == 0, done.stderr

    def token(self, user: str, *args: str) -> str:
        """A new API token for ``user`` (``args``: e.g. --expires 2s)."""
        done = self.cli("token", "create", user, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def session(self, user: str | None = None, password: str | None = None) -> HttpSession:
        """A cookie-keeping HTTP client, logged in as ``user`` when given."""
        client = HttpSession(self.url)
        if user is not None:
            status = client.login(user, password or PASSWORDS[user])
            assert status == 302, f"login as {user} answered {status}"
        return client

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid)

    def worker_of(self, session_id: str) -> int | None:
        """The worker serving a connection to ``session_id``: the parent of
        its `tmux attach-session -t =<id>` client."""
        out = subprocess.run(["ps", "-ww", "-eo", "ppid=,args="], capture_output=True, text=True).stdout
        for line in out.splitlines():
            ppid, _, args = line.strip().partition(" ")
            if "attach-session" in args and args.endswith("=" + session_id) and self.tmux.socket in args:
                return int(ppid)
        return None

    def api(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        """Call the REST API; return (status, JSON body or None)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return status, (json.loads(raw) if raw else None)


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in out.split()]


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_gunicorn(tmp_path: Path, env: dict[str, str] | None = None,
                   args: tuple[str, ...] = ()) -> subprocess.Popen:
    log_path = tmp_path / "gunicorn.log"
    return subprocess.Popen(
        # The console script, as run.sh uses: USR2 re-executes the command
        # line, and `python -m gunicorn` would come back as a script whose
        # directory shadows the standard library's `http`.
        [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py", *args, "wsgi:app"],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
        stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen) -> None:
    """Stop a gunicorn master we started: SIGQUIT is its quick shutdown."""
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def launch(workdir: Path, **settings: str) -> GunicornServer:
    """Start termweb under gunicorn in ``workdir`` with extra TERMWEB_*
    settings; `GunicornServer.wait_started` waits for it, `stop` ends it."""
    port = free_port()
    socket_name = settings.pop("tmux_socket", None) or f"termweb-test-{uuid.uuid4().hex[:12]}"
    tmux = TmuxServer(socket_name, TEST_SHELL)
    home = workdir / "home"  # shells start fast and keep their history here
    home.mkdir(parents=True)
    # Login is off unless a test turns it on (auth="on"): most tests are
    # about terminals, and the auth tests say so.
    # No warm sessions either unless asked for: tests count tmux sessions.
    env = {"TERMWEB_PORT": str(port), "TERMWEB_TMUX_SOCKET": tmux.socket,
           "TERMWEB_SHELL": TEST_SHELL, "HOME": str(home), "TERMWEB_AUTH": "off",
           "TERMWEB_WARM_SESSIONS": "0",
           "TERMWEB_INSTANCE_PATH": str(workdir / "instance"),
           **{f"TERMWEB_{k.upper()}": str(v) for k, v in settings.items()}}
    process = start_gunicorn(workdir, env)
    return GunicornServer(f"http://127.0.0.1:{port}", port, process, tmux, workdir / "gunicorn.log", env)


@pytest.fixture
def gunicorn_factory(tmp_path):
    """Start termweb under gunicorn with extra TERMWEB_* settings; all are stopped after the test."""
    started: list[GunicornServer] = []

    def start(**settings: str) -> GunicornServer:
        server = launch(tmp_path / f"gunicorn-{len(started)}", **settings)
        started.append(server)
        server.wait_started()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def gunicorn_server(gunicorn_factory) -> GunicornServer:
    """termweb with default settings under a real gunicorn gevent worker."""
    return gunicorn_factory()


PASSWORDS = {"alice": "alice-pass-1234", "bob": "bob-pass-1234", "admin": "admin-pass-1234"}


@pytest.fixture
def auth_server(gunicorn_factory) -> GunicornServer:
    """termweb with login on and three users: alice and bob (users), admin (an admin)."""
    server = gunicorn_factory(auth="on")
    for name, password in PASSWORDS.items():
        server.add_user(name, password, "admin" if name == "admin" else "user")
    return server


@pytest.fixture
def term(gunicorn_server):
    """Connect terminal clients (``term(**query)``); all are closed after the test."""
    clients = []

    def connect(**params) -> TermClient:
        client = TermClient(gunicorn_server.url, **params)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


# -- headless Chromium (Debian's, through Playwright) ------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert (ROOT / "static/vendor/xterm/xterm.mjs").exists(), \
        "static/vendor/ is missing: run `npm ci && scripts/vendor-assets.sh`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def viewport() -> dict:
    """The page's size; a test module may override this fixture."""
    return {"width": 900, "height": 600}


@pytest.fixture
def page(browser, viewport):
    """A fresh page; fails the test if the page threw an uncaught error."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
