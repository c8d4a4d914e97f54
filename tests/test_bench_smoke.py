"""The benchmark runs end to end (tiny counts) and writes complete results."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

METRIC_KEYS = [
    "echo_idle_p50_ms", "echo_idle_p95_ms", "echo_idle_p99_ms", "echo_idle_max_ms",
    "echo_load_p50_ms", "echo_load_p95_ms", "echo_load_p99_ms", "echo_load_max_ms",
    "load_lines_per_s", "connect_p50_ms", "connect_p95_ms",
    "memory_pss_per_terminal_mb", "memory_rss_per_terminal_mb",
    "memory_pss_total_1_mb", "memory_pss_total_n_mb",
    "memory_rss_total_1_mb", "memory_rss_total_n_mb",
    "reattach_p50_ms", "reattach_p95_ms", "reattach_max_ms",
    "reattach_ready_p50_ms", "reattach_ready_p95_ms", "reattach_history_bytes",
    "kill_affected_sessions", "kill_total_ms", "kill_p50_ms", "kill_p95_ms",
    "redis_ops_per_keystroke", "redis_ops_per_connect", "redis_ops_per_reattach",
    "redis_ops_per_disconnect",
]


def test_smoke_run_writes_json_and_markdown(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    json_files = list(tmp_path.glob("termweb-*.json"))
    md_files = list(tmp_path.glob("termweb-*.md"))
    assert len(json_files) == 1 and len(md_files) == 1, list(tmp_path.iterdir())

    results = json.loads(json_files[0].read_text())
    metrics = results["metrics"]
    for key in METRIC_KEYS:
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
        value = metrics[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value >= 0, (key, value)
    assert results["parameters"]["smoke"] is True
    # Issue #3's scenarios measured what they claim: a restore with history,
    # every killed terminal back, a store that really is Redis.
    assert metrics["reattach_ready_p50_ms"] <= metrics["reattach_p50_ms"]
    assert metrics["reattach_history_bytes"] > 0
    assert len(results["details"]["reattach"]["samples_ms"]) == results["parameters"]["reattaches"]
    kill = results["details"]["kill"]
    assert metrics["kill_affected_sessions"] >= 1
    assert len(kill["samples_ms"]) == kill["affected"] == metrics["kill_affected_sessions"]
    assert metrics["kill_p50_ms"] <= metrics["kill_total_ms"] == max(kill["samples_ms"])
    assert metrics["redis_ops_per_connect"] >= 1 and metrics["redis_ops_per_disconnect"] >= 1
    for key in ("nproc", "loadavg_before", "loadavg_after", "date", "python", "gevent", "tmux"):
        assert key in results["context"], key

    table = md_files[0].read_text()
    assert "| metric | value | target |" in table
    assert "Echo latency, idle, p50" in table and "Memory per terminal, PSS" in table
    assert "Reattach: dropped connection → screen restored, p50" in table
    assert "Redis commands per keystroke" in table
    assert "| metric | value | target |" in done.stdout  # the table is printed too
