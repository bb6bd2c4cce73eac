"""Groups of people waiting together at a site, and their moves between sites."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, select

from service.domain import audit
from service.domain.callers import Caller
from service.domain.errors import FieldError, Invalid, NotFound
from service.extensions import db
from service.models import Group, GroupMove, GroupStatus, GroupStatusChange, Role, Site


def group_state(group: Group) -> dict[str, Any]:
    return {
        "id": str(group.id),
        "site_id": group.site_id,
        "label": group.label,
        "origin": group.origin,
        "status": group.status.value if group.status else None,
    }


def visible_group(caller: Caller, group_id: uuid.UUID) -> Group:
    """A group this caller may see. Another site's group is "not there" (404), the same
    answer as an id that names nothing, so its id is not confirmed."""
    caller.group_sites()  # readers: refused for their role first
    group = db.session.get(Group, group_id)
    if group is None or not caller.sees_groups_of(group.site_id):
        raise NotFound(f"There is no group '{group_id}'.")
    return group


def of_sites_seen(
    query: Select[Any], site_column: Any, caller: Caller, site_id: str | None = None
) -> Select[Any]:
    """`query` narrowed to the sites whose groups and head counts `caller` sees (readers
    are refused), and to `site_id` if named (refused if the caller may not see it): the
    one place a list of groups or head counts is scoped."""
    sites = caller.group_sites()
    if site_id is not None:
        caller.require_sees_groups_of(site_id)
        query = query.where(site_column == site_id)
    if sites is not None:
        query = query.where(site_column.in_(sites) if sites else false())
    return query


def visible_groups(
    caller: Caller, site_id: str | None = None, status: GroupStatus | None = None
) -> Select[tuple[Group]]:
    """The groups this caller may see, oldest first; a `site_id` it may not see is refused."""
    query = of_sites_seen(
        select(Group).order_by(Group.created_at, Group.id), Group.site_id, caller, site_id
    )
    if status is not None:
        query = query.where(Group.status == status)
    return query


def _existing_active_site(site_id: str) -> Site:
    site = db.session.get(Site, site_id)
    if site is None:
        raise Invalid(
            f"There is no site '{site_id}'.", errors=[FieldError("site_id", "Unknown site.")]
        )
    if not site.active:
        raise Invalid(
            f"Site '{site_id}' is not active; groups cannot be placed there.",
            errors=[FieldError("site_id", "Inactive site.")],
        )
    return site


def create_group(caller: Caller, data: dict[str, Any]) -> Group:
    caller.require_site(data["site_id"])
    _existing_active_site(data["site_id"])
    group = Group(**data)
    db.session.add(group)
    db.session.flush()
    audit.record(caller, "group.create", "group", group.id, after=group_state(group))
    return group


def update_group(
    caller: Caller, group_id: uuid.UUID, changes: dict[str, Any], at: datetime | None = None
) -> Group:
    """Change a group; a new `site_id` is a move, kept in the group's history.

    A coordinator must hold the group's current site (another site's group is not
    found, as when reading it), and for a move the destination too: nobody writes into
    a site their token does not name. `at` dates the move or
    status change (default: now); the demo's replay uses it to record history.
    """
    caller.require_role(Role.admin, Role.coordinator)
    group = visible_group(caller, group_id)
    before = group_state(group)
    new_site = changes.pop("site_id", group.site_id)
    if new_site != group.site_id:
        caller.require_site(new_site)
        _existing_active_site(new_site)
        group.moves.append(
            GroupMove(
                from_site_id=group.site_id,
                to_site_id=new_site,
                token_id=caller.token_id,
                **({"moved_at": at} if at else {}),
            )
        )
        group.site_id = new_site
    new_status = changes.pop("status", group.status)
    if new_status != group.status:
        db.session.add(
            GroupStatusChange(
                group_id=group.id,
                from_status=group.status,
                to_status=new_status,
                token_id=caller.token_id,
                **({"changed_at": at} if at else {}),
            )
        )
        group.status = new_status
    for name, value in changes.items():
        setattr(group, name, value)
    db.session.flush()
    audit.record(caller, "group.update", "group", group.id, before=before, after=group_state(group))
    return group
