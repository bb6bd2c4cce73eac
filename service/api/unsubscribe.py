"""/unsubscribe: the link in every situation report email. Public: the signed token is the key.

GET shows what would stop and a button; POST (the button, or a mail client's RFC 8058
one-click `List-Unsubscribe=One-Click`) ends the subscription. Outside /api/v1, so no
bearer token is asked for, and any body is accepted: the token in the link decides.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_babel import lazy_gettext as _l

from service.domain import subscriptions as domain
from service.extensions import db
from service.models import Subscription

blp = Blueprint("unsubscribe", __name__)

TITLES = {
    "confirm": _l("Unsubscribe from situation reports"),
    "done": _l("You are unsubscribed"),
    "already": _l("Already unsubscribed"),
    "invalid": _l("Link not valid"),
}


@blp.get("/unsubscribe")
def confirm() -> Response:
    """The confirmation page; it changes nothing (link scanners follow GETs)."""
    subscription = _subscription()
    if subscription is None:
        return _page("invalid", None, 404)
    state = "already" if subscription.deleted_at is not None else "confirm"
    return _page(state, subscription, 200)


@blp.post("/unsubscribe")
def unsubscribe() -> Response:
    subscription = _subscription()
    if subscription is None:
        return _page("invalid", None, 404)
    ended = domain.unsubscribe(subscription)
    db.session.commit()
    return _page("done" if ended else "already", subscription, 200)


def _subscription() -> Subscription | None:
    token = request.args.get("token", "")
    return domain.subscription_for_token(token) if token else None


def _page(state: str, subscription: Subscription | None, status: int) -> Response:
    body = render_template(
        "unsubscribe.html",
        state=state,
        title=str(TITLES[state]),
        email=subscription.email if subscription else None,
        cron=subscription.cron if subscription else None,
        zone=subscription.timezone if subscription else None,
        site_ids=subscription.site_ids if subscription else [],
        action=request.full_path,
    )
    response = Response(body, status=status, mimetype="text/html")
    # The link is a key: keep it out of caches and of Referer headers.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    )
    return response
