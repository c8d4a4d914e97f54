"""One tmux server, driven through one command runner bound to its socket.

The server is started with a clean environment (PITFALLS #12) and
termweb/tmux.conf; each session gets only the variables passed to it.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

CONF_PATH = Path(__file__).with_name("tmux.conf")
COMMAND_TIMEOUT = 10.0
# Attach clients speak to xterm.js.
CLIENT_TERM = "xterm-256color"


class TmuxError(RuntimeError):
    """A tmux command failed; the message is tmux's own."""

    @property
    def server_gone(self) -> bool:
        """The command failed because no server answers on the socket."""
        text = str(self).lower()
        return any(part in text for part in ("no server running", "error connecting",
                                             "server exited", "no such file"))


def clean_environment(shell: str) -> dict[str, str]:
    """The only variables a tmux server (and so every shell) inherits."""
    home = os.path.expanduser("~")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        "HOME": home,
        "SHELL": shell,
        "LANG": "C.UTF-8",
        "TERM": CLIENT_TERM,
    }
    for name in ("USER", "LOGNAME", "TMUX_TMPDIR"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


class TmuxServer:
    """A tmux server named by ``socket``: a ``-L`` name, or a ``-S`` path if it has a slash."""

    def __init__(self, socket: str, shell: str, history_limit: int = 50000):
        self.socket = socket
        self.shell = shell
        self.history_limit = history_limit
        self.env = clean_environment(shell)
        # -f only matters to a command that starts the server, so every
        # command carries it: a server started again by new-session after a
        # crash still gets termweb's options.
        self.base = ["tmux", "-S" if "/" in socket else "-L", socket, "-f", str(CONF_PATH)]

    def run(self, *args: str) -> str:
        try:
            done = subprocess.run(self.base + list(args), env=self.env, capture_output=True,
                                  text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TmuxError(f"tmux {args[0]} did not answer within {COMMAND_TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise TmuxError(f"cannot run tmux: {exc}") from None
        if done.returncode != 0:
            raise TmuxError(done.stderr.strip() or f"tmux {args[0]} exited with {done.returncode}")
        return done.stdout

    def start(self) -> None:
        """Start the server if needed and (re)apply termweb's options."""
        self.run("start-server", ";", "source-file", str(CONF_PATH),
                 ";", "set", "-g", "default-shell", self.shell,
                 ";", "set", "-g", "history-limit", str(self.history_limit))

    def new_session(self, name: str, cols: int, rows: int, cwd: str | None = None,
                    environment: dict[str, str] | None = None) -> None:
        args = ["new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows),
                "-c", cwd or self.env["HOME"]]
        for key, value in (environment or {}).items():
            args += ["-e", f"{key}={value}"]
        try:
            self.run(*args)
        except TmuxError as exc:
            # The server may have died or exited between our calls (PITFALLS #11):
            # start it again and retry once.
            if not exc.server_gone:
                raise
            self.start()
            self.run(*args)

    def has_session(self, name: str) -> bool:
        try:
            self.run("has-session", "-t", "=" + name)
        except TmuxError:
            return False
        return True

    def list_sessions(self) -> list[str]:
        try:
            return self.run("list-sessions", "-F", "#{session_name}").split()
        except TmuxError as exc:
            if exc.server_gone:
                return []
            raise

    def running(self) -> bool:
        try:
            self.run("list-sessions")
        except TmuxError as exc:
            return not exc.server_gone
        return True

    def kill_session(self, name: str) -> None:
        self.run("kill-session", "-t", "=" + name)

    def clear(self, name: str) -> None:
        """Clear the screen and the history, then let the shell redraw its prompt.

        The screen is reset first: with tmux's scroll-on-clear, the shell's own
        clear would otherwise push the old screen back into the history.
        """
        target = f"={name}:"
        self.run("send-keys", "-R", "-t", target, ";", "clear-history", "-t", target,
                 ";", "send-keys", "-t", target, "C-l")

    @property
    def socket_path(self) -> str:
        if "/" in self.socket:
            return self.socket
        tmpdir = self.env.get("TMUX_TMPDIR") or "/tmp"
        return os.path.join(tmpdir, f"tmux-{os.getuid()}", self.socket)

    def kill_server(self) -> None:
        """Stop the server and every session in it, and remove its socket file."""
        try:
            self.run("kill-server")
        except TmuxError:
            pass
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    def attach_command(self, name: str, readonly: bool = False) -> list[str]:
        return self.base + ["attach-session"] + (["-r"] if readonly else []) + ["-t", "=" + name]
