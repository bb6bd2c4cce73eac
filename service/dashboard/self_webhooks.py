"""The dashboard's webhooks page: a reader's own endpoints (admins: all, with their
owner), registered, given a new secret and stopped; each one's delivery log with its
attempts.

Forms are read by the API's own schema (`WebhookIn`) and written by
`service.domain.webhooks`, which checks the URL, the sites and ownership (another
reader's endpoint is not found). A secret is shown once, on the answer to the POST that
made it (no redirect, `Cache-Control: no-store`): as on the tokens page, each form
carries an id the session remembers, so a reload that sends the form again makes no
second endpoint and turns no secret over twice (which would end the grace of the one
the receiver still uses).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from service.api.webhooks import WebhookIn
from service.dashboard import blp, sent_once
from service.dashboard.admin_forms import FormErrors, FormRefused, as_json, load, refused
from service.dashboard.self_subscriptions import owner_names
from service.domain import webhooks as domain
from service.domain.callers import Caller
from service.domain.errors import Invalid
from service.extensions import db
from service.models import Site, WebhookAttempt, WebhookDelivery

EVENT_NAMES = domain.EVENTS


def _page(caller: Caller, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("errors", None)
    context.setdefault("form", {"formats": ["json"], "events": ["summary.ready"], "sites": []})
    endpoints = list(db.session.execute(domain.visible_endpoints(caller)).scalars())
    sites = list(db.session.execute(select(Site).order_by(Site.name)).scalars())
    return render_template(
        "dashboard/self_webhooks.html",
        caller=caller,
        endpoints=endpoints,
        owners=owner_names({e.owner_token_id for e in endpoints}) if caller.is_admin else {},
        sites=sites,
        site_names={site.id: site.name for site in sites},
        formats=domain.FORMATS,
        events=EVENT_NAMES,
        form_id=sent_once.new_form_id(),
        **context,
    ), status


@blp.get("/webhooks")
def webhooks_page() -> Any:
    return _page(g.caller)


@blp.post("/webhooks")
def register_webhook() -> Any:
    caller: Caller = g.caller
    caller.require_manages_own()
    form = {
        "url": request.form.get("url", ""),
        "sites": request.form.getlist("site"),
        "formats": request.form.getlist("format"),
        "events": request.form.getlist("event"),
    }
    form_id = sent_once.sent_form_id()
    made = sent_once.made_by("webhook", form_id)
    if made is not None:
        message = _(
            "This form was sent already: it registered webhook %(id)s, whose secret was shown "
            "only then. If the secret was lost, give that webhook a new secret.",
            id=made,
        )
        return _page(caller, 409, errors=FormErrors(message, {}))
    body = as_json(form, text=("url",))
    body.update(site_ids=form["sites"], formats=form["formats"], events=form["events"])
    try:
        endpoint = domain.register(caller, load(WebhookIn(), body))
    except FormRefused as refusal:
        return _page(caller, 422, errors=refusal.errors, form=form)
    except Invalid as error:
        db.session.rollback()
        return _page(caller, 422, errors=refused(error), form=form)
    secret = endpoint.secret
    db.session.commit()
    sent_once.remember("webhook", form_id, endpoint.id)
    return render_template(
        "dashboard/self_webhook_secret.html",
        caller=caller,
        endpoint=endpoint,
        secret=secret,
        rotated=False,
    )


@blp.get("/webhooks/<uuid:webhook_id>")
def webhook_page(webhook_id: uuid.UUID) -> Any:
    caller: Caller = g.caller
    endpoint = domain.find(caller, webhook_id, deleted=True)
    log = list(
        db.session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(200)
        ).scalars()
    )
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {d.id: [] for d in log}
    if log:
        for attempt in db.session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        ).scalars():
            attempts[attempt.delivery_id].append(attempt)
    return render_template(
        "dashboard/self_webhook.html",
        caller=caller,
        endpoint=endpoint,
        deliveries=log,
        attempts=attempts,
        owners=owner_names({endpoint.owner_token_id}) if caller.is_admin else {},
        form_id=sent_once.new_form_id(),
    )


@blp.post("/webhooks/<uuid:webhook_id>/rotate-secret")
def rotate_webhook_secret(webhook_id: uuid.UUID) -> Any:
    caller: Caller = g.caller
    endpoint = domain.find(caller, webhook_id)
    if sent_once.made_by("webhook", sent_once.sent_form_id()) is not None:
        flash(
            _(
                "This form was sent already: the new secret was shown only then. If it was "
                "lost, give the webhook a new secret again."
            )
        )
        return redirect(url_for("dashboard.webhook_page", webhook_id=webhook_id), 303)
    secret = domain.rotate_secret(caller, webhook_id)
    db.session.commit()
    sent_once.remember("webhook", sent_once.sent_form_id(), endpoint.id)
    return render_template(
        "dashboard/self_webhook_secret.html",
        caller=caller,
        endpoint=endpoint,
        secret=secret,
        rotated=True,
    )


@blp.post("/webhooks/<uuid:webhook_id>/delete")
def delete_webhook(webhook_id: uuid.UUID) -> Any:
    caller: Caller = g.caller
    endpoint = domain.find(caller, webhook_id)
    domain.delete(caller, webhook_id)
    db.session.commit()
    flash(_("Webhook %(url)s is stopped.", url=endpoint.url))
    return redirect(url_for("dashboard.webhooks_page"), 303)
