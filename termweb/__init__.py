"""termweb: terminals in the browser, each a tmux session that outlives its connection."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from . import api, auth, gateway, ratelimit, security, transport, web
from .accounts import open_accounts
from .metrics import Metrics
from .config import Settings
from .sessions import SessionRouter
from .store import StoreUnavailable, open_store
from .health import POOL_SIZE_SETTING
from .pool import BackendPool
from .service import Gateway

__version__ = "0.1.0"


def _pool_size(settings: Settings, store) -> int:
    """The size an admin last set (shared through the store), else TERMWEB_BACKEND_POOL_SIZE."""
    try:
        stored = store.get_setting(POOL_SIZE_SETTING)
    except StoreUnavailable:
        stored = None
    return int(stored) if stored else settings.backend_pool_size
log = logging.getLogger("termweb")
ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app: settings from TERMWEB_* unless given, tmux started, routes bound."""
    settings = settings or Settings.from_env()
    logging.getLogger("termweb").setLevel(settings.log_level.upper())
    app = Flask(__name__, static_folder=str(ROOT / "static"),
                template_folder=str(ROOT / "templates"))
    # /api//sessions is a 404 like any unknown path, not an HTML redirect.
    app.url_map.merge_slashes = False
    app.config["SOCK_SERVER_OPTIONS"] = {
        # Pings are the gateway's own (TerminalConnection._ping).
        "ping_interval": None,
        "max_message_size": settings.max_message_bytes,
        # Client messages are handled in the reader as they arrive.
        "event_class": transport.InputDispatchEvent,
    }
    store = open_store(settings.redis_url, settings.redis_prefix, settings.session_ttl)
    pool = BackendPool(
        settings.tmux_socket, settings.shell, settings.history_limit, size=_pool_size(settings, store),
        max_sessions=settings.max_sessions_per_backend,
        # A warm shell cannot know whose it will be when each user's shells
        # run as their own account.
        warm_per_backend=0 if settings.run_as == "user" else settings.warm_sessions)
    pool.discover()
    pool.start()
    router = SessionRouter(store, pool, run_as_users=settings.run_as == "user",
                           create_concurrency=settings.create_concurrency,
                           create_wait=settings.create_wait_ms / 1000)
    gw = Gateway(settings, router, open_accounts(settings, store), Metrics())
    if settings.secret_key:
        app.secret_key = settings.secret_key
    elif settings.auth:
        try:
            app.secret_key = gw.accounts.secret_key()  # shared by every worker
        except StoreUnavailable:
            log.error("no cookie key yet: the store is unavailable; logins wait for it")
    # Before the first request: a worker that replaced a crashed one (with the
    # in-memory store, an empty one) knows the running sessions again, so
    # returning pages reattach instead of hearing "no such session".
    gw.keeper.sweep_if_leader()
    app.extensions["termweb"] = gw
    security.init_app(app, settings)  # before flask-login (see security.init_app)
    auth.init_app(app, settings)
    ratelimit.init_app(app, settings)
    # In this order: login is checked before the handshake's own refusals.
    app.register_blueprint(auth.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(gateway.bp)
    app.register_blueprint(api.bp)
    return app
