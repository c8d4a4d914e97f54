"""Start a real termweb under gunicorn on a free loopback port; stop it by pid."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from termweb.tmux import TmuxServer

from . import procs

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class BenchError(RuntimeError):
    """The benchmark could not measure what it meant to."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class TermwebServer:
    """One gunicorn + one tmux server on a socket of its own. Use as a context manager."""

    def __init__(self, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        self.tmux_socket = f"termweb-bench-{uuid.uuid4().hex[:12]}"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="termweb-bench-", suffix=".log", delete=False)

    # -- life cycle
    def start(self) -> "TermwebServer":
        env = {**os.environ, "TERMWEB_PORT": str(self.port), "TERMWEB_TMUX_SOCKET": self.tmux_socket,
               "TERMWEB_SHELL": "/bin/bash", **self.extra_env}
        self.process = subprocess.Popen(
            [_python(), "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            # Out of the terminal's process group: a Ctrl-C reaches only the
            # benchmark, which then stops the server itself (below).
            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._healthy():
            if self.process.poll() is not None:
                raise BenchError(f"termweb exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"termweb did not answer /healthz within {START_TIMEOUT:.0f} s:\n"
                                 f"{self.log_tail()}")
            time.sleep(0.05)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM gunicorn (SIGKILL after a timeout), end any straggler by pid, kill tmux."""
        try:
            if self.process is not None and self.process.poll() is None:
                children = procs.descendants(self.process.pid)
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
                for pid in children:  # workers orphaned by a killed master
                    if procs.alive(pid):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
        finally:
            TmuxServer(self.tmux_socket, "/bin/bash").kill_server()  # removes the socket too
            self._log.close()

    def __enter__(self) -> "TermwebServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is None:
            os.unlink(self._log.name)
        else:
            print(f"termweb log kept at {self._log.name}", file=sys.stderr)

    # -- what the measurements need
    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])

    def tmux_server_pid(self) -> int | None:
        done = subprocess.run(["tmux", "-L", self.tmux_socket, "display", "-p", "#{pid}"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
        return int(done.stdout) if done.returncode == 0 and done.stdout.strip().isdigit() else None

    def process_groups(self) -> dict[str, list[int]]:
        """The server's processes by role: gunicorn, tmux attach clients, tmux server, shells."""
        tree = procs.descendants(self.process.pid) if self.process else []
        gunicorn = [self.process.pid] if self.process else []
        clients = []
        for pid in tree:  # tmux renames itself "tmux: client"
            (clients if procs.comm(pid).startswith("tmux") else gunicorn).append(pid)
        tmux_pid = self.tmux_server_pid()
        tmux_server = [tmux_pid] if tmux_pid else []
        shells = procs.descendants(tmux_pid) if tmux_pid else []
        return {"gunicorn": gunicorn, "attach_clients": clients, "tmux_server": tmux_server,
                "shells": [pid for pid in shells if pid not in set(gunicorn + clients)]}
