"""Real parts for every test: a throw-away tmux server, a gunicorn subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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
def tmux() -> TmuxServer:
    """A tmux server on a socket of its own, killed after the test."""
    server = TmuxServer(f"termweb-test-{uuid.uuid4().hex[:12]}", TEST_SHELL)
    server.start()
    yield server
    server.kill_server()


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
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
                             capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


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
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args, "wsgi:app"],
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
        tmux = TmuxServer(f"termweb-test-{uuid.uuid4().hex[:12]}", TEST_SHELL)
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
