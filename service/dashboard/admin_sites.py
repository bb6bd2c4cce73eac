"""The dashboard's sites page (admins): add a site; edit a site's capacity and
coordinates. Read by the API's schemas (`SiteIn`, `SitePatch`) and written by
`service.domain.sites`, which checks the caller is an admin and audits the change.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from service.api.sites import SiteIn, SitePatch
from service.dashboard import blp
from service.dashboard.admin_forms import FormRefused, as_json, load, refused
from service.domain import sites as sites_domain
from service.domain.callers import Caller
from service.domain.errors import Conflict, Invalid
from service.extensions import db
from service.models import Role, Site, SiteKind

NEW_SITE_BOXES = ("id", "name", "kind", "pcode", "capacity", "latitude", "longitude")
EDIT_BOXES = ("capacity", "latitude", "longitude")
NUMBERS = {"integers": ("capacity",), "numbers": ("latitude", "longitude")}


def _page(caller: Caller, **context: Any) -> str:
    context.setdefault("errors", None)
    context.setdefault("form", {})
    context.setdefault("editing", None)
    return render_template(
        "dashboard/admin_sites.html",
        caller=caller,
        sites=list(db.session.execute(select(Site).order_by(Site.name)).scalars()),
        kinds=[kind.value for kind in SiteKind],
        **context,
    )


@blp.get("/sites")
def sites() -> Any:
    caller: Caller = g.caller
    caller.require_role(Role.admin)
    return _page(caller)


@blp.post("/sites")
def add_site() -> Any:
    caller: Caller = g.caller
    caller.require_role(Role.admin)
    form = {name: request.form.get(name, "") for name in NEW_SITE_BOXES}
    body = as_json(
        form, text=("id", "name", "kind", "pcode"), nullable=("pcode", *EDIT_BOXES), **NUMBERS
    )
    try:
        site = sites_domain.create_site(caller, load(SiteIn(), body))
    except FormRefused as refusal:
        return _page(caller, errors=refusal.errors, form=form), 422
    except (Invalid, Conflict) as error:
        db.session.rollback()
        return _page(caller, errors=refused(error), form=form), 422
    db.session.commit()
    flash(_("Site “%(name)s” is added.", name=site.name))
    return redirect(url_for("dashboard.sites"), 303)


@blp.post("/sites/<string:site_id>")
def edit_site(site_id: str) -> Any:
    caller: Caller = g.caller
    caller.require_role(Role.admin)
    site = sites_domain.get_site(site_id)
    form = {name: request.form.get(name, "") for name in EDIT_BOXES}
    body = as_json(form, nullable=EDIT_BOXES, **NUMBERS)
    try:
        site = sites_domain.update_site(caller, site.id, load(SitePatch(), body))
    except FormRefused as refusal:
        return _page(caller, errors=refusal.errors, form=form, editing=site_id), 422
    except Invalid as error:
        db.session.rollback()
        return _page(caller, errors=refused(error), form=form, editing=site_id), 422
    db.session.commit()
    flash(_("Site “%(name)s” is saved.", name=site.name))
    return redirect(url_for("dashboard.sites"), 303)
