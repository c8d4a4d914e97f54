"""termweb.spawn inside a gevent-patched process, as in a worker: commands
start with posix_spawn and are waited for without blocking the hub."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_patched(body: str, tmp_path) -> dict:
    script = "from gevent import monkey; monkey.patch_all()\n" + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_spawned_commands_report_output_and_exit_codes_without_blocking_the_hub(tmp_path):
    result = run_patched("""
        import json, time, gevent
        from termweb import spawn
        env = {"PATH": "/usr/bin:/bin"}
        ticks = []
        ticker = gevent.spawn(lambda: [ticks.append(time.monotonic()) or gevent.sleep(0.02)
                                       for _ in range(1000)])
        started = time.monotonic()
        code, out, err = spawn.run(["sh", "-c", "sleep 0.3; echo out; echo err >&2; exit 3"], env, 5)
        slow = [t for t in ticks if t > started]
        many = gevent.joinall([gevent.spawn(spawn.run, ["echo", str(i)], env, 5) for i in range(40)])
        try:
            spawn.run(["sleep", "5"], env, 0.2)
            timed_out = False
        except spawn.CommandTimeout:
            timed_out = True
        try:
            spawn.run(["no-such-command-here"], env, 5)
            missing = "ran"
        except OSError as exc:
            missing = type(exc).__name__
        big = spawn.run(["head", "-c", "3000000", "/dev/zero"], env, 5)[1]
        ticker.kill()
        print(json.dumps({"code": code, "out": out.decode(), "err": err.decode(),
                          "ticks_during": len(slow),
                          "many": sorted(g.value[1].decode().strip() for g in many),
                          "timed_out": timed_out, "missing": missing, "big": len(big)}))
    """, tmp_path)
    assert (result["code"], result["out"], result["err"]) == (3, "out\n", "err\n")
    assert result["ticks_during"] >= 5  # the hub ran on while the command slept
    assert result["many"] == sorted(str(i) for i in range(40))
    assert result["timed_out"] is True
    assert result["missing"] == "FileNotFoundError"
    assert result["big"] == 3_000_000
