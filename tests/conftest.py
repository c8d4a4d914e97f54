"""Real parts for every test: a throw-away tmux server, a gunicorn subprocess."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from termweb.tmux import TmuxServer

from .helpers import TermClient, free_port, wait_until

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


@dataclass
class RedisServer:
    """A redis-server of the test session's own, on a free port, without persistence."""
    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("a")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.answers, timeout=10, message="redis-server did not come up")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def client(self):
        import redis
        return redis.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    """One redis-server for the whole test session (tests keep apart by key prefix)."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path) -> RedisServer:
    """A redis-server for one test, which may stop and restart it."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(free_port(), workdir)
    server.start()
    yield server
    server.stop()


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


def _answers(url: str) -> bool:
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


@pytest.fixture
def gunicorn_factory(tmp_path):
    """Start termweb under gunicorn with extra TERMWEB_* settings; all are stopped after the test."""
    started: list[GunicornServer] = []

    def start(**settings: str) -> GunicornServer:
        port = free_port()
        socket_name = settings.pop("tmux_socket", None) or f"termweb-test-{uuid.uuid4().hex[:12]}"
        tmux = TmuxServer(socket_name, TEST_SHELL)
        workdir = tmp_path / f"gunicorn-{len(started)}"
        home = workdir / "home"  # shells start fast and keep their history here
        home.mkdir(parents=True)
        env = {"TERMWEB_PORT": str(port), "TERMWEB_TMUX_SOCKET": tmux.socket,
               "TERMWEB_SHELL": TEST_SHELL, "HOME": str(home),
               **{f"TERMWEB_{k.upper()}": str(v) for k, v in settings.items()}}
        process = start_gunicorn(workdir, env)
        server = GunicornServer(f"http://127.0.0.1:{port}", port, process, tmux,
                                workdir / "gunicorn.log")
        started.append(server)
        wait_until(lambda: _answers(server.url + "/healthz") or process.poll() is not None,
                   timeout=20, message="gunicorn did not come up")
        assert process.poll() is None, f"gunicorn exited:\n{server.log}"
        return server

    yield start
    for server in started:
        stop_process(server.process)
        server.tmux.kill_server()


@pytest.fixture
def gunicorn_server(gunicorn_factory) -> GunicornServer:
    """termweb with default settings under a real gunicorn gevent worker."""
    return gunicorn_factory()


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
