"""Groups of people waiting together at a site, and their moves between sites."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, select
from sqlalchemy.exc import IntegrityError

from service.domain import audit
from service.domain.callers import Caller
from service.domain.errors import Conflict, FieldError, Invalid, NotFound
from service.extensions import db
from service.models import (
    AuditEvent,
    Group,
    GroupMove,
    GroupStatus,
    GroupStatusChange,
    Role,
    Site,
)

# What a registration says about a group, and so what a resend of it is compared on.
REGISTERED_FIELDS = ("site_id", "label", "origin", "status")


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
    """Register a group (see `register_group`); the group, new or registered before."""
    return register_group(caller, data)[0]


def register_group(caller: Caller, data: dict[str, Any]) -> tuple[Group, bool]:
    """Register a group at a site; `(group, True)` when this call stored it.

    `data` may carry an `id` the client chose (a phone registers a group offline and
    counts it before it syncs). The primary key makes the registration happen once:

    - The same `id` with the same registration (`REGISTERED_FIELDS`, as first stored)
      answers the group as it is now, `(group, False)`: nothing new is stored. It is
      compared with what was *registered* (the `group.create` audit event, written in
      the same transaction as the group), not with the group's current state, so a phone
      resending its registration after a colleague moved the group or marked it
      departed still gets the group, not a conflict.
    - The same `id` with another registration is `Conflict`.
    - An `id` taken by a group the caller may not see (another site's) is the same
      `Conflict`, word for word: nothing of that group is told.
    - Two registrations with one `id` at once: one row. The insert runs in a savepoint;
      the loser's unique violation (PostgreSQL) is rolled back and it reads the winner's
      row and compares as above. On SQLite writers queue (BEGIN IMMEDIATE), so the
      loser finds the row before it inserts.

    The caller's write on the body's site is checked first, so a refusal there says
    nothing about the id. A resend is answered even if the site has since been made
    inactive: the registration happened while it was active.
    """
    caller.require_site(data["site_id"])
    group_id = data.get("id")
    if group_id is not None:
        existing = db.session.get(Group, group_id)
        if existing is not None:
            return _registered_again(caller, existing, data), False
    _existing_active_site(data["site_id"])
    group = Group(**data)
    try:
        with db.session.begin_nested():
            db.session.add(group)
    except IntegrityError:
        existing = db.session.get(Group, group_id) if group_id is not None else None
        if existing is None:
            raise  # not the id: nothing else of a group is unique
        return _registered_again(caller, existing, data), False
    audit.record(caller, "group.create", "group", group.id, after=group_state(group))
    return group, True


def _registered_again(caller: Caller, group: Group, data: dict[str, Any]) -> Group:
    sent = _registration_of(data)
    if not caller.sees_groups_of(group.site_id) or sent != _first_registration(group):
        raise Conflict(
            f"The group id '{group.id}' is already taken by another registration; "
            "register the group with a new id.",
            title="Group id taken",
        )
    return group


def _registration_of(data: dict[str, Any]) -> dict[str, Any]:
    status = data.get("status", GroupStatus.waiting)
    return {
        "site_id": data["site_id"],
        "label": data["label"],
        "origin": data.get("origin"),
        "status": GroupStatus(status).value,
    }


def _first_registration(group: Group) -> dict[str, Any]:
    """What the group was registered with: its `group.create` audit event's state (the
    group as it is now if that event is missing, a stricter comparison)."""
    registered = db.session.execute(
        select(AuditEvent.after)
        .where(
            AuditEvent.entity_type == "group",
            AuditEvent.entity_id == str(group.id),
            AuditEvent.action == "group.create",
        )
        .order_by(AuditEvent.id)
        .limit(1)
    ).scalar_one_or_none()
    state = registered or group_state(group)
    return {name: state.get(name) for name in REGISTERED_FIELDS}


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
