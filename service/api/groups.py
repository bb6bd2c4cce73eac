"""/api/v1/groups: groups at sites, with their current count (the counting rule)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from service.api.fields import SiteId, Text
from service.api.pagination import QueryPage
from service.api.parsing import Blueprint
from service.auth import current_caller, requires, sees_groups
from service.domain import groups as domain
from service.domain.counting import current_counts
from service.extensions import db
from service.models import Group, GroupStatus, Role
from service.openapi import CONFLICT

blp = Blueprint("groups", __name__, url_prefix="/api/v1/groups", description="Groups")


class GroupIn(Schema):
    id = fields.UUID(
        metadata={
            "description": "Optional: an id the client chose (a UUID), so that a phone can "
            "register a group offline and count it before it syncs. Sending the same id "
            "and registration again answers the group as it is now (200); the same id "
            "with another registration, or an id already taken, is 409."
        }
    )
    site_id = SiteId(required=True)
    label = Text(max_length=200, required=True)
    origin = Text(max_length=200, allow_none=True)
    status = fields.Enum(GroupStatus, by_value=True, load_default=GroupStatus.waiting)


class GroupPatch(Schema):
    site_id = SiteId()
    label = Text(max_length=200)
    origin = Text(max_length=200, allow_none=True)
    status = fields.Enum(GroupStatus, by_value=True)


class GroupMoveOut(Schema):
    from_site_id = fields.String()
    to_site_id = fields.String()
    moved_at = fields.AwareDateTime()


class GroupOut(Schema):
    id = fields.UUID()
    site_id = fields.String()
    label = fields.String()
    origin = fields.String(allow_none=True)
    status = fields.Enum(GroupStatus, by_value=True)
    current_count = fields.Integer(
        allow_none=True, metadata={"description": "Total of the latest report (null: none yet)."}
    )
    last_observed_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class GroupDetailOut(GroupOut):
    moves = fields.List(fields.Nested(GroupMoveOut), metadata={"description": "Site history."})


class GroupQueryArgs(Schema):
    site_id = SiteId()
    status = fields.Enum(GroupStatus, by_value=True)


def with_counts(groups: Sequence[Group], *, moves: bool = False) -> list[dict[str, Any]]:
    counts = current_counts([g.id for g in groups])
    views = []
    for group in groups:
        count = counts.get(group.id)
        views.append(
            {
                "id": group.id,
                "site_id": group.site_id,
                "label": group.label,
                "origin": group.origin,
                "status": group.status,
                "current_count": count.total if count else None,
                "last_observed_at": count.observed_at if count else None,
                "created_at": group.created_at,
                "updated_at": group.updated_at,
            }
        )
        if moves:  # one group's page shows its site history; lists do not
            views[-1]["moves"] = group.moves
    return views


class GroupPage(QueryPage):
    """Pages of groups, each page's current counts looked up in one query."""

    def present(self, rows: Sequence[Group]) -> list[dict[str, Any]]:
        return with_counts(rows)


@blp.route("")
class Groups(MethodView):
    @sees_groups
    @blp.arguments(GroupQueryArgs, location="query")
    @blp.response(200, GroupOut(many=True))
    @blp.paginate(GroupPage, page_size=100, max_page_size=1000)
    def get(self, args: dict[str, Any]) -> Any:
        """List the groups of the sites this token holds (admins: all); filter by `site_id`
        (one of those sites) and `status`. Readers are refused: they read summaries."""
        return domain.visible_groups(current_caller(), args.get("site_id"), args.get("status"))

    @requires(Role.admin, Role.coordinator)
    @blp.arguments(GroupIn)
    @blp.response(201, GroupDetailOut, description="Registered.")
    @blp.alt_response(
        200,
        schema=GroupDetailOut,
        description="A resend: the same `id` with the same `site_id`, `label`, `origin` and "
        "`status` as it was first registered. The group as it is now (it may have moved or "
        "changed since); nothing new is stored.",
    )
    @blp.alt_response(409, response=CONFLICT)  # the id is taken by another registration
    def post(self, data: dict[str, Any]) -> Any:
        """Register a group at a site (a coordinator of that site, or an admin). An `id`
        chosen by the client makes the registration idempotent: see `id`."""
        group, created = domain.register_group(current_caller(), data)
        db.session.commit()
        return with_counts([group], moves=True)[0], 201 if created else 200


@blp.route("/<uuid:group_id>")
class GroupById(MethodView):
    @sees_groups
    @blp.response(200, GroupDetailOut)
    def get(self, group_id: uuid.UUID) -> dict[str, Any]:
        """One group of a site this token holds (admins: any), with its current count and
        site history. Another site's group is 404, like one that does not exist."""
        return with_counts([domain.visible_group(current_caller(), group_id)], moves=True)[0]

    @requires(Role.admin, Role.coordinator)
    @blp.arguments(GroupPatch)
    @blp.response(200, GroupDetailOut)
    def patch(self, changes: dict[str, Any], group_id: uuid.UUID) -> dict[str, Any]:
        """Change a group; a new `site_id` moves it (the move is kept in its history)."""
        group = domain.update_group(current_caller(), group_id, changes)
        db.session.commit()
        return with_counts([group], moves=True)[0]
