"""Rate limits: flask-limiter for logins and session creation, a token bucket per socket.

flask-limiter keeps its counters in Redis when one is configured (so every
worker and instance counts together) and in memory otherwise. Its storage
failing opens the limits rather than the service falling over: a dead Redis
is reported by the session store already.
"""
from __future__ import annotations

import logging
import math
import time

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many

log = logging.getLogger("termweb.ratelimit")
limiter = Limiter(key_func=get_remote_address)


class RateLimited(Exception):
    """Too many of something; ``retry_after`` seconds until it is allowed again."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.message, self.retry_after = message, max(1, retry_after)


def init_app(app, settings) -> None:
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_KEY_PREFIX=f"{settings.redis_prefix}limits",
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_STORAGE_OPTIONS={"socket_timeout": 1, "socket_connect_timeout": 1}
        if settings.redis_url else {},
    )
    limiter.init_app(app)


def _settings():
    return current_app.extensions["termweb"].settings


def login_rate_ip() -> str:
    return _settings().login_rate_ip


def login_rate_account() -> str:
    return _settings().login_rate_account


def account_key() -> str:
    """Failed logins count per account too, whoever tries them."""
    return "account:" + request.form.get("username", "").strip().lower()[:64]


def failed_login(response) -> bool:
    """Only failures use up the login allowance (flask-limiter's deduct_when)."""
    return response.status_code == 401


def retry_after_seconds() -> int:
    """Seconds until the limit that refused this request lets it through."""
    limit = limiter.current_limit
    if limit is None:
        return 60
    return max(1, math.ceil(limit.reset_at - time.time()))


def check_creation(user_id: str) -> None:
    """One more new session for ``user_id`` under TERMWEB_CREATE_RATE, or RateLimited.

    Counted by hand rather than by decorator so the REST call and the
    WebSocket share one allowance.
    """
    settings = _settings()
    try:
        for item in parse_many(settings.create_rate):
            if not limiter.limiter.hit(item, "create", user_id):
                reset = limiter.limiter.get_window_stats(item, "create", user_id).reset_time
                raise RateLimited(f"too many new terminals (at most {item}); try again shortly",
                                  math.ceil(reset - time.time()))
    except RateLimited:
        raise
    except Exception as exc:  # noqa: BLE001 -- a dead limit store opens the limit
        log.warning("session creation limit not checked: %s", exc)


class TokenBucket:
    """``rate`` per second with bursts of ``burst``; `take` says how long to wait."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, amount: float) -> float:
        """Spend ``amount``; return the seconds to wait first (0 if none)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= min(amount, self.burst)
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
