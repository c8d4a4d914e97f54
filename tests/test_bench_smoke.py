"""The benchmark runs end to end (tiny counts) against termweb and terminado,
and writes complete results: JSON, the Markdown table and the PNG chart."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Measured for both targets; the smoke counts: load step 2, capacity steps 3 and 6.
COMPARED_KEYS = [
    "echo_idle_p50_ms", "echo_idle_p95_ms", "echo_idle_p99_ms", "echo_idle_max_ms",
    "echo_load2_p50_ms", "echo_load2_p95_ms", "echo_load2_p99_ms", "echo_load2_max_ms",
    "load2_lines_per_s", "connect_p50_ms", "connect_p95_ms", "connect_ready_p50_ms",
    "connect_reattach_p50_ms", "connect_reattach_p95_ms",
    "reattach_p50_ms", "reattach_p95_ms", "reattach_max_ms", "reattach_history_bytes",
    "bulk_wall_s", "bulk_received_mb", "bulk_server_cpu_s", "capacity_open",
    *(f"capacity{n}_{what}" for n in (3, 6) for what in (
        "pss_per_terminal_mb", "rss_per_terminal_mb", "failures", "open_s", "echo_p99_ms")),
]
# termweb's own, without a counterpart in terminado.
TERMWEB_KEYS = [
    "memory_pss_per_terminal_mb", "memory_rss_per_terminal_mb",
    "memory_pss_total_1_mb", "memory_pss_total_n_mb",
    "memory_rss_total_1_mb", "memory_rss_total_n_mb",
    "reattach_ready_p50_ms", "reattach_ready_p95_ms",
    "kill_affected_sessions", "kill_total_ms", "kill_p50_ms", "kill_p95_ms",
    "redis_ops_per_keystroke", "redis_ops_per_connect", "redis_ops_per_reattach",
    "redis_ops_per_disconnect",
    # Issue #5: a killed tmux server is told and replaced.
    "backend_lost_p50_ms", "backend_replaced_p50_ms", "backend_replaced_max_ms", "backend_new_p50_ms",
    # Issue #4: login off, then on with each credential /ws accepts.
    *(f"auth_{way}_{what}" for way in ("off", "cookie", "bearer", "query")
      for what in ("connect_p50_ms", "connect_p95_ms", "upgrade_p50_ms")),
    "auth_refused_p50_ms", "auth_refused_p95_ms",
    "auth_login_p50_ms", "auth_login_p95_ms", "auth_login_wrong_p50_ms",
]
# What each way in with login on adds to login off: (way, figure), any sign.
AUTH_ADDED = [(way, figure) for way in ("cookie", "bearer", "query")
              for figure in ("connect_p50", "connect_p95", "upgrade_p50")]


def _number(key: str, value) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
    assert math.isfinite(value) and value >= 0, (key, value)


def test_smoke_run_writes_json_markdown_and_chart(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    files = {suffix: list(tmp_path.glob(f"termweb-*.{suffix}")) for suffix in ("json", "md", "png")}
    assert all(len(found) == 1 for found in files.values()), list(tmp_path.iterdir())
    assert files["png"][0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = json.loads(files["json"][0].read_text())
    assert results["targets"] == ["termweb", "terminado"]
    assert results["parameters"]["smoke"] is True
    metrics = results["metrics"]
    for target in ("termweb", "terminado"):
        for key in COMPARED_KEYS:
            assert key in metrics[target], f"{target}: {key} missing from {sorted(metrics[target])}"
            _number(key, metrics[target][key])
    for key in TERMWEB_KEYS:
        assert key in metrics["termweb"], f"{key} missing from {sorted(metrics['termweb'])}"
        _number(key, metrics["termweb"][key])
    for way, figure in AUTH_ADDED:
        what, q = figure.split("_")
        added = metrics["termweb"][f"auth_{way}_{what}_added_{q}_ms"]
        assert added == pytest.approx(metrics["termweb"][f"auth_{way}_{figure}_ms"]
                                      - metrics["termweb"][f"auth_off_{figure}_ms"])
    for key in COMPARED_KEYS:  # a ratio wherever terminado's figure is not 0
        if metrics["terminado"][key]:
            assert results["ratios"][key] == metrics["termweb"][key] / metrics["terminado"][key]
    assert not set(TERMWEB_KEYS) - set(metrics["terminado"]) & set(results["ratios"])
    # Each scenario measured what it claims: every ladder step open, both
    # reconnects restoring something, the bulk output arriving.
    for target in ("termweb", "terminado"):
        assert metrics[target]["capacity_open"] == 6
        assert metrics[target]["reattach_history_bytes"] > 0
        assert metrics[target]["bulk_received_mb"] > 0
        details = results["details"][target]
        assert len(details["reattach"]["samples_ms"]) == results["parameters"]["reattaches"]
        assert details["capacity"]["stopped"] is None
    # Issue #3's scenarios: a restore with history, every killed terminal
    # back, a store that really is Redis.
    assert metrics["termweb"]["reattach_ready_p50_ms"] <= metrics["termweb"]["reattach_p50_ms"]
    kill = results["details"]["termweb"]["kill"]
    assert metrics["termweb"]["kill_affected_sessions"] >= 1
    assert len(kill["samples_ms"]) == kill["affected"] == metrics["termweb"]["kill_affected_sessions"]
    assert metrics["termweb"]["kill_p50_ms"] <= metrics["termweb"]["kill_total_ms"] == max(kill["samples_ms"])
    assert metrics["termweb"]["redis_ops_per_connect"] >= 1
    # Issue #4: every way in measured each time, every stranger refused, every login made.
    auth, params = results["details"]["termweb"]["auth"], results["parameters"]
    for way in ("off", "cookie", "bearer", "query"):
        assert len(auth[way]["samples_ms"]) == params["auth_connects"]
    assert len(auth["refused_ms"]) == params["auth_connects"]
    assert len(auth["login_ms"]) == len(auth["login_wrong_ms"]) == params["auth_logins"]
    for key in ("nproc", "loadavg_before", "loadavg_after", "date", "python", "gevent", "tmux",
                "terminado"):
        assert key in results["context"], key

    header = "| metric | termweb | terminado | ratio termweb/terminado | target (termweb) |"
    table = files["md"][0].read_text()
    assert header in table
    assert "Echo latency, idle, p50" in table and "Echo latency, 2 terminals printing, p99" in table
    assert "Capacity, 6 open: memory per terminal, PSS" in table
    assert "Reconnect: dropped connection → screen restored, p50" in table
    assert "Redis commands per keystroke" in table and files["png"][0].name in table
    assert "Auth on, login cookie: added to connect → prompt, p50" in table
    assert "Login: POST /login, right password → 302, p50" in table
    assert header in done.stdout  # the table is printed too
