"""Bad input gets a documented error; the connection (or at least the worker) survives."""
import json
import socket

import pytest
import websocket

from .conftest import start_gunicorn, stop_process
from .helpers import TermClient, close_code, free_port, raw_connect

BAD_FRAMES = [
    ("not json at all", "invalid_json"),
    ("{\"type\": ", "invalid_json"),
    ("[1, 2, 3]", "invalid_message"),
    ("{\"payload\": {}}", "invalid_message"),
    ("{\"type\": 42}", "invalid_message"),
    ("{\"type\": \"launch_missiles\"}", "unknown_type"),
    ("{\"type\": \"control\", \"payload\": {\"action\": \"reboot\"}}", "unknown_action"),
    ("{\"type\": \"control\", \"payload\": \"resize\"}", "invalid_field"),
    ("{\"type\": \"control\", \"payload\": {\"action\": \"resize\", \"cols\": \"wide\", \"rows\": 24}}",
     "invalid_field"),
    ("{\"type\": \"control\", \"payload\": {\"action\": \"resize\", \"cols\": true, \"rows\": 24}}",
     "invalid_field"),
    ("{\"type\": \"control\", \"payload\": {\"action\": \"resize\", \"cols\": 100000, \"rows\": 24}}",
     "invalid_size"),
    ("{\"type\": \"control\", \"payload\": {\"action\": \"resize\", \"cols\": 80, \"rows\": 0}}",
     "invalid_size"),
    ("{\"type\": \"control\", \"payload\": {\"action\": \"resize\", \"cols\": -5, \"rows\": -5}}",
     "invalid_size"),
    ("{\"type\": \"input\", \"payload\": 12}", "invalid_field"),
    ("{\"type\": \"command\", \"payload\": {\"command\": \"ls\\nrm -rf ~\"}}", "invalid_field"),
    ("{\"type\": \"command\", \"payload\": {\"command\": \"ls\", \"workingDirectory\": \"/\"}}",
     "unsupported"),
    ("{\"type\": \"heartbeat\", \"payload\": {\"clientTime\": \"noon\"}}", "invalid_field"),
    ("{\"type\": \"heartbeat\", \"messageId\": 7}", "invalid_field"),
]


def test_each_bad_frame_gets_its_error_and_the_terminal_keeps_working(gunicorn_server):
    t = TermClient(gunicorn_server.url)
    t.run("echo up-$((1+1))", "up-2", 30)
    for frame, code in BAD_FRAMES:
        t.send_json(frame)
        error = t.next_message("error")
        assert error["payload"]["code"] == code, frame
        assert error["payload"]["message"], frame
    t.run("echo still-up-$((2+2))", "still-up-4")
    t.control("resize", cols=90, rows=30)  # a good message after the bad ones
    t.run("stty size | tr ' ' x | sed s/^/SZ/", "SZ30x90")
    t.close()


def test_error_replies_name_the_message_they_answer(gunicorn_server):
    t = TermClient(gunicorn_server.url)
    t.send_json({"type": "control", "messageId": "m-17", "payload": {"action": "warp"}})
    assert t.next_message("error")["payload"]["replyTo"] == "m-17"
    t.close()


def test_oversize_frame_closes_with_1009_and_the_session_survives(gunicorn_factory):
    server = gunicorn_factory(max_message_bytes=4096)
    t = TermClient(server.url)
    t.run("export SURVIVOR=yes-$((3*3)); echo set-$((1+1))", "set-2", 30)
    t.type(b"x" * 10000)
    assert t.wait_closed().code == 1009
    assert server.tmux.has_session(t.session_id)
    again = TermClient(server.url, session=t.session_id)
    again.type(b"\x15")  # drop whatever part of the big paste reached the line
    again.run('echo "after-$SURVIVOR"', "after-yes-9")
    again.close()


@pytest.mark.parametrize("params", [
    {"cols": "wide"}, {"cols": 0}, {"rows": 99999}, {"cols": 80, "rows": -1}, {"encoding": "base64"},
])
def test_bad_handshake_parameters_are_refused_with_4400(gunicorn_server, params):
    ws = raw_connect(gunicorn_server.url, params)
    error = json.loads(ws.recv())
    assert error["type"] == "error" and error["payload"]["code"] == "invalid_handshake"
    assert close_code(ws) == 4400
    assert gunicorn_server.tmux.list_sessions() == []  # refused before any terminal was made


@pytest.mark.parametrize("session", ["doesnotexist-0000000", "../../etc/passwd", "=x:y", "a" * 300])
def test_unknown_session_is_refused_with_4404(gunicorn_server, session):
    ws = raw_connect(gunicorn_server.url, {"session": session})
    error = json.loads(ws.recv())
    assert error["payload"]["code"] == "session_not_found"
    assert close_code(ws) == 4404


def test_cross_origin_handshake_is_refused_before_the_upgrade(gunicorn_server):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        raw_connect(gunicorn_server.url, {}, origin="http://evil.example")
    assert refused.value.status_code == 403
    assert gunicorn_server.tmux.list_sessions() == []
    assert "cross-origin handshake" in gunicorn_server.log
    same_origin = raw_connect(gunicorn_server.url, {}, origin=gunicorn_server.url)
    assert json.loads(same_origin.recv())["payload"]["action"] == "ready"


def test_allowed_origins_setting_admits_a_listed_origin(gunicorn_factory):
    server = gunicorn_factory(allowed_origins="https://term.example.org/")
    ws = raw_connect(server.url, {}, origin="https://term.example.org")
    assert json.loads(ws.recv())["payload"]["action"] == "ready"


def test_terminal_limit_refuses_with_1013(gunicorn_factory):
    server = gunicorn_factory(max_terminals=1)
    first = TermClient(server.url)
    ws = raw_connect(server.url, {})
    error = json.loads(ws.recv())
    assert error["payload"]["code"] == "too_many_terminals"
    assert close_code(ws) == 1013
    first.run("echo first-still-$((1+1))", "first-still-2", 30)
    first.close()


def test_garbage_on_the_socket_does_not_take_the_worker_down(gunicorn_server):
    pids = gunicorn_server.worker_pids()
    ws = raw_connect(gunicorn_server.url, {})
    ws.recv()
    ws.sock.sendall(b"\xff\x00this is not a websocket frame" * 10)  # protocol garbage
    ws.sock.close()
    with socket.create_connection(("127.0.0.1", gunicorn_server.port)) as raw:
        raw.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        raw.recv(1024)
    t = TermClient(gunicorn_server.url)
    t.run("echo healthy-$((5+5))", "healthy-10", 30)
    t.close()
    assert gunicorn_server.worker_pids() == pids


def test_binding_a_public_address_without_login_is_refused(tmp_path):
    for env, args in (({"TERMWEB_HOST": "0.0.0.0"}, ()),
                      ({}, ("--bind", f"0.0.0.0:{free_port()}"))):
        process = start_gunicorn(tmp_path, {"TERMWEB_PORT": str(free_port()), "TERMWEB_AUTH": "off",
                                            **env}, args)
        try:
            assert process.wait(20) != 0
        finally:
            stop_process(process)
        assert "refusing to listen on 0.0.0.0" in (tmp_path / "gunicorn.log").read_text()


def test_invalid_setting_stops_startup_with_a_clear_message(tmp_path):
    process = start_gunicorn(tmp_path, {"TERMWEB_PORT": "eighty"})
    try:
        assert process.wait(20) != 0
    finally:
        stop_process(process)
    assert "TERMWEB_PORT must be a whole number" in (tmp_path / "gunicorn.log").read_text()
