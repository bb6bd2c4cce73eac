"""/api/v1/sites: read by everyone, written by admins."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from service.api.fields import SiteId, Text
from service.api.parsing import Blueprint
from service.auth import current_caller, requires
from service.domain import sites as domain
from service.extensions import db
from service.models import Role, Site, SiteKind
from service.openapi import CONFLICT

blp = Blueprint("sites", __name__, url_prefix="/api/v1/sites", description="Sites")


class SiteFields(Schema):
    name = Text(max_length=200)
    kind = fields.Enum(SiteKind, by_value=True)
    pcode = Text(max_length=32, allow_none=True)
    latitude = fields.Float(allow_none=True, allow_nan=False, validate=validate.Range(-90, 90))
    longitude = fields.Float(allow_none=True, allow_nan=False, validate=validate.Range(-180, 180))
    capacity = fields.Integer(strict=True, allow_none=True, validate=validate.Range(0, 10_000_000))
    parent_id = SiteId(allow_none=True)
    active = fields.Boolean()


class SiteIn(SiteFields):
    id = SiteId(required=True)
    name = Text(max_length=200, required=True)
    kind = fields.Enum(SiteKind, by_value=True, required=True)
    active = fields.Boolean(load_default=True)


class SitePatch(SiteFields):
    pass


class SiteOut(Schema):
    id = fields.String()
    name = fields.String()
    kind = fields.Enum(SiteKind, by_value=True)
    pcode = fields.String(allow_none=True)
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    capacity = fields.Integer(allow_none=True)
    parent_id = fields.String(allow_none=True)
    active = fields.Boolean()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class SiteQueryArgs(Schema):
    active = fields.Boolean()


@blp.route("")
class Sites(MethodView):
    @blp.arguments(SiteQueryArgs, location="query")
    @blp.response(200, SiteOut(many=True))
    def get(self, args: dict[str, Any]) -> list[Site]:
        """List sites."""
        query = db.select(Site).order_by(Site.id)
        if "active" in args:
            query = query.where(Site.active.is_(args["active"]))
        return list(db.session.execute(query).scalars())

    @requires(Role.admin)
    @blp.arguments(SiteIn)
    @blp.response(201, SiteOut)
    @blp.alt_response(409, response=CONFLICT)  # the id is taken
    def post(self, data: dict[str, Any]) -> Site:
        """Add a site (admin)."""
        site = domain.create_site(current_caller(), data)
        db.session.commit()
        return site


@blp.route("/<string:site_id>")
class SiteById(MethodView):
    @blp.response(200, SiteOut)
    def get(self, site_id: str) -> Site:
        """One site."""
        return domain.get_site(site_id)

    @requires(Role.admin)
    @blp.arguments(SitePatch)
    @blp.response(200, SiteOut)
    def patch(self, changes: dict[str, Any], site_id: str) -> Site:
        """Change a site (admin)."""
        site = domain.update_site(current_caller(), site_id, changes)
        db.session.commit()
        return site
