"""termweb's benchmark, beside Jupyter's terminado: ``python -m bench.run [--smoke] [--out DIR] [counts]``.

Runs the same scenarios against each target (termweb, then terminado as the
reference peer: bench/peer.py), a fresh server for every scenario and target,
over 127.0.0.1; then termweb's own scenarios (memory by part, a killed
worker, Redis commands, what login costs), which have no counterpart in
terminado (it has no login in the benchmark: every termweb runs with
TERMWEB_AUTH=off but the auth scenario's second server). Writes
``termweb-<UTC timestamp>.json``, ``.md`` (the table, also printed) and
``.png`` (bench/chart.py) into --out. See bench/__init__.py for the modules.

Default counts (``FULL``, ``FULL_STEPS``) keep a run on a 2-core machine
near 7 minutes (half of it termweb's capacity ladder; every step is bounded;
the auth scenario ~55 s); ``--smoke`` takes the ``SMOKE`` ones (under a
minute). With ``--repeat N`` every compared scenario (and the auth scenario)
runs N times per target and each metric is the median of the N values
(default 1, for time's sake).
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, NamedTuple

from termweb.tmux import TmuxServer

from . import direct, procs, report, scenarios
from .client import Closed, TermClient
from .server import ROOT, BenchError, RedisServer, TermwebServer, rc_free_shell

FULL = {"keystrokes": 500, "load_keystrokes": 300, "connects": 20, "reattaches": 50,
        "bulk_lines": 2_000_000, "probe_keystrokes": 100, "memory_terminals": 100,
        "kill_sessions": 100, "redis_keystrokes": 500, "redis_cycles": 5,
        "auth_connects": 25, "auth_logins": 20, "backend_sessions": 20, "backend_repeats": 5,
        "repeat": 1}
SMOKE = {"keystrokes": 20, "load_keystrokes": 20, "connects": 3, "reattaches": 3,
         "bulk_lines": 20_000, "probe_keystrokes": 20, "memory_terminals": 3,
         "kill_sessions": 3, "redis_keystrokes": 20, "redis_cycles": 1,
         "auth_connects": 3, "auth_logins": 3, "backend_sessions": 2, "backend_repeats": 1,
         "repeat": 1}
# Lists: terminals printing beside the echo probe; the capacity ladder's steps.
FULL_STEPS = {"load_steps": [20, 50, 100], "capacity_steps": [100, 500, 1000]}
SMOKE_STEPS = {"load_steps": [2], "capacity_steps": [3, 6]}
HELP = {"repeat": "runs of every compared scenario per target (and of the auth scenario), "
                  "each metric the median; ",
        "auth_connects": "new terminals per way in (login off, cookie, bearer, ?token=) and "
                         "anonymous handshakes refused; ",
        "auth_logins": "logins with the right password, and as many with a wrong one; ",
        "load_keystrokes": "echo probe beside the printing terminals; ",
        "probe_keystrokes": "echo probe at each capacity step; ",
        "backend_sessions": "live terminals on the tmux server that is killed; ",
        "backend_repeats": "kills of the tmux server; "}
TARGET_NAMES = ("termweb", "terminado")
# The Redis scenarios' termweb: no sweep runs during a measurement.
NO_SWEEPS = {"TERMWEB_RECONCILE_INTERVAL": "3600"}
# Descriptors per open terminal in the benchmark process, with room to spare.
FDS_PER_TERMINAL = 4


def _steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of counts: {text!r}") from None
    if not steps or any(step < 1 for step in steps) or steps != sorted(set(steps)):
        raise argparse.ArgumentTypeError(f"counts must be positive and increasing: {text!r}")
    return steps


def _targets(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in TARGET_NAMES for name in names):
        raise argparse.ArgumentTypeError(f"targets are {', '.join(TARGET_NAMES)}: {text!r}")
    return names


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks that it all works")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                        help="directory for the JSON, Markdown and PNG results (default: bench/results/)")
    for name, default in FULL.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                            help=HELP.get(name, "") + f"default {default}, smoke {SMOKE[name]}")
    for name, default in FULL_STEPS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=_steps, default=None,
                            help=f"comma-separated, increasing; default "
                                 f"{','.join(map(str, default))}, smoke "
                                 f"{','.join(map(str, SMOKE_STEPS[name]))}")
    parser.add_argument("--targets", type=_targets, default=list(TARGET_NAMES),
                        help="comma-separated: termweb, terminado (default both)")
    parser.add_argument("--only", choices=("gateway", "sessions", "auth", "pool"), default=None,
                        help="run one group of scenarios: 'gateway' (echo, load, connect, bulk "
                             "output, capacity; termweb's memory by part), 'sessions' "
                             "(reconnect; termweb's worker kill, tmux server kill and Redis "
                             "commands), 'auth' (termweb alone: login and handshake overhead) or "
                             "'pool' (termweb alone: warm and cold connects, the capacity ladder "
                             "over several tmux servers)")
    parser.add_argument("--pool-backends", type=int, default=4,
                        help="tmux servers of the pool group's capacity ladder (default 4)")
    parser.add_argument("--load-loop", choices=("sleep", "read"), default="read",
                        help="the load terminals' loop, both printing a line every 50 ms: "
                             "'read' (default: `read -t`, no fork per line) or 'sleep' (forks a "
                             "`sleep` per line: 100 such loops saturate 2 cores by themselves, so "
                             "the probe measures the wait for a CPU, and a step takes minutes)")
    args = parser.parse_args(argv)
    counts, steps = (SMOKE, SMOKE_STEPS) if args.smoke else (FULL, FULL_STEPS)
    for name in FULL:
        if getattr(args, name) is None:
            setattr(args, name, counts[name])
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in FULL_STEPS:
        if getattr(args, name) is None:
            setattr(args, name, steps[name])
    if args.memory_terminals < 2:
        parser.error("--memory-terminals must be at least 2")
    if args.capacity_steps[0] < 2:
        parser.error("--capacity-steps must start at 2 or more (the probe terminal is one)")
    if args.only in ("auth", "pool"):  # termweb's own: nothing to compare
        if "termweb" not in args.targets:
            parser.error(f"--only {args.only} measures termweb: --targets must include it")
        args.targets = ["termweb"]
    return args


def raise_fd_limit(terminals: int) -> tuple[int, int]:
    """Raise this process's soft limit of open descriptors towards the hard
    limit, for ``terminals`` held open; the servers started later inherit it.
    Returns (soft, hard) now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1024 + FDS_PER_TERMINAL * terminals
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft, hard


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
            "terminado": _version("terminado"), "tornado": _version("tornado"), "tmux": tmux}


_STARTED = time.monotonic()


def _log(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:5.1f} s] {message}", file=sys.stderr, flush=True)


def cpu_sampler(server) -> Callable[[], dict]:
    """A function returning CPU seconds used so far by the server's process groups
    (as they are now: call it once the terminals to count are open)."""
    groups = server.process_groups()
    groups.pop("shells")  # thousands of short-lived `sleep`s: counted in the machine total

    def sample() -> dict:
        busy, total = procs.machine_cpu_seconds()
        out = {name: sum(procs.cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
        return {**out, "machine_busy": busy, "machine_total": total, "time": time.monotonic()}
    return sample


def server_cpu_seconds(server) -> float:
    """CPU seconds so far of the server's processes now alive, shells excluded."""
    groups = server.process_groups()
    groups.pop("shells")
    return sum(procs.cpu_seconds(pid) for pids in groups.values() for pid in set(pids))


def cpu_percentages(before: dict, after: dict) -> dict:
    """CPU use per group over the window, in % of one core; machine use in % of all cores."""
    wall = after["time"] - before["time"]
    out = {f"{name}_pct_of_core": 100 * (after[name] - before[name]) / wall
           for name in before if name not in ("machine_busy", "machine_total", "time")}
    out["machine_busy_pct"] = 100 * (after["machine_busy"] - before["machine_busy"]) / max(
        1e-9, after["machine_total"] - before["machine_total"])
    out["window_s"] = wall
    return out


# -- the targets --------------------------------------------------------------------------

class Target(NamedTuple):
    """A server to measure: ``server(terminals=None)`` makes a fresh one (a
    context manager with base_url and process_groups()) ready for that many
    terminals; ``connect`` is its client class."""
    name: str
    server: Callable
    connect: Callable


def _termweb_server(shell: str, terminals: int | None = None) -> TermwebServer:
    env = {"TERMWEB_SHELL": shell}
    if terminals:  # the defaults (500 terminals, 1000 connections) would refuse the ladder
        env |= {"TERMWEB_MAX_TERMINALS": str(terminals + 100),
                "TERMWEB_WORKER_CONNECTIONS": str(terminals + 200)}
    return TermwebServer(env)


def _terminado_server(shell: str, terminals: int | None = None):
    from .peer import TerminadoServer
    return TerminadoServer(shell=shell, max_terminals=max(2000, (terminals or 0) + 100))


def make_target(name: str, shell: str) -> Target:
    """termweb or terminado, running ``shell`` in every terminal."""
    if name == "termweb":
        return Target("termweb", functools.partial(_termweb_server, shell), TermClient)
    from .peer import TerminadoClient
    return Target("terminado", functools.partial(_terminado_server, shell), TerminadoClient)


# -- the compared scenarios: each (args, target) -> (metrics, details, notes) ---------------

def echo_idle(args, target: Target):
    with target.server() as server:
        idle = scenarios.echo_latency(server.base_url, args.keystrokes, target.connect)
    return report.summary(idle["samples_ms"], "echo_idle"), {"echo_idle": idle}, []


def echo_load(args, target: Target):
    metrics, details, notes = {}, {}, []
    for count in args.load_steps:
        with target.server() as server:
            loaded = scenarios.echo_under_load(
                server.base_url, args.load_keystrokes, count, args.load_loop, target.connect,
                sample=cpu_sampler(server))
        metrics.update(report.summary(loaded["samples_ms"], f"echo_load{count}"))
        metrics[f"load{count}_lines_per_s"] = loaded["load"]["lines_per_s"]
        cpu = cpu_percentages(loaded.pop("cpu_before"), loaded.pop("cpu_after"))
        loaded["cpu_during_probe"] = cpu
        details[f"echo_load{count}"] = loaded
        parts = ", ".join(f"{name.removesuffix('_pct_of_core').replace('_', ' ')} {value:.0f}%"
                          for name, value in cpu.items() if name.endswith("_pct_of_core"))
        notes.append(f"{count} terminals printing: CPU during the probe, in % of a core: {parts}; "
                     f"machine {cpu['machine_busy_pct']:.0f}% busy (all cores); "
                     f"{loaded['load']['lines_per_s_per_terminal']:.1f} lines/s per terminal")
        if cpu["machine_busy_pct"] > 90:
            notes.append(f"**Warning:** the CPU was saturated during the probe beside {count} "
                         "printing terminals: that latency is mostly waiting for a core")
    return metrics, details, notes


def connect_to_prompt(args, target: Target):
    with target.server() as server:
        connected = scenarios.connect_to_prompt(server.base_url, args.connects, target.connect)
    metrics = {}
    for key, samples in (("connect", connected["samples_ms"]), ("connect_ready", connected["ready_ms"]),
                         ("connect_reattach", connected["reattach_ms"])):
        metrics.update(report.summary(samples, key, (50, 95), maximum=False))
    metrics["connect_cold_ms"] = connected["cold_ms"]
    return metrics, {"connect": connected}, []


def bulk(args, target: Target):
    with target.server() as server:
        out = scenarios.bulk_output(server.base_url, args.bulk_lines, target.connect,
                                    server_cpu=lambda: server_cpu_seconds(server))
    metrics = {"bulk_wall_s": out["wall_s"], "bulk_received_mb": out["bytes"] / 2**20,
               "bulk_server_cpu_s": out["server_cpu_s"]}
    note = (f"`seq 1 {out['lines']}` prints {out['printed_bytes'] / 2**20:.1f} MB; the client "
            f"received {out['bytes'] / 2**20:.1f} MB in {out['wall_s']:.2f} s")
    return metrics, {"bulk": out}, [note]


def capacity(args, target: Target):
    with target.server(terminals=args.capacity_steps[-1]) as server:
        out = scenarios.capacity(
            server.base_url, args.capacity_steps,
            lambda: procs.memory_by_group(server.process_groups()), target.connect,
            probe_keystrokes=args.probe_keystrokes, settle=0.5 if args.smoke else 2.0,
            step_timeout=30.0 if args.smoke else 150.0)
    metrics = {"capacity_open": max((step["open"] for step in out["steps"]), default=0)}
    for step in out["steps"]:
        n = step["step"]
        metrics |= {f"capacity{n}_pss_per_terminal_mb": step["pss_per_terminal_mb"],
                    f"capacity{n}_rss_per_terminal_mb": step["rss_per_terminal_mb"],
                    f"capacity{n}_failures": step["failures"],
                    f"capacity{n}_open_s": step["open_s"],
                    f"capacity{n}_echo_p99_ms": step["echo_p99_ms"]}
    notes = [f"capacity ladder stopped: {out['stopped']}"] if out["stopped"] else []
    return metrics, {"capacity": out}, notes


def reconnect(args, target: Target):
    notes = []
    with target.server() as server:
        history_frame = target.name == "termweb"
        breakdown = None
        if history_frame:
            tmux = TmuxServer(server.tmux_socket, "/bin/bash")
            cols, rows = 120, 30  # TermClient's default size
            breakdown = functools.partial(direct.reattach_steps, tmux, rounds=min(args.reattaches, 20),
                                          cols=cols, rows=rows, needle=scenarios.SCREEN_MARK)
        out = scenarios.reattach_latency(server.base_url, args.reattaches, target.connect,
                                         breakdown=breakdown, history_frame=history_frame)
    metrics = report.summary(out["samples_ms"], "reattach", (50, 95))
    metrics |= report.summary(out["ready_ms"], "reattach_ready", (50, 95), maximum=False)
    metrics["reattach_history_bytes"] = max(out["history_bytes"])
    p50 = {key: report.percentile(out[key], 50)
           for key in ("upgrade_ms", "ready_ms", "history_ms", "first_redraw_ms", "samples_ms")}
    if history_frame:
        steps = out["breakdown"]
        notes.append(
            f"Reconnect, p50 from the drop: upgrade {p50['upgrade_ms']:.1f} ms, `ready` "
            f"{p50['ready_ms']:.1f} ms, history frame {p50['history_ms']:.1f} ms, first redraw frame "
            f"{p50['first_redraw_ms']:.1f} ms, marker on screen {p50['samples_ms']:.1f} ms. The same "
            f"steps run directly (medians of {steps['rounds']}): `tmux capture-pane` "
            f"{steps['capture_ms']:.1f} ms, spawning `tmux attach` on a pty {steps['spawn_ms']:.1f} ms, "
            f"spawn to marker on screen {steps['attach_to_screen_ms']:.1f} ms")
    else:
        notes.append(
            f"Reconnect, p50 from the drop: upgrade {p50['upgrade_ms']:.1f} ms, `setup` "
            f"{p50['ready_ms']:.1f} ms, marker in the replayed buffer {p50['samples_ms']:.1f} ms "
            "(terminado replays its last output, it does not redraw a screen: see "
            "scenarios.reattach_latency; tornado leaves TCP_NODELAY off, so a replay sent right "
            "behind `setup` can wait ~40 ms for the client's delayed ACK)")
    return metrics, {"reattach": out}, notes


# (group, label, function): in this order, each for every target in turn.
COMPARED = [
    ("gateway", "echo latency, idle", echo_idle),
    ("gateway", "echo latency beside printing terminals", echo_load),
    ("gateway", "connect to first prompt, new and reattached", connect_to_prompt),
    ("gateway", "bulk output", bulk),
    ("gateway", "capacity ladder", capacity),
    ("sessions", "reconnect after a dropped connection", reconnect),
]


def run(args) -> dict:
    results: dict = {"parameters": {name: getattr(args, name)
                                    for name in [*FULL, *FULL_STEPS, "pool_backends"]}
                     | {"smoke": args.smoke, "load_loop": args.load_loop, "only": args.only,
                        "targets": args.targets},
                     "context": context(), "targets": args.targets, "metrics": {}, "details": {},
                     "notes": [], "repeats": {}}
    ctx = results["context"]
    ctx["fd_limit"] = raise_fd_limit(max(args.capacity_steps[-1], args.memory_terminals))
    ctx["loadavg_before"] = os.getloadavg()
    ctx["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    started = time.monotonic()
    # Both targets run bash without rc files: this machine's root bash forks
    # pyenv at every prompt (server.rc_free_shell), which would dominate the
    # connect times and the capacity ladder's start-up instead of the servers.
    with rc_free_shell() as shell:
        compare(args, [make_target(name, shell) for name in args.targets], results)
    if "termweb" in args.targets:
        ours, details = results["metrics"]["termweb"], results["details"]["termweb"]
        if args.only in (None, "gateway"):
            termweb_memory(args, ours, details, results["notes"])
        if args.only in (None, "sessions"):
            termweb_sessions(args, ours, details, results["notes"])
        if args.only in (None, "auth"):
            with rc_free_shell() as shell:
                termweb_auth(args, shell, results)
        if args.only in (None, "pool"):
            with rc_free_shell() as shell:
                termweb_pool(args, shell, results)
    results["ratios"] = report.ratios(results)
    ctx["loadavg_after"] = os.getloadavg()
    results["duration_s"] = time.monotonic() - started
    return results


def compare(args, targets: list[Target], results: dict) -> None:
    """Every compared scenario, for each target in turn (``--repeat`` times):
    each metric is the median of its runs; details are the last run's."""
    runs: dict[str, list[dict]] = {target.name: [] for target in targets}
    for target in targets:
        results["details"][target.name] = {}
    for repeat in range(args.repeat):
        metrics = {target.name: {} for target in targets}
        for group, label, scenario in COMPARED:
            if args.only not in (None, group):
                continue
            for target in targets:
                _log(f"{target.name}: {label}" + (f" (run {repeat + 1} of {args.repeat})"
                                                  if args.repeat > 1 else ""))
                values, details, notes = scenario(args, target)
                metrics[target.name].update(values)
                results["details"][target.name].update(details)  # the last run's
                if repeat == args.repeat - 1:
                    results["notes"].extend(f"{target.name}: {note}" for note in notes)
        for target in targets:
            runs[target.name].append(metrics[target.name])
    for name, values in runs.items():
        results["metrics"][name] = median_metrics(values)
        if args.repeat > 1:
            results["repeats"][name] = values


def median_metrics(runs: list[dict]) -> dict:
    """Each metric's median over the runs that have it."""
    keys = dict.fromkeys(key for values in runs for key in values)
    return {key: statistics.median(values[key] for values in runs if key in values) for key in keys}


# -- termweb's own scenarios: no counterpart in terminado -----------------------------------

def termweb_memory(args, metrics: dict, details: dict, notes: list[str]) -> None:
    """Issue #2's memory per terminal, by part (gunicorn, attach clients, tmux, shells)."""
    _log(f"termweb: memory, 1 terminal, then {args.memory_terminals}")
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
    notes.append("termweb: PSS per terminal by part: " + ", ".join(
        f"{group} {values['pss_mb']:.2f} MB" for group, values in memory["per_terminal"].items()
        if group != "total"))


def redis_env(redis: RedisServer, **settings: str) -> dict[str, str]:
    return {"TERMWEB_REDIS_URL": redis.url, "TERMWEB_REDIS_PREFIX": "bench:", **settings}


def termweb_sessions(args, metrics: dict, details: dict, notes: list[str]) -> None:
    """Issue #3's scenarios without a counterpart: a killed worker, Redis commands per keystroke."""
    _log(f"termweb: kill -9 of a worker serving {args.kill_sessions} live terminals")
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
    notes.append(
        f"termweb: worker kill: {killed['affected']} of {killed['opened']} terminals opened were on "
        f"the killed worker; after the kill, `ready` p50 "
        f"{report.percentile(killed['ready_ms'], 50):.0f} ms, drop noticed p50 "
        f"{report.percentile(killed['dropped_ms'], 50):.1f} ms, "
        f"{max(killed['attempts'])} connect attempts at most; reattached on: "
        + ", ".join(f"{where} {count}" for where, count in sorted(killed["landed_on"].items())))

    _log(f"termweb: kill -9 of the tmux server under {args.backend_sessions} live terminals, "
         f"{args.backend_repeats} times")
    with rc_free_shell() as shell, TermwebServer({"TERMWEB_SHELL": shell}) as server:
        replaced = scenarios.backend_replacement(server.base_url, args.backend_sessions,
                                                 args.backend_repeats)
    metrics["backend_lost_p50_ms"] = report.percentile(replaced["lost_ms"], 50)
    metrics["backend_replaced_p50_ms"] = report.percentile(replaced["replaced_ms"], 50)
    metrics["backend_replaced_max_ms"] = max(replaced["replaced_ms"])
    metrics["backend_new_p50_ms"] = report.percentile(replaced["new_ms"], 50)
    details["backend_replacement"] = replaced

    _log(f"termweb: Redis commands per keystroke: {args.redis_keystrokes} keystrokes, "
         f"{args.redis_cycles} connect cycles")
    with RedisServer() as redis, TermwebServer(redis_env(redis, **NO_SWEEPS)) as server:
        ops = scenarios.redis_operations(server.base_url, args.redis_keystrokes, args.redis_cycles,
                                         redis.command_calls)
    metrics.update({f"redis_ops_per_{step}": ops[f"per_{step}"]
                    for step in ("keystroke", "connect", "reattach", "disconnect")})
    details["redis"] = ops
    notes.append("termweb: Redis commands by step (script-internal ones included): " + "; ".join(
        f"{step}: " + ", ".join(f"{name} {calls:g}" for name, calls in sorted(ops[f"{step}_calls"].items()))
        for step in ("connect", "reattach", "disconnect")))


AUTH_USER = "bench"


def termweb_auth(args, shell: str, results: dict) -> None:
    """Issue #4: what login adds to connect → prompt, the refusal of a
    stranger's handshake, and a login itself (scenarios.auth_overhead), on a
    login-off and a login-on termweb side by side. ``--repeat`` times, each
    metric the median of the runs."""
    metrics, runs = results["metrics"]["termweb"], []
    for repeat in range(args.repeat):
        _log(f"termweb: login and handshake overhead, {args.auth_connects} connects per way in, "
             f"{args.auth_logins} logins" + (f" (run {repeat + 1} of {args.repeat})"
                                             if args.repeat > 1 else ""))
        with TermwebServer({"TERMWEB_SHELL": shell, "TERMWEB_AUTH": "off"}) as off, \
                TermwebServer({"TERMWEB_SHELL": shell, "TERMWEB_AUTH": "on"}) as on:
            password = secrets.token_urlsafe(18)
            on.cli("user", "add", AUTH_USER, "--password-stdin", stdin=password + "\n")
            token = on.cli("token", "create", AUTH_USER, "--label", "bench").strip()
            out = scenarios.auth_overhead(off.base_url, on.base_url, AUTH_USER, password, token,
                                          args.auth_connects, args.auth_logins)
        runs.append(auth_metrics(out))
    metrics.update(median_metrics(runs))
    if args.repeat > 1:
        repeats = results["repeats"].setdefault("termweb", [{} for _ in runs])
        for values, extra in zip(repeats, runs):
            values.update(extra)
    results["details"]["termweb"]["auth"] = out  # the last run's
    p50 = {way: report.percentile(out[way]["ready_ms"], 50) for way in scenarios.AUTH_WAYS}
    results["notes"].append(
        "termweb: auth (last run), connect → `ready` p50: " + ", ".join(
            f"{way} {p50[way]:.1f} ms" for way in scenarios.AUTH_WAYS)
        + "; first connect each way (unmeasured): " + ", ".join(
            f"{way} {out[way]['cold_ms']:.1f} ms" for way in scenarios.AUTH_WAYS)
        + f"; GET /login p50 {report.percentile(out['login_page_ms'], 50):.1f} ms")


def termweb_pool(args, shell: str, results: dict) -> None:
    """Issue #5: connect → first prompt with warm sessions and without, and
    the capacity ladder spread over several tmux servers."""
    metrics, details = results["metrics"]["termweb"], results["details"]["termweb"]
    # Connects come 0.3 s apart and the pool refills every 0.1 s: each one
    # finds a warm shell, as a user does who is not in a login storm.
    for label, env in (("warm", {"TERMWEB_WARM_SESSIONS": "2", "TERMWEB_HEALTH_INTERVAL_MS": "100"}),
                       ("cold", {"TERMWEB_WARM_SESSIONS": "0"})):
        _log(f"termweb: connect → prompt, {label} ({args.connects} connects)")
        with TermwebServer({"TERMWEB_SHELL": shell, **env}) as server:
            time.sleep(0.5)  # the first warm shells reach their prompts
            out = scenarios.connect_to_prompt(server.base_url, args.connects, pause=0.3)
        metrics |= report.summary(out["samples_ms"], f"pool_{label}_connect", (50, 95), maximum=False)
        metrics |= report.summary(out["ready_ms"], f"pool_{label}_ready", (50,), maximum=False)
        details[f"pool_{label}"] = out
    size = args.pool_backends
    _log(f"termweb: capacity ladder {args.capacity_steps} over {size} tmux servers")
    with TermwebServer({"TERMWEB_SHELL": shell, "TERMWEB_BACKEND_POOL_SIZE": str(size),
                        "TERMWEB_WARM_SESSIONS": "0",
                        "TERMWEB_MAX_TERMINALS": str(args.capacity_steps[-1] + 100),
                        "TERMWEB_WORKER_CONNECTIONS": str(args.capacity_steps[-1] + 200)}) as server:
        out = scenarios.capacity(
            server.base_url, args.capacity_steps,
            lambda: procs.memory_by_group(server.process_groups()), TermClient,
            probe_keystrokes=args.probe_keystrokes, settle=0.5 if args.smoke else 2.0,
            step_timeout=30.0 if args.smoke else 150.0)
    for step in out["steps"]:
        n = step["step"]
        metrics |= {f"pool_capacity{n}_pss_per_terminal_mb": step["pss_per_terminal_mb"],
                    f"pool_capacity{n}_open_s": step["open_s"],
                    f"pool_capacity{n}_failures": step["failures"],
                    f"pool_capacity{n}_echo_p99_ms": step["echo_p99_ms"]}
    details["pool_capacity"] = out
    results["notes"].append(f"termweb: pool capacity ladder over {size} tmux servers"
                            + (f", stopped: {out['stopped']}" if out["stopped"] else ""))


def auth_metrics(out: dict) -> dict[str, float]:
    """The auth scenario's figures, and what each way in adds to the login-off one."""
    metrics = {}
    for way in scenarios.AUTH_WAYS:
        metrics |= report.summary(out[way]["samples_ms"], f"auth_{way}_connect", (50, 95),
                                  maximum=False)
        metrics |= report.summary(out[way]["upgrade_ms"], f"auth_{way}_upgrade", (50,),
                                  maximum=False)
    for way in scenarios.AUTH_WAYS[1:]:
        for what, q in (("connect", 50), ("connect", 95), ("upgrade", 50)):
            metrics[f"auth_{way}_{what}_added_p{q}_ms"] = (
                metrics[f"auth_{way}_{what}_p{q}_ms"] - metrics[f"auth_off_{what}_p{q}_ms"])
    metrics |= report.summary(out["refused_ms"], "auth_refused", (50, 95), maximum=False)
    metrics |= report.summary(out["login_ms"], "auth_login", (50, 95), maximum=False)
    metrics |= report.summary(out["login_wrong_ms"], "auth_login_wrong", (50,), maximum=False)
    return metrics


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
    paths = report.write(results, args.out, stamp)
    print(report.markdown(results))
    _log("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
