"""The sessions REST API (docs/api.md) and the session list page.

Every answer is JSON; every refusal is ``{"error": {"code", "message"}}``
with a status that says what went wrong, the same codes the WebSocket uses.
"""
from __future__ import annotations

import logging
import time

from flask import Blueprint, abort, jsonify, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from . import auth
from . import protocol as p
from .gateway import gateway
from .pool import MAX_BACKENDS
from .ratelimit import RateLimited
from .sessions import REASON_ENDED_BY_USER, Busy, InvalidRequest, SessionEnded, SessionNotFound
from .store import SessionState, StoreUnavailable, derived_status
from .tmux import TmuxError

log = logging.getLogger("termweb.api")
bp = Blueprint("api", __name__)

DEFAULT_COLS, DEFAULT_ROWS = 80, 24


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    return auth.error_response(exc.status, exc.code, exc.message)


# The blueprint's own catch-all (internal_error) would come before the
# app's handler, so the API names it again.
bp.register_error_handler(StoreUnavailable, auth.store_unavailable)


@bp.errorhandler(TmuxError)
def backend_unavailable(exc: TmuxError):
    log.error("%s %s: tmux: %s", request.method, request.path, exc)
    return auth.error_response(503, "backend_unavailable", str(exc))


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    """Under /api/, Flask's own refusals (unknown path, wrong method) are JSON too."""
    if not request.path.startswith("/api/"):
        return exc
    code = (exc.name or "error").lower().replace(" ", "_")
    return auth.error_response(exc.code or 500, code, exc.description or exc.name)


@bp.errorhandler(Exception)
def internal_error(exc: Exception):
    """A bug: logged with its traceback, answered in the API's own shape."""
    if isinstance(exc, HTTPException):
        return http_error(exc)
    log.exception("%s %s failed", request.method, request.path)
    return auth.error_response(500, "internal_error", "internal server error")


@bp.before_request
def same_origin_only():
    """State changes come from our own pages: a cross-site form or script is
    refused, on top of the CSRF token that auth.require_login checks."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    if not gateway().origin_allowed(request.headers.get("Origin"), request.host):
        raise ApiError(403, "forbidden_origin", "cross-origin requests are refused")
    return None


@bp.get("/sessions")
def sessions_page():
    return render_template("sessions.html")


@bp.errorhandler(Busy)
def busy(exc: Busy):
    response = auth.error_response(503, "busy", str(exc))
    response.headers["Retry-After"] = "1"
    return response


@bp.errorhandler(RateLimited)
def rate_limited(exc: RateLimited):
    response = auth.error_response(429, "rate_limited", exc.message)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@bp.get("/api/sessions")
def list_sessions():
    """The caller's sessions; an admin's ``?all=1``: everyone's."""
    who = auth.principal()
    everyone = request.args.get("all") in ("1", "true")
    if everyone and not who.is_admin:
        raise ApiError(403, "forbidden", "only an admin may list every user's sessions")
    states = gateway().router.list(None if everyone else who.user_id)
    return jsonify(sessions=[_view(s) for s in states])


@bp.get("/api/sessions/<session_id>")
def get_session(session_id: str):
    return jsonify(session=_view(_session(session_id, admin=True)))


def _session(session_id: str, admin: bool = False) -> SessionState:
    """The caller's session (any, for an admin where ``admin``), or 404:
    the same answer for another user's session as for none."""
    who = auth.principal()
    try:
        return gateway().router.get(session_id, who.user_id, admin and who.is_admin)
    except SessionNotFound as exc:
        raise ApiError(404, "session_not_found", str(exc)) from None


@bp.post("/api/sessions")
def create_session():
    body = _json_body()
    cols, rows = body.get("cols", DEFAULT_COLS), body.get("rows", DEFAULT_ROWS)
    try:
        p.validate_size(cols, rows)
    except p.ProtocolError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    try:
        state = gateway().create_session(auth.principal().user_id, cols, rows,
                                         body.get("workingDirectory"), body.get("environment"))
    except InvalidRequest as exc:
        raise ApiError(400, "invalid_field", str(exc)) from None
    response = jsonify(session=_view(state))
    response.headers["Location"] = url_for("web.index", session=state.session_id)
    return response, 201


@bp.delete("/api/sessions/<session_id>")
def delete_session(session_id: str):
    who = auth.principal()
    state = _session(session_id, admin=True)
    reason = REASON_ENDED_BY_USER if state.user_id == who.user_id else f"ended by admin {who.user_id}"
    try:
        gateway().router.destroy(session_id, who.user_id, reason, admin=who.is_admin)
    except SessionNotFound as exc:
        raise ApiError(404, "session_not_found", str(exc)) from None
    except SessionEnded as exc:
        raise ApiError(410, "session_ended", str(exc)) from None
    return "", 204


@bp.get("/api/sessions/<session_id>/shares")
def list_shares(session_id: str):
    state = _session(session_id)
    return jsonify(shares=[s.to_json() for s in gateway().accounts.shares(state.session_id)])


@bp.post("/api/sessions/<session_id>/shares")
def create_share(session_id: str):
    """A read-only link to the caller's session; its secret is shown only now."""
    state = _session(session_id)
    if state.ended:
        raise ApiError(410, "session_ended", f"session {session_id} has ended")
    share, secret = gateway().accounts.create_share(state.session_id, state.user_id)
    view = share.to_json()
    view["url"] = url_for("web.view_page", link=secret)
    return jsonify(share=view), 201


@bp.delete("/api/sessions/<session_id>/shares/<share_id>")
def revoke_share(session_id: str, share_id: str):
    """Revoke a link; its viewers are disconnected (on other workers within
    a couple of seconds)."""
    state = _session(session_id)
    accounts = gateway().accounts
    if not any(s.id == share_id for s in accounts.shares(state.session_id)):
        raise ApiError(404, "share_not_found", f"no share {share_id[:40]!r} on this session")
    accounts.revoke_share(share_id)
    gateway().revoke_viewers(share_id)
    return "", 204


@bp.get("/api/admin/backends")
def list_backends():
    """Admins: the tmux backends, as /readyz and /metrics see them."""
    if not auth.principal().is_admin:
        raise ApiError(403, "forbidden", "only an admin may see the backends")
    return jsonify(backends=gateway().monitor.health())


@bp.post("/api/admin/backends")
def scale_backends():
    """Admins: grow or drain the backend pool, ``{"size": n}``. Draining
    backends take no new sessions and stop once their last one ends."""
    if not auth.principal().is_admin:
        raise ApiError(403, "forbidden", "only an admin may scale the backends")
    size = _json_body().get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_BACKENDS:
        raise ApiError(400, "invalid_field", f"size must be a whole number from 1 to {MAX_BACKENDS}")
    gateway().monitor.scale(size)
    return jsonify(backends=gateway().monitor.health())


@bp.get("/admin")
def admin_page():
    """Admins: backends and everyone's sessions (static/js/admin.js)."""
    if not auth.principal().is_admin:
        abort(403, "only an admin may see this page")
    return render_template("admin.html")


def _json_body() -> dict:
    """The request's JSON object; an empty body is an empty object."""
    if not request.get_data(cache=True):
        return {}
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send a JSON body (Content-Type: application/json)")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def _view(state: SessionState) -> dict:
    view = state.to_json()
    view["status"] = derived_status(state, gateway().settings.idle_after, time.time())
    view["url"] = url_for("web.index", session=state.session_id)
    return view
