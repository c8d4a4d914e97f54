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
    for key in ("nproc", "loadavg_before", "loadavg_after", "date", "python", "gevent", "tmux"):
        assert key in results["context"], key

    table = md_files[0].read_text()
    assert "| metric | value | target |" in table
    assert "Echo latency, idle, p50" in table and "Memory per terminal, PSS" in table
    assert "| metric | value | target |" in done.stdout  # the table is printed too
