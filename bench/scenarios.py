"""The measurements. Each takes a base URL and, optionally, a client factory.

Times are from ``time.perf_counter()``; latencies are returned in ms.
"""
from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import websocket

from . import load
from .client import (NODELAY, Closed, TermClient, cookie_header, drain, http_request, login_form,
                     post_login, visible, wait_for_prompt)
from .report import percentile
from .server import BenchError

# Letters and digits only: nothing readline or history expansion treats specially.
PROBE_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
CLEAR_EVERY = 60      # characters typed before Ctrl-U clears the line (120 columns wide)
ECHO_TIMEOUT = 5.0    # seconds to wait for one echo before giving up
GAP = 0.005           # pause between keystrokes: a probe, not a paste
# Reattach: the marker is printed, not typed (the command line reads `$((6*7))`).
SCREEN_COMMAND = b"seq 1 200; echo SCREEN-MARK-$((6*7))\r"
SCREEN_MARK = b"SCREEN-MARK-42"
RESTORE_TIMEOUT = 10.0  # seconds for one reattach to show the screen
RETRY_PAUSE = 0.05      # a reconnecting client's pause after a failed attempt
CONNECT_TIMEOUT = 15.0  # for one reconnect: a page does not give up on a slow server sooner
CONNECT_ERRORS = (Closed, OSError, websocket.WebSocketException)
SETTLE = 0.3            # for a closed connection to be counted out by the server


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _discard_pending(*terms) -> None:
    """Read whatever is already waiting (answering pings), without waiting for more.

    poll, not select: the capacity scenario holds descriptors past FD_SETSIZE.
    """
    poller, by_fd = select.poll(), {}
    for term in terms:
        by_fd[term.fileno()] = term
        poller.register(term.fileno(), select.POLLIN)
    for _ in range(1000):
        ready = poller.poll(0)
        if not ready:
            return
        for fd, _ in ready:
            by_fd[fd].recv_output(1.0)


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


def _read_until(term, needle: bytes, deadline: float) -> tuple[float, float]:
    """Read until ``needle`` is in the visible output; ``time.perf_counter()``
    at the arrival of the first frame with output and of the one completing it."""
    raw, first = b"", None
    while True:
        data = term.recv_output(deadline - time.perf_counter())
        arrived = time.perf_counter()
        if data is None:
            raise TimeoutError(f"no {needle!r} in the output; it ends {visible(raw)[-200:]!r}")
        if not data:
            continue
        first = first or arrived
        raw = (raw + data)[-16384:]  # whole, so an escape split across frames still parses
        if needle in visible(raw):
            return first, arrived


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
    worker = ctx.Process(target=load.main, args=(theirs, base_url, load_terminals, loop, connect),
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


def connect_to_prompt(base_url: str, connects: int, connect: Callable = TermClient,
                      pause: float = 0.1) -> dict:
    """Scenario 3: from starting the handshake to the first complete prompt, ``connects`` times
    for a new terminal, then ``connects`` times for an existing one (reattach).

    The prompt is detected by client.wait_for_prompt: the visible text ends
    with a prompt character and the terminal then stays quiet for 0.3 s; the
    time taken is that frame's arrival, not the end of the quiet period.
    One more connect comes first, on the still cold server: it is reported
    as ``cold_ms``, outside the samples.

    Reattach: one terminal at its prompt is closed as a page closes it (close
    frame, then SETTLE s for the server to count it out) and opened again by
    its session id; the clock runs from the new handshake to the prompt in
    what the server sends back (termweb: its history, then tmux's redraw;
    terminado: its replayed output buffer).
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
        time.sleep(pause)
    reattach = []
    term = connect(base_url)
    try:
        wait_for_prompt(term)
        for _ in range(connects):
            _close_and_wait(term)
            start = time.perf_counter()
            term = connect(base_url, session=term.session_id)
            reattach.append((wait_for_prompt(term) - start) * 1000)
    finally:
        term.end()
    return {"samples_ms": samples[1:], "ready_ms": ready[1:], "reattach_ms": reattach,
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


def reattach_latency(base_url: str, reattaches: int, connect: Callable = TermClient,
                     breakdown: Callable[[str], dict] | None = None,
                     history_frame: bool = True) -> dict:
    """Scenario 5: a dropped connection, reattached until its screen is back, ``reattaches`` times.

    One terminal runs ``seq 1 200; echo SCREEN-MARK-$((6*7))``: 200 numbered
    lines, most of them in the history, then ``SCREEN-MARK-42`` on the visible
    screen (the typed command holds only ``$((6*7))``). Each round drops the
    socket (TCP shutdown, no close frame), starts the clock, and opens
    ``/ws?session=<id>`` with history restore on. The server answers
    ``ready`` (with ``restored``, the history's size), then one binary frame
    of history, then tmux's redraw of the screen.

    **Screen restored** is the arrival of the frame that completes
    ``SCREEN-MARK-42`` in the visible text (escapes and controls removed) of
    the frames *after* the history frame, i.e. in tmux's redraw. The history
    must not contain the marker (checked). Also timed from the same start:
    the upgrade (HTTP 101), ``ready``, the history frame, and the redraw's
    first frame. ``breakdown(session_id)``, if given, times termweb's steps
    directly against its tmux (bench.direct) once the rounds are done.

    ``history_frame=False`` is for a server without termweb's protocol
    (terminado): after a reconnect it replays its own buffer of the
    terminal's recent output, marker included, and redraws nothing. There,
    **screen restored** is the arrival of the frame completing the marker in
    the visible text of everything after the reconnect, i.e. in the replay;
    ``history_ms`` and ``first_redraw_ms`` are then both the first output
    frame. The two are not the same act: termweb's screen is tmux's actual
    screen (whatever ran while no one watched), terminado's the bytes it
    kept, which a full-screen program's state may not survive.
    """
    term = connect(base_url)
    session = term.session_id
    times: dict[str, list[float]] = {key: [] for key in (
        "samples_ms", "upgrade_ms", "ready_ms", "history_ms", "first_redraw_ms")}
    restored = []
    try:
        wait_for_prompt(term)
        term.send_keys(SCREEN_COMMAND)
        _read_until(term, SCREEN_MARK, time.perf_counter() + RESTORE_TIMEOUT)
        drain(term, quiet=0.1)
        for _ in range(reattaches):
            term.drop()
            start = time.perf_counter()
            term = connect(base_url, session=session)
            deadline = start + RESTORE_TIMEOUT
            if history_frame:  # terminado does not say; a shell made anew would time out below
                if term.ready.get("created") or not term.ready.get("restored"):
                    raise BenchError(f"the reattach restored no history: {term.ready}")
                history = b""
                while not history:  # b"" is a ping or a text frame
                    history = term.recv_output(deadline - time.perf_counter())
                    if history is None:
                        raise BenchError("no history frame after ready")
                history_at = time.perf_counter()
                if SCREEN_MARK in visible(history):
                    raise BenchError("the screen's marker is in the history: it proves nothing there")
                first, done = _read_until(term, SCREEN_MARK, deadline)
            else:
                first, done = _read_until(term, SCREEN_MARK, deadline)
                history_at = first
            for key, at in (("samples_ms", done), ("upgrade_ms", term.opened_at),
                            ("ready_ms", term.ready_at), ("history_ms", history_at),
                            ("first_redraw_ms", first)):
                times[key].append((at - start) * 1000)
            restored.append(term.ready.get("restored", 0))
            drain(term, quiet=0.05)  # the rest of the redraw; the prompt
        steps = breakdown(session) if breakdown else None
    finally:
        term.end()
    return {**times, "history_bytes": restored, "breakdown": steps}


def reattach_after_kill(base_url: str, sessions: int, workers: Callable[[], list[int]],
                        session_workers: Callable[[], dict[str, int]], kill: Callable[[int], None],
                        connect: Callable = TermClient, timeout: float = 30.0) -> dict:
    """Scenario 6: the live terminals of a worker killed with SIGKILL reattach.

    Opens terminals, each running ``export MARK=<i>`` (``i`` zero-padded, so
    no value is a prefix of another), until one worker serves ``sessions``
    of them (``workers()`` lists the worker pids, ``session_workers()`` maps
    session ids to them; the kernel spreads connections, so up to
    3 × ``sessions`` are opened). Those on other workers stay open, idle.
    Each terminal of the chosen worker gets a thread that, like a page,
    reads its socket until it drops, reconnects at once with
    ``?session=<id>`` (history restore on; RETRY_PAUSE after a failed
    attempt, CONNECT_TIMEOUT for one) and types ``echo "m-$MARK"``. Then
    ``kill(worker)``.

    A session's time runs from just before the kill to the arrival of the
    frame completing its own ``m-<i>`` in the visible output after ``ready``;
    ``total_ms`` is the last session's. Every affected session must answer
    within ``timeout`` s.
    """
    width = len(str(3 * sessions))
    opened: list[tuple[TermClient, bytes]] = []
    reattached: list[TermClient] = []
    try:
        victim, served = None, {}
        while len(opened) < 3 * sessions:
            term = connect(base_url)
            mark = b"%0*d" % (width, len(opened))
            opened.append((term, mark))
            wait_for_prompt(term, quiet=0.05)
            term.send_keys(b"export MARK=" + mark + b"\r")
            wait_for_prompt(term, quiet=0.05)
            _discard_pending(*(t for t, _ in opened))  # held terminals must answer pings
            served = session_workers()
            counts = Counter(served[t.session_id] for t, _ in opened if t.session_id in served)
            if counts:
                victim, most = counts.most_common(1)[0]
                if most >= sessions:
                    break
        if victim is None:
            raise BenchError("found no worker serving the terminals")
        affected = [(t, m) for t, m in opened if served.get(t.session_id) == victim]
        time.sleep(SETTLE)
        _discard_pending(*(t for t, _ in opened))
        workers_before = set(workers())

        results: list[dict] = [{} for _ in affected]
        barrier = threading.Barrier(len(affected) + 1, timeout=timeout)
        limit_box: list[float] = []

        def survive(out: dict, term: TermClient, mark: bytes) -> None:
            try:
                barrier.wait()
                limit = limit_box[0]
                while True:  # read until the connection drops
                    try:
                        if term.recv_output(min(0.5, limit - time.perf_counter())) is None \
                                and time.perf_counter() > limit:
                            raise TimeoutError("the connection did not drop")
                    except Closed:
                        break
                out["dropped_at"], out["attempts"] = time.perf_counter(), 0
                while True:
                    if time.perf_counter() > limit:
                        raise TimeoutError(f"not reattached after {out['attempts']} attempts "
                                           f"({out.get('last_error')})")
                    out["attempts"] += 1
                    try:
                        new = connect(base_url, session=term.session_id, timeout=CONNECT_TIMEOUT)
                    except CONNECT_ERRORS as exc:
                        out["last_error"] = f"{type(exc).__name__}: {exc}"
                        time.sleep(RETRY_PAUSE)
                        continue
                    reattached.append(new)
                    try:
                        new.send_keys(b'echo "m-$MARK"\r')
                        _, answered = _read_until(new, b"m-" + mark, limit)
                    except Closed as exc:
                        out["last_error"] = f"Closed: {exc}"
                        time.sleep(RETRY_PAUSE)
                        continue
                    out.update(ready_at=new.ready_at, answered_at=answered,
                               restored=new.ready.get("restored", 0))
                    return
            except Exception as exc:  # noqa: BLE001 -- reported below
                out["error"] = f"{type(exc).__name__}: {exc}"

        threads = [threading.Thread(target=survive, args=(out, t, m), daemon=True)
                   for out, (t, m) in zip(results, affected)]
        limit_box.append(time.perf_counter() + timeout + 5)
        for thread in threads:
            thread.start()
        barrier.wait()
        killed_at = time.perf_counter()
        kill(victim)
        for thread in threads:
            thread.join(max(0.1, limit_box[0] + 5 - time.perf_counter()))
        failed = [out for out in results if "answered_at" not in out]
        if failed:
            raise BenchError(f"{len(failed)} of {len(affected)} sessions did not reattach after "
                             f"the kill: {failed[0].get('error', 'still running')}")
        after = session_workers()
        landed = Counter("surviving worker" if after.get(t.session_id) in workers_before
                         else "respawned worker" for t, _ in affected)

        def since_kill(key: str) -> list[float]:
            return [(out[key] - killed_at) * 1000 for out in results]
        samples = since_kill("answered_at")
        return {"samples_ms": samples, "total_ms": max(samples), "ready_ms": since_kill("ready_at"),
                "dropped_ms": since_kill("dropped_at"),
                "attempts": [out["attempts"] for out in results],
                "history_bytes": [out["restored"] for out in results],
                "affected": len(affected), "opened": len(opened), "landed_on": dict(landed)}
    finally:
        gone = {t.session_id for t in reattached}
        for term in reattached + [t for t, _ in opened if t.session_id not in gone]:
            try:
                term.send_keys(b"\x15exit\r")
            except Exception:
                pass
        for term, _ in opened:
            term.close()
        for term in reattached:
            term.close()


def _close_and_wait(term) -> None:
    """Disconnect, then give the server SETTLE s to count the connection out."""
    term.disconnect()
    time.sleep(SETTLE)


def redis_operations(base_url: str, keystrokes: int, cycles: int,
                     command_calls: Callable[[], dict[str, int]],
                     connect: Callable = TermClient) -> dict:
    """Scenario 7: Redis commands per keystroke, and per connect, reattach and disconnect.

    ``command_calls()`` reads Redis's calls by command (INFO commandstats,
    whose own call shows in the next reading: one per window is subtracted).
    The server must do nothing else with Redis meanwhile (no sweeps: a long
    TERMWEB_RECONCILE_INTERVAL). Keystrokes: the echo probe, each keystroke
    waiting for its echo. Then ``cycles`` times (after one unmeasured cycle,
    which loads the Lua scripts): open a new terminal up to its prompt;
    close it (close frame) and wait SETTLE s; reattach it up to the end of
    the redraw; close again. Commands run inside Lua scripts count too.
    """
    def delta(before: dict, after: dict) -> Counter:
        out = Counter({name: after.get(name, 0) - before.get(name, 0) for name in after})
        out["info"] -= 1  # the reading `before` itself
        return +out  # drops zero counts

    term = connect(base_url)
    try:
        wait_for_prompt(term)
        echo_probe(term, 0)  # warm-up only
        before = command_calls()
        echo_probe(term, keystrokes, warmup=0)
        typing = delta(before, command_calls())
    finally:
        term.end()
    steps: dict[str, Counter] = {"connect": Counter(), "reattach": Counter(), "disconnect": Counter()}
    ended = []
    for cycle in range(cycles + 1):  # the first, unmeasured, loads the Lua scripts
        measured = cycle > 0
        before = command_calls()
        term = connect(base_url)
        wait_for_prompt(term, quiet=0.1)
        opened = command_calls()
        _close_and_wait(term)
        closed = command_calls()
        term = connect(base_url, session=term.session_id)
        drain(term, quiet=0.1)
        reopened = command_calls()
        _close_and_wait(term)
        closed_again = command_calls()
        ended.append(term.session_id)
        if measured:
            steps["connect"] += delta(before, opened)
            steps["disconnect"] += delta(opened, closed) + delta(reopened, closed_again)
            steps["reattach"] += delta(closed, reopened)
    for session in ended:  # end the shells, outside the measurement
        connect(base_url, session=session, restore=False).end()
    per = {"connect": cycles, "reattach": cycles, "disconnect": 2 * cycles}
    return {"keystrokes": keystrokes, "typing_calls": dict(typing),
            "per_keystroke": sum(typing.values()) / keystrokes,
            **{f"per_{step}": sum(steps[step].values()) / per[step] for step in steps},
            **{f"{step}_calls": {name: calls / per[step] for name, calls in steps[step].items()}
               for step in steps}}


# The ways into a terminal the auth scenario compares, in its table's order:
# login off, then login on with each credential /ws accepts.
AUTH_WAYS = ("off", "cookie", "bearer", "query")
AUTH_PAUSE = 0.1  # between connects, as in connect_to_prompt


def auth_overhead(off_url: str, on_url: str, user: str, password: str, token: str,
                  connects: int, logins: int, connect: Callable = TermClient) -> dict:
    """Scenario 10 (issue #4): what login costs a connect, and a login itself.

    Two servers: ``off_url`` with TERMWEB_AUTH=off, ``on_url`` with login on,
    where ``user`` has ``password`` and the API token ``token``. A new
    terminal is connected up to its first prompt (connect_to_prompt's
    method: handshake start to the frame completing the prompt) ``connects``
    times in each of four ways, in turn, each round starting with the next
    way (so drift in the machine's load spreads over all four):

    * ``off``: no credential, login off (the baseline);
    * ``cookie``: the ``termweb_session`` cookie of one login (GET /login,
      then POST /login with the form's csrf_token), sent with the handshake;
    * ``bearer``: ``Authorization: Bearer <token>``;
    * ``query``: ``/ws?token=<token>``.

    One connect each way comes first, unmeasured (``cold_ms``). Then
    ``connects`` anonymous handshakes to the login-on server, each refused
    with HTTP 401 before the upgrade (``refused_ms``: handshake start to the
    refusal read); then ``logins`` logins, each a GET /login
    (``login_page_ms``) and a timed POST /login with the right password
    (``login_ms``, answered 302 with a new session cookie), and as many with
    a wrong one (``login_wrong_ms``, answered 401).
    """
    jar, csrf = login_form(on_url)
    status, jar = post_login(on_url, jar, csrf, user, password)
    if status != 302 or "termweb_session" not in jar:
        raise BenchError(f"could not log in as {user}: POST /login answered {status}")
    ways = {"off": (off_url, {}, {}),
            "cookie": (on_url, cookie_header({"termweb_session": jar["termweb_session"]}), {}),
            "bearer": (on_url, {"Authorization": f"Bearer {token}"}, {}),
            "query": (on_url, {}, {"token": token})}

    def once(way: str) -> tuple[float, float, float]:
        """(prompt, upgrade, ready) in ms from the handshake's start."""
        url, headers, query = ways[way]
        start = time.perf_counter()
        term = connect(url, headers=headers, query=query)
        try:
            prompt = wait_for_prompt(term)
            return tuple((at - start) * 1000 for at in (prompt, term.opened_at, term.ready_at))
        finally:
            term.end()
            time.sleep(AUTH_PAUSE)

    out = {way: {"samples_ms": [], "upgrade_ms": [], "ready_ms": [], "cold_ms": once(way)[0]}
           for way in AUTH_WAYS}
    for round_ in range(connects):
        shift = round_ % len(AUTH_WAYS)
        for way in AUTH_WAYS[shift:] + AUTH_WAYS[:shift]:
            prompt, upgrade, ready = once(way)
            out[way]["samples_ms"].append(prompt)
            out[way]["upgrade_ms"].append(upgrade)
            out[way]["ready_ms"].append(ready)

    refused = []
    anonymous = on_url.replace("http", "ws", 1) + "/ws?cols=120&rows=30"
    for _ in range(connects):
        start = time.perf_counter()
        try:
            ws = websocket.create_connection(anonymous, timeout=10, sockopt=NODELAY)
        except websocket.WebSocketBadStatusException as refusal:
            refused.append((time.perf_counter() - start) * 1000)
            if refusal.status_code != 401:
                raise BenchError(f"an anonymous handshake was refused with "
                                 f"{refusal.status_code}, not 401") from None
        else:
            ws.shutdown()
            raise BenchError("an anonymous handshake was accepted with login on")

    page, good, wrong = [], [], []
    for _ in range(logins):
        for right in (True, False):
            start = time.perf_counter()
            jar, csrf = login_form(on_url)
            if right:
                page.append((time.perf_counter() - start) * 1000)
            before = jar.get("termweb_session")
            start = time.perf_counter()
            status, jar = post_login(on_url, jar, csrf, user,
                                     password if right else password + "-wrong")
            (good if right else wrong).append((time.perf_counter() - start) * 1000)
            expected = 302 if right else 401
            if status != expected or (right and jar.get("termweb_session") in (None, before)):
                raise BenchError(f"POST /login with the {'right' if right else 'wrong'} password "
                                 f"answered {status}, not {expected}")
    return {**out, "refused_ms": refused, "login_page_ms": page, "login_ms": good,
            "login_wrong_ms": wrong, "connects": connects, "logins": logins}


# Bulk output: the marker is printed, not typed (the command line reads `$((6*7))`).
BULK_MARK = b"BULK-DONE-42"


def backend_replacement(base_url: str, sessions: int, repeats: int,
                        connect: Callable = TermClient) -> dict:
    """Scenario 11 (issue #5): ``kill -9`` of the tmux server under ``sessions``
    live terminals, ``repeats`` times (a server with one backend: every
    terminal is on the one killed).

    From just before the kill: ``lost_ms``, until every live terminal's
    socket has been told (its close frame arrived); ``replaced_ms``, until
    /readyz names a new tmux server (polled every 10 ms); ``new_ms``, until a
    new terminal opened after that shows its prompt.
    """
    samples: dict[str, list[float]] = {"lost_ms": [], "replaced_ms": [], "new_ms": []}
    for _ in range(repeats):
        terms = [connect(base_url) for _ in range(sessions)]
        for term in terms:
            wait_for_prompt(term, quiet=0.05)
        old = _tmux_pid(base_url)
        started = time.perf_counter()
        os.kill(old, signal.SIGKILL)
        for term in terms:
            deadline = time.perf_counter() + 10
            try:
                while time.perf_counter() < deadline:
                    term.recv_output(deadline - time.perf_counter())
            except Closed:
                pass
            term.close()
        samples["lost_ms"].append((time.perf_counter() - started) * 1000)
        deadline = time.perf_counter() + 10
        while _tmux_pid(base_url) in (None, old):
            if time.perf_counter() > deadline:
                raise BenchError("no new tmux server within 10 s of the kill")
            time.sleep(0.01)
        samples["replaced_ms"].append((time.perf_counter() - started) * 1000)
        fresh = connect(base_url)
        wait_for_prompt(fresh, quiet=0.05)
        samples["new_ms"].append((time.perf_counter() - started) * 1000)
        fresh.end()
    return samples


def _tmux_pid(base_url: str) -> int | None:
    status, _, body = http_request(base_url, "GET", "/readyz")
    backends = json.loads(body).get("backends") or [{}]
    return backends[0].get("pid") if backends[0].get("up") else None


def bulk_output(base_url: str, lines: int, connect: Callable = TermClient,
                server_cpu: Callable[[], float] | None = None) -> dict:
    """Scenario 8: ``seq 1 <lines>; echo BULK-DONE-$((6*7))`` until the marker is back.

    The clock runs from sending the command to the arrival of the frame that
    completes ``BULK-DONE-42`` in the visible output (the prompt follows it in
    the same burst). ``bytes`` counts the terminal output the client received
    (frame payloads; terminado's are JSON strings on the wire, counted here as
    the text they carry). tmux keeps a screen, not a stream: it may skip
    output a client could not have read in time and redraw instead, so
    termweb can deliver fewer bytes than ``seq`` printed. ``server_cpu()``,
    if given, returns the server's CPU seconds so far (shells excluded); the
    difference over the run is reported.
    """
    term = connect(base_url)
    try:
        wait_for_prompt(term)
        cpu_before = server_cpu() if server_cpu else None
        start = time.perf_counter()
        term.send_keys(b"seq 1 %d; echo BULK-DONE-$((6*7))\r" % lines)
        deadline = start + 60 + lines / 10_000
        received, tail = 0, b""
        while True:
            data = term.recv_output(deadline - time.perf_counter())
            if data is None:
                raise TimeoutError(f"no {BULK_MARK!r} within {deadline - start:.0f} s "
                                   f"({received} bytes received)")
            received += len(data)
            tail = (tail + data)[-8192:]  # whole escapes: the marker cannot hide behind one
            if data and BULK_MARK in visible(tail):
                done = time.perf_counter()
                break
        cpu_after = server_cpu() if server_cpu else None
        drain(term, quiet=0.2, limit=5.0)  # the prompt; whatever tmux still redraws
    finally:
        term.end()
    return {"lines": lines, "wall_s": done - start, "bytes": received,
            "printed_bytes": sum(len(str(i)) + 1 for i in range(1, lines + 1)),
            "server_cpu_s": (cpu_after - cpu_before) if server_cpu else None}


def _try_connect(connect: Callable, base_url: str):
    """(client, None) or (None, the error's name) for one new terminal."""
    try:
        return connect(base_url), None
    except CONNECT_ERRORS as exc:
        return None, type(exc).__name__


def capacity(base_url: str, steps: list[int], measure: Callable[[], dict],
             connect: Callable = TermClient, probe_keystrokes: int = 100, batch: int = 50,
             threads: int = 10, step_timeout: float = 120.0, settle: float = 2.0,
             max_failures: float = 0.05) -> dict:
    """Scenario 9: idle terminals opened step by step up to each of ``steps``.

    One probe terminal opens first and stays at its prompt; ``measure()``
    (memory of the server's processes, as in memory_per_terminal) is read
    with it alone. Then, for each step, new terminals connect in batches of
    ``batch`` (``threads`` handshakes at a time; all held open, their pings
    answered between batches) until ``step`` are open counting the probe.
    After ``settle`` s (shells reach their prompts) the step reports: memory
    per terminal (``(now - probe alone) / (open - 1)``), the connect failures
    of the step, the time it took, and the probe's echo p50/p99 over
    ``probe_keystrokes`` keystrokes. Bounded: a step stops at
    ``step_timeout`` s or when its failures pass ``max_failures`` of the
    terminals it had to open; the ladder then ends there, and ``stopped``
    says why.
    """
    held: list = []
    out: list[dict] = []
    stopped = None
    try:
        probe = connect(base_url)
        held.append(probe)
        wait_for_prompt(probe)
        time.sleep(settle)
        base = measure()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for step in steps:
                started = time.perf_counter()
                wanted, failures, errors = step - len(held), 0, Counter()
                while len(held) < step:
                    if time.perf_counter() - started > step_timeout:
                        stopped = f"step {step}: only {len(held)} open after {step_timeout:.0f} s"
                        break
                    if failures > max(2, max_failures * wanted):
                        stopped = f"step {step}: {failures} connect failures ({dict(errors)})"
                        break
                    count = min(batch, step - len(held))
                    for term, error in pool.map(lambda _: _try_connect(connect, base_url),
                                                range(count)):
                        if term is not None:
                            held.append(term)
                        else:
                            failures += 1
                            errors[error] += 1
                    _discard_pending(*held)
                opened_s = time.perf_counter() - started
                settle_until = time.perf_counter() + settle
                while time.perf_counter() < settle_until:
                    _discard_pending(*held)
                    time.sleep(0.1)
                memory = measure()
                samples = echo_probe(probe, probe_keystrokes, warmup=5)
                _discard_pending(*held)
                open_now = len(held)
                per = {key: (memory["total"][key] - base["total"][key]) / max(1, open_now - 1)
                       for key in ("pss_mb", "rss_mb")}
                out.append({"step": step, "open": open_now, "failures": failures,
                            "errors": dict(errors), "open_s": opened_s,
                            "pss_per_terminal_mb": per["pss_mb"],
                            "rss_per_terminal_mb": per["rss_mb"], "memory": memory,
                            "echo_p50_ms": percentile(samples, 50),
                            "echo_p99_ms": percentile(samples, 99), "echo_samples_ms": samples})
                _log(f"capacity: {open_now} open ({failures} failures) in {opened_s:.1f} s, "
                     f"{per['pss_mb']:.2f} MB PSS each, echo p99 {out[-1]['echo_p99_ms']:.2f} ms")
                if stopped:
                    break
    finally:
        for term in held:
            try:
                term.send_keys(b"\x15exit\r")
            except Exception:
                pass
        for term in held:
            try:
                term.close()
            except Exception:
                pass
    return {"base": base, "steps": out, "stopped": stopped}
