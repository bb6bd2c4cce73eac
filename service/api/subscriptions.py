"""/api/v1/subscriptions: situation reports by email on a schedule (admin)."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate

from service import handoff
from service.api.fields import SiteId
from service.api.pagination import QueryPage
from service.api.parsing import Blueprint
from service.auth import current_caller, requires
from service.domain import deliveries
from service.domain import subscriptions as domain
from service.errors import Problem
from service.extensions import db
from service.i18n import DEFAULT_LANGUAGE, LANGUAGES
from service.models import Delivery, DeliveryStatus, Role, Subscription
from service.openapi import CONFLICT

blp = Blueprint(
    "subscriptions",
    __name__,
    url_prefix="/api/v1/subscriptions",
    description="Situation reports by email, on a schedule (admin)",
)
log = logging.getLogger(__name__)

# Anything that could end a header line or hide in one: C0 and C1 controls, DEL, and
# Unicode's own line and paragraph separators.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class HeaderSafeText(fields.String):
    """Text that may reach an email: no control character or line break anywhere, not
    even a trailing one (refused, not trimmed: it is what an injection looks like)."""

    def __init__(self, *, max_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if _UNSAFE.search(text):
            raise ValidationError("Must not contain line breaks or control characters.")
        text = text.strip(" ")
        if not text:
            raise ValidationError("Must not be empty.")
        if len(text) > self.max_length:
            raise ValidationError(f"At most {self.max_length} characters.")
        return text


class EmailAddress(HeaderSafeText):
    """One email address, checked by email-validator (syntax only: no DNS look-up here)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=254, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if re.search(r"[,;]", text) or text.count("@") > 1:
            raise ValidationError("One address only; make a subscription per address.")
        try:
            checked = validate_email(text, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            raise ValidationError(f"Not a valid email address: {exc}") from None
        return checked.ascii_email or checked.normalized


class Cron(HeaderSafeText):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=100, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        try:
            return domain.check_cron(super()._deserialize(value, attr, data, **kwargs))
        except domain.ScheduleError as exc:
            raise ValidationError(str(exc)) from None


class TimeZone(HeaderSafeText):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=64, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        try:
            return domain.check_time_zone(super()._deserialize(value, attr, data, **kwargs))
        except domain.ScheduleError as exc:
            raise ValidationError(str(exc)) from None


class SubscriptionIn(Schema):
    email = EmailAddress(required=True, metadata={"example": "sitrep@ngo.example.org"})
    cron = Cron(
        required=True,
        metadata={
            "description": "Five-field cron (minute hour day-of-month month day-of-week), "
            "read in `timezone`.",
            "example": "0 7,19 * * *",
        },
    )
    timezone = TimeZone(
        required=True, metadata={"description": "IANA time zone name.", "example": "Asia/Yerevan"}
    )
    site_ids = fields.List(
        SiteId(),
        load_default=list,
        validate=validate.Length(max=200),
        metadata={"description": "The sites the reports cover; empty or left out: all sites."},
    )
    formats = fields.List(
        fields.String(validate=validate.OneOf(domain.ATTACHMENT_FORMATS)),
        load_default=lambda: ["csv"],
        validate=validate.Length(max=len(domain.ATTACHMENT_FORMATS)),
        metadata={"description": "Exports attached to each email: `csv`, `hxl`. Default: csv."},
    )
    language = fields.String(
        load_default=DEFAULT_LANGUAGE,
        validate=validate.OneOf(LANGUAGES),
        metadata={
            "description": "The language the emails are written in: `en` (English), `hy` "
            "(Armenian) or `ru` (Russian). Default: en.",
            "enum": list(LANGUAGES),
        },
    )


class SubscriptionOut(Schema):
    id = fields.UUID()
    email = fields.String()
    cron = fields.String()
    timezone = fields.String()
    site_ids = fields.List(fields.String())
    formats = fields.List(fields.String())
    language = fields.String(metadata={"enum": list(LANGUAGES)})
    created_at = fields.AwareDateTime()
    next_run_at = fields.Function(
        lambda s: (
            None
            if s.suspended_at
            else _iso(domain.next_moment(s.cron, s.timezone, s.last_checked_at))
        ),
        metadata={
            "description": "The next scheduled moment a report is sent for (UTC); null while "
            "suspended."
        },
    )
    status = fields.Function(
        lambda s: "suspended" if s.suspended_at else "active",
        metadata={
            "description": "`suspended`: the mail server refused the address for good "
            "SUBSCRIPTION_SUSPEND_AFTER times in a row; nothing scheduled is sent until an "
            "admin resumes it (POST .../resume).",
            "enum": ["active", "suspended"],
        },
    )
    suspended_at = fields.AwareDateTime(allow_none=True)
    suspended_reason = fields.String(allow_none=True)


class DeliveryOut(Schema):
    id = fields.UUID()
    subscription_id = fields.UUID()
    scheduled_for = fields.AwareDateTime()
    manual = fields.Boolean()
    summary_id = fields.UUID(allow_none=True)
    status = fields.Enum(DeliveryStatus, by_value=True)
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    message_id = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    next_attempt_at = fields.Function(
        lambda d: _iso(d.next_attempt_at) if d.status is DeliveryStatus.retrying else None
    )
    sent_at = fields.AwareDateTime(allow_none=True)


class DeliveryQueryArgs(Schema):
    status = fields.Enum(DeliveryStatus, by_value=True)


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment else None


@blp.route("")
class Subscriptions(MethodView):
    @requires(Role.admin)
    @blp.response(200, SubscriptionOut(many=True))
    @blp.paginate(QueryPage, page_size=100, max_page_size=1000)
    def get(self) -> Any:
        """List subscriptions (deleted ones are left out)."""
        return (
            db.select(Subscription)
            .where(Subscription.deleted_at.is_(None))
            .order_by(Subscription.created_at, Subscription.id)
        )

    @requires(Role.admin)
    @blp.arguments(SubscriptionIn)
    @blp.response(201, SubscriptionOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Subscribe an address to situation reports on a schedule."""
        subscription = domain.create_subscription(current_caller(), data)
        db.session.commit()
        return subscription, 201, {"Location": f"/api/v1/subscriptions/{subscription.id}"}


@blp.route("/<uuid:subscription_id>")
class SubscriptionById(MethodView):
    @requires(Role.admin)
    @blp.response(200, SubscriptionOut)
    def get(self, subscription_id: uuid.UUID) -> Subscription:
        """One subscription."""
        return domain.find_subscription(subscription_id)

    @requires(Role.admin)
    @blp.response(204)
    def delete(self, subscription_id: uuid.UUID) -> None:
        """Stop a subscription. Nothing more is sent; its delivery log is kept."""
        domain.delete_subscription(current_caller(), subscription_id)
        db.session.commit()


@blp.route("/<uuid:subscription_id>/resume")
class Resume(MethodView):
    @requires(Role.admin)
    @blp.response(200, SubscriptionOut)
    def post(self, subscription_id: uuid.UUID) -> Subscription:
        """Resume a suspended subscription (once its address is fixed): its next scheduled
        moment is sent again; the ones passed while suspended are not. Resuming an active
        one changes nothing."""
        subscription = domain.resume_subscription(current_caller(), subscription_id)
        db.session.commit()
        return subscription


@blp.route("/<uuid:subscription_id>/send")
class SendNow(MethodView):
    @requires(Role.admin)
    @blp.response(202, DeliveryOut)
    @blp.alt_response(409, response=CONFLICT)  # no summary is ready to send
    def post(self, subscription_id: uuid.UUID) -> Any:
        """Send the latest ready summary to the subscription now. Poll the `Location`."""
        delivery = deliveries.request_send(current_caller(), subscription_id)
        db.session.commit()
        if not handoff.send_delivery(delivery.id):
            deliveries.not_handed_out([delivery.id])
            db.session.commit()
        location = f"/api/v1/subscriptions/{subscription_id}/deliveries/{delivery.id}"
        return delivery, 202, {"Location": location}


@blp.route("/<uuid:subscription_id>/deliveries")
class SubscriptionDeliveries(MethodView):
    @requires(Role.admin)
    @blp.arguments(DeliveryQueryArgs, location="query")
    @blp.response(200, DeliveryOut(many=True))
    @blp.paginate(QueryPage, page_size=100, max_page_size=1000)
    def get(self, args: dict[str, Any], subscription_id: uuid.UUID) -> Any:
        """The delivery log, newest scheduled moment first (kept after a subscription ends)."""
        domain.find_subscription(subscription_id, deleted=True)
        query = (
            db.select(Delivery)
            .where(Delivery.subscription_id == subscription_id)
            .order_by(Delivery.scheduled_for.desc(), Delivery.created_at.desc())
        )
        if "status" in args:
            query = query.where(Delivery.status == args["status"])
        return query


@blp.route("/<uuid:subscription_id>/deliveries/<uuid:delivery_id>")
class DeliveryById(MethodView):
    @requires(Role.admin)
    @blp.response(200, DeliveryOut)
    def get(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID) -> Delivery:
        """One delivery: its status, attempts and last error."""
        delivery = db.session.get(Delivery, delivery_id)
        if delivery is None or delivery.subscription_id != subscription_id:
            raise Problem(404, f"There is no delivery '{delivery_id}' for this subscription.")
        return delivery
