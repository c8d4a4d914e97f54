"""Settings read from ``TERMWEB_*`` environment variables.

Every setting is documented in docs/configuration.md; keep the two in step.
"""
from __future__ import annotations

import ipaddress
import os
import pwd
from dataclasses import dataclass, field, fields


class ConfigError(ValueError):
    """A ``TERMWEB_*`` variable has a value termweb cannot use."""


def _default_shell() -> str:
    try:
        shell = pwd.getpwuid(os.getuid()).pw_shell
    except KeyError:
        shell = ""
    return shell if shell and os.path.exists(shell) else "/bin/bash"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 1
    worker_connections: int = 1000
    max_terminals: int = 500
    shell: str = field(default_factory=_default_shell)
    tmux_socket: str = "termweb"
    history_limit: int = 50000
    max_message_bytes: int = 1024 * 1024
    ping_interval: int = 25
    send_buffer_bytes: int = 128 * 1024
    allowed_origins: tuple[str, ...] = ()
    ws_compression: bool = False
    log_level: str = "info"
    redis_url: str = ""
    redis_prefix: str = "termweb:"
    session_ttl: int = 7 * 24 * 3600
    idle_after: int = 300
    reconcile_interval: int = 15
    orphans: str = "adopt"
    restore_lines: int = 5000
    # Users and login (docs/security.md)
    auth: bool = True
    run_as: str = "termweb"
    password: str = ""
    secret_key: str = ""
    instance_path: str = ""
    trusted_proxies: int = 0
    cookie_secure: bool = False
    remember_days: int = 0
    # Limits
    login_rate_ip: str = "10/minute;100/hour"
    login_rate_account: str = "5/minute;20/hour;50/day"
    create_rate: str = "30/minute"
    max_sessions_per_user: int = 50
    ws_messages_per_second: int = 500
    ws_input_bytes_per_second: int = 1024 * 1024
    # Backends
    backend_pool_size: int = 1
    max_sessions_per_backend: int = 2000
    warm_sessions: int = 2
    create_concurrency: int = 4
    create_wait_ms: int = 5000
    health_interval_ms: int = 1000

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get("TERMWEB_" + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("port", "workers", "worker_connections", "max_terminals",
                     "history_limit", "max_message_bytes", "send_buffer_bytes",
                     "session_ttl", "idle_after", "reconcile_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"TERMWEB_{name.upper()} must be positive")
        if self.ping_interval < 0:
            raise ConfigError("TERMWEB_PING_INTERVAL must be 0 (off) or positive")
        if self.max_terminals >= self.worker_connections:
            # Each terminal holds a worker connection for its whole life;
            # without headroom the page and health checks stop answering.
            raise ConfigError("TERMWEB_MAX_TERMINALS must be below TERMWEB_WORKER_CONNECTIONS")
        for name in ("trusted_proxies", "remember_days", "create_wait_ms", "warm_sessions"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TERMWEB_{name.upper()} must be 0 or positive")
        for name in ("max_sessions_per_user", "ws_messages_per_second", "ws_input_bytes_per_second",
                     "max_sessions_per_backend", "create_concurrency", "health_interval_ms",
                     "backend_pool_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"TERMWEB_{name.upper()} must be positive")
        for name in ("login_rate_ip", "login_rate_account", "create_rate"):
            _check_rate(name, getattr(self, name))
        if self.restore_lines < 0:
            raise ConfigError("TERMWEB_RESTORE_LINES must be 0 (off) or positive")
        if self.run_as not in ("termweb", "user"):
            raise ConfigError(f"TERMWEB_RUN_AS must be termweb or user, not {self.run_as!r}")
        if self.run_as == "user" and os.geteuid() != 0:
            raise ConfigError("TERMWEB_RUN_AS=user starts each user's shells as their own OS "
                              "account, which only root can do: run termweb as root")
        if self.orphans not in ("adopt", "reap"):
            raise ConfigError(f"TERMWEB_ORPHANS must be adopt or reap, not {self.orphans!r}")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("TERMWEB_REDIS_URL must start with redis://, rediss:// or unix://")
        if not os.access(self.shell, os.X_OK):
            raise ConfigError(f"TERMWEB_SHELL {self.shell!r} is not an executable file")

    def store_problem(self, workers: int) -> str | None:
        """Why this many workers cannot share the configured store, or None."""
        if workers > 1 and not self.redis_url:
            return (f"{workers} workers need a shared session store: set TERMWEB_REDIS_URL "
                    "(e.g. redis://127.0.0.1:6379/0), or run one worker. With the in-memory "
                    "store, each worker would see only its own sessions.")
        return None

    @property
    def instance_dir(self) -> str:
        """Where the embedded store keeps users, tokens and the secret key."""
        if self.instance_path:
            return self.instance_path
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instance")

    @property
    def bind(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _parse(name: str, kind: str, raw: str) -> object:
    """``raw`` as the field's type; ``kind`` is its annotation, a string here
    (``from __future__ import annotations``)."""
    key = "TERMWEB_" + name.upper()
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, not {raw!r}") from None
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be on or off, not {raw!r}")
    if kind.startswith("tuple"):
        return tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    return raw


def _check_rate(name: str, value: str) -> None:
    """A rate limit in flask-limiter's notation, e.g. ``5/minute;20/hour``."""
    from limits import parse_many

    try:
        if not parse_many(value):
            raise ValueError
    except ValueError:
        raise ConfigError(f"TERMWEB_{name.upper()} must be limits like '5/minute;20/hour', "
                          f"not {value!r}") from None


def is_loopback_bind(address: str) -> bool:
    """True when a gunicorn bind address only listens on this machine."""
    if address.startswith(("unix:", "fd://")):
        return True
    if address.startswith("["):
        host = address[1:].split("]")[0]
    elif address.count(":") == 1:
        host = address.split(":")[0]
    else:
        host = address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
