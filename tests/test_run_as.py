"""TERMWEB_RUN_AS=user: each user's shells run as their own OS account, so
they cannot reach the tmux server, other users' terminals or termweb's files.

The tests add throw-away OS accounts (useradd) and remove them afterwards."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from .helpers import TermClient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="adding OS accounts needs root")


@pytest.fixture
def os_account():
    """``os_account()`` adds an OS account with a home and bash; all are removed afterwards."""
    names = []

    def add() -> str:
        name = f"tw{uuid.uuid4().hex[:10]}"
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True,
                       capture_output=True)
        names.append(name)
        return name

    yield add
    for name in names:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def test_shells_run_as_their_users_own_accounts(gunicorn_factory, os_account):
    server = gunicorn_factory(auth="on", run_as="user")
    alice, bob = os_account(), os_account()
    for name in (alice, bob):
        server.add_user(name, "some-pass-1234")
    as_alice = server.session(alice, "some-pass-1234")
    as_bob = server.session(bob, "some-pass-1234")
    theirs = TermClient(server.url, headers=as_bob.cookie_header())
    theirs.run("export SECRET=bob-$((6*7)); echo $SECRET", "bob-42")

    # alice's variables reach her shell, not runuser (which runs as root).
    status, created = as_alice.api("POST", "/api/sessions", {"environment": {"GREETING": "hi;",
                                                                            "LD_PRELOAD": ""}})
    assert status == 201
    sid = created["session"]["sessionId"]
    assert created["session"]["workingDirectory"] == f"/home/{alice}"
    mine = TermClient(server.url, headers=as_alice.cookie_header(), session=sid)
    mine.run('echo "who-$(id -un)-$HOME-$PWD-$GREETING"', f"who-{alice}-/home/{alice}-/home/{alice}-hi;")
    runuser = pane_pid(server, sid)  # root's process, which starts her shell
    shell = subprocess.run(["ps", "-o", "pid=", "--ppid", runuser], capture_output=True,
                           text=True).stdout.split()[0]
    assert environ(runuser).isdisjoint({"GREETING", "LD_PRELOAD"})
    assert {"GREETING", "LD_PRELOAD"} <= environ(shell)

    # Nothing of root's or bob's is within reach of her shell.
    socket_path = server.tmux.socket_path
    instance = server.env["TERMWEB_INSTANCE_PATH"]
    mine.run(f"tmux -S {socket_path} ls >/dev/null 2>&1; echo tmux-$?", "tmux-1")
    mine.run(f"cat {instance}/accounts.json >/dev/null 2>&1; echo accounts-$?", "accounts-1")
    mine.run(f"kill -0 {pane_pid(server, theirs.session_id)} 2>/dev/null; echo signal-$?", "signal-1")
    theirs.run("echo $SECRET-still", "bob-42-still")
    mine.close()
    theirs.close()


def pane_pid(server, session_id: str) -> str:
    return server.tmux.run("display", "-p", "-t", f"={session_id}:", "#{pane_pid}").strip()


def environ(pid: str) -> set[str]:
    """The names in a process's environment."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        return {entry.split(b"=", 1)[0].decode() for entry in f.read().split(b"\0") if entry}


def test_a_user_without_an_os_account_gets_no_shell(gunicorn_factory):
    server = gunicorn_factory(auth="on", run_as="user")
    name = f"nobody{uuid.uuid4().hex[:8]}"
    server.add_user(name, "some-pass-1234")
    client = server.session(name, "some-pass-1234")
    status, body = client.api("POST", "/api/sessions", {})
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")
    assert f"no OS account named {name!r}" in body["error"]["message"]
    assert client.api("GET", "/api/sessions") == (200, {"sessions": []})  # nothing left behind
    assert server.tmux.list_sessions() == []


def test_run_as_user_needs_root():
    done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           sys.executable, "-c", "from termweb.config import Settings; Settings.from_env()"],
                          env={**os.environ, "TERMWEB_RUN_AS": "user", "TERMWEB_SHELL": "/bin/sh"},
                          capture_output=True, text=True, cwd="/")
    assert done.returncode != 0 and "only root can do" in done.stderr
