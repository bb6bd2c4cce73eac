"""/api/v1/reports: head counts, one at a time or as an offline batch.

Both go through the one rule (`headcounts.read_report`) and the one writer (via
`reports.submit`). A resend (the same key and body) answers 200 with the report as it
was first stored and `Idempotent-Replayed: true`; a new report answers 201. A batch
answers each item the same way, in order.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from service.api.fields import Count, Moment, SiteId, Text
from service.api.pagination import QueryPage
from service.api.parsing import Blueprint
from service.auth import current_caller, requires, sees_groups
from service.domain import headcounts
from service.domain import reports as domain
from service.domain.errors import DomainError, FieldError, Invalid
from service.errors import Problem, ProblemOut, domain_problem, status_of
from service.extensions import db
from service.models import NEEDS_SECTORS, Report, Role
from service.openapi import CONFLICT, reads_header

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
    note = Text(max_length=headcounts.NEED_NOTE_LENGTH, multiline=True, allow_none=True)


class ReportIn(Schema):
    """A head count. The fields document it; what decides is the one rule every way in
    shares (`headcounts.read_report`), which `load` calls."""

    group_id = fields.UUID(required=True)
    observed_at = Moment(
        required=True,
        metadata={"description": "ISO 8601 with a time zone; not in the future."},
    )
    total = Count(required=True)
    sadd = fields.Nested(SaddIn, allow_none=True)
    vulnerable = fields.Nested(VulnerableIn, allow_none=True)
    needs = fields.List(fields.Nested(NeedIn), validate=validate.Length(max=headcounts.MAX_NEEDS))
    note = Text(max_length=headcounts.NOTE_LENGTH, multiline=True, allow_none=True)
    supersedes = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(1, headcounts.LARGEST_REPORT_ID),
        metadata={"description": "The id of an earlier report of this group that this corrects."},
    )
    client_id = fields.UUID(
        metadata={"description": "The sender's id for this report, used as its idempotency key."}
    )

    def load(self, data: Any, **_kwargs: Any) -> headcounts.HeadCount:  # type: ignore[override]
        """The head count, or `Invalid` (answered 422 with every field that is wrong)."""
        return read(data)


def read(data: Any) -> headcounts.HeadCount:
    return headcounts.read_report(data, latest=headcounts.latest_observation())


class BatchIn(Schema):
    # Items are checked one by one (a null item gets its own 422), so any value is taken.
    reports = fields.List(
        fields.Raw(allow_none=True),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "Head counts, each as `POST /api/v1/reports` takes one."},
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
    status = fields.Integer(
        metadata={"description": "201 stored, 200 stored before (a resend), or a 4xx."}
    )
    report = fields.Nested(ReportOut, allow_none=True)
    problem = fields.Nested(ProblemOut, allow_none=True)


class BatchOut(Schema):
    results = fields.List(fields.Nested(BatchItemOut))


class ReportQueryArgs(Schema):
    group_id = fields.UUID()
    site_id = SiteId()
    since = Moment(metadata={"description": "Observed at or after this moment."})
    received_since = Moment(
        metadata={"description": "Received at or after this moment (for incremental sync)."}
    )


REPLAYED = {"Idempotent-Replayed": "true"}
IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "1 to 255 visible characters, e.g. a UUID (or the body's `client_id`): "
    "a resend with the same key and body stores nothing new.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


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


def keyed(report: headcounts.HeadCount, header: str | None) -> headcounts.HeadCount:
    """The report with its idempotency key: the header's, or its own client_id."""
    if header is None:
        return report
    if report.client_id is not None and report.client_id != header:
        raise Invalid(
            "The Idempotency-Key header and the body's client_id differ; send one, or the same.",
            errors=[FieldError("client_id", "Differs from the Idempotency-Key header.")],
        )
    return report._replace(client_id=header)


@blp.route("")
class Reports(MethodView):
    @sees_groups
    @blp.arguments(ReportQueryArgs, location="query")
    @blp.response(200, ReportOut(many=True))
    @blp.paginate(QueryPage, page_size=100, max_page_size=1000)
    def get(self, args: dict[str, Any]) -> Any:
        """List head counts of the sites this token holds (admins: all), newest observation
        first; `site_id` must be one of those sites."""
        return domain.visible_reports(current_caller(), **args)

    @requires(*WRITERS)
    @blp.arguments(ReportIn)
    @blp.response(201, ReportOut, description="Stored.")
    @blp.alt_response(
        200,
        schema=ReportOut,
        description="A resend (the same key and body): the report as it was first stored, "
        "with `Idempotent-Replayed: true`. Nothing new is stored.",
    )
    @blp.alt_response(409, response=CONFLICT)  # the same key is in flight
    @reads_header(IDEMPOTENCY_KEY)
    def post(self, report: headcounts.HeadCount) -> Any:
        """Submit one head count. Send an `Idempotency-Key` so a resend stores nothing new."""
        (answer,) = domain.submit(current_caller(), [keyed(report, header_key())])
        if answer.refused is not None:
            raise answer.refused
        db.session.commit()
        headers = {"Location": f"/api/v1/reports/{answer.report.id}"}  # type: ignore[union-attr]
        if answer.replayed:
            return answer.report, 200, headers | REPLAYED
        return answer.report, 201, headers


@blp.route("/<int:report_id>")
class ReportById(MethodView):
    @sees_groups
    @blp.response(200, ReportOut)
    def get(self, report_id: int) -> Report:
        """One head count: the one a POST's `Location` names (coordinators of its site,
        admins). Another site's report is 404, like one that does not exist."""
        return domain.visible_report(current_caller(), report_id)


@blp.route("/batch")
class ReportBatch(MethodView):
    @requires(*WRITERS)
    @blp.arguments(BatchIn)
    @blp.response(200, BatchOut)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Sync queued offline reports: a result per item, in order; good items are stored
        even when others fail. Each item's `client_id` is its idempotency key; an item sent
        before answers 200 with the report as first stored."""
        items = data["reports"]
        limit = current_app.config["REPORTS_BATCH_LIMIT"]
        if len(items) > limit:
            raise Problem(
                422,
                f"A batch holds at most {limit} reports; split it and send the rest after.",
                errors=[{"field": "reports", "message": f"Longer than {limit}."}],
            )
        checked: list[headcounts.HeadCount | DomainError] = []
        for item in items:
            try:
                checked.append(read(item))
            except DomainError as refused:
                checked.append(refused)
        answers = domain.submit(current_caller(), checked)
        db.session.commit()
        return {
            "results": [
                result(index, item, answer)
                for index, (item, answer) in enumerate(zip(items, answers, strict=True))
            ]
        }


def result(index: int, item: Any, answer: domain.Submitted) -> dict[str, Any]:
    client_id = item.get("client_id") if isinstance(item, dict) else None
    shown: dict[str, Any] = {
        "index": index,
        "client_id": str(client_id) if client_id is not None else None,
        "report": answer.report,
        "problem": None,
    }
    if answer.refused is not None:
        shown["status"] = status_of(answer.refused)
        shown["problem"] = domain_problem(answer.refused)
    else:
        shown["status"] = 200 if answer.replayed else 201
    return shown
