"""The measurements. Each takes a base URL and, optionally, a client factory.

Times are from ``time.perf_counter()``; latencies are returned in ms.
"""
from __future__ import annotations

import itertools
import multiprocessing
import select
import sys
import time
from typing import Callable

from . import load
from .client import TermClient, drain, visible, wait_for_prompt
from .server import BenchError

# Letters and digits only: nothing readline or history expansion treats specially.
PROBE_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
CLEAR_EVERY = 60      # characters typed before Ctrl-U clears the line (120 columns wide)
ECHO_TIMEOUT = 5.0    # seconds to wait for one echo before giving up
GAP = 0.005           # pause between keystrokes: a probe, not a paste


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _discard_pending(*terms) -> None:
    """Read whatever is already waiting (answering pings), without waiting for more."""
    for _ in range(1000):
        ready = select.select(terms, [], [], 0)[0]
        if not ready:
            return
        for term in ready:
            term.recv_output(1.0)


def _echo_once(term, char: bytes) -> float:
    """Type one character; ms until a frame whose visible text holds it arrives."""
    start = time.perf_counter()
    term.send_keys(char)
    deadline = start + ECHO_TIMEOUT
    while True:
        data = term.recv_output(deadline - time.perf_counter())
        arrived = time.perf_counter()
        if data is None:
            raise BenchError(f"no echo of {char!r} within {ECHO_TIMEOUT} s")
        if char in visible(data):
            return (arrived - start) * 1000


def echo_probe(term, count: int, warmup: int = 20) -> list[float]:
    """Echo latencies (ms) of ``count`` single keystrokes in an open terminal at a prompt."""
    chars = itertools.cycle(PROBE_CHARS[i:i + 1] for i in range(len(PROBE_CHARS)))
    for _ in range(warmup):
        _echo_once(term, next(chars))
    term.send_keys(b"\x15")
    drain(term)
    samples, on_line = [], 0
    for _ in range(count):
        if on_line >= CLEAR_EVERY:
            term.send_keys(b"\x15")  # Ctrl-U: kill the line; not timed
            drain(term)
            on_line = 0
        _discard_pending(term)
        samples.append(_echo_once(term, next(chars)))
        on_line += 1
        time.sleep(GAP)
    return samples


def echo_latency(base_url: str, keystrokes: int, connect: Callable = TermClient) -> dict:
    """Scenario 1: keystroke echo in one terminal on an otherwise idle server."""
    term = connect(base_url)
    try:
        wait_for_prompt(term)
        return {"samples_ms": echo_probe(term, keystrokes)}
    finally:
        term.end()


def echo_under_load(base_url: str, keystrokes: int, load_terminals: int, loop: str = "sleep",
                    connect: Callable = TermClient, sample: Callable[[], dict] | None = None) -> dict:
    """Scenario 2: the echo probe while ``load_terminals`` other terminals print ~20 lines/s.

    ``loop`` names the printing loop (bench.load.LOAD_LOOPS): "sleep" is the
    issue's, "read" prints the same without forking a process per line.

    The load clients run in a separate process (bench.load) so that reading
    their sockets does not compete with the probe for this process's GIL.
    ``sample`` (optional) is called just before and after the timed probe.
    """
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    worker = ctx.Process(target=load.main, args=(theirs, base_url, load_terminals, loop),
                         daemon=True)
    worker.start()
    stopped = False
    try:
        reply = load.receive(ours, timeout=60 + 2 * load_terminals, worker=worker)
        if "error" in reply:
            raise BenchError(f"load generator: {reply['error']}")
        _log(f"load: {reply['producing']} terminals producing after {reply['setup_s']:.1f} s")
        term = connect(base_url)
        try:
            wait_for_prompt(term)
            echo_probe(term, 0)  # warm-up only
            ours.send("mark")
            before = sample() if sample else None
            samples = echo_probe(term, keystrokes, warmup=0)
            after = sample() if sample else None
            ours.send("stop")
            stopped = True
        finally:
            term.end()
        stats = load.receive(ours, timeout=30 + load_terminals, worker=worker)
        if "error" in stats:
            raise BenchError(f"load generator: {stats['error']}")
        return {"samples_ms": samples, "load": stats, "cpu_before": before, "cpu_after": after}
    finally:
        if not stopped:  # an error or Ctrl-C: ask the load process to end its terminals
            try:
                ours.send("stop")
            except OSError:
                pass
        worker.join(10 + load_terminals / 10)
        if worker.is_alive():
            worker.terminate()
            worker.join(5)
        if worker.is_alive():
            worker.kill()
            worker.join(5)
        ours.close()


def connect_to_prompt(base_url: str, connects: int, connect: Callable = TermClient) -> dict:
    """Scenario 3: from starting the handshake to the first complete prompt, ``connects`` times.

    The prompt is detected by client.wait_for_prompt: the visible text ends
    with a prompt character and the terminal then stays quiet for 0.3 s; the
    time taken is that frame's arrival, not the end of the quiet period.
    One more connect comes first, on the still cold server: it is reported
    as ``cold_ms``, outside the samples.
    """
    samples, ready = [], []
    for _ in range(connects + 1):  # the first, on a cold server, is reported apart
        start = time.perf_counter()
        term = connect(base_url)
        try:
            samples.append((wait_for_prompt(term) - start) * 1000)
            if hasattr(term, "ready_at"):  # the server's ready message: session created and attached
                ready.append((term.ready_at - start) * 1000)
        finally:
            term.end()
        time.sleep(0.1)
    return {"samples_ms": samples[1:], "ready_ms": ready[1:],
            "cold_ms": samples[0], "cold_ready_ms": ready[0] if ready else None}


def memory_per_terminal(base_url: str, terminals: int, measure: Callable[[], dict],
                        connect: Callable = TermClient, settle: float = 2.0) -> dict:
    """Scenario 4: memory with 1 terminal open, then with ``terminals`` open, all at their prompts.

    ``measure()`` returns ``{group: {"pss_mb", "rss_mb", "processes"}, "total": ...}``
    for the server's processes (see procs.memory_by_group).
    """
    if terminals < 2:
        raise BenchError("the memory scenario needs at least 2 terminals")
    open_terms = []
    try:
        open_terms.append(connect(base_url))
        wait_for_prompt(open_terms[0])
        time.sleep(settle)
        one = measure()
        for _ in range(terminals - 1):
            term = connect(base_url)
            open_terms.append(term)
            wait_for_prompt(term, quiet=0.05)
            _discard_pending(*open_terms)  # held terminals must answer the server's pings
        time.sleep(settle)
        _discard_pending(*open_terms)
        many = measure()
    finally:
        for term in open_terms:
            try:
                term.send_keys(b"\x15exit\r")
            except Exception:
                pass
        for term in open_terms:
            term.close()
    per = {group: {key: (many[group][key] - one[group][key]) / (terminals - 1)
                   for key in ("pss_mb", "rss_mb", "processes")} for group in many}
    return {"one": one, "many": many, "per_terminal": per}
