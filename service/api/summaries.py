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
from service.domain import suppression, visibility
from service.domain.exports import to_csv
from service.domain.package import data_package
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
PACKAGE: dict[str, Any] = {
    "content_type": "application/zip",
    "description": "A Frictionless data package: `datapackage.json` (Table Schemas and the "
    "metadata HDX asks of a dataset), the CSV and the HXL CSV. Small cells are suppressed "
    "for everyone, as for readers: a package is made to be passed on.",
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
    people = fields.Function(
        lambda s: brief_people(s),
        allow_none=True,
        metadata={"description": "null while not ready, and for a reader when suppressed."},
    )
    groups = fields.Function(lambda s: (s.document or {}).get("totals", {}).get("groups"))


SUPPRESSED_NOTE = "null when suppressed (see `suppressed`)."


class SphereNeedsOut(Schema):
    water_litres_per_day = fields.Float(allow_none=True, metadata={"description": SUPPRESSED_NOTE})
    food_kcal_per_day = fields.Float(allow_none=True, metadata={"description": SUPPRESSED_NOTE})
    covered_space_m2 = fields.Float(allow_none=True, metadata={"description": SUPPRESSED_NOTE})
    latrines = fields.Integer(allow_none=True, metadata={"description": SUPPRESSED_NOTE})


class ReportedNeedOut(Schema):
    sector = fields.String()
    groups = fields.Integer(metadata={"description": "Waiting groups whose count named it."})
    highest_severity = fields.Integer()
    typical_severity = fields.Integer()


class DeparturesOut(Schema):
    groups = fields.Integer()
    people = fields.Integer(allow_none=True, metadata={"description": SUPPRESSED_NOTE})


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


COUNTS = fields.Dict(
    keys=fields.String(),
    values=fields.Integer(allow_none=True),
    metadata={"description": "Each count: " + SUPPRESSED_NOTE},
)


def _count() -> fields.Integer:
    return fields.Integer(allow_none=True, metadata={"description": SUPPRESSED_NOTE})


class CountsOut(Schema):
    """What a site's entry and the totals both count."""

    people = _count()
    groups = fields.Integer()
    people_previous = _count()
    change_since_previous = _count()
    departures = fields.Nested(DeparturesOut)
    sadd = COUNTS
    people_without_sadd = _count()
    vulnerable = COUNTS
    suppressed = fields.Dict(
        keys=fields.String(),
        values=fields.String(
            validate=validate.OneOf(
                [
                    suppression.BELOW,
                    suppression.COMPLEMENTARY,
                    suppression.DERIVED,
                    suppression.WITHHELD,
                ]
            )
        ),
        metadata={
            "description": "For a reader: the figures shown as null, by path (`people`, "
            "`sadd.male_0_4`, `needs.latrines`) and why: `below_threshold` (1 to "
            "threshold-1, or a zero inside a small site), `complementary` (hidden so that a "
            "small one cannot be worked out; at least the threshold), `derived` (computed "
            "from a hidden one) or `withheld` (too few people in all). Empty for admins "
            "and coordinators, who see exact figures."
        },
    )
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


class SuppressionOut(Schema):
    threshold = fields.Integer(metadata={"description": "SMALL_CELL_THRESHOLD."})
    applied = fields.Boolean(
        metadata={"description": "true for readers: small cells are suppressed."}
    )
    cells = fields.Integer(metadata={"description": "How many figures are suppressed."})


class SummaryOut(Schema):
    """A ready summary: the whole document; pending or failed: its state (and `error`)."""

    id = fields.String()
    status = fields.String(metadata={"description": "pending, ready or failed."})
    as_of = fields.String()
    generated_at = fields.String(allow_none=True)
    previous_as_of = fields.String(
        metadata={"description": "What `change_since_previous` compares with."}
    )
    suppression = fields.Nested(SuppressionOut)
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


@blp.route("/latest/package")
class LatestPackage(MethodView):
    @blp.response(200, **PACKAGE)
    @blp.alt_response(304, description="Not modified: the `ETag` sent is still the latest's.")
    @blp.alt_response(404, response=NOT_FOUND)  # none is ready yet
    @reads_header(IF_NONE_MATCH)
    def get(self) -> Any:
        """The newest ready summary as a publishable data package (zip)."""
        latest = domain.latest_ready_ref()
        if latest is None:
            raise Problem(404, "No summary is ready yet; ask for one with POST /api/v1/summaries.")
        return package_answer(latest, "private, no-cache")


@blp.route("/<uuid:summary_id>/package")
class SummaryPackage(MethodView):
    @blp.response(200, **PACKAGE)
    @blp.alt_response(304, description="Not modified: the `ETag` sent is still current.")
    @blp.alt_response(409, response=CONFLICT)  # a summary not ready
    @reads_header(IF_NONE_MATCH)
    def get(self, summary_id: uuid.UUID) -> Any:
        """One ready summary as a publishable data package (zip)."""
        summary = db.session.get(Summary, summary_id, options=[defer(Summary.document)])
        if summary is None:
            raise Problem(404, f"There is no summary '{summary_id}'.")
        if summary.status is not SummaryStatus.ready:
            raise Problem(
                409,
                f"Summary {summary.id} is {summary.status.value}; its package comes when "
                "it is ready.",
            )
        ready = domain.SummaryRef(summary.id, summary.etag or "", summary.as_of)
        return package_answer(ready, "private, max-age=31536000, immutable")


def package_answer(summary: domain.SummaryRef, cache: str) -> Response:
    threshold = _threshold()
    etag = f"{summary.etag}-r{threshold}-package"
    headers = {"ETag": f'"{etag}"', "Cache-Control": cache, "Vary": "Authorization"}
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="summary-{_stamp(summary.as_of)}.zip"'
    document = db.session.get_one(Summary, summary.id).document or {}
    metadata = {
        name: value
        for name, value in current_app.config.items()
        if name.startswith("DATASET_") or name == "SUMMARY_INTERVAL_MINUTES"
    }
    body = data_package(document, metadata, threshold)
    return Response(body, mimetype="application/zip", headers=headers)


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
    (the document is read only when it is sent). The JSON is as the caller sees it: a
    reader's with small cells suppressed, and single groups' details only for callers who
    see their sites (`Caller.group_view`); each view has its own ETag. The exports carry
    no group's details: they differ only between exact and suppressed figures."""
    exact_figures, threshold = current_caller().sees_exact_figures, _threshold()
    etag = summary.etag if exact_figures else f"{summary.etag}-r{threshold}"
    if fmt == "json":
        tag = visibility.view_tag(view)
        etag = f"{etag}-{tag}" if tag else etag
    else:
        etag = f"{etag}-{fmt}"
    headers = {
        "ETag": f'"{etag}"',
        "Cache-Control": cache,
        "Vary": "Accept, Authorization",
    }
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    if fmt == "json":
        body = json_body(summary.id, exact_figures, threshold, view)
        return Response(body, mimetype="application/json", headers=headers)
    suffix = "hxl.csv" if fmt == "hxl" else "csv"
    headers["Content-Disposition"] = (
        f'attachment; filename="summary-{_stamp(summary.as_of)}.{suffix}"'
    )
    document = seen_document(summary.id, exact_figures, threshold)
    text = to_csv(document, hxl=fmt == "hxl", threshold=threshold)
    return Response(text, mimetype="text/csv", headers=headers)


def _threshold() -> int:
    return int(current_app.config["SMALL_CELL_THRESHOLD"])


# A ready summary never changes: its JSON answer is kept for the latest few (NGOs poll
# the latest one; each poll answers the same bytes), one per view (exact or a reader's at
# a threshold, and which sites' groups are shown), so a reader is never answered from an
# exact body. Ids are UUIDs: unique across apps.
@functools.lru_cache(maxsize=64)
def json_body(
    summary_id: uuid.UUID, exact_figures: bool, threshold: int, view: frozenset[str] | None
) -> bytes:
    """A ready summary's JSON answer: `SummaryOut` dumps it once, its bytes are reused."""
    document = seen_document(summary_id, exact_figures, threshold)
    document = visibility.summary_seen(document, view)
    return current_app.json.dumps(SummaryOut().dump({**document, "status": "ready"})).encode()


@functools.lru_cache(maxsize=16)
def seen_document(summary_id: uuid.UUID, exact_figures: bool, threshold: int) -> dict[str, Any]:
    """A ready summary's document as a caller sees it (a reader's is worked out once)."""
    document = db.session.get_one(Summary, summary_id).document or {}
    return suppression.view(document, exact_figures, threshold)


@functools.lru_cache(maxsize=1024)
def _readers_total_people(summary_id: uuid.UUID, threshold: int) -> int | None:
    return seen_document(summary_id, False, threshold)["totals"]["people"]


def brief_people(summary: Summary) -> int | None:
    """The total in a list of summaries, as the caller may see it."""
    totals = (summary.document or {}).get("totals", {})
    if summary.status is not SummaryStatus.ready or current_caller().sees_exact_figures:
        return totals.get("people")
    return _readers_total_people(summary.id, _threshold())


def _state(summary: Summary) -> dict[str, Any]:
    state: dict[str, Any] = SummaryBrief().dump(summary)
    if summary.status is SummaryStatus.failed:
        state["error"] = "The summary could not be built; ask for a new one."
    return state


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%MZ")
