"""Gunicorn settings for termweb, all from TERMWEB_* variables (docs/configuration.md)."""
import fcntl
import os
import shutil
import sys
import tempfile

from termweb.config import ConfigError, Settings, is_loopback_bind
from termweb.tmux import TmuxServer

try:
    _settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"termweb: {exc}")

# Server socket
bind = [_settings.bind]

# Worker processes
# gunicorn's gevent worker (needs gunicorn[gevent], PITFALLS #5) that closes
# live terminals with 1012 when it is told to stop.
worker_class = "termweb.worker.TerminalWorker"
workers = _settings.workers
# Every open terminal holds one connection for its whole life (PITFALLS #6).
worker_connections = _settings.worker_connections
timeout = 30
graceful_timeout = 10
keepalive = 5

# Logging
loglevel = _settings.log_level
errorlog = "-"
accesslog = None
proc_name = "termweb"
# Several termweb instances (tests, side-by-side deploys) would fight over
# the one default control socket path; termweb does not use gunicornc.
control_socket_disable = True


def on_starting(server):
    """Refuse set-ups that would misbehave, before anything starts."""
    # No shells for the network without login.
    exposed = [address for address in server.cfg.bind if not is_loopback_bind(address)]
    if exposed and not _settings.auth:
        sys.exit(f"termweb: refusing to listen on {', '.join(exposed)} with TERMWEB_AUTH=off: "
                 "anyone who reaches that address would get a shell. Turn login on, or bind "
                 "127.0.0.1 (TERMWEB_HOST).")
    # Several workers need the shared store (`-w` on the command line counts too).
    problem = _settings.store_problem(server.cfg.workers)
    if problem:
        sys.exit(f"termweb: {problem}")
    # A master re-executed by USR2 takes over from the lock's holder.
    if not _settings.redis_url and not server.master_pid:
        _hold_instance_lock()
    # Workers add up their metrics in files here (termweb/metrics.py); set
    # before any worker imports prometheus_client. One folder per master.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="termweb-metrics-")


def child_exit(server, worker):
    """A worker's live gauges go with it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)


_instance_lock = None


def _hold_instance_lock():
    """One in-memory instance per tmux server: a second one would not know the
    first one's sessions. The lock lives as long as this master."""
    global _instance_lock
    path = TmuxServer(_settings.tmux_socket, _settings.shell).instance_lock_path
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    _instance_lock = open(path, "a")  # noqa: SIM115 -- held until exit
    try:
        fcntl.flock(_instance_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"termweb: another termweb instance already serves tmux socket "
                 f"{_settings.tmux_socket!r} with the in-memory session store. To run several "
                 "instances, give them a shared store (TERMWEB_REDIS_URL), or keep them apart "
                 "with TERMWEB_TMUX_SOCKET.")


def when_ready(server):
    urls = []
    for listener in server.LISTENERS:
        host, port = listener.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        urls.append(f"http://{host}:{port}")
        server.log.info("termweb is ready: %s/", urls[-1])
    if _settings.auth and urls:
        _print_login_link(server, urls[0])


def _print_login_link(server, url):
    """With no users and no TERMWEB_PASSWORD: a fresh first-run login link."""
    from termweb.accounts import open_accounts
    from termweb.store import open_store

    store = open_store(_settings.redis_url, _settings.redis_prefix, _settings.session_ttl)
    try:
        token = open_accounts(_settings, store).start_first_run()
    except Exception as exc:  # noqa: BLE001 -- reported; log in with a password instead
        server.log.error("termweb: could not make a login link: %s", exc)
        return
    finally:
        store.close()
    if token:
        server.log.info("termweb: open this link to log in (valid until termweb restarts or a "
                        "user is added with `termweb user add`):\n\n    %s/login?token=%s\n",
                        url, token)
