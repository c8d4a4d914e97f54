"""Who is asking: login cookies (flask-login), API tokens, and the checks every request passes.

A request is let through when it carries a login cookie, an API token
(``Authorization: Bearer``, or ``?token=`` on /ws), or when TERMWEB_AUTH is
off (everyone is the local admin; loopback binds only). Pages send strangers
to /login; the API and /ws answer 401 before any work is done. Cookie-borne
state changes also need the CSRF token of the page that makes them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import (Blueprint, current_app, g, jsonify, redirect, render_template, request,
                   session, url_for)
from flask_limiter.errors import RateLimitExceeded
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms.validators import ValidationError

from . import ratelimit
from .accounts import LOCAL_USER, TOKEN, Accounts, TokenRefused, User
from .ratelimit import limiter
from .store import StoreUnavailable

log = logging.getLogger("termweb.auth")
bp = Blueprint("auth", __name__)
login_manager = LoginManager()

# Reachable without logging in. /view/<link> pages and ?view= sockets carry
# their own credential, checked where they are served.
PUBLIC_ENDPOINTS = {"static", "auth.login", "web.healthz", "web.readyz", "web.view_page"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Principal:
    """The user a request acts for, and how it proved it."""

    user_id: str
    role: str
    via: str  # "cookie", "token", or "open" when auth is off
    # What to check again later: the cookie's "name:epoch", or the token's id.
    credential: str = ""

    @property
    def name(self) -> str:
        return self.user_id

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class LoginUser(UserMixin):
    """flask-login's view of a `User`. The cookie holds name and epoch, so a
    password change or removal ends every login of that user."""

    def __init__(self, user: User):
        self.user = user

    def get_id(self) -> str:
        return f"{self.user.name}:{self.user.epoch}"


def accounts() -> Accounts:
    return current_app.extensions["termweb"].accounts


def settings():
    return current_app.extensions["termweb"].settings


@login_manager.user_loader
def load_user(cookie_id: str) -> LoginUser | None:
    name, _, epoch = cookie_id.partition(":")
    user = accounts().user(name)
    if user is None or str(user.epoch) != epoch:
        return None
    return LoginUser(user)


def init_app(app, config) -> None:
    app.config.update(
        SESSION_COOKIE_NAME="termweb_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.cookie_secure,
        REMEMBER_COOKIE_NAME="termweb_remember",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=config.cookie_secure,
        REMEMBER_COOKIE_DURATION=timedelta(days=max(1, config.remember_days)),
        # The token lives as long as the login: a terminal left open all day
        # can still end a session.
        WTF_CSRF_TIME_LIMIT=None,
    )
    login_manager.init_app(app)
    app.jinja_env.globals["csrf_token"] = lambda: generate_csrf() if config.auth else ""

    @app.context_processor
    def page_context():
        who = g.get("principal")
        return {"auth_enabled": config.auth, "user": who if who and who.via == "cookie" else None}


def principal() -> Principal | None:
    """Who this request is (memoised); None for a stranger. A refused API
    token leaves its reason in ``g.auth_refusal``."""
    if "principal" in g:
        return g.principal
    g.principal = _identify()
    return g.principal


def _identify() -> Principal | None:
    if not settings().auth:
        return Principal(LOCAL_USER, "admin", "open")
    presented = _presented_token()
    if presented:
        try:
            user = accounts().check_token(presented)
        except TokenRefused as refused:
            g.auth_refusal = refused.reason
            return None
        return Principal(user.name, user.role, "token", TOKEN.fullmatch(presented).group(1))
    if current_user.is_authenticated:
        return Principal(current_user.user.name, current_user.user.role, "cookie",
                         current_user.get_id())
    return None


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if request.path == "/ws":
        return request.args.get("token")
    return None


@bp.before_app_request
def require_login():
    """Strangers get a login page (pages) or 401 (the API and /ws)."""
    if settings().auth and not current_app.secret_key:
        # The session interface fetches the key (security.SessionInterface);
        # without it no login can be read: answered 503.
        raise StoreUnavailable("the cookie key is not loaded: the store was unavailable")
    if request.endpoint in PUBLIC_ENDPOINTS or (request.path == "/ws" and "view" in request.args):
        return None
    who = principal()
    if who is None:
        if (request.path.startswith("/api/") or request.path in ("/ws", "/metrics")
                or request.endpoint is None):
            return unauthorized(g.get("auth_refusal"))
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if who.via == "cookie" and request.method in UNSAFE_METHODS:
        try:
            validate_csrf(request.headers.get("X-CSRF-Token") or request.form.get("csrf_token"))
        except ValidationError:
            return error_response(403, "csrf_failed", "the page's CSRF token is missing or stale; reload the page")
    return None


def unauthorized(reason: str | None = None):
    response = error_response(401, "unauthorized", reason or "log in first, or send an API token")
    response.headers["WWW-Authenticate"] = 'Bearer realm="termweb"'
    return response


def error_response(status: int, code: str, message: str):
    """The JSON refusal every part of termweb answers with."""
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    return response


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(ratelimit.login_rate_ip, methods=["POST"], deduct_when=ratelimit.failed_login)
@limiter.limit(ratelimit.login_rate_account, key_func=ratelimit.account_key, methods=["POST"],
               deduct_when=ratelimit.failed_login)
def login():
    if not settings().auth:
        return redirect(url_for("web.index"))
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        token = request.args.get("token")
        if token:  # the first-run link termweb printed
            user = accounts().check_login_token(token)
            if user is None:
                return _form("this login link is not valid (any more): use the newest one "
                             "termweb printed, or log in with a password", 401)
            _log_in(user, remember=False)
            return redirect(next_url)
        if current_user.is_authenticated:
            return redirect(next_url)
        return _form()
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError:
        return _form("the login form expired; please try again", 400)
    name = request.form.get("username", "").strip().lower()
    user = accounts().check_password(name, request.form.get("password", ""))
    if user is None:
        log.warning("failed login for %r from %s", name[:64], request.remote_addr)
        return _form("wrong user name or password", 401, username=name)
    remember = settings().remember_days > 0 and request.form.get("remember") == "on"
    _log_in(user, remember)
    return redirect(next_url)


def _log_in(user: User, remember: bool) -> None:
    session.clear()  # nothing from before the login carries over
    login_user(LoginUser(user), remember=remember,
               duration=timedelta(days=settings().remember_days) if remember else None)
    log.info("%s logged in from %s", user.name, request.remote_addr)


def _form(error: str | None = None, status: int = 200, username: str = ""):
    return render_template(
        "login.html", error=error, username=username,
        next=_safe_next(request.values.get("next")),
        remember_days=settings().remember_days,
        token_login=accounts().login_token_exists()), status


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never //elsewhere or a full URL."""
    if (not target or not target.startswith("/") or target.startswith(("//", "/\\"))
            or any(c in target for c in "\r\n\\")):
        return url_for("web.index")
    return target


@bp.post("/logout")
def logout():
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.get("/api/me")
def me():
    who = principal()
    return jsonify(user={"name": who.name, "role": who.role}, auth=settings().auth, via=who.via)


@bp.app_errorhandler(RateLimitExceeded)
def rate_limited(exc: RateLimitExceeded):
    wait = ratelimit.retry_after_seconds()
    if request.endpoint == "auth.login":
        response = _form(f"too many attempts; try again in {wait} s", 429)
        response = current_app.make_response(response)
    else:
        response = error_response(429, "rate_limited", f"too many requests ({exc.description}); "
                                               f"try again in {wait} s")
    response.headers["Retry-After"] = str(wait)
    return response


@bp.app_errorhandler(StoreUnavailable)
def store_unavailable(exc: StoreUnavailable):
    log.error("%s %s: %s", request.method, request.path, exc)
    response = error_response(503, "store_unavailable", "the session store is unavailable; try again shortly")
    response.headers["Retry-After"] = "5"
    return response
