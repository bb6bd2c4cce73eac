"""/api/v1/reports: head counts, one at a time or as an offline batch."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, current_app, jsonify, request
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate

from service.api.fields import Count, Moment, SiteId, Text
from service.api.pagination import QueryPage
from service.api.parsing import Blueprint
from service.auth import current_caller, requires
from service.domain import reports as domain
from service.errors import Problem, field_errors, problem_body
from service.extensions import db
from service.models import NEEDS_SECTORS, Report, Role

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports", description="Head counts")

# The draft makes the key a structured-header string ("..."); bare tokens are accepted too.
_KEY = re.compile(r'^"?([\x21\x23-\x7e]{1,255})"?$')
WRITERS = (Role.admin, Role.coordinator)


class SaddIn(Schema):
    """Sex-and-age breakdown: all eight keys, adding up to the total."""

    female_0_4 = Count(required=True)
    female_5_17 = Count(required=True)
    female_18_59 = Count(required=True)
    female_60_plus = Count(required=True)
    male_0_4 = Count(required=True)
    male_5_17 = Count(required=True)
    male_18_59 = Count(required=True)
    male_60_plus = Count(required=True)


class VulnerableIn(Schema):
    """People with specific needs; each at most the total. Omit what was not counted."""

    pregnant_lactating = Count()
    disabled = Count()
    unaccompanied_minors = Count()
    injured = Count()
    chronically_ill = Count()


class NeedIn(Schema):
    sector = fields.String(required=True, validate=validate.OneOf(NEEDS_SECTORS))
    severity = fields.Integer(strict=True, required=True, validate=validate.Range(1, 5))
    note = Text(max_length=1000, multiline=True, allow_none=True)


class ReportIn(Schema):
    group_id = fields.UUID(required=True)
    observed_at = Moment(
        required=True,
        metadata={"description": "ISO 8601 with a time zone; not in the future."},
    )
    total = Count(required=True)
    sadd = fields.Nested(SaddIn, allow_none=True)
    vulnerable = fields.Nested(VulnerableIn, allow_none=True)
    needs = fields.List(fields.Nested(NeedIn), validate=validate.Length(max=len(NEEDS_SECTORS) * 5))
    note = Text(max_length=2000, multiline=True, allow_none=True)
    supersedes = fields.Integer(
        strict=True,
        allow_none=True,
        # Report ids are 32-bit integers; a larger one names no report (and PostgreSQL
        # would refuse to compare it with one).
        validate=validate.Range(1, 2**31 - 1),
        metadata={"description": "The id of an earlier report of this group that this corrects."},
    )
    client_id = fields.UUID(
        metadata={"description": "The sender's id for this report, used as its idempotency key."}
    )


class BatchIn(Schema):
    # Items are checked one by one (a null item gets its own 422), so any value is taken.
    reports = fields.List(
        fields.Raw(allow_none=True), required=True, validate=validate.Length(min=1)
    )


class NeedOut(Schema):
    sector = fields.String()
    severity = fields.Integer()
    note = fields.String(allow_none=True)


class ReportOut(Schema):
    id = fields.Integer()
    group_id = fields.UUID()
    site_id = fields.String()
    observed_at = fields.AwareDateTime()
    received_at = fields.AwareDateTime()
    total = fields.Integer()
    sadd = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True)
    vulnerable = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True)
    needs = fields.List(fields.Nested(NeedOut))
    note = fields.String(allow_none=True)
    supersedes = fields.Integer(attribute="supersedes_id", allow_none=True)
    client_id = fields.String(allow_none=True)


class BatchItemOut(Schema):
    index = fields.Integer()
    client_id = fields.String(allow_none=True)
    status = fields.Integer(metadata={"description": "201 stored, 200 replayed, or a 4xx."})
    report = fields.Nested(ReportOut, allow_none=True)
    problem = fields.Dict(allow_none=True)


class BatchOut(Schema):
    results = fields.List(fields.Nested(BatchItemOut))


class ReportQueryArgs(Schema):
    group_id = fields.UUID()
    site_id = SiteId()
    since = Moment(metadata={"description": "Observed at or after this moment."})
    received_since = Moment(
        metadata={"description": "Received at or after this moment (for incremental sync)."}
    )


def render(report: Report) -> dict[str, Any]:
    return ReportOut().dump(report)


def header_key() -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    match = _KEY.match(raw.strip())
    if match is None:
        raise Problem(
            400,
            "Idempotency-Key must be 1 to 255 visible characters, e.g. a UUID.",
            title="Bad Idempotency-Key",
        )
    return match.group(1)


def idempotency_key(data: dict[str, Any], header: str | None) -> str | None:
    client_id = str(data["client_id"]) if data.get("client_id") else None
    if header and client_id and header != client_id:
        raise Problem(
            422,
            "The Idempotency-Key header and the body's client_id differ; send one, or the same.",
            errors=[{"field": "client_id", "message": "Differs from the Idempotency-Key header."}],
        )
    return header or client_id


@blp.route("")
class Reports(MethodView):
    @requires(*WRITERS)
    @blp.arguments(ReportQueryArgs, location="query")
    @blp.response(200, ReportOut(many=True))
    @blp.paginate(QueryPage, page_size=100, max_page_size=1000)
    def get(self, args: dict[str, Any]) -> Any:
        """List head counts, newest observation first (coordinators and admins)."""
        query = db.select(Report).order_by(Report.observed_at.desc(), Report.id.desc())
        if "group_id" in args:
            query = query.where(Report.group_id == args["group_id"])
        if "site_id" in args:
            query = query.where(Report.site_id == args["site_id"])
        if "since" in args:
            query = query.where(Report.observed_at >= args["since"])
        if "received_since" in args:
            query = query.where(Report.received_at >= args["received_since"])
        return query

    @requires(*WRITERS)
    @blp.arguments(ReportIn)
    @blp.response(201, ReportOut)
    @blp.alt_response(200, description="A resend: the answer to the first request.")
    def post(self, data: dict[str, Any]) -> Response:
        """Submit one head count. Send an `Idempotency-Key` so a resend stores nothing new."""
        key = idempotency_key(data, header_key())
        outcome = domain.submit_report(current_caller(), data, key, render)
        response = jsonify(outcome.body)
        response.status_code = outcome.status
        response.headers["Location"] = f"/api/v1/reports/{outcome.body['id']}"
        if outcome.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response


@blp.route("/<int:report_id>")
class ReportById(MethodView):
    @requires(*WRITERS)
    @blp.response(200, ReportOut)
    def get(self, report_id: int) -> Report:
        """One head count: the one a POST's `Location` names (coordinators and admins)."""
        # Report ids are 32-bit; PostgreSQL refuses to compare one with a larger number.
        report = db.session.get(Report, report_id) if report_id < 2**31 else None
        if report is None:
            raise Problem(404, f"There is no report {report_id}.")
        return report


@blp.route("/batch")
class ReportBatch(MethodView):
    @requires(*WRITERS)
    @blp.arguments(BatchIn)
    @blp.response(200, BatchOut)
    def post(self, data: dict[str, Any]) -> Response:
        """Sync queued offline reports: a result per item, in order; good items are stored
        even when others fail. Each item's `client_id` is its idempotency key."""
        items = data["reports"]
        limit = current_app.config["REPORTS_BATCH_LIMIT"]
        if len(items) > limit:
            raise Problem(
                422,
                f"A batch holds at most {limit} reports; split it and send the rest after.",
                errors=[{"field": "reports", "message": f"Longer than {limit}."}],
            )
        caller = current_caller()
        # Items carry already-rendered reports (some replayed), so no second dump.
        return jsonify({"results": [submit_item(caller, i, item) for i, item in enumerate(items)]})


def submit_item(caller: Any, index: int, item: Any) -> dict[str, Any]:
    client_id = (
        str(item.get("client_id"))
        if isinstance(item, dict) and item.get("client_id") is not None
        else None
    )
    result: dict[str, Any] = {"index": index, "client_id": client_id}
    try:
        if not isinstance(item, dict):
            raise Problem(422, "Each batch item must be a report object.")
        try:
            data = ReportIn().load(item)
        except ValidationError as exc:
            raise Problem(
                422,
                "The report has invalid fields; see errors.",
                errors=field_errors(exc.messages),
            ) from None
        outcome = domain.submit_report(caller, data, idempotency_key(data, None), render)
    except Problem as problem:
        body = problem_body(
            problem.code or 422, problem.description, title=problem.title, errors=problem.errors
        )
        result.update(status=problem.code, report=None, problem=body)
        return result
    result.update(status=200 if outcome.replayed else outcome.status, report=outcome.body)
    return result
