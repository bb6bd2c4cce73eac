"""The dashboard's groups of a site (admins, and coordinators for the sites on their
token): each group with its current count and when it was last counted; register a
group; change its status; move it to another site the caller may write for.

The same rules as /api/v1/groups, through the same code: the forms are read by the
API's schemas (`GroupIn`, `GroupPatch`) and written by `service.domain.groups`, which
checks the caller's role and sites (a coordinator asking for another site's groups is
refused; another site's group is not found).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from sqlalchemy import select

from service.api.groups import GroupIn, GroupPatch
from service.dashboard import blp
from service.dashboard.admin_forms import FormErrors, FormRefused, as_json, load, refused
from service.domain import groups as groups_domain
from service.domain import sites as sites_domain
from service.domain.callers import Caller
from service.domain.counting import current_counts
from service.domain.errors import Conflict, Invalid
from service.extensions import db
from service.models import GroupStatus, Site

# What each status is called on the page (the model's enum; its values in the API).
STATUS_LABELS = {
    GroupStatus.waiting: lazy_gettext("waiting"),
    GroupStatus.in_transit: lazy_gettext("in transit"),
    GroupStatus.departed: lazy_gettext("departed"),
    GroupStatus.closed: lazy_gettext("closed"),
}


def _sites_seen(caller: Caller) -> list[Site]:
    """The sites whose groups the caller sees (refused for readers)."""
    seen = caller.group_sites()
    query = select(Site).order_by(Site.name)
    if seen is not None:
        query = query.where(Site.id.in_(seen))
    return list(db.session.execute(query).scalars())


def _writable_sites(caller: Caller) -> list[Site]:
    """The active sites a group may be moved to by this caller."""
    return [site for site in _sites_seen(caller) if site.active and caller.can_write_site(site.id)]


def _page(caller: Caller, site_id: str, **context: Any) -> str:
    groups = list(db.session.execute(groups_domain.visible_groups(caller, site_id)).scalars())
    counts = current_counts([group.id for group in groups])
    context.setdefault("errors", None)
    context.setdefault("form", {})
    return render_template(
        "dashboard/admin_groups.html",
        caller=caller,
        site=db.session.get(Site, site_id),
        sites=_sites_seen(caller),
        movable_to=_writable_sites(caller),
        groups=[(group, counts.get(group.id)) for group in groups],
        statuses=STATUS_LABELS,
        **context,
    )


@blp.get("/groups")
def groups_index() -> Any:
    """The sites whose groups the caller sees, to pick one."""
    caller: Caller = g.caller
    return render_template(
        "dashboard/admin_groups.html", caller=caller, site=None, sites=_sites_seen(caller)
    )


@blp.get("/sites/<string:site_id>/groups")
def site_groups(site_id: str) -> Any:
    caller: Caller = g.caller
    caller.require_sees_groups_of(site_id)
    sites_domain.get_site(site_id)  # an unknown site: not found
    return _page(caller, site_id)


@blp.post("/sites/<string:site_id>/groups")
def register_group(site_id: str) -> Any:
    caller: Caller = g.caller
    caller.require_sees_groups_of(site_id)
    sites_domain.get_site(site_id)
    form = {name: request.form.get(name, "") for name in ("label", "origin", "status")}
    body = as_json(form, text=("label", "origin", "status"), nullable=("origin",))
    try:
        data = load(GroupIn(), {**body, "site_id": site_id})
        group, _created = groups_domain.register_group(caller, data)
    except FormRefused as refusal:
        return _page(caller, site_id, errors=refusal.errors, form=form), 422
    except (Invalid, Conflict) as error:
        db.session.rollback()
        return _page(caller, site_id, errors=refused(error), form=form), 422
    db.session.commit()
    flash(_("Group “%(label)s” is registered.", label=group.label))
    return redirect(url_for("dashboard.site_groups", site_id=site_id), 303)


@blp.post("/groups/<uuid:group_id>")
def change_group(group_id: uuid.UUID) -> Any:
    """Change a group's status, or move it (`site_id`): one form each, both here."""
    caller: Caller = g.caller
    group = groups_domain.visible_group(caller, group_id)
    was_at = group.site_id
    body = as_json(request.form, text=("status", "site_id"))
    try:
        changes = load(GroupPatch(), body)
        if not changes:
            raise FormRefused(
                FormErrors(_("Nothing was saved: choose a status or a site to move the group to."))
            )
        group = groups_domain.update_group(caller, group_id, changes)
    except FormRefused as refusal:
        return _page(caller, was_at, errors=refusal.errors), 422
    except Invalid as error:
        db.session.rollback()
        return _page(caller, was_at, errors=refused(error)), 422
    db.session.commit()
    if group.site_id != was_at:
        flash(_("Group “%(label)s” moved to %(site)s.", label=group.label, site=group.site_id))
    else:
        status = STATUS_LABELS[group.status]
        flash(_("Group “%(label)s” is now: %(status)s.", label=group.label, status=status))
    return redirect(url_for("dashboard.site_groups", site_id=was_at), 303)
