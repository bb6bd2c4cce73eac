"""The dashboard's token page (admins): create a token with its role, name and sites,
shown once with the field app's sign-in link and its QR code; list; revoke.

The secret is shown on the answer to the POST that made it, rendered directly (no
redirect, so it is in no URL, and `Cache-Control: no-store` keeps it out of the
browser's cache); the QR code is inline SVG, as the strict CSP allows no `data:`
images. Listings show the token's first characters only (all that is stored besides
its hash). Creating and revoking are audited with the admin's token, as on the CLI.
A reload of that answer sends the form again: it makes no second token
(service/dashboard/sent_once.py).
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from service import signin_link
from service.dashboard import blp, sent_once
from service.dashboard.admin_forms import FormErrors, refused
from service.domain import token_admin
from service.domain.callers import Caller
from service.domain.errors import Invalid
from service.extensions import db
from service.models import Role, Site


def _page(caller: Caller, **context: Any) -> str:
    context.setdefault("errors", None)
    context.setdefault("form", {})
    context.setdefault("form_id", sent_once.new_form_id())
    return render_template(
        "dashboard/admin_tokens.html",
        caller=caller,
        tokens=token_admin.list_tokens(caller),
        sites=list(db.session.execute(select(Site).order_by(Site.name)).scalars()),
        roles=[role.value for role in Role],
        **context,
    )


@blp.get("/tokens")
def tokens() -> Any:
    caller: Caller = g.caller
    caller.require_role(Role.admin)
    return _page(caller)


@blp.post("/tokens")
def create_token() -> Any:
    caller: Caller = g.caller
    caller.require_role(Role.admin)
    form = {
        "role": request.form.get("role", ""),
        "name": request.form.get("name", ""),
        "sites": request.form.getlist("site"),
    }
    form_id = sent_once.sent_form_id()
    made = sent_once.made_by("token", form_id)
    if made is not None:
        message = _(
            "This form was sent already: it made token %(id)s, whose secret was shown only "
            "then. If the secret was lost, revoke that token and create another.",
            id=made,
        )
        return _page(caller, errors=FormErrors(message, {})), 409
    try:
        role = Role(form["role"])
    except ValueError:
        errors = FormErrors(_("Nothing was saved: choose a role."), {"role": _("Choose a role.")})
        return _page(caller, errors=errors, form=form), 422
    name = form["name"] if form["name"].strip() else None
    try:
        api_token, secret = token_admin.create_token(caller, role, name, form["sites"])
    except Invalid as error:
        db.session.rollback()
        return _page(caller, errors=refused(error), form=form), 422
    db.session.commit()
    sent_once.remember("token", form_id, api_token.id)
    link = signin_link.signin_url(secret)
    return render_template(
        "dashboard/admin_token_created.html",
        caller=caller,
        token=api_token,
        secret=secret,
        link=link,
        qr=signin_link.svg(link, _("QR code: the field app's sign-in link")),
    )


@blp.post("/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int) -> Any:
    caller: Caller = g.caller
    api_token = token_admin.revoke_token(caller, token_id)
    db.session.commit()
    flash(_("Token %(id)s (%(name)s) is revoked.", id=api_token.id, name=api_token.name))
    return redirect(url_for("dashboard.tokens"), 303)
