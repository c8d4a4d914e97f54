"""Readings from /proc (process trees, PSS/RSS from smaps_rollup, CPU ticks), and ending leftovers by pid."""
from __future__ import annotations

import os
import signal

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def kill_alive(pids: list[int]) -> None:
    """SIGKILL those of ``pids`` still alive (processes this benchmark started)."""
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def age(pid: int) -> float:
    """Seconds since the process started; 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - int(fields[19]) / CLOCK_TICKS  # field 22, starttime


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> list[str]:
    """A process's arguments; [] if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def children_by_parent() -> dict[int, list[int]]:
    """ppid -> the pids of its children, for every process now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (not root itself), found through ppid links."""
    children = children_by_parent()
    found, todo = [], [root]
    while todo and len(found) < 100_000:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB; (0, 0) if it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def memory_by_group(groups: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """PSS and RSS (MiB) and process count per group, plus a ``total``."""
    out, seen = {}, set()
    total = {"pss_mb": 0.0, "rss_mb": 0.0, "processes": 0}
    for name, pids in groups.items():
        pss = rss = count = 0
        for pid in pids:
            if pid in seen:
                continue
            seen.add(pid)
            p, r = memory_kb(pid)
            if p or r:
                pss, rss, count = pss + p, rss + r, count + 1
        out[name] = {"pss_mb": pss / 1024, "rss_mb": rss / 1024, "processes": count}
        for key, value in out[name].items():
            total[key] += value
    out["total"] = total
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if fields else 0.0


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS
