"""termweb's benchmark: ``python -m bench.run [--smoke] [--out DIR] [counts]``.

Starts a fresh termweb (gunicorn + a tmux server on a socket of its own) for
each scenario, measures against it over 127.0.0.1, stops it, and writes
``termweb-<UTC timestamp>.json`` and ``.md`` into --out (the table is also
printed). See bench/__init__.py for the modules.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from termweb.tmux import TmuxServer

from . import direct, procs, report, scenarios
from .client import Closed
from .server import ROOT, BenchError, RedisServer, TermwebServer, rc_free_shell

FULL = {"keystrokes": 500, "load_terminals": 100, "connects": 20, "memory_terminals": 100,
        "reattaches": 50, "kill_sessions": 100, "redis_keystrokes": 500, "redis_cycles": 5}
SMOKE = {"keystrokes": 20, "load_terminals": 3, "connects": 3, "memory_terminals": 3,
         "reattaches": 3, "kill_sessions": 3, "redis_keystrokes": 20, "redis_cycles": 1}
# The Redis scenarios' termweb: no sweep runs during a measurement.
NO_SWEEPS = {"TERMWEB_RECONCILE_INTERVAL": "3600"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks that it all works")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                        help="directory for the JSON and Markdown results (default: bench/results/)")
    for name, default in FULL.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                            help=f"default {default}, smoke {SMOKE[name]}")
    parser.add_argument("--only", choices=("gateway", "sessions"), default=None,
                        help="run one group of scenarios: 'gateway' (echo, load, connect, memory) "
                             "or 'sessions' (reattach, worker kill, Redis commands)")
    parser.add_argument("--load-loop", choices=("sleep", "read"), default="sleep",
                        help="the load terminals' loop: 'sleep' (the issue's: forks a `sleep` per "
                             "line) or 'read' (the same output from `read -t`, without forking)")
    args = parser.parse_args(argv)
    counts = SMOKE if args.smoke else FULL
    for name in FULL:
        if getattr(args, name) is None:
            setattr(args, name, counts[name])
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.memory_terminals < 2:
        parser.error("--memory-terminals must be at least 2")
    return args


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def context() -> dict:
    tmux = subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout.strip()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "gevent": _version("gevent"),
            "gunicorn": _version("gunicorn"), "websocket_client": _version("websocket-client"),
            "tmux": tmux}


_STARTED = time.monotonic()


def _log(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:5.1f} s] {message}", file=sys.stderr, flush=True)


def cpu_sampler(server: TermwebServer):
    """A function returning CPU seconds used so far by the server's process groups."""
    groups = server.process_groups()
    groups.pop("shells")  # thousands of short-lived `sleep`s: counted in the machine total

    def sample() -> dict:
        busy, total = procs.machine_cpu_seconds()
        out = {name: sum(procs.cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
        return {**out, "machine_busy": busy, "machine_total": total, "time": time.monotonic()}
    return sample


def cpu_percentages(before: dict, after: dict) -> dict:
    """CPU use per group over the window, in % of one core; machine use in % of all cores."""
    wall = after["time"] - before["time"]
    out = {f"{name}_pct_of_core": 100 * (after[name] - before[name]) / wall
           for name in before if name not in ("machine_busy", "machine_total", "time")}
    out["machine_busy_pct"] = 100 * (after["machine_busy"] - before["machine_busy"]) / max(
        1e-9, after["machine_total"] - before["machine_total"])
    out["window_s"] = wall
    return out


def run(args) -> dict:
    results: dict = {"parameters": {name: getattr(args, name) for name in FULL}
                     | {"smoke": args.smoke, "load_loop": args.load_loop, "only": args.only},
                     "context": context(), "metrics": {}, "details": {}, "notes": []}
    ctx = results["context"]
    ctx["loadavg_before"] = os.getloadavg()
    ctx["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    started = time.monotonic()
    if args.only != "sessions":
        gateway_core(args, results)
    if args.only != "gateway":
        sessions_that_survive(args, results)
    ctx["loadavg_after"] = os.getloadavg()
    results["duration_s"] = time.monotonic() - started
    return results


def gateway_core(args, results: dict) -> None:
    """Issue #2's scenarios: keystroke echo, idle and under load; connect; memory."""
    metrics, details = results["metrics"], results["details"]

    _log(f"echo latency, idle: {args.keystrokes} keystrokes")
    with TermwebServer() as server:
        idle = scenarios.echo_latency(server.base_url, args.keystrokes)
    metrics.update(report.summary(idle["samples_ms"], "echo_idle"))
    details["echo_idle"] = idle

    _log(f"echo latency under load: {args.load_terminals} load terminals")
    with TermwebServer() as server:
        loaded = scenarios.echo_under_load(server.base_url, args.keystrokes, args.load_terminals,
                                           args.load_loop, sample=cpu_sampler(server))
    metrics.update(report.summary(loaded["samples_ms"], "echo_load"))
    metrics["load_lines_per_s"] = loaded["load"]["lines_per_s"]
    loaded["cpu_during_probe"] = cpu_percentages(loaded.pop("cpu_before"), loaded.pop("cpu_after"))
    details["echo_load"] = loaded
    cpu = loaded["cpu_during_probe"]
    results["notes"].append(
        f"CPU during the loaded probe: gunicorn {cpu['gunicorn_pct_of_core']:.0f}% of a core, "
        f"tmux server {cpu['tmux_server_pct_of_core']:.0f}%, attach clients "
        f"{cpu['attach_clients_pct_of_core']:.0f}%; machine {cpu['machine_busy_pct']:.0f}% busy "
        f"(all cores); load printed {loaded['load']['lines_per_s_per_terminal']:.1f} lines/s per terminal "
        f"(`{args.load_loop}` loop)")
    if cpu["machine_busy_pct"] > 90:
        results["notes"].append(
            "**Warning:** the CPU was saturated during the loaded probe, so its latency is mostly "
            "time spent waiting for a core, not work in the server"
            + (" (the `sleep` loop forks ~20 processes/s per terminal; try --load-loop read)"
               if args.load_loop == "sleep" else ""))

    _log(f"connect to first prompt: {args.connects} connects")
    with TermwebServer() as server:
        connected = scenarios.connect_to_prompt(server.base_url, args.connects)
    for key, samples in (("connect", connected["samples_ms"]), ("connect_ready", connected["ready_ms"])):
        metrics.update(report.summary(samples, key, (50, 95), maximum=False))
    metrics["connect_cold_ms"] = connected["cold_ms"]
    details["connect"] = connected

    _log(f"memory: 1 terminal, then {args.memory_terminals}")
    with TermwebServer() as server:
        memory = scenarios.memory_per_terminal(
            server.base_url, args.memory_terminals,
            lambda: procs.memory_by_group(server.process_groups()),
            settle=0.5 if args.smoke else 2.0)
    per = memory["per_terminal"]["total"]
    metrics.update({
        "memory_pss_per_terminal_mb": per["pss_mb"], "memory_rss_per_terminal_mb": per["rss_mb"],
        "memory_pss_total_1_mb": memory["one"]["total"]["pss_mb"],
        "memory_pss_total_n_mb": memory["many"]["total"]["pss_mb"],
        "memory_rss_total_1_mb": memory["one"]["total"]["rss_mb"],
        "memory_rss_total_n_mb": memory["many"]["total"]["rss_mb"],
    })
    details["memory"] = memory
    results["notes"].append("PSS per terminal by part: " + ", ".join(
        f"{group} {values['pss_mb']:.2f} MB" for group, values in memory["per_terminal"].items()
        if group != "total"))


def redis_env(redis: RedisServer, **settings: str) -> dict[str, str]:
    return {"TERMWEB_REDIS_URL": redis.url, "TERMWEB_REDIS_PREFIX": "bench:", **settings}


def sessions_that_survive(args, results: dict) -> None:
    """Issue #3's scenarios: reattach, a killed worker, Redis commands per keystroke."""
    metrics, details = results["metrics"], results["details"]

    _log(f"reattach a dropped connection: {args.reattaches} times")
    with TermwebServer() as server:
        tmux = TmuxServer(server.tmux_socket, "/bin/bash")
        cols, rows = 120, 30  # TermClient's default size

        def breakdown(session: str) -> dict:
            return direct.reattach_steps(tmux, session, min(args.reattaches, 20), cols, rows,
                                         scenarios.SCREEN_MARK)
        reattach = scenarios.reattach_latency(server.base_url, args.reattaches, breakdown=breakdown)
    metrics.update(report.summary(reattach["samples_ms"], "reattach", (50, 95)))
    metrics.update(report.summary(reattach["ready_ms"], "reattach_ready", (50, 95), maximum=False))
    metrics["reattach_history_bytes"] = max(reattach["history_bytes"])
    details["reattach"] = reattach
    p50 = {key: report.percentile(reattach[key], 50)
           for key in ("upgrade_ms", "ready_ms", "history_ms", "first_redraw_ms", "samples_ms")}
    steps = reattach["breakdown"]
    results["notes"].append(
        f"Reattach, p50 from the drop: upgrade {p50['upgrade_ms']:.1f} ms, `ready` "
        f"{p50['ready_ms']:.1f} ms, history frame {p50['history_ms']:.1f} ms, first redraw frame "
        f"{p50['first_redraw_ms']:.1f} ms, marker on screen {p50['samples_ms']:.1f} ms. The same "
        f"steps run directly (medians of {steps['rounds']}): `tmux capture-pane` "
        f"{steps['capture_ms']:.1f} ms, spawning `tmux attach` on a pty {steps['spawn_ms']:.1f} ms, "
        f"spawn to marker on screen {steps['attach_to_screen_ms']:.1f} ms")

    _log(f"kill -9 of a worker serving {args.kill_sessions} live terminals")
    # Every terminal prints a prompt after its echo: with rc-free shells, so
    # that this machine's prompt hook (see server.rc_free_shell) is not measured.
    with RedisServer() as redis, rc_free_shell() as shell, TermwebServer(
            redis_env(redis, TERMWEB_WORKERS="2", TERMWEB_SHELL=shell)) as server:
        killed = scenarios.reattach_after_kill(server.base_url, args.kill_sessions,
                                               server.workers, server.session_workers,
                                               server.kill_worker,
                                               timeout=30 + args.kill_sessions / 5)
    metrics["kill_affected_sessions"] = killed["affected"]
    metrics["kill_total_ms"] = killed["total_ms"]
    metrics.update(report.summary(killed["samples_ms"], "kill", (50, 95), maximum=False))
    details["kill"] = killed
    results["notes"].append(
        f"Worker kill: {killed['affected']} of {killed['opened']} terminals opened were on the "
        f"killed worker; after the kill, `ready` p50 {report.percentile(killed['ready_ms'], 50):.0f} ms, "
        f"drop noticed p50 {report.percentile(killed['dropped_ms'], 50):.1f} ms, "
        f"{max(killed['attempts'])} connect attempts at most; reattached on: "
        + ", ".join(f"{where} {count}" for where, count in sorted(killed["landed_on"].items())))

    _log(f"Redis commands per keystroke: {args.redis_keystrokes} keystrokes, "
         f"{args.redis_cycles} connect cycles")
    with RedisServer() as redis, TermwebServer(redis_env(redis, **NO_SWEEPS)) as server:
        ops = scenarios.redis_operations(server.base_url, args.redis_keystrokes, args.redis_cycles,
                                         redis.command_calls)
    metrics.update({f"redis_ops_per_{step}": ops[f"per_{step}"]
                    for step in ("keystroke", "connect", "reattach", "disconnect")})
    details["redis"] = ops
    results["notes"].append("Redis commands by step (script-internal ones included): " + "; ".join(
        f"{step}: " + ", ".join(f"{name} {calls:g}" for name, calls in sorted(ops[f"{step}_calls"].items()))
        for step in ("connect", "reattach", "disconnect")))


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through every finally: servers are stopped


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        results = run(args)
    except (BenchError, Closed, TimeoutError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    json_path, md_path = report.write(results, args.out, stamp)
    print(report.markdown(results))
    _log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
