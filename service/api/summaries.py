"""/api/v1/summaries: ask for a situation summary, and pull it as JSON, CSV or HXL."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from flask import Response, jsonify, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from service.api.fields import Moment
from service.api.pagination import QueryPage
from service.api.parsing import Blueprint
from service.auth import current_caller, requires
from service.domain import summaries as domain
from service.domain.exports import to_csv
from service.errors import Problem
from service.extensions import db
from service.models import Role, Summary, SummaryStatus

blp = Blueprint(
    "summaries", __name__, url_prefix="/api/v1/summaries", description="Situation summaries"
)
log = logging.getLogger(__name__)

FORMATS = {"json": "application/json", "csv": "text/csv", "hxl": "application/vnd.hxl+csv"}


class SummaryRequestIn(Schema):
    as_of = Moment(
        metadata={"description": "A past moment; default: now. ISO 8601 with a time zone."}
    )


class SummaryFormatArgs(Schema):
    format = fields.String(validate=validate.OneOf(list(FORMATS)))


class SummaryQueryArgs(Schema):
    since = Moment(metadata={"description": "as_of at or after this moment."})
    until = Moment(metadata={"description": "as_of at or before this moment."})
    status = fields.Enum(SummaryStatus, by_value=True)


class SummaryBrief(Schema):
    id = fields.UUID()
    as_of = fields.AwareDateTime()
    status = fields.Enum(SummaryStatus, by_value=True)
    requested_at = fields.AwareDateTime()
    generated_at = fields.AwareDateTime(allow_none=True)
    scheduled = fields.Function(lambda s: s.period is not None)
    people = fields.Function(lambda s: (s.document or {}).get("totals", {}).get("people"))
    groups = fields.Function(lambda s: (s.document or {}).get("totals", {}).get("groups"))


class SummaryOut(Schema):
    """A ready summary carries the whole document; a pending one only its state."""

    id = fields.UUID()
    status = fields.Enum(SummaryStatus, by_value=True)
    as_of = fields.String()
    generated_at = fields.String(allow_none=True)
    totals = fields.Dict()
    sites = fields.List(fields.Dict())
    flags = fields.List(fields.Dict())


@blp.route("")
class Summaries(MethodView):
    @blp.arguments(SummaryQueryArgs, location="query")
    @blp.response(200, SummaryBrief(many=True))
    @blp.paginate(QueryPage, page_size=50, max_page_size=500)
    def get(self, args: dict[str, Any]) -> Any:
        """List summaries, newest `as_of` first; filter by date and status."""
        query = db.select(Summary).order_by(Summary.as_of.desc(), Summary.requested_at.desc())
        if "since" in args:
            query = query.where(Summary.as_of >= args["since"])
        if "until" in args:
            query = query.where(Summary.as_of <= args["until"])
        if "status" in args:
            query = query.where(Summary.status == args["status"])
        return query

    @requires(Role.admin, Role.coordinator)
    @blp.arguments(SummaryRequestIn)
    @blp.response(202, SummaryBrief)
    def post(self, data: dict[str, Any]) -> Response:
        """Ask for a summary now, or as of a past moment. Poll the `Location` until `ready`."""
        summary = domain.request_summary(current_caller().token_id, data.get("as_of"))
        domain.hand_out(summary.id)
        response = jsonify(SummaryBrief().dump(summary))
        response.status_code = 202
        response.headers["Location"] = f"/api/v1/summaries/{summary.id}"
        return response


@blp.route("/latest")
class LatestSummary(MethodView):
    @blp.arguments(SummaryFormatArgs, location="query")
    @blp.response(200, SummaryOut)
    def get(self, args: dict[str, Any]) -> Response:
        """The newest ready summary by `as_of`. `?format=json|csv|hxl`, ETag for cheap polling."""
        summary = domain.latest_ready()
        if summary is None:
            raise Problem(404, "No summary is ready yet; ask for one with POST /api/v1/summaries.")
        return represent(summary, args.get("format"), cache="private, no-cache")


@blp.route("/<uuid:summary_id>")
class SummaryById(MethodView):
    @blp.arguments(SummaryFormatArgs, location="query")
    @blp.response(200, SummaryOut)
    def get(self, args: dict[str, Any], summary_id: uuid.UUID) -> Response:
        """One summary: its state while pending, its document when ready."""
        summary = db.session.get(Summary, summary_id)
        if summary is None:
            raise Problem(404, f"There is no summary '{summary_id}'.")
        # A ready summary never changes.
        return represent(summary, args.get("format"), cache="private, max-age=31536000, immutable")


def chosen_format(explicit: str | None) -> str:
    if explicit:
        return explicit
    best = request.accept_mimetypes.best_match(
        [FORMATS["json"], FORMATS["csv"], FORMATS["hxl"]], default=FORMATS["json"]
    )
    return next(name for name, mimetype in FORMATS.items() if mimetype == best)


def represent(summary: Summary, explicit_format: str | None, cache: str) -> Response:
    fmt = chosen_format(explicit_format)
    if summary.status is not SummaryStatus.ready:
        if fmt != "json":
            raise Problem(
                409,
                f"Summary {summary.id} is {summary.status.value}; CSV and HXL come when "
                "it is ready.",
            )
        response = jsonify(_state(summary))
        response.headers["Cache-Control"] = "no-store"
        return response
    etag = summary.etag if fmt == "json" else f"{summary.etag}-{fmt}"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    elif fmt == "json":
        response = jsonify({**summary.document, "status": summary.status.value})
    else:
        body = to_csv(summary.document, hxl=fmt == "hxl")
        response = Response(body, mimetype="text/csv")
        suffix = "hxl.csv" if fmt == "hxl" else "csv"
        response.headers["Content-Disposition"] = (
            f'attachment; filename="summary-{_stamp(summary.as_of)}.{suffix}"'
        )
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache
    response.headers["Vary"] = "Accept, Authorization"
    return response


def _state(summary: Summary) -> dict[str, Any]:
    state = SummaryBrief().dump(summary)
    if summary.status is SummaryStatus.failed:
        state["error"] = "The summary could not be built; ask for a new one."
    return state


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%MZ")
