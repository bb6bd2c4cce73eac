"""/api/v1/me: who this token is, for the field app (its role, name and sites; never
its secret). The app shows the coordinator's sites and asks for their groups."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from service.api.parsing import Blueprint
from service.auth import current_caller
from service.extensions import db
from service.models import Role, Site

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="The caller")


class MeOut(Schema):
    role = fields.String(metadata={"description": "admin, coordinator or reader."})
    name = fields.String(metadata={"description": "The token's name, as it was issued."})
    site_ids = fields.List(
        fields.String(),
        metadata={
            "description": "The sites this token writes for: a coordinator's own; every "
            "active site for an admin; none for a reader."
        },
    )
    all_sites = fields.Boolean(
        metadata={"description": "True for an admin: every site, present and future."}
    )


@blp.route("")
class Me(MethodView):
    @blp.response(200, MeOut)
    def get(self) -> dict[str, Any]:
        """The caller: role, name and the sites it writes for (never the secret)."""
        caller = current_caller()
        if caller.role is Role.admin:
            query = db.select(Site.id).where(Site.active.is_(True)).order_by(Site.id)
            site_ids = list(db.session.execute(query).scalars())
        elif caller.role is Role.coordinator:
            site_ids = sorted(caller.site_ids)
        else:
            site_ids = []
        return {
            "role": caller.role.value,
            "name": caller.name,
            "site_ids": site_ids,
            "all_sites": caller.role is Role.admin,
        }
