"""A terminal over the WebSocket: real gunicorn, real tmux, real bash."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from .helpers import TermClient, wait_for_foreground, wait_until

ROOT = Path(__file__).resolve().parent.parent
# The first command waits for bash to start, slow on a loaded machine.
FIRST_COMMAND_TIMEOUT = 30


def test_pty_spawn_under_gevent_monkey_patching_does_not_hang(tmp_path):
    """PITFALLS #1: ptyprocess.spawn deadlocks under patch_all without termweb's shim."""
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        from termweb.bridge import PtyBridge
        bridge = PtyBridge(["/bin/echo", "spawned-ok"], {"PATH": "/bin:/usr/bin"}, 80, 24)
        out = b""
        while chunk := bridge.read():
            out += chunk
        bridge.close()
        print(out.decode().strip())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "spawned-ok", done.stderr


def test_typed_marker_comes_back(term):
    t = term()
    assert t.ready["payload"]["action"] == "ready" and t.ready["payload"]["created"] is True
    t.run("echo marker-$((6*7))", "marker-42", FIRST_COMMAND_TIMEOUT)


def test_two_terminals_are_separate_shells(term):
    a, b = term(), term()
    assert a.session_id != b.session_id
    a.run("export ONLY_IN_A=yes; echo set-$((1+1))", "set-2", FIRST_COMMAND_TIMEOUT)
    b.run('echo "b-sees-[${ONLY_IN_A:-nothing}]"', "b-sees-[nothing]", FIRST_COMMAND_TIMEOUT)
    a.run('echo "a-sees-[${ONLY_IN_A}]"', "a-sees-[yes]")


STTY_SIZE = "stty size | tr ' ' x | sed s/^/SZ/"  # prints SZ<rows>x<cols>


def test_resize_changes_stty_size(term):
    t = term(cols=80, rows=24)
    t.run(STTY_SIZE, "SZ24x80", FIRST_COMMAND_TIMEOUT)
    t.control("resize", cols=132, rows=43)
    t.run(STTY_SIZE, "SZ43x132")


def test_ctrl_c_stops_sleep(term, gunicorn_server):
    t = term()
    t.run("echo go-$((2+3)); sleep 100; echo after-$((3+4))", "go-5", FIRST_COMMAND_TIMEOUT)
    wait_for_foreground(gunicorn_server.tmux, t.session_id, "sleep")
    t.type(b"\x03")
    t.run("echo alive-$((4+5))", "alive-9")
    assert b"after-7" not in t.output  # the whole line was interrupted


def test_interrupt_control_stops_sleep(term, gunicorn_server):
    t = term()
    t.run("echo go-$((2+3)); sleep 100; echo after-$((3+4))", "go-5", FIRST_COMMAND_TIMEOUT)
    wait_for_foreground(gunicorn_server.tmux, t.session_id, "sleep")
    t.control("interrupt")
    t.run("echo alive-$((4+5))", "alive-9")
    assert b"after-7" not in t.output


def test_closing_the_socket_leaves_the_session_running(term, gunicorn_server):
    t = term()
    t.run("export KEEP=kept-$((5*5)); echo ok-$((1+2))", "ok-3", FIRST_COMMAND_TIMEOUT)
    t.close()
    tmux = gunicorn_server.tmux
    wait_until(lambda: tmux.run("list-clients", "-t", "=" + t.session_id).strip() == "",
               message="attach client still present after the socket closed")
    assert tmux.has_session(t.session_id)
    again = term(session=t.session_id)
    assert again.ready["payload"]["created"] is False
    again.run('echo "still-$KEEP"', "still-kept-25")


def test_disconnect_control_closes_normally_and_keeps_the_session(term, gunicorn_server):
    t = term()
    t.control("disconnect")
    closed = t.wait_closed()
    assert closed.code == 1000
    assert gunicorn_server.tmux.has_session(t.session_id)


def test_shell_exit_ends_the_session_and_says_so(term, gunicorn_server):
    t = term()
    t.run("echo bye-$((2*4))", "bye-8", FIRST_COMMAND_TIMEOUT)
    t.type("exit\r")
    exit_message = t.next_message("control")
    assert exit_message["payload"]["action"] == "exit"
    assert t.wait_closed().code == 1000
    assert not gunicorn_server.tmux.has_session(t.session_id)


def test_bulk_output_does_not_stall_other_terminals(term):
    bulk, other = term(), term()
    bulk.run("echo ready-$((1+1))", "ready-2", FIRST_COMMAND_TIMEOUT)
    other.run("echo ready-$((1+2))", "ready-3", FIRST_COMMAND_TIMEOUT)
    bulk.type("seq 1 2000000; echo bulk-done-$((7*7))\r")
    bulk.expect("\r\n1", 30)  # the flood is under way

    # While it runs, the other terminal still echoes (a stalled worker would
    # hold these back until the flood ends).
    for i in range(5):
        other.run(f"echo probe-$((100+{i}))", f"probe-{100 + i}", 10)
    bulk.expect("bulk-done-49", 120)
    bulk.run("echo prompt-back-$((8*8))", "prompt-back-64")


def test_heartbeat_is_echoed_with_server_time(term):
    t = term()
    t.send_json({"type": "heartbeat", "messageId": "hb-1", "payload": {"clientTime": 1234.5}})
    reply = t.next_message("heartbeat")
    assert reply["payload"]["clientTime"] == 1234.5
    assert reply["payload"]["replyTo"] == "hb-1"
    assert isinstance(reply["payload"]["serverTime"], int)


def test_clear_empties_tmux_history(term, gunicorn_server):
    t = term(rows=10)
    t.run("seq 1 200; echo filled-$((3*3))", "filled-9", FIRST_COMMAND_TIMEOUT)

    def history_size():
        return int(gunicorn_server.tmux.run("display", "-p", "-t", f"={t.session_id}:",
                                            "#{history_size}").strip())

    wait_until(lambda: history_size() > 100, message=f"history {history_size()}")
    t.control("clear")
    wait_until(lambda: history_size() == 0)


def test_json_mode_for_clients_without_binary_frames(term):
    t = term(encoding="json")
    assert t.ready["payload"]["encoding"] == "json"
    t.send_json({"type": "input", "payload": "echo json-$((20+22))\r"})
    text = ""
    while "json-42" not in text:
        text += t.next_message("output")["payload"]
    t.send_json({"type": "command", "payload": {"command": "echo cmd-$((50+5))"}})
    while "cmd-55" not in text:
        text += t.next_message("output")["payload"]
    assert t.output == b""  # no binary frame in JSON mode


def test_unicode_round_trips(term):
    t = term()
    t.run('echo "héllo-→-日本-$((1+1))"', "héllo-→-日本-2", FIRST_COMMAND_TIMEOUT)


def test_restart_closes_terminals_with_1012_and_they_reattach(term, gunicorn_server):
    """A deploy (HUP): live sockets get 1012 at once; the shell survives on the new worker."""
    t = term()
    t.run("export DEPLOYED=survived-$((6*6)); echo set-$((1+1))", "set-2", FIRST_COMMAND_TIMEOUT)
    old_workers = gunicorn_server.worker_pids()
    gunicorn_server.process.send_signal(signal.SIGHUP)
    assert t.wait_closed(timeout=5).code == 1012
    wait_until(lambda: (pids := gunicorn_server.worker_pids()) and not set(pids) & set(old_workers),
               timeout=20, message="the old worker did not stop")
    again = term(session=t.session_id)
    again.run('echo "after-$DEPLOYED"', "after-survived-36")


def test_quick_reattach_cycles_keep_every_keystroke(term):
    """Each closed bridge's fd number is soon reused by the next connection's
    socket; a stale reader on it once swallowed the next client's keystrokes."""
    first = term()
    first.run("echo up-$((1+1))", "up-2", FIRST_COMMAND_TIMEOUT)
    first.close()
    for i in range(8):
        again = term(session=first.session_id)
        again.run(f"echo cycle-$((100+{i}))", f"cycle-{100 + i}")
        again.close()


def _rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def test_a_client_that_stops_reading_is_not_buffered_in_the_server(term, gunicorn_server):
    """A flood to a client that reads nothing backs up into tmux, not into the
    worker's memory, and Ctrl-C then brings the prompt back after a short backlog."""
    t = term()
    t.run("echo ready-$((1+1))", "ready-2", FIRST_COMMAND_TIMEOUT)
    [worker] = gunicorn_server.worker_pids()
    rss_before = _rss_kib(worker)
    t.type("yes termweb-flood-line\r")
    time.sleep(3)  # the client reads nothing for a while: that is the situation under test
    assert _rss_kib(worker) - rss_before < 16 * 1024
    t.type(b"\x03")
    t.type("echo stopped-$((9*9))\r")
    before = len(t.output)
    t.expect("stopped-81", 30)
    assert len(t.output) - before < 4 * 1024 * 1024  # measured: ~0.4 MB


def test_a_client_that_answers_no_pings_is_closed_with_1008(gunicorn_factory):
    server = gunicorn_factory(ping_interval=1)
    silent = TermClient(server.url)
    answering = TermClient(server.url)
    deadline = time.monotonic() + 3.5  # three pings' time
    while time.monotonic() < deadline:  # reading answers the pings (websocket-client pongs)
        answering.expect_nothing(0.2)
    # The silent client read nothing, so its pings went unanswered. Read its
    # raw stream now: websocket-client would try to answer the stale pings.
    raw, received = silent.ws.sock, b""
    raw.settimeout(10)
    while chunk := raw.recv(65536):
        received += chunk
    assert b"\x88\x0e\x03\xf0ping timeout" in received  # close frame, code 1008
    answering.run("echo still-here-$((2+2))", "still-here-4", FIRST_COMMAND_TIMEOUT)
    assert server.tmux.has_session(silent.session_id)
    answering.close()


def test_a_killed_tmux_server_is_reported_and_new_terminals_still_open(term, gunicorn_server):
    t = term()
    t.run("echo before-$((1+1))", "before-2", FIRST_COMMAND_TIMEOUT)
    tmux_pid = int(gunicorn_server.tmux.run("display", "-p", "-t", f"={t.session_id}:", "#{pid}"))
    os.kill(tmux_pid, signal.SIGKILL)
    error = t.next_message("error")
    assert error["payload"]["code"] == "session_lost"
    assert t.wait_closed().code == 4404
    fresh = term()  # termweb starts a new tmux server
    fresh.run("echo after-$((2+2))", "after-4", FIRST_COMMAND_TIMEOUT)
