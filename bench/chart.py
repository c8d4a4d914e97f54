"""A compact PNG of a run's comparison: ``draw(results, path)`` (matplotlib, Agg).

Four panels, one colour per target: the main latencies (grouped bars, log
scale: they span 0.3 ms to seconds), bulk output (wall time, MB received,
server CPU seconds), and the capacity ladder's memory per terminal and probe
echo p99 against the terminals open. A metric a target lacks is left out.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

COLOURS = {"termweb": "#1f77b4", "terminado": "#ff7f0e"}
BULK = [("bulk_wall_s", "wall time (s)"), ("bulk_received_mb", "received (MB)"),
        ("bulk_server_cpu_s", "server CPU (s)")]
CAPACITY = re.compile(r"capacity(\d+)_(pss_per_terminal_mb|echo_p99_ms)\Z")


def latency_bars(metrics: dict[str, dict]) -> list[tuple[str, str]]:
    """(metric key, short label) of the latencies to draw, in order."""
    present = {key for values in metrics.values() for key in values}
    bars = [("echo_idle_p50_ms", "echo\nidle p50"), ("echo_idle_p99_ms", "echo\nidle p99")]
    loads = sorted(int(m.group(1)) for key in present if (m := re.match(r"echo_load(\d+)_p99_ms\Z", key)))
    bars += [(f"echo_load{n}_p99_ms", f"echo p99\n{n} print") for n in loads]
    bars += [("connect_p50_ms", "new →\nprompt p50"),
             ("connect_reattach_p50_ms", "attach →\nprompt p50"),
             ("reattach_p50_ms", "reconnect\n→ screen p50")]
    return [(key, label) for key, label in bars if key in present]


def _log_scale(ax) -> None:
    """A log y axis labelled 0.5, 1, 2, 5, 10, ... rather than 5×10⁻¹."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _nothing(ax) -> None:
    ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center",
            transform=ax.transAxes, color="grey")


def _bars(ax, metrics: dict[str, dict], targets: list[str], bars: list[tuple[str, str]],
          fmt: str) -> bool:
    """Grouped bars on a log scale; False (and a note) if there is nothing to draw."""
    width, drawn = 0.8 / max(1, len(targets)), False
    for i, name in enumerate(targets):
        xs, ys = [], []
        for x, (key, _) in enumerate(bars):
            value = metrics.get(name, {}).get(key)
            if value is not None and value == value and value > 0:  # not NaN, drawable on a log scale
                xs.append(x + (i - (len(targets) - 1) / 2) * width)
                ys.append(value)
        if ys:
            drawn = True
            group = ax.bar(xs, ys, width, label=name, color=COLOURS.get(name))
            ax.bar_label(group, labels=[fmt.format(y) for y in ys], fontsize=7, rotation=90,
                         padding=2)
    ax.set_xticks(range(len(bars)), [label for _, label in bars], fontsize=8)
    if not drawn:
        _nothing(ax)
        return False
    _log_scale(ax)
    ax.margins(y=0.25)
    return True


def _ladder(ax, metrics: dict[str, dict], targets: list[str], what: str) -> bool:
    drawn, steps = False, set()
    for name in targets:
        points = sorted((int(m.group(1)), value) for key, value in metrics.get(name, {}).items()
                        if (m := CAPACITY.match(key)) and m.group(2) == what)
        if points:
            ax.plot(*zip(*points), marker="o", label=name, color=COLOURS.get(name))
            drawn = True
            steps.update(n for n, _ in points)
    ax.set_xticks(sorted(steps))
    ax.set_xlabel("terminals open (ladder step)")
    return drawn


def draw(results: dict, path: Path) -> Path:
    """Write the chart of ``results`` (bench.run's dict) to ``path``."""
    metrics, targets, ctx = results["metrics"], results["targets"], results["context"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), gridspec_kw={"width_ratios": [1.6, 1]})
    (latency, bulk), (memory, echo) = axes

    if _bars(latency, metrics, targets, latency_bars(metrics), "{:.3g}"):
        latency.legend(fontsize=8)
    latency.set_ylabel("ms (log scale)")
    latency.set_title("Latencies (lower is better)")

    _bars(bulk, metrics, targets, BULK, "{:.3g}")
    bulk.set_title(f"Bulk output: seq 1 {results['parameters']['bulk_lines']}")
    bulk.set_ylabel("log scale")

    if _ladder(memory, metrics, targets, "pss_per_terminal_mb"):
        memory.legend(fontsize=8)
    else:
        _nothing(memory)
    memory.set_ylabel("MB PSS per terminal")
    memory.set_ylim(bottom=0)
    memory.set_title("Capacity: memory per idle terminal")

    if _ladder(echo, metrics, targets, "echo_p99_ms"):
        echo.legend(fontsize=8)
        _log_scale(echo)
    else:
        _nothing(echo)
    echo.set_ylabel("ms (log scale)")
    echo.set_title("Capacity: probe echo p99")

    load = ctx.get("loadavg_before", (0, 0, 0))
    fig.suptitle(f"termweb beside {', '.join(t for t in targets if t != 'termweb') or 'no peer'} — "
                 f"{ctx.get('date', '')}, {ctx.get('nproc')} CPUs, load average {load[0]:.2f} before"
                 + (" (smoke run)" if results["parameters"].get("smoke") else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
