"""Percentiles, targets, and the JSON and Markdown outputs."""
from __future__ import annotations

import json
import math
from pathlib import Path

# Targets from the issue, set against ttyd + tmux on this machine.
# metric key -> (label, unit, target or None)
METRICS = {
    "echo_idle_p50_ms": ("Echo latency, idle, p50", "ms", 0.4),
    "echo_idle_p95_ms": ("Echo latency, idle, p95", "ms", None),
    "echo_idle_p99_ms": ("Echo latency, idle, p99", "ms", 1.5),
    "echo_idle_max_ms": ("Echo latency, idle, max", "ms", None),
    "echo_load_p50_ms": ("Echo latency, {load} loaded terminals, p50", "ms", None),
    "echo_load_p95_ms": ("Echo latency, {load} loaded terminals, p95", "ms", None),
    "echo_load_p99_ms": ("Echo latency, {load} loaded terminals, p99", "ms", 2.5),
    "echo_load_max_ms": ("Echo latency, {load} loaded terminals, max", "ms", None),
    "load_lines_per_s": ("Load actually printed (all load terminals)", "lines/s", None),
    "connect_p50_ms": ("Connect to first prompt, p50", "ms", None),
    "connect_p95_ms": ("Connect to first prompt, p95", "ms", None),
    "connect_cold_ms": ("Connect to first prompt, first terminal of a fresh server", "ms", None),
    "connect_ready_p50_ms": ("Connect to `ready` (session made and attached), p50", "ms", None),
    "connect_ready_p95_ms": ("Connect to `ready` (session made and attached), p95", "ms", None),
    "memory_pss_per_terminal_mb": ("Memory per terminal, PSS", "MB", 1.4),
    "memory_rss_per_terminal_mb": ("Memory per terminal, RSS (reference)", "MB", None),
    "memory_pss_total_1_mb": ("Memory total, 1 terminal, PSS", "MB", None),
    "memory_pss_total_n_mb": ("Memory total, {memory} terminals, PSS", "MB", None),
    "memory_rss_total_1_mb": ("Memory total, 1 terminal, RSS", "MB", None),
    "memory_rss_total_n_mb": ("Memory total, {memory} terminals, RSS", "MB", None),
    # Issue #3: sessions that survive.
    "reattach_p50_ms": ("Reattach: dropped connection → screen restored, p50", "ms", 30.0),
    "reattach_p95_ms": ("Reattach: dropped connection → screen restored, p95", "ms", None),
    "reattach_max_ms": ("Reattach: dropped connection → screen restored, max", "ms", None),
    "reattach_ready_p50_ms": ("Reattach: dropped connection → `ready`, p50", "ms", None),
    "reattach_ready_p95_ms": ("Reattach: dropped connection → `ready`, p95", "ms", None),
    "reattach_history_bytes": ("Reattach: history restored", "bytes", None),
    "kill_affected_sessions": ("Worker killed (SIGKILL): its live terminals", "terminals", None),
    "kill_total_ms": ("Worker killed: all {affected} reattached and answering", "ms", 2000.0),
    "kill_p50_ms": ("Worker killed: one terminal reattached and answering, p50", "ms", None),
    "kill_p95_ms": ("Worker killed: one terminal reattached and answering, p95", "ms", None),
    "redis_ops_per_keystroke": ("Redis commands per keystroke", "commands", 0.0),
    "redis_ops_per_connect": ("Redis commands per connect (new terminal)", "commands", None),
    "redis_ops_per_reattach": ("Redis commands per reattach", "commands", None),
    "redis_ops_per_disconnect": ("Redis commands per disconnect", "commands", None),
}


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: list[float], prefix: str, quantiles=(50, 95, 99),
            maximum: bool = True) -> dict[str, float]:
    out = {f"{prefix}_p{q}_ms": percentile(samples, q) for q in quantiles}
    if maximum:
        out[f"{prefix}_max_ms"] = max(samples) if samples else math.nan
    return out


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.2f} MB"
    if unit == "commands":
        return f"{value:.2f}" if value != int(value) else f"{value:.0f}"
    return f"{value:.0f} {unit}"


def markdown(results: dict) -> str:
    params, ctx = results["parameters"], results["context"]
    names = {"load": params["load_terminals"], "memory": params["memory_terminals"],
             "affected": round(results["metrics"].get("kill_affected_sessions", 0))}
    rows = ["| metric | value | target |", "|---|---|---|"]
    for key, (label, unit, target) in METRICS.items():
        if key not in results["metrics"]:  # a group of scenarios left out (--only)
            continue
        value = results["metrics"][key]
        if target is None:
            shown_target = "—"
        else:
            verdict = "met" if value <= target else "**missed**"
            shown_target = f"≤ {_fmt(target, unit)} ({verdict})"
        rows.append(f"| {label.format(**names)} | {_fmt(value, unit)} | {shown_target} |")
    before, after = ctx["loadavg_before"], ctx["loadavg_after"]
    lines = [
        f"# termweb benchmark, {ctx['date']}",
        "",
        *rows,
        "",
        f"* Counts: {params['keystrokes']} keystrokes per echo run, {params['load_terminals']} load "
        f"terminals (`{params['load_loop']}` loop), {params['connects']} connects, "
        f"{params['memory_terminals']} terminals for memory, {params['reattaches']} reattaches, "
        f"{params['kill_sessions']} terminals wanted on the killed worker, "
        f"{params['redis_keystrokes']} keystrokes and {params['redis_cycles']} connect cycles "
        "counting Redis commands"
        + (" (smoke run)" if params["smoke"] else ""),
        f"* Machine: {ctx['nproc']} CPUs ({ctx['cpu_model']}), {ctx['kernel']}; load average "
        f"{before[0]:.2f} {before[1]:.2f} {before[2]:.2f} before, "
        f"{after[0]:.2f} {after[1]:.2f} {after[2]:.2f} after",
        f"* Versions: Python {ctx['python']}, gevent {ctx['gevent']}, gunicorn {ctx['gunicorn']}, "
        f"{ctx['tmux']}, websocket-client {ctx['websocket_client']}",
        f"* Run took {results['duration_s']:.0f} s",
    ]
    for note in results.get("notes", []):
        lines.append(f"* {note}")
    return "\n".join(lines) + "\n"


def write(results: dict, out_dir: Path, stamp: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"termweb-{stamp}.json"
    md_path = out_dir / f"termweb-{stamp}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
