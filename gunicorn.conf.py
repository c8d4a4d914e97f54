"""Gunicorn settings for termweb, all from TERMWEB_* variables (docs/configuration.md)."""
import sys

from termweb.config import ConfigError, Settings, is_loopback_bind

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
    """Refuse to serve shells to the network until login exists."""
    exposed = [address for address in server.cfg.bind if not is_loopback_bind(address)]
    if exposed:
        sys.exit(f"termweb: refusing to listen on {', '.join(exposed)}: without login, "
                 "anyone who reaches that address gets a shell. Bind 127.0.0.1 "
                 "(TERMWEB_HOST) and put an authenticating proxy in front.")


def when_ready(server):
    for listener in server.LISTENERS:
        host, port = listener.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        server.log.info("termweb is ready: http://%s:%s/", host, port)
