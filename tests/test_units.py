"""The plain parts, driven directly: settings and protocol parsing."""
import json

import pytest

from termweb import protocol as p
from termweb.config import ConfigError, Settings, is_loopback_bind


def test_settings_default_to_a_loopback_bind():
    settings = Settings.from_env({})
    assert settings.bind == "127.0.0.1:8765"
    assert is_loopback_bind(settings.bind)


def test_settings_read_termweb_variables():
    settings = Settings.from_env({"TERMWEB_PORT": "9000", "TERMWEB_WS_COMPRESSION": "on",
                                  "TERMWEB_ALLOWED_ORIGINS": "https://a.example/, https://b.example"})
    assert settings.port == 9000 and settings.ws_compression is True
    assert settings.allowed_origins == ("https://a.example", "https://b.example")


@pytest.mark.parametrize("env, complaint", [
    ({"TERMWEB_PORT": "http"}, "TERMWEB_PORT must be a whole number"),
    ({"TERMWEB_WORKERS": "0"}, "TERMWEB_WORKERS must be positive"),
    ({"TERMWEB_WS_COMPRESSION": "maybe"}, "TERMWEB_WS_COMPRESSION must be on or off"),
    ({"TERMWEB_MAX_TERMINALS": "2000"}, "below TERMWEB_WORKER_CONNECTIONS"),
    ({"TERMWEB_SHELL": "/no/such/shell"}, "is not an executable file"),
])
def test_bad_settings_say_what_is_wrong(env, complaint):
    with pytest.raises(ConfigError, match=complaint):
        Settings.from_env(env)


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1:8765", True), ("localhost:80", True), ("[::1]:8765", True), ("unix:/run/t.sock", True),
    ("0.0.0.0:8765", False), ("[::]:8765", False), ("192.168.1.5:80", False), ("example.org:80", False),
    ("127.0.0.1", True), ("::1", True),
])
def test_loopback_bind_detection(address, loopback):
    assert is_loopback_bind(address) is loopback


def test_parse_resize_and_heartbeat():
    msg = p.parse_client_message(json.dumps(
        {"type": "control", "messageId": "a1", "payload": {"action": "resize", "cols": 120, "rows": 40}}))
    assert (msg.action, msg.payload["cols"], msg.payload["rows"], msg.message_id) == ("resize", 120, 40, "a1")
    assert p.parse_client_message('{"type":"heartbeat"}').payload == {}


def test_protocol_errors_carry_the_message_id():
    with pytest.raises(p.ProtocolError) as refused:
        p.parse_client_message('{"type":"control","messageId":"x9","payload":{"action":"fly"}}')
    assert (refused.value.code, refused.value.reply_to) == ("unknown_action", "x9")


def test_server_messages_follow_the_terminal_message_schema():
    frame = json.loads(p.error("s1", "invalid_json", "nope", reply_to="m1"))
    assert set(frame) == {"type", "sessionId", "payload", "timestamp", "messageId"}
    assert frame["payload"] == {"code": "invalid_json", "message": "nope", "replyTo": "m1"}
