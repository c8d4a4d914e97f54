"""The page and the plain HTTP endpoints."""
from flask import Blueprint, Response, current_app, jsonify, render_template

from . import auth
from .store import StoreUnavailable

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    return render_template("index.html", viewer=False)


@bp.get("/view/<link>")
def view_page(link: str):
    """A read-only share link: the terminal page, watching only. The link is
    the credential, so no login is needed; a stale one gets a plain 404."""
    share = current_app.extensions["termweb"].accounts.check_share(link)
    if share is None:
        return render_template("index.html", viewer=True, share_invalid=True), 404
    return render_template("index.html", viewer=True)


@bp.get("/healthz")
def healthz():
    """The process answers (for a supervisor's liveness check)."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Ready for new terminals: the store answers and a tmux backend answers
    with room. 503 with the reasons otherwise (for a load balancer)."""
    gw = current_app.extensions["termweb"]
    problems = []
    try:
        gw.router.store.ping()
    except StoreUnavailable as exc:
        problems.append(str(exc))
    backends = gw.monitor.health()
    if not any(b["up"] and b.get("state") == "active" and b["sessions"] < b["capacity"]
               for b in backends):
        problems.append("no tmux backend is up with room for another session")
    body = {"ready": not problems, "problems": problems, "backends": backends}
    return jsonify(body), 503 if problems else 200


@bp.get("/metrics")
def metrics():
    """Prometheus metrics: for admins, or API tokens of admins (auth off: anyone)."""
    if not auth.principal().is_admin:
        return auth.error_response(403, "forbidden", "metrics are for admins")
    gw = current_app.extensions["termweb"]
    body, content_type = gw.metrics.scrape(gw)
    return Response(body, content_type=content_type)
