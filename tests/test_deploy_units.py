"""The systemd units in deploy/: their settings, and their command lines run for real.

systemd itself does not run here. What can be checked without it is:
the unit files parsed and the properties that keep terminals alive across a
restart of the web service asserted; `systemd-analyze verify` (works
offline) on them; and their command lines, parsed and expanded the way
systemd does, executed: the tmux unit's ExecStartPre/ExecStart/ExecStop on a
throw-away socket, then the web unit's ExecStart, ExecReload and stop signal
against it, as systemd would run them on `systemctl start/reload/restart`.
"""
from __future__ import annotations

import ast
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from termweb.config import Settings
from termweb.tmux import CLIENT_TERM, CONF_PATH, TmuxServer, clean_environment

from .conftest import ROOT, answers, child_pids, stop_process
from .helpers import free_port, wait_until

DEPLOY = ROOT / "deploy"
TMUX_TEMPLATE = DEPLOY / "termweb-tmux@.service"
WEB_UNIT = DEPLOY / "termweb.service"
RUN_AS_ROOT = DEPLOY / "run-as-root.conf"
# The install directory the units name (docs/systemd.md); the tests put
# this checkout in its place.
INSTALL_DIR = "/opt/termweb"
DEFAULT_SOCKET = Settings.__dataclass_fields__["tmux_socket"].default
DEFAULT_HISTORY = Settings.__dataclass_fields__["history_limit"].default
TEST_SHELL = "/bin/bash"


# -- a small reader of unit files ---------------------------------------------------

def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}; keys may repeat (Wants=, ExecStart=...),
    an empty value resets the list, as in systemd."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r}"
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


def instantiate(template: str, instance: str, install_dir: str = INSTALL_DIR) -> str:
    """The template's text for one instance: %i and %% expanded (the only
    specifiers the units may use: anything else fails here), and the install
    directory replaced."""
    def specifier(match):
        char = match.group(1)
        if char == "%":
            return "%"
        if char == "i":
            return instance
        raise AssertionError(f"unexpected specifier %{char} in a unit")
    return re.sub(r"%(.)", specifier, template).replace(INSTALL_DIR, install_dir)


def unit(path: Path, instance: str = "", install_dir: str = INSTALL_DIR):
    return parse_unit(instantiate(path.read_text(), instance, install_dir))


_WORD = re.compile(r"""(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|\\.|[^\s"'\\])+""")


def command_lines(value: str) -> list[tuple[str, list[str]]]:
    """An Exec*= value as systemd splits it: (prefix, words) per command; a bare
    ";" separates commands, "\\;" is a literal ";" argument."""
    commands, words = [], []
    for match in _WORD.finditer(value):
        raw = match.group(0)
        if raw == ";":
            commands.append(words)
            words = []
        elif raw == "\\;":
            words.append(";")
        else:
            words.append(shlex.split(raw)[0])
    commands.append(words)
    result = []
    for words in commands:
        assert words, f"empty command in {value!r}"
        prefix = re.match(r"[-@:+!]*", words[0]).group(0)
        result.append((prefix, [words[0][len(prefix):], *words[1:]]))
    return result


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    """systemd's variable expansion: ${NAME} inside a word, $NAME alone as a word
    (split on white space), $$ for a dollar sign; unset variables are empty."""
    out = []
    for word in words:
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            out += env.get(whole.group(1), "").split()
            continue
        word = re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                      lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), ""), word)
        out.append(word)
    return out


def one_command(section: dict[str, list[str]], key: str) -> tuple[str, list[str]]:
    assert len(section.get(key, [])) == 1, f"expected one {key}="
    commands = command_lines(section[key][0])
    assert len(commands) == 1, f"{key}= holds several commands"
    return commands[0]


def seconds(span: str) -> float:
    """A systemd time span: "20", "20s", "1min 30s", "200ms"."""
    units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "msec": 0.001, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(number) * units[suffix]
    return total


def graceful_timeout() -> float:
    """gunicorn.conf.py's graceful_timeout, read without running the file."""
    tree = ast.parse((ROOT / "gunicorn.conf.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "graceful_timeout"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("gunicorn.conf.py sets no graceful_timeout")


def systemd_environment(home: Path) -> dict[str, str]:
    """What systemd gives a service with User= (HOME, SHELL, USER, LOGNAME),
    plus what it adds on its own and a secret, none of which may reach tmux."""
    user = pwd.getpwuid(os.getuid()).pw_name
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home), "SHELL": TEST_SHELL, "USER": user, "LOGNAME": user,
            "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8", "INVOCATION_ID": uuid.uuid4().hex,
            "JOURNAL_STREAM": "8:12345", "TERMWEB_SECRET_KEY": "must-not-reach-a-shell"}


def run_command(section, key, env, check=True) -> subprocess.CompletedProcess:
    """Run an Exec*= command as systemd would (in /, no stdin); unless it has the
    "-" prefix or ``check`` is false, it must succeed."""
    prefix, words = one_command(section, key)
    done = subprocess.run(expand(words, env), env=env, cwd="/", capture_output=True,
                          text=True, timeout=15, stdin=subprocess.DEVNULL)
    if check and "-" not in prefix:
        assert done.returncode == 0, f"{key}= failed ({done.returncode}): {done.stderr}"
    return done


def server_pids(socket_name: str) -> list[int]:
    """Every tmux process (server or client) whose command line names the socket."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tmux") and socket_name.encode() in argv:
            pids.append(int(entry.name))
    return pids


def tmux_out(socket_name: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket_name, *args], capture_output=True, text=True,
                          timeout=10).stdout.strip()


@pytest.fixture
def socket_name():
    """A throw-away instance name (= tmux socket); its server is killed afterwards."""
    name = f"termweb-unit-{uuid.uuid4().hex[:10]}"
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, timeout=10)
    socket = TmuxServer(name, TEST_SHELL)
    for path in (socket.socket_path, socket.instance_lock_path):
        if os.path.exists(path):
            os.unlink(path)


# -- what the files say -------------------------------------------------------------

def test_the_tmux_unit_is_a_template_named_by_the_socket():
    tmux_unit = unit(TMUX_TEMPLATE, "x")
    assert tmux_unit["Install"]["DefaultInstance"] == [DEFAULT_SOCKET]
    web = unit(WEB_UNIT)["Unit"]
    wanted = f"termweb-tmux@{DEFAULT_SOCKET}.service"
    assert wanted in " ".join(web.get("Wants", [])).split()
    assert wanted in " ".join(web.get("After", [])).split()


def test_the_tmux_unit_starts_tmux_exactly_as_termweb_does():
    sock = "termweb-7"
    service = unit(TMUX_TEMPLATE, sock, str(ROOT))["Service"]
    prefix, words = one_command(service, "ExecStart")
    assert prefix == ""
    env = {"HOME": "/home/t", "SHELL": TEST_SHELL, "USER": "t", "LOGNAME": "t"}
    words = expand(words, env)
    # A clean environment: env -i, then exactly termweb's variables.
    assert words[:2] == ["/usr/bin/env", "-i"]
    assignments = {}
    rest = words[2:]
    while "=" in rest[0] and not rest[0].startswith("/"):
        name, _, value = rest.pop(0).partition("=")
        assignments[name] = value
    clean = clean_environment(TEST_SHELL)
    assert assignments.keys() == {"PATH", "HOME", "SHELL", "LANG", "TERM", "USER", "LOGNAME"}
    assert assignments.keys() <= clean.keys() | {"USER", "LOGNAME"}
    assert assignments["PATH"] == clean["PATH"]
    assert assignments["LANG"] == "C.UTF-8" and assignments["TERM"] == CLIENT_TERM
    assert assignments["HOME"] == "/home/t" and assignments["SHELL"] == TEST_SHELL
    assert not any("TERMWEB" in name for name in assignments)

    # The tmux command: the one TmuxServer.start() runs, word for word.
    class Recorder(TmuxServer):
        def run(self, *args, binary=False):
            self.recorded = list(args)
            return ""

    recorder = Recorder(sock, TEST_SHELL, DEFAULT_HISTORY)
    recorder.start()
    assert os.path.basename(rest[0]) == "tmux" and os.path.isabs(rest[0])
    assert rest[1:5] == ["-L", sock, "-f", str(CONF_PATH)] == recorder.base[1:]
    assert rest[5:] == recorder.recorded


def test_the_tmux_unit_outlives_the_web_unit_and_ends_terminals_only_on_its_own_stop():
    tmux_unit = unit(TMUX_TEMPLATE, DEFAULT_SOCKET)
    service = tmux_unit["Service"]
    assert service["Type"] == ["forking"]
    assert service["KillMode"] == ["control-group"]
    assert service["Restart"] == ["always"]
    assert service["OOMPolicy"] == ["continue"]
    assert service.get("User"), "User= must be set: it makes systemd set HOME, SHELL, USER, LOGNAME"
    # Stop ends the server by its socket before the cgroup is signalled.
    prefix, words = one_command(service, "ExecStop")
    assert prefix == "-" and words[1:] == ["-L", DEFAULT_SOCKET, "kill-server"]
    # Nothing ties it to the web unit, and no secrets file is read.
    for key in ("PartOf", "BindsTo", "Requires", "Requisite", "StopWhenUnneeded"):
        assert key not in tmux_unit["Unit"], key
    assert "EnvironmentFile" not in service
    # No sandboxing: it would reach every shell.
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "CapabilityBoundingSet", "SystemCallFilter", "RestrictSUIDSGID", "DynamicUser"):
        assert key not in service, key
    assert re.search(r"STOPPING OR RESTARTING THIS UNIT ENDS EVERY TERMINAL",
                     TMUX_TEMPLATE.read_text())


def test_the_web_unit_restarts_alone_and_stops_gracefully():
    web = unit(WEB_UNIT)
    service = web["Service"]
    tmux_name = f"termweb-tmux@{DEFAULT_SOCKET}.service"
    for key in ("BindsTo", "PartOf", "Requires", "Requisite", "PropagatesReloadTo",
                "ReloadPropagatedFrom", "Conflicts"):
        assert not any(tmux_name in value or "termweb-tmux@" in value
                       for value in web["Unit"].get(key, [])), key
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["KillMode"] == ["mixed"]
    assert seconds(service["TimeoutStopSec"][0]) > graceful_timeout()
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["-/etc/termweb/env"]
    assert service["WorkingDirectory"] == [INSTALL_DIR]
    _, words = one_command(service, "ExecStart")
    assert words == [f"{INSTALL_DIR}/.venv/bin/gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    # The tmux socket lives in the real /tmp.
    assert service.get("PrivateTmp", ["no"]) == ["no"]
    assert service["User"] == unit(TMUX_TEMPLATE, DEFAULT_SOCKET)["Service"]["User"]


def test_the_run_as_root_drop_in_sets_root_for_both():
    drop_in = parse_unit(RUN_AS_ROOT.read_text())
    assert drop_in == {"Service": {"User": ["root"], "Group": ["root"]}}


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path, socket_name):
    """`systemd-analyze verify` needs no running systemd: it loads the units,
    their drop-ins and their dependencies, and checks every Exec*= binary."""
    for name in (TMUX_TEMPLATE.name, WEB_UNIT.name):
        (tmp_path / name).write_text((DEPLOY / name).read_text().replace(INSTALL_DIR, str(ROOT)))
    instance = tmp_path / f"termweb-tmux@{socket_name}.service"
    targets = [str(tmp_path / WEB_UNIT.name), str(instance)]

    def verify():
        done = subprocess.run(["systemd-analyze", "verify", *targets], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
        ours = [line for line in (done.stdout + done.stderr).splitlines()
                if "termweb" in line or str(tmp_path) in line]
        assert done.returncode == 0 and not ours, done.stdout + done.stderr

    verify()
    for name in (WEB_UNIT.name, TMUX_TEMPLATE.name):
        (tmp_path / f"{name}.d").mkdir()
        shutil.copy(RUN_AS_ROOT, tmp_path / f"{name}.d" / RUN_AS_ROOT.name)
    verify()


# -- the command lines, run ---------------------------------------------------------

def test_the_tmux_units_commands_start_and_stop_termweb_tmux(tmp_path, socket_name):
    service = unit(TMUX_TEMPLATE, socket_name, str(ROOT))["Service"]
    env = systemd_environment(tmp_path)

    # ExecStartPre lets a start through on a free socket...
    run_command(service, "ExecStartPre", env)
    # ...ExecStart returns once the server runs (Type=forking)...
    run_command(service, "ExecStart", env)
    pids = server_pids(socket_name)
    assert len(pids) == 1, pids
    assert tmux_out(socket_name, "display", "-p", "#{pid}") == str(pids[0])
    assert int(Path(f"/proc/{pids[0]}/stat").read_text().rsplit(")", 1)[1].split()[1]) != os.getpid()

    # ...with termweb's options,
    assert tmux_out(socket_name, "show", "-g", "prefix") == "prefix None"
    assert tmux_out(socket_name, "show", "-g", "status") == "status off"
    assert tmux_out(socket_name, "show", "-s", "exit-empty") == "exit-empty off"
    assert tmux_out(socket_name, "show", "-g", "history-limit") == f"history-limit {DEFAULT_HISTORY}"
    assert tmux_out(socket_name, "show", "-g", "default-shell") == f"default-shell {TEST_SHELL}"
    # and its clean environment: nothing systemd adds, no secret.
    environment = dict(line.split("=", 1)
                       for line in tmux_out(socket_name, "show-environment", "-g").splitlines())
    assert environment.keys() - {"PWD"} == {"PATH", "HOME", "SHELL", "LANG", "TERM", "USER", "LOGNAME"}
    assert environment["LANG"] == "C.UTF-8" and environment["HOME"] == str(tmp_path)
    assert "must-not-reach-a-shell" not in "\n".join(environment.values())
    shell = TmuxServer(socket_name, TEST_SHELL)
    shell.env["HOME"] = str(tmp_path)
    shell.new_session("probe", 80, 24, command=["sh", "-c", "env > env.txt; sleep 60"])
    wait_until(lambda: (tmp_path / "env.txt").exists() and (tmp_path / "env.txt").read_text())
    shell_env = (tmp_path / "env.txt").read_text()
    for leak in ("INVOCATION_ID", "JOURNAL_STREAM", "TERMWEB_SECRET_KEY", "LC_ALL", "de_DE"):
        assert leak not in shell_env, leak

    # A second start beside a running server is refused, saying why.
    refused = run_command(service, "ExecStartPre", env, check=False)
    assert refused.returncode != 0 and "already runs on socket" in refused.stderr

    # ExecStop ends the server, and every terminal with it.
    run_command(service, "ExecStop", env)
    wait_until(lambda: not server_pids(socket_name), message="the tmux server outlived ExecStop")
    run_command(service, "ExecStartPre", env)


def _api(url: str, method: str = "GET", body: bytes | None = None) -> dict:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_restarting_the_web_unit_keeps_the_tmux_units_server_and_shells(tmp_path, socket_name):
    """systemctl start tmux, start web, reload web, restart web: one tmux
    server throughout, and the terminal's shell is the same process."""
    tmux_service = unit(TMUX_TEMPLATE, socket_name, str(ROOT))["Service"]
    web_service = unit(WEB_UNIT, "", str(ROOT))["Service"]
    home = tmp_path / "home"
    home.mkdir()
    run_command(tmux_service, "ExecStart", systemd_environment(home))
    tmux_pid = server_pids(socket_name)
    assert len(tmux_pid) == 1

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # What /etc/termweb/env would hold, on top of what systemd gives the service.
    web_env = {**systemd_environment(home), "TERMWEB_PORT": str(port),
               "TERMWEB_TMUX_SOCKET": socket_name, "TERMWEB_SHELL": TEST_SHELL,
               "TERMWEB_AUTH": "off", "TERMWEB_INSTANCE_PATH": str(tmp_path / "instance")}
    _, start_words = one_command(web_service, "ExecStart")
    cwd = web_service["WorkingDirectory"][0]

    def start_web() -> subprocess.Popen:
        log = (tmp_path / "gunicorn.log").open("a")
        process = subprocess.Popen(expand(start_words, web_env), cwd=cwd, env=web_env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: answers(url + "/healthz") or process.poll() is not None, timeout=30)
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
        return process

    def stop_web(process: subprocess.Popen) -> None:
        """systemd's stop with KillMode=mixed: KillSignal= to the main process,
        SIGKILL after TimeoutStopSec."""
        process.send_signal(getattr(signal, web_service["KillSignal"][0]))
        try:
            process.wait(seconds(web_service["TimeoutStopSec"][0]))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise AssertionError("gunicorn did not stop within TimeoutStopSec")

    def pane_pid(session_id: str) -> str:
        return tmux_out(socket_name, "display", "-p", "-t", f"={session_id}:", "#{pane_pid}")

    web = start_web()
    try:
        assert server_pids(socket_name) == tmux_pid, "termweb started a tmux server of its own"
        session_id = _api(url + "/api/sessions", "POST", b"{}")["session"]["sessionId"]
        shell_pid = pane_pid(session_id)
        assert shell_pid

        # systemctl reload termweb: ExecReload with $MAINPID.
        workers = set(child_pids(web.pid))
        _, reload_words = one_command(web_service, "ExecReload")
        subprocess.run(expand(reload_words, {"MAINPID": str(web.pid)}), check=True, timeout=10)
        wait_until(lambda: (set(child_pids(web.pid)) - workers) and answers(url + "/healthz"),
                   timeout=30, message="no new worker after ExecReload")
        assert server_pids(socket_name) == tmux_pid

        # systemctl restart termweb: stop, then start.
        stop_web(web)
        assert server_pids(socket_name) == tmux_pid
        assert pane_pid(session_id) == shell_pid
        web = start_web()
        assert server_pids(socket_name) == tmux_pid, "a second tmux server was started"
        assert pane_pid(session_id) == shell_pid
        listed = {s["sessionId"] for s in _api(url + "/api/sessions")["sessions"]}
        assert session_id in listed
    finally:
        stop_process(web)
