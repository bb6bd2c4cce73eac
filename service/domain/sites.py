"""Sites: where people wait or pass."""

from __future__ import annotations

from typing import Any

from service.domain import audit, rules
from service.domain.callers import Caller
from service.domain.errors import Conflict, FieldError, Invalid, NotFound
from service.extensions import db
from service.models import Role, Site, SiteKind

SITE_FIELDS = (
    "id",
    "name",
    "kind",
    "pcode",
    "latitude",
    "longitude",
    "capacity",
    "parent_id",
    "active",
)

SEED_SITES: tuple[dict[str, Any], ...] = (
    {
        "id": "stepanakert-centre",
        "name": "Stepanakert (centre)",
        "kind": SiteKind.city,
        "latitude": 39.8177,
        "longitude": 46.7528,
    },
    {
        "id": "stepanakert-airport",
        "name": "Stepanakert airport (peacekeepers' base)",
        "kind": SiteKind.airport,
        "latitude": 39.9014,
        "longitude": 46.7870,
    },
)


def site_state(site: Site) -> dict[str, Any]:
    state = {name: getattr(site, name) for name in SITE_FIELDS}
    state["kind"] = site.kind.value if site.kind else None
    return state


def get_site(site_id: str) -> Site:
    # An id that could not be a slug names no site; and one with a NUL in it would make
    # PostgreSQL refuse the query itself.
    site = db.session.get(Site, site_id) if rules.SLUG.match(site_id) else None
    if site is None:
        raise NotFound(f"There is no site '{site_id}'.")
    return site


def _check_parent(site_id: str, parent_id: str | None) -> None:
    if parent_id is None:
        return
    seen = {site_id}
    current: str | None = parent_id
    while current is not None:
        if current in seen:
            raise Invalid(
                "A site cannot be its own ancestor.",
                errors=[FieldError("parent_id", "Would make a cycle.")],
            )
        seen.add(current)
        parent = db.session.get(Site, current)
        if parent is None:
            raise Invalid(
                f"There is no site '{current}' to be the parent.",
                errors=[FieldError("parent_id", "Unknown site.")],
            )
        current = parent.parent_id


def create_site(caller: Caller, data: dict[str, Any]) -> Site:
    caller.require_role(Role.admin)
    if db.session.get(Site, data["id"]) is not None:
        raise Conflict(f"A site with id '{data['id']}' already exists.")
    _check_parent(data["id"], data.get("parent_id"))
    site = Site(**data)
    db.session.add(site)
    db.session.flush()
    audit.record(caller, "site.create", "site", site.id, after=site_state(site))
    return site


def update_site(caller: Caller, site_id: str, changes: dict[str, Any]) -> Site:
    caller.require_role(Role.admin)
    site = get_site(site_id)
    before = site_state(site)
    if "parent_id" in changes:
        _check_parent(site.id, changes["parent_id"])
    for name, value in changes.items():
        setattr(site, name, value)
    db.session.flush()
    audit.record(caller, "site.update", "site", site.id, before=before, after=site_state(site))
    return site


def seed_sites(caller: Caller) -> list[str]:
    """Add the default sites that are missing; returns the ids added."""
    added = []
    for data in SEED_SITES:
        if db.session.get(Site, data["id"]) is None:
            create_site(caller, dict(data))
            added.append(data["id"])
    return added
