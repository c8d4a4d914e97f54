"""The page and the plain HTTP endpoints."""
from flask import Blueprint, current_app, render_template

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
    return {"status": "ok"}
