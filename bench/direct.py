"""termweb's reattach steps run directly against its tmux, without termweb.

For a breakdown of the reattach time: the history capture (the same
``tmux capture-pane`` termweb runs), spawning a ``tmux attach-session`` client
on a pty (as termweb's PtyBridge does, with ptyprocess), and that client's
redraw of the screen. The bench process is smaller than a gunicorn worker,
so its fork is a lower bound of the worker's.
"""
from __future__ import annotations

import os
import select
import signal
import statistics
import time

import ptyprocess

from termweb.tmux import TmuxServer

from .client import visible

REDRAW_TIMEOUT = 5.0


def _attach_once(tmux: TmuxServer, session_id: str, cols: int, rows: int,
                 needle: bytes) -> tuple[float, float]:
    """(spawn ms, ms until ``needle`` is visible in the client's output), both from the spawn."""
    start = time.perf_counter()
    client = ptyprocess.PtyProcess.spawn(tmux.attach_command(session_id), env=tmux.env,
                                         dimensions=(rows, cols))
    spawned = time.perf_counter()
    try:
        text, deadline = b"", start + REDRAW_TIMEOUT
        while needle not in text:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not select.select([client.fd], [], [], remaining)[0]:
                raise TimeoutError(f"no {needle!r} from tmux attach within {REDRAW_TIMEOUT} s")
            try:
                data = os.read(client.fd, 65536)
            except OSError:  # EIO: the client exited
                raise TimeoutError(f"tmux attach exited before {needle!r}") from None
            text = (text + visible(data))[-4096:]
        return (spawned - start) * 1000, (time.perf_counter() - start) * 1000
    finally:
        # As termweb detaches: SIGHUP to the client, which leaves the session running.
        try:
            os.kill(client.pid, signal.SIGHUP)
        except ProcessLookupError:
            pass
        client.wait()
        client.delayafterclose = 0  # ptyprocess otherwise sleeps 0.1 s in close()
        client.close()


def reattach_steps(tmux: TmuxServer, session_id: str, rounds: int, cols: int, rows: int,
                   needle: bytes, history_lines: int = 5000) -> dict:
    """Medians (ms) over ``rounds`` of: capture the history, spawn an attach
    client, and spawn-to-``needle`` (the attach client's redraw of the screen)."""
    capture, spawn, redraw = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        tmux.capture_history(session_id, history_lines)
        capture.append((time.perf_counter() - start) * 1000)
        spawned, redrawn = _attach_once(tmux, session_id, cols, rows, needle)
        spawn.append(spawned)
        redraw.append(redrawn)
        time.sleep(0.02)
    return {"rounds": rounds, "capture_ms": statistics.median(capture),
            "spawn_ms": statistics.median(spawn), "attach_to_screen_ms": statistics.median(redraw)}
