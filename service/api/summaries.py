"""/api/v1/summaries: ask for a situation summary, and pull it as JSON, CSV or HXL."""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import defer

from service import handoff
from service.api.fields import Moment
from service.api.pagination import QueryPage
from service.api.parsing import Blueprint
from service.auth import current_caller, requires
from service.domain import summaries as domain
from service.domain import visibility
from service.domain.exports import to_csv
from service.errors import Problem
from service.extensions import db
from service.models import Role, Summary, SummaryStatus
from service.openapi import CONFLICT, NOT_FOUND, reads_header

blp = Blueprint(
    "summaries", __name__, url_prefix="/api/v1/summaries", description="Situation summaries"
)
log = logging.getLogger(__name__)

FORMATS = {"json": "application/json", "csv": "text/csv", "hxl": "application/vnd.hxl+csv"}
# CSV and HXL exports: text/csv, one line per site (HXL: with a hashtag row).
EXPORTS: dict[str, Any] = {
    "content_type": "text/csv",
    "description": "`?format=csv` or `?format=hxl` (or `Accept`): the export, as a file.",
    "example": "site_id,name,people,groups\nstepanakert-airport,Stepanakert airport,715,2\n",
}


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


class SphereNeedsOut(Schema):
    water_litres_per_day = fields.Float()
    food_kcal_per_day = fields.Float()
    covered_space_m2 = fields.Float()
    latrines = fields.Integer()


class ReportedNeedOut(Schema):
    sector = fields.String()
    groups = fields.Integer(metadata={"description": "Waiting groups whose count named it."})
    highest_severity = fields.Integer()
    typical_severity = fields.Integer()


class DeparturesOut(Schema):
    groups = fields.Integer()
    people = fields.Integer()


class FlagOut(Schema):
    code = fields.String(
        metadata={
            "description": "stale_site, stale_group, conflicting_counts, sudden_jump, "
            "over_capacity or breakdown_missing."
        }
    )
    message = fields.String()
    site_id = fields.String()
    group_id = fields.String(metadata={"description": "For coordinators and admins."})


COUNTS = fields.Dict(keys=fields.String(), values=fields.Integer())


class CountsOut(Schema):
    """What a site's entry and the totals both count."""

    people = fields.Integer()
    groups = fields.Integer()
    people_previous = fields.Integer()
    change_since_previous = fields.Integer()
    departures = fields.Nested(DeparturesOut)
    sadd = COUNTS
    people_without_sadd = fields.Integer()
    vulnerable = COUNTS
    needs = fields.Nested(SphereNeedsOut, metadata={"description": "Sphere minimums, per day."})
    reported_needs = fields.List(fields.Nested(ReportedNeedOut))


class SiteSummaryOut(CountsOut):
    site_id = fields.String()
    name = fields.String()
    kind = fields.String()
    pcode = fields.String(allow_none=True)
    capacity = fields.Integer(allow_none=True)
    last_observed_at = fields.String(allow_none=True)
    flags = fields.List(fields.Nested(FlagOut))


class TotalsOut(CountsOut):
    sites = fields.Integer(metadata={"description": "Sites with waiting groups."})


class SummaryOut(Schema):
    """A ready summary: the whole document; pending or failed: its state (and `error`)."""

    id = fields.String()
    status = fields.String(metadata={"description": "pending, ready or failed."})
    as_of = fields.String()
    generated_at = fields.String(allow_none=True)
    previous_as_of = fields.String(
        metadata={"description": "What `change_since_previous` compares with."}
    )
    totals = fields.Nested(TotalsOut)
    sites = fields.List(fields.Nested(SiteSummaryOut))
    flags = fields.List(fields.Nested(FlagOut))
    standards = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        metadata={"description": "The Sphere minimums the needs were computed with."},
    )
    # While not ready:
    requested_at = fields.String()
    scheduled = fields.Boolean()
    people = fields.Integer(allow_none=True)
    groups = fields.Integer(allow_none=True)
    error = fields.String()


IF_NONE_MATCH = {
    "in": "header",
    "name": "If-None-Match",
    "required": False,
    "description": "The `ETag` of the copy you hold: 304 while it is still current.",
    "schema": {"type": "string"},
}


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
    def post(self, data: dict[str, Any]) -> Any:
        """Ask for a summary now, or as of a past moment. Poll the `Location` until `ready`.

        The same `as_of` asked again answers the summary already asked for (pending, ready,
        or built again if it failed)."""
        requested = domain.request_summary(current_caller().token_id, data.get("as_of"))
        summary = requested.summary
        db.session.commit()
        if requested.hand_out and not handoff.build_summary(summary.id, on_demand=True):
            domain.not_handed_out(summary.id)
            db.session.commit()
        return summary, 202, {"Location": f"/api/v1/summaries/{summary.id}"}


@blp.route("/latest")
class LatestSummary(MethodView):
    @blp.arguments(SummaryFormatArgs, location="query")
    @blp.response(200, SummaryOut)
    @blp.alt_response(200, **EXPORTS)
    @blp.alt_response(304, description="Not modified: the `ETag` sent is still the latest's.")
    @blp.alt_response(404, response=NOT_FOUND)  # none is ready yet
    @reads_header(IF_NONE_MATCH)
    def get(self, args: dict[str, Any]) -> Any:
        """The newest ready summary by `as_of`. `?format=json|csv|hxl`, ETag for cheap polling."""
        latest = domain.latest_ready_ref()
        if latest is None:
            raise Problem(404, "No summary is ready yet; ask for one with POST /api/v1/summaries.")
        fmt = chosen_format(args.get("format"))
        return represent_ready(latest, fmt, "private, no-cache", current_caller().group_view)


@blp.route("/<uuid:summary_id>")
class SummaryById(MethodView):
    @blp.arguments(SummaryFormatArgs, location="query")
    @blp.response(200, SummaryOut)
    @blp.alt_response(200, **EXPORTS)
    @blp.alt_response(304, description="Not modified: the `ETag` sent is still current.")
    @blp.alt_response(409, response=CONFLICT)  # CSV or HXL of a summary not ready
    @reads_header(IF_NONE_MATCH)
    def get(self, args: dict[str, Any], summary_id: uuid.UUID) -> Any:
        """One summary: its state while pending, its document when ready."""
        summary = db.session.get(Summary, summary_id, options=[defer(Summary.document)])
        if summary is None:
            raise Problem(404, f"There is no summary '{summary_id}'.")
        fmt = chosen_format(args.get("format"))
        if summary.status is not SummaryStatus.ready:
            if fmt != "json":
                raise Problem(
                    409,
                    f"Summary {summary.id} is {summary.status.value}; CSV and HXL come when "
                    "it is ready.",
                )
            return _state(summary), 200, {"Cache-Control": "no-store"}
        # A ready summary never changes.
        ready = domain.SummaryRef(summary.id, summary.etag or "", summary.as_of)
        cache = "private, max-age=31536000, immutable"
        return represent_ready(ready, fmt, cache, current_caller().group_view)


def chosen_format(explicit: str | None) -> str:
    if explicit:
        return explicit
    best = request.accept_mimetypes.best_match(
        [FORMATS["json"], FORMATS["csv"], FORMATS["hxl"]], default=FORMATS["json"]
    )
    return next(name for name, mimetype in FORMATS.items() if mimetype == best)


def represent_ready(
    summary: domain.SummaryRef, fmt: str, cache: str, view: frozenset[str] | None
) -> Any:
    """A ready summary as JSON (dumped by SummaryOut), its CSV or HXL export, or 304
    (the document is read only when it is sent). The JSON is as the caller's `view`
    (`Caller.group_view`) sees it, so each view has its own ETag; the exports carry no
    group's details and are the same for all."""
    if fmt == "json":
        tag = visibility.view_tag(view)
        etag = f"{summary.etag}-{tag}" if tag else summary.etag
    else:
        etag = f"{summary.etag}-{fmt}"
    headers = {
        "ETag": f'"{etag}"',
        "Cache-Control": cache,
        "Vary": "Accept, Authorization",
    }
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    if fmt == "json":
        body = json_body(summary.id, view)
        return Response(body, mimetype="application/json", headers=headers)
    suffix = "hxl.csv" if fmt == "hxl" else "csv"
    headers["Content-Disposition"] = (
        f'attachment; filename="summary-{_stamp(summary.as_of)}.{suffix}"'
    )
    document = db.session.get_one(Summary, summary.id).document or {}
    return Response(to_csv(document, hxl=fmt == "hxl"), mimetype="text/csv", headers=headers)


# A ready summary never changes: its JSON answer is kept for the latest few, per view
# (NGOs poll the latest one; each poll answers the same bytes). Ids are UUIDs: unique
# across apps.
@functools.lru_cache(maxsize=64)
def json_body(summary_id: uuid.UUID, view: frozenset[str] | None) -> bytes:
    """A ready summary's JSON answer as `view` sees it: dumped once, its bytes reused."""
    summary = db.session.get_one(Summary, summary_id)
    document = {**(summary.document or {}), "status": summary.status.value}
    document = visibility.summary_seen(document, view)
    return current_app.json.dumps(SummaryOut().dump(document)).encode()


def _state(summary: Summary) -> dict[str, Any]:
    state: dict[str, Any] = SummaryBrief().dump(summary)
    if summary.status is SummaryStatus.failed:
        state["error"] = "The summary could not be built; ask for a new one."
    return state


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%MZ")
