"""The dashboard's subscriptions page: a reader's own email subscriptions (admins: all,
with their owner), made, previewed, sent now and stopped; each one's delivery log.

Forms are read by the API's own schema (`SubscriptionIn`), so a page accepts exactly
what POST /api/v1/subscriptions accepts, and written by `service.domain.subscriptions`,
which checks ownership (another reader's subscription is not found) and audits.

"Preview" sends the same form back: it is read by the same schema with every field
optional, and the next five moments are walked by the dispatcher's own cron code
(`subscriptions.moments_after`, cronsim) and shown in the schedule's time zone. Nothing
is written by a preview.
"""

from __future__ import annotations

import itertools
import uuid
import zoneinfo
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from service import handoff, i18n
from service.api.subscriptions import SubscriptionIn
from service.dashboard import blp
from service.dashboard.admin_forms import FormErrors, FormRefused, as_json, load, refused
from service.domain import deliveries
from service.domain import subscriptions as domain
from service.domain.callers import Caller
from service.domain.errors import Conflict, Invalid
from service.extensions import db
from service.i18n import LANGUAGE_NAMES, LANGUAGES
from service.models import ApiToken, Delivery, Site
from service.types import utcnow

PREVIEW_MOMENTS = 5
DEFAULT_FORM = {
    "email": "",
    "cron": "0 8 * * *",
    "timezone": "Asia/Yerevan",
    "language": "",
    "sites": [],
    "formats": ["csv"],
}


def owner_names(owner_ids: set[int | None]) -> dict[int, str]:
    """Token id -> "no. N (its name)", for an admin's view of who owns what."""
    ids = {owner for owner in owner_ids if owner is not None}
    if not ids:
        return {}
    tokens = db.session.execute(select(ApiToken).where(ApiToken.id.in_(ids))).scalars()
    return {token.id: f"{token.id} ({token.name})" for token in tokens}


def next_moments(cron: str, zone: str) -> list[str]:
    """The schedule's next PREVIEW_MOMENTS moments, written in its own time zone."""
    local = zoneinfo.ZoneInfo(zone)
    upcoming = itertools.islice(domain.moments_after(cron, zone, utcnow()), PREVIEW_MOMENTS)
    return [i18n.moment(moment, "EEE d MMM y, HH:mm", local) for moment in upcoming]


def _page(caller: Caller, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("errors", None)
    context.setdefault("form", {**DEFAULT_FORM, "language": i18n.current_language()})
    context.setdefault("preview", None)
    mine = list(db.session.execute(domain.visible_subscriptions(caller)).scalars())
    return render_template(
        "dashboard/self_subscriptions.html",
        caller=caller,
        subscriptions=mine,
        owners=owner_names({s.owner_token_id for s in mine}) if caller.is_admin else {},
        sites=list(db.session.execute(select(Site).order_by(Site.name)).scalars()),
        site_names={site.id: site.name for site in db.session.execute(select(Site)).scalars()},
        formats=domain.ATTACHMENT_FORMATS,
        languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        language_names=LANGUAGE_NAMES,
        **context,
    ), status


@blp.get("/subscriptions")
def subscriptions_page() -> Any:
    return _page(g.caller)


@blp.post("/subscriptions")
def create_subscription() -> Any:
    caller: Caller = g.caller
    caller.require_manages_own()
    form = {
        "email": request.form.get("email", ""),
        "cron": request.form.get("cron", ""),
        "timezone": request.form.get("timezone", ""),
        "language": request.form.get("language", ""),
        "sites": request.form.getlist("site"),
        "formats": request.form.getlist("format"),
    }
    body = as_json(form, text=("email", "cron", "timezone", "language"))
    body["site_ids"] = form["sites"]
    body["formats"] = form["formats"]
    if "preview" in request.form:
        return _preview(caller, form, body)
    try:
        subscription = domain.create_subscription(caller, load(SubscriptionIn(), body))
    except FormRefused as refusal:
        return _page(caller, 422, errors=refusal.errors, form=form)
    except Invalid as error:
        db.session.rollback()
        return _page(caller, 422, errors=refused(error), form=form)
    db.session.commit()
    flash(_("Reports to %(email)s are subscribed.", email=subscription.email))
    return redirect(url_for("dashboard.subscriptions_page"), 303)


def _preview(caller: Caller, form: dict[str, Any], body: dict[str, Any]) -> Any:
    """The form again, with the schedule's next moments (or why there are none)."""
    schedule = {key: body[key] for key in ("cron", "timezone") if key in body}
    missing = {key: _("Fill this in.") for key in ("cron", "timezone") if key not in body}
    if missing:
        message = _("Give a schedule and a time zone to see its next moments.")
        return _page(caller, 422, errors=FormErrors(message, missing), form=form)
    try:
        checked = load(SubscriptionIn(partial=True), schedule)
    except FormRefused as refusal:
        refusal.errors.message = _("This schedule cannot be used: correct it and preview again.")
        return _page(caller, 422, errors=refusal.errors, form=form)
    preview = {
        "cron": checked["cron"],
        "timezone": checked["timezone"],
        "moments": next_moments(checked["cron"], checked["timezone"]),
    }
    return _page(caller, form=form, preview=preview)


@blp.get("/subscriptions/<uuid:subscription_id>")
def subscription_page(subscription_id: uuid.UUID) -> Any:
    caller: Caller = g.caller
    subscription = domain.find_own(caller, subscription_id, deleted=True)
    log = db.session.execute(
        select(Delivery)
        .where(Delivery.subscription_id == subscription.id)
        .order_by(Delivery.scheduled_for.desc(), Delivery.created_at.desc())
        .limit(200)
    ).scalars()
    return render_template(
        "dashboard/self_subscription.html",
        caller=caller,
        subscription=subscription,
        deliveries=list(log),
        owners=owner_names({subscription.owner_token_id}) if caller.is_admin else {},
        language_names=LANGUAGE_NAMES,
        moments=[]
        if subscription.deleted_at or subscription.suspended_at
        else next_moments(subscription.cron, subscription.timezone),
    )


@blp.post("/subscriptions/<uuid:subscription_id>/send")
def send_subscription(subscription_id: uuid.UUID) -> Any:
    caller: Caller = g.caller
    try:
        delivery = deliveries.request_send(caller, subscription_id)
    except Conflict:
        db.session.rollback()
        flash(_("No summary is ready yet, so nothing was sent. Try again once one is ready."))
        return redirect(
            url_for("dashboard.subscription_page", subscription_id=subscription_id), 303
        )
    db.session.commit()
    if not handoff.send_delivery(delivery.id):
        deliveries.not_handed_out([delivery.id])
        db.session.commit()
    flash(_("The latest summary is on its way; its delivery is in the log below."))
    return redirect(url_for("dashboard.subscription_page", subscription_id=subscription_id), 303)


@blp.post("/subscriptions/<uuid:subscription_id>/delete")
def delete_subscription(subscription_id: uuid.UUID) -> Any:
    caller: Caller = g.caller
    subscription = domain.delete_subscription(caller, subscription_id)
    db.session.commit()
    flash(_("Reports to %(email)s are stopped.", email=subscription.email))
    return redirect(url_for("dashboard.subscriptions_page"), 303)
