"""One tmux server, driven through one command runner bound to its socket.

The server is started with a clean environment (PITFALLS #12) and
termweb/tmux.conf; each session gets only the variables passed to it.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import spawn

CONF_PATH = Path(__file__).with_name("tmux.conf")
COMMAND_TIMEOUT = 10.0
# Attach clients speak to xterm.js.
CLIENT_TERM = "xterm-256color"
# A session option naming the session's owner, so that tmux alone can tell
# whose a session is when the store lost its record (tmux is the ground
# truth: see keeper.py).
OWNER_OPTION = "@termweb_user"
_INFO_FORMAT = "\t".join([
    "#{session_name}", "#{session_created}", "#{session_activity}", "#{window_activity}",
    "#{session_attached}", "#{" + OWNER_OPTION + "}", "#{pane_current_path}"])


@dataclass(frozen=True)
class SessionInfo:
    """What tmux knows of one session."""
    name: str
    created: float
    activity: float      # the later of input to the session and output in its window
    attached: int        # clients attached now
    owner: str           # the OWNER_OPTION value, "" if unset
    working_directory: str


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


def literal(arg: str) -> str:
    """``arg`` as tmux reads it back: an argument ending in ``;`` would end
    the tmux command there (and what follows would run as the next one)."""
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


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
        # tmux is looked up once: commands run often, some on reattach.
        executable = shutil.which("tmux", path=self.env["PATH"]) or "tmux"
        self.base = [executable, "-S" if "/" in socket else "-L", socket, "-f", str(CONF_PATH)]

    def run(self, *args: str, binary: bool = False, timeout: float = COMMAND_TIMEOUT) -> str | bytes:
        try:
            code, out, err = spawn.run(self.base + list(args), self.env, timeout)
        except spawn.CommandTimeout:
            raise TmuxError(f"tmux {args[0]} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise TmuxError(f"cannot run tmux: {exc}") from None
        if code != 0:
            message = err.decode(errors="replace").strip()
            raise TmuxError(message or f"tmux {args[0]} exited with {code}")
        return out if binary else out.decode(errors="replace")

    def start(self) -> None:
        """Start the server if needed and (re)apply termweb's options."""
        self.run("start-server", ";", "source-file", str(CONF_PATH),
                 ";", "set", "-g", "default-shell", self.shell,
                 ";", "set", "-g", "history-limit", str(self.history_limit))

    def new_session(self, name: str, cols: int, rows: int, cwd: str | None = None,
                    environment: dict[str, str] | None = None, owner: str = "",
                    command: list[str] | None = None) -> None:
        """A detached session running ``command`` (run directly, not by a
        shell), or the default shell."""
        args = ["new-session", "-d", "-s", name, "-x", str(cols), "-y", str(rows),
                "-c", literal(cwd or self.env["HOME"])]
        for key, value in (environment or {}).items():
            args += ["-e", literal(f"{key}={value}")]
        args += [literal(arg) for arg in command or []]
        if owner:
            args += [";", "set-option", "-t", f"={name}:", OWNER_OPTION, owner]
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

    def session_info(self) -> list[SessionInfo]:
        """Every session with its activity, clients, owner and directory."""
        try:
            out = self.run("list-sessions", "-F", _INFO_FORMAT)
        except TmuxError as exc:
            if exc.server_gone:
                return []
            raise
        infos = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != 7:
                continue
            name, created, activity, window_activity, attached, owner, cwd = parts
            infos.append(SessionInfo(name, float(created or 0),
                                     max(float(activity or 0), float(window_activity or 0)),
                                     int(attached or 0), owner, cwd))
        return infos

    def capture_history(self, name: str, lines: int) -> bytes:
        """Up to ``lines`` lines of the pane's history (not its visible screen),
        with colours, wrapped lines joined, each ending in a newline (tmux
        prints one empty line when there is no history)."""
        return self.run("capture-pane", "-p", "-e", "-J", "-S", f"-{lines}", "-E", "-1",
                        "-t", f"={name}:", binary=True)

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

    @property
    def instance_lock_path(self) -> str:
        """The lock an in-memory termweb instance holds on this server (gunicorn.conf.py)."""
        return self.socket_path + ".termweb-lock"

    def kill_server(self) -> None:
        """Stop the server and every session in it; remove its socket and lock files."""
        try:
            self.run("kill-server")
        except TmuxError:
            pass
        for path in (self.socket_path, self.instance_lock_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def attach_command(self, name: str, read_only: bool = False) -> list[str]:
        """A read-only client's keys are ignored and its size never changes the window's."""
        flags = ["-f", "read-only,ignore-size"] if read_only else []
        return self.base + ["attach-session"] + flags + ["-t", "=" + name]
