"""Gunicorn settings for termweb, all from TERMWEB_* variables (docs/configuration.md)."""
import fcntl
import os
import sys

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
    # No shells for the network until login exists.
    exposed = [address for address in server.cfg.bind if not is_loopback_bind(address)]
    if exposed:
        sys.exit(f"termweb: refusing to listen on {', '.join(exposed)}: without login, "
                 "anyone who reaches that address gets a shell. Bind 127.0.0.1 "
                 "(TERMWEB_HOST) and put an authenticating proxy in front.")
    # Several workers need the shared store (`-w` on the command line counts too).
    problem = _settings.store_problem(server.cfg.workers)
    if problem:
        sys.exit(f"termweb: {problem}")
    # A master re-executed by USR2 takes over from the lock's holder.
    if not _settings.redis_url and not server.master_pid:
        _hold_instance_lock()


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
    for listener in server.LISTENERS:
        host, port = listener.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        server.log.info("termweb is ready: http://%s:%s/", host, port)
