"""Response headers that keep the page in its own origin, and proxy awareness.

The Content-Security-Policy is the strictest the page passes: scripts and
sockets from this origin only, no framing. xterm.js sets inline styles, hence
``style-src 'unsafe-inline'``.
"""
from __future__ import annotations

from flask import request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from .store import StoreUnavailable

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "media-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Share links carry their secret in the path: never send it elsewhere.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=(), payment=()",
}


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever the request came over TLS,
    signed with the store's key (fetched when the store was down at start)."""

    def open_session(self, app, request):
        if not app.secret_key and app.config.get("TERMWEB_AUTH"):
            try:
                app.secret_key = app.extensions["termweb"].accounts.secret_key()
            except StoreUnavailable:
                return None  # auth.require_login answers 503
        return super().open_session(app, request)

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def init_app(app, settings) -> None:
    """Call before flask-login's init_app: this after_request then runs after
    flask-login's, and sees its remember-me cookie."""
    app.config["TERMWEB_AUTH"] = settings.auth
    app.session_interface = SessionInterface()
    if settings.trusted_proxies:
        # X-Forwarded-For/-Proto/-Host from that many proxies in front (nginx:
        # 1) become the client address, scheme and host termweb sees.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)

    @app.after_request
    def security_headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=15552000")
            cookies = response.headers.getlist("Set-Cookie")
            if any("; Secure" not in cookie for cookie in cookies):
                response.headers.remove("Set-Cookie")
                for cookie in cookies:
                    response.headers.add("Set-Cookie", cookie if "; Secure" in cookie else cookie + "; Secure")
        if request.path.startswith("/api/") or response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response
