"""Webhooks: signed events to an NGO's own system (admins; readers, their own)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from service.api.fields import SiteId
from service.api.pagination import QueryPage
from service.api.parsing import Blueprint
from service.auth import current_caller, requires
from service.domain import webhooks as domain
from service.extensions import db
from service.models import Role, WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1/webhooks",
    description="Signed events (Standard Webhooks) to your own system: admins, and readers "
    "for their own endpoints. See docs/webhooks.md.",
)


class WebhookIn(Schema):
    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=domain.MAX_URL_LENGTH),
        metadata={
            "description": "An https:// URL of a public address (plain http, or a private "
            "address, only for hosts listed in WEBHOOK_ALLOWED_HOSTS).",
            "example": "https://hooks.ngo.example.org/needs-tracker",
        },
    )
    site_ids = fields.List(
        SiteId(),
        load_default=list,
        validate=validate.Length(max=200),
        metadata={"description": "The sites the events cover; empty or left out: all sites."},
    )
    formats = fields.List(
        fields.String(validate=validate.OneOf(domain.FORMATS)),
        load_default=lambda: ["json"],
        validate=validate.Length(min=1, max=len(domain.FORMATS)),
        metadata={"description": "What a `summary.ready` carries: `json`, `csv`, `hxl`."},
    )
    events = fields.List(
        fields.String(validate=validate.OneOf(domain.EVENTS)),
        load_default=lambda: ["summary.ready"],
        validate=validate.Length(min=1, max=len(domain.EVENTS)),
        metadata={"description": "`summary.ready`, `summary.failed`, `flag.raised`."},
    )


class WebhookOut(Schema):
    id = fields.UUID()
    url = fields.String()
    site_ids = fields.List(fields.String())
    formats = fields.List(fields.String())
    events = fields.List(fields.String())
    owner_token_id = fields.Integer(allow_none=True)
    created_at = fields.AwareDateTime()
    status = fields.Function(
        lambda e: "disabled" if e.disabled_at else "active",
        metadata={
            "description": "`disabled`: WEBHOOK_DISABLE_AFTER deliveries in a row failed for "
            "good; nothing more is sent (`disabled_reason` says why). Register it again "
            "once the receiver is fixed.",
            "enum": ["active", "disabled"],
        },
    )
    disabled_at = fields.AwareDateTime(allow_none=True)
    disabled_reason = fields.String(allow_none=True)
    consecutive_failures = fields.Integer()
    previous_secret_until = fields.AwareDateTime(
        allow_none=True,
        metadata={"description": "Until then the secret before the last rotation signs too."},
    )


class WebhookCreatedOut(WebhookOut):
    secret = fields.String(
        metadata={
            "description": "The signing secret (`whsec_...`), shown this once: verify each "
            "delivery's `webhook-signature` with it."
        }
    )


class SecretOut(Schema):
    id = fields.UUID()
    secret = fields.String(metadata={"description": "The new secret, shown this once."})
    previous_secret_until = fields.AwareDateTime(
        metadata={"description": "Until then deliveries are signed with the old secret too."}
    )


class AttemptOut(Schema):
    attempted_at = fields.AwareDateTime()
    duration_ms = fields.Integer()
    response_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)


class WebhookDeliveryOut(Schema):
    id = fields.UUID()
    webhook_id = fields.String(
        attribute="message_id",
        metadata={"description": "The `webhook-id` header of every attempt (`msg_...`)."},
    )
    event_type = fields.String()
    summary_id = fields.UUID(allow_none=True)
    status = fields.Enum(WebhookDeliveryStatus, by_value=True)
    attempts = fields.Integer()
    last_response_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    next_attempt_at = fields.Function(
        lambda d: (
            d.next_attempt_at.isoformat()
            if d.status is WebhookDeliveryStatus.retrying and d.next_attempt_at
            else None
        )
    )
    delivered_at = fields.AwareDateTime(allow_none=True)
    attempt_log = fields.Function(
        lambda d: AttemptOut(many=True).dump(_attempts(d.id)),
        metadata={"description": "Every attempt, oldest first."},
    )


def _attempts(delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    return list(
        db.session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        ).scalars()
    )


class DeliveryQueryArgs(Schema):
    status = fields.Enum(WebhookDeliveryStatus, by_value=True)


@blp.route("")
class Webhooks(MethodView):
    @requires(Role.admin, Role.reader)
    @blp.response(200, WebhookOut(many=True))
    @blp.paginate(QueryPage, page_size=100, max_page_size=1000)
    def get(self) -> Any:
        """The webhooks: all for admins, a reader's own (deleted ones are left out)."""
        return domain.visible_endpoints(current_caller())

    @requires(Role.admin, Role.reader)
    @blp.arguments(WebhookIn)
    @blp.response(201, WebhookCreatedOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Register an endpoint; the answer carries its secret, shown only this once."""
        endpoint = domain.register(current_caller(), data)
        db.session.commit()
        return endpoint, 201, {"Location": f"/api/v1/webhooks/{endpoint.id}"}


@blp.route("/<uuid:webhook_id>")
class WebhookById(MethodView):
    @requires(Role.admin, Role.reader)
    @blp.response(200, WebhookOut)
    def get(self, webhook_id: uuid.UUID) -> Any:
        """One webhook (another reader's is not found)."""
        return domain.find(current_caller(), webhook_id)

    @requires(Role.admin, Role.reader)
    @blp.response(204)
    def delete(self, webhook_id: uuid.UUID) -> None:
        """Stop a webhook: nothing more is sent; its delivery log is kept."""
        domain.delete(current_caller(), webhook_id)
        db.session.commit()


@blp.route("/<uuid:webhook_id>/rotate-secret")
class RotateSecret(MethodView):
    @requires(Role.admin, Role.reader)
    @blp.response(200, SecretOut)
    def post(self, webhook_id: uuid.UUID) -> Any:
        """A new secret, shown this once; the old one still signs (beside it) for
        WEBHOOK_SECRET_GRACE_HOURS, so the receiver can switch without losing a delivery."""
        secret = domain.rotate_secret(current_caller(), webhook_id)
        endpoint = domain.find(current_caller(), webhook_id)
        db.session.commit()
        return {
            "id": endpoint.id,
            "secret": secret,
            "previous_secret_until": endpoint.previous_secret_until,
        }


@blp.route("/<uuid:webhook_id>/deliveries")
class WebhookDeliveries(MethodView):
    @requires(Role.admin, Role.reader)
    @blp.arguments(DeliveryQueryArgs, location="query")
    @blp.response(200, WebhookDeliveryOut(many=True))
    @blp.paginate(QueryPage, page_size=100, max_page_size=1000)
    def get(self, args: dict[str, Any], webhook_id: uuid.UUID) -> Any:
        """The delivery log, newest first, each with its attempts (kept after a delete)."""
        domain.find(current_caller(), webhook_id, deleted=True)
        query = (
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == webhook_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        )
        if "status" in args:
            query = query.where(WebhookDelivery.status == args["status"])
        return query
