"""Percentiles, targets, and the JSON and Markdown outputs."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

# Targets from the issues, set against ttyd + tmux on this machine; they
# apply to termweb. metric key -> (label, unit, target or None). A key with
# ``{n}`` stands for one row per count measured (load steps, capacity steps).
METRICS = {
    "echo_idle_p50_ms": ("Echo latency, idle, p50", "ms", 0.4),
    "echo_idle_p95_ms": ("Echo latency, idle, p95", "ms", None),
    "echo_idle_p99_ms": ("Echo latency, idle, p99", "ms", 1.5),
    "echo_idle_max_ms": ("Echo latency, idle, max", "ms", None),
    "echo_load{n}_p50_ms": ("Echo latency, {n} terminals printing, p50", "ms", None),
    "echo_load{n}_p95_ms": ("Echo latency, {n} terminals printing, p95", "ms", None),
    "echo_load{n}_p99_ms": ("Echo latency, {n} terminals printing, p99", "ms", 2.5),
    "echo_load{n}_max_ms": ("Echo latency, {n} terminals printing, max", "ms", None),
    "load{n}_lines_per_s": ("Load actually printed ({n} terminals together)", "lines/s", None),
    "connect_p50_ms": ("Connect a new terminal → first prompt, p50", "ms", None),
    "connect_p95_ms": ("Connect a new terminal → first prompt, p95", "ms", None),
    "connect_cold_ms": ("Connect → first prompt, first terminal of a fresh server", "ms", None),
    "connect_ready_p50_ms": ("Connect → `ready` (terminado: `setup`), p50", "ms", None),
    "connect_ready_p95_ms": ("Connect → `ready` (terminado: `setup`), p95", "ms", None),
    "connect_reattach_p50_ms": ("Connect to an existing terminal → prompt, p50", "ms", None),
    "connect_reattach_p95_ms": ("Connect to an existing terminal → prompt, p95", "ms", None),
    "reattach_p50_ms": ("Reconnect: dropped connection → screen restored, p50", "ms", 30.0),
    "reattach_p95_ms": ("Reconnect: dropped connection → screen restored, p95", "ms", None),
    "reattach_max_ms": ("Reconnect: dropped connection → screen restored, max", "ms", None),
    "reattach_ready_p50_ms": ("Reconnect: dropped connection → `ready`/`setup`, p50", "ms", None),
    "reattach_ready_p95_ms": ("Reconnect: dropped connection → `ready`/`setup`, p95", "ms", None),
    "reattach_history_bytes": ("Reconnect: history (terminado: buffer) replayed", "bytes", None),
    "bulk_wall_s": ("Bulk output `seq 1 {bulk}` → prompt back", "s", None),
    "bulk_received_mb": ("Bulk output: received by the client", "MB", None),
    "bulk_server_cpu_s": ("Bulk output: server CPU (shells excluded)", "CPU s", None),
    "capacity_open": ("Capacity: terminals open at the last step", "terminals", None),
    "capacity{n}_pss_per_terminal_mb": ("Capacity, {n} open: memory per terminal, PSS", "MB", 1.4),
    "capacity{n}_rss_per_terminal_mb": ("Capacity, {n} open: memory per terminal, RSS", "MB", None),
    "capacity{n}_failures": ("Capacity, {n} open: connect failures", "failures", None),
    "capacity{n}_open_s": ("Capacity, {n} open: time to open the step", "s", None),
    "capacity{n}_echo_p99_ms": ("Capacity, {n} open: probe echo p99", "ms", None),
    # termweb's own (issues #2 and #3): no counterpart in terminado.
    "memory_pss_per_terminal_mb": ("Memory per terminal, PSS", "MB", 1.4),
    "memory_rss_per_terminal_mb": ("Memory per terminal, RSS (reference)", "MB", None),
    "memory_pss_total_1_mb": ("Memory total, 1 terminal, PSS", "MB", None),
    "memory_pss_total_n_mb": ("Memory total, {memory} terminals, PSS", "MB", None),
    "memory_rss_total_1_mb": ("Memory total, 1 terminal, RSS", "MB", None),
    "memory_rss_total_n_mb": ("Memory total, {memory} terminals, RSS", "MB", None),
    "kill_affected_sessions": ("Worker killed (SIGKILL): its live terminals", "terminals", None),
    "kill_total_ms": ("Worker killed: all {affected} reattached and answering", "ms", 2000.0),
    "kill_p50_ms": ("Worker killed: one terminal reattached and answering, p50", "ms", None),
    "kill_p95_ms": ("Worker killed: one terminal reattached and answering, p95", "ms", None),
    "pool_warm_connect_p50_ms": ("New terminal → first prompt, warm session, p50", "ms", 8.0),
    "pool_warm_connect_p95_ms": ("New terminal → first prompt, warm session, p95", "ms", None),
    "pool_warm_ready_p50_ms": ("New terminal → `ready`, warm session, p50", "ms", None),
    "pool_cold_connect_p50_ms": ("New terminal → first prompt, no warm pool, p50", "ms", None),
    "pool_cold_connect_p95_ms": ("New terminal → first prompt, no warm pool, p95", "ms", None),
    "pool_cold_ready_p50_ms": ("New terminal → `ready`, no warm pool, p50", "ms", None),
    "pool_capacity{n}_pss_per_terminal_mb": ("Pool of {backends}, {n} open: memory per terminal, PSS", "MB", 1.4),
    "pool_capacity{n}_open_s": ("Pool of {backends}, {n} open: time to open the step", "s", None),
    "pool_capacity{n}_failures": ("Pool of {backends}, {n} open: connect failures", "failures", None),
    "pool_capacity{n}_echo_p99_ms": ("Pool of {backends}, {n} open: probe echo p99", "ms", 50.0),
    "backend_lost_p50_ms": ("tmux server killed: its live terminals told, p50", "ms", None),
    "backend_replaced_p50_ms": ("tmux server killed: a new one running, p50", "ms", None),
    "backend_replaced_max_ms": ("tmux server killed: a new one running, max", "ms", 3000.0),
    "backend_new_p50_ms": ("tmux server killed: a new terminal at its prompt, p50", "ms", None),
    "redis_ops_per_keystroke": ("Redis commands per keystroke", "commands", 0.0),
    "redis_ops_per_connect": ("Redis commands per connect (new terminal)", "commands", None),
    "redis_ops_per_reattach": ("Redis commands per reattach", "commands", None),
    "redis_ops_per_disconnect": ("Redis commands per disconnect", "commands", None),
    # Issue #4: login and handshake overhead (termweb alone: terminado has no
    # login in the benchmark). "ms added": the way in minus login off.
    "auth_off_connect_p50_ms": ("Auth off: connect a new terminal → first prompt, p50", "ms", None),
    "auth_off_connect_p95_ms": ("Auth off: connect a new terminal → first prompt, p95", "ms", None),
    "auth_cookie_connect_p50_ms": ("Auth on, login cookie: connect → first prompt, p50", "ms", None),
    "auth_cookie_connect_p95_ms": ("Auth on, login cookie: connect → first prompt, p95", "ms", None),
    "auth_cookie_connect_added_p50_ms": ("Auth on, login cookie: added to connect → prompt, p50",
                                         "ms added", None),
    "auth_cookie_connect_added_p95_ms": ("Auth on, login cookie: added to connect → prompt, p95",
                                         "ms added", None),
    "auth_bearer_connect_p50_ms": ("Auth on, `Authorization: Bearer`: connect → first prompt, p50",
                                   "ms", None),
    "auth_bearer_connect_p95_ms": ("Auth on, `Authorization: Bearer`: connect → first prompt, p95",
                                   "ms", None),
    "auth_bearer_connect_added_p50_ms": ("Auth on, `Authorization: Bearer`: added to connect → "
                                         "prompt, p50", "ms added", None),
    "auth_bearer_connect_added_p95_ms": ("Auth on, `Authorization: Bearer`: added to connect → "
                                         "prompt, p95", "ms added", None),
    "auth_query_connect_p50_ms": ("Auth on, `?token=`: connect → first prompt, p50", "ms", None),
    "auth_query_connect_p95_ms": ("Auth on, `?token=`: connect → first prompt, p95", "ms", None),
    "auth_query_connect_added_p50_ms": ("Auth on, `?token=`: added to connect → prompt, p50",
                                        "ms added", None),
    "auth_query_connect_added_p95_ms": ("Auth on, `?token=`: added to connect → prompt, p95",
                                        "ms added", None),
    "auth_off_upgrade_p50_ms": ("Auth off: handshake → upgraded (HTTP 101), p50", "ms", None),
    "auth_cookie_upgrade_p50_ms": ("Auth on, login cookie: handshake → upgraded, p50", "ms", None),
    "auth_cookie_upgrade_added_p50_ms": ("Auth on, login cookie: added to the upgrade, p50",
                                         "ms added", None),
    "auth_bearer_upgrade_p50_ms": ("Auth on, `Authorization: Bearer`: handshake → upgraded, p50",
                                   "ms", None),
    "auth_bearer_upgrade_added_p50_ms": ("Auth on, `Authorization: Bearer`: added to the upgrade, "
                                         "p50", "ms added", None),
    "auth_query_upgrade_p50_ms": ("Auth on, `?token=`: handshake → upgraded, p50", "ms", None),
    "auth_query_upgrade_added_p50_ms": ("Auth on, `?token=`: added to the upgrade, p50",
                                        "ms added", None),
    "auth_refused_p50_ms": ("Auth on, anonymous handshake → HTTP 401, p50", "ms", None),
    "auth_refused_p95_ms": ("Auth on, anonymous handshake → HTTP 401, p95", "ms", None),
    "auth_login_p50_ms": ("Login: POST /login, right password → 302, p50", "ms", None),
    "auth_login_p95_ms": ("Login: POST /login, right password → 302, p95", "ms", None),
    "auth_login_wrong_p50_ms": ("Login: POST /login, wrong password → 401, p50", "ms", None),
}


def metric_keys(present) -> list[tuple[str, str, str, float | None]]:
    """(key, label, unit, target) for every key in ``present``, in METRICS's
    order. Consecutive ``{n}`` keys form a block, repeated once per count
    found (smallest first): p50, p95, p99, max for 20 terminals, then for 50."""
    rows, block = [], []

    def flush() -> None:
        regexes = [(re.compile(re.escape(pattern).replace(r"\{n\}", r"(\d+)") + r"\Z"), pattern)
                   for pattern in block]
        counts = sorted({int(m.group(1)) for regex, _ in regexes for key in present
                         if (m := regex.match(key))})
        for n in counts:
            for pattern in block:
                key = pattern.replace("{n}", str(n))
                if key in present:
                    label, unit, target = METRICS[pattern]
                    rows.append((key, label.replace("{n}", str(n)), unit, target))
        block.clear()

    for pattern, (label, unit, target) in METRICS.items():
        if "{n}" in pattern:
            block.append(pattern)
            continue
        flush()
        if pattern in present:
            rows.append((pattern, label, unit, target))
    flush()
    return rows


def ratios(results: dict) -> dict[str, float]:
    """termweb / terminado for every metric both measured (and terminado's is not 0)."""
    ours, theirs = results["metrics"].get("termweb", {}), results["metrics"].get("terminado", {})
    return {key: ours[key] / theirs[key] for key in ours
            if key in theirs and theirs[key] and math.isfinite(theirs[key])}


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


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "ms added":  # a difference: signed
        return f"{value:+.3f} ms" if abs(value) < 10 else f"{value:+.1f} ms"
    if unit == "MB":
        return f"{value:.2f} MB"
    if unit in ("s", "CPU s"):
        return f"{value:.2f} {unit}"
    if unit == "commands":
        return f"{value:.2f}" if value != int(value) else f"{value:.0f}"
    return f"{value:.0f} {unit}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}×" if value < 10 else f"{value:.0f}×"


def table(results: dict) -> list[str]:
    """The comparison table: one column per target, the ratio termweb / terminado,
    and the issue's target for termweb (met or missed)."""
    params, targets = results["parameters"], results["targets"]
    metrics, ratio = results["metrics"], results.get("ratios", {})
    names = {"memory": params["memory_terminals"], "bulk": params["bulk_lines"],
             "affected": round(metrics.get("termweb", {}).get("kill_affected_sessions", 0)),
             "backends": params.get("pool_backends", "?")}
    present = {key for values in metrics.values() for key in values}
    rows = [f"| metric | {' | '.join(targets)} | ratio termweb/terminado | target (termweb) |",
            "|---|" + "---|" * len(targets) + "---|---|"]
    for key, label, unit, target in metric_keys(present):
        cells = [_fmt(metrics[name].get(key), unit) for name in targets]
        ours = metrics.get("termweb", {}).get(key)
        if target is None or ours is None:
            shown_target = "—"
        else:
            verdict = "met" if ours <= target else "**missed**"
            shown_target = f"≤ {_fmt(target, unit)} ({verdict})"
        rows.append(f"| {label.format(**names)} | {' | '.join(cells)} | {_ratio(ratio.get(key))} "
                    f"| {shown_target} |")
    return rows


def counts(params: dict) -> str:
    """The run's counts, for the scenarios it ran (``--only``)."""
    auth = (f"{params.get('auth_connects', 0)} connects per way in (login off, cookie, bearer, "
            f"`?token=`) and as many anonymous handshakes, {params.get('auth_logins', 0)} logins "
            "with the right password and as many with a wrong one")
    if params.get("only") == "auth":
        return "termweb alone: " + auth
    return (
        f"{params['keystrokes']} keystrokes per idle echo run, {params['load_keystrokes']} "
        f"beside {', '.join(map(str, params['load_steps']))} printing terminals "
        f"(`{params['load_loop']}` loop, a line every 50 ms each), {params['connects']} connects "
        f"(new and reattached), {params['reattaches']} reconnects, `seq 1 {params['bulk_lines']}`, "
        f"capacity steps {', '.join(map(str, params['capacity_steps']))} with "
        f"{params['probe_keystrokes']} probe keystrokes each; termweb alone: "
        f"{params['memory_terminals']} terminals for memory, {params['kill_sessions']} terminals "
        f"wanted on the killed worker, {params['redis_keystrokes']} keystrokes and "
        f"{params['redis_cycles']} connect cycles counting Redis commands, " + auth)


def markdown(results: dict, chart: str | None = None) -> str:
    params, ctx = results["parameters"], results["context"]
    before, after = ctx["loadavg_before"], ctx["loadavg_after"]
    lines = [
        f"# termweb benchmark, beside {', '.join(t for t in results['targets'] if t != 'termweb') or 'no peer'}"
        f", {ctx['date']}",
        "",
        *table(results),
        "",
        "* Counts: " + counts(params) + (" (smoke run)" if params["smoke"] else ""),
        "* Each compared metric: "
        + ("one run" if params["repeat"] == 1 else f"the median of {params['repeat']} runs")
        + " per target, a fresh server for every scenario",
        f"* Machine: {ctx['nproc']} CPUs ({ctx['cpu_model']}), {ctx['kernel']}; load average "
        f"{before[0]:.2f} {before[1]:.2f} {before[2]:.2f} before, "
        f"{after[0]:.2f} {after[1]:.2f} {after[2]:.2f} after",
        f"* Versions: Python {ctx['python']}, gevent {ctx['gevent']}, gunicorn {ctx['gunicorn']}, "
        f"{ctx['tmux']}, terminado {ctx.get('terminado')}, tornado {ctx.get('tornado')}, "
        f"websocket-client {ctx['websocket_client']}",
        f"* Run took {results['duration_s']:.0f} s",
    ]
    if chart:
        lines.append(f"* Chart: {chart}")
    for note in results.get("notes", []):
        lines.append(f"* {note}")
    return "\n".join(lines) + "\n"


def write(results: dict, out_dir: Path, stamp: str) -> tuple[Path, Path, Path]:
    """termweb-<stamp>.json, .md and .png (bench/chart.py) in ``out_dir``."""
    from . import chart

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"termweb-{stamp}.json"
    md_path = out_dir / f"termweb-{stamp}.md"
    png_path = out_dir / f"termweb-{stamp}.png"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    chart.draw(results, png_path)
    md_path.write_text(markdown(results, chart=png_path.name))
    return json_path, md_path, png_path
