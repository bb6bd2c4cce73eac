"""The dashboard at `/`: the latest situation summary on a screen, for coordination meetings.

Server-rendered HTML and SVG (no script, no CDN). Sign-in is with an API token, once:
the session cookie then carries only the id of a server-side session (never the token),
signed with SECRET_KEY, HttpOnly and SameSite=Lax; every request checks again that the
session has not ended (signing out ends it) and the token is not revoked. Forms carry
a CSRF token (Flask-WTF). The latest overview reloads itself every
DASHBOARD_REFRESH_SECONDS when asked to (`?reload=on`, a link on the page; "Stop
reloading" goes back), with `<meta http-equiv="refresh">`.

What each role sees follows the API (the rule is `Caller.sees_groups_of`): everyone
sees the summaries (site-level figures); the labels and figures of single groups named
in flags are shown to admins, and to coordinators for the sites on their token only,
never to readers; coordinators and admins may ask for a summary now; admins may upload
a CSV of head counts.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf.csrf import CSRFError
from markupsafe import Markup
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service import handoff, i18n
from service import importing as import_runs
from service.dashboard import charts, site_map
from service.domain import history, rules, sessions, subscriptions, suppression, visibility
from service.domain import imports as importing
from service.domain import summaries as summaries_domain
from service.domain.callers import Caller
from service.domain.errors import DomainError
from service.domain.imports import jobs as import_jobs
from service.domain.tokens import caller_for_secret
from service.errors import Problem, status_of, status_title
from service.extensions import csrf, db
from service.models import Group, ImportStatus, Role, Site, Summary, SummaryStatus
from service.sqlite import looking_up

blp = Blueprint("dashboard", __name__)

PUBLIC_ENDPOINTS = {"dashboard.sign_in"}
# What each flag means, for people who did not write the code.
FLAG_MEANINGS = {
    "stale_site": _l("No head count at this site for a while: its numbers may be out of date."),
    "stale_group": _l("A waiting group has not been counted for a while; its last count is used."),
    "conflicting_counts": _l(
        "Two counts of the same group within an hour disagree by more than 20%. Check "
        "which is right and send a correction that supersedes the wrong one."
    ),
    "sudden_jump": _l(
        "A group's count changed by more than half since its previous count: people "
        "joined or left, or a count was mistyped."
    ),
    "over_capacity": _l("More people than the site's capacity."),
    "breakdown_missing": _l(
        "Fewer than half of the people have a sex-and-age breakdown, so the breakdown "
        "shown is incomplete."
    ),
}
NEED_UNITS = (
    ("water_litres_per_day", _l("Water"), _l("L/day")),
    ("food_kcal_per_day", _l("Food"), _l("kcal/day")),
    ("covered_space_m2", _l("Covered space"), "m²"),
    ("latrines", _l("Latrines"), ""),
)
LINES_PER_SITE = 4  # the chart draws this many sites' own lines (the largest)
IMPORT_REFRESH_SECONDS = 2  # an import's page reloads this often while it runs


# --- who is signed in ------------------------------------------------------------------


def _session_id() -> uuid.UUID | None:
    try:
        return uuid.UUID(session.get("session_id"))
    except (TypeError, ValueError, AttributeError):
        return None


def signed_in_caller() -> Caller | None:
    session_id = _session_id()
    if session_id is None:
        return None
    with looking_up():
        return sessions.caller_for_session(session_id)


@blp.before_request
def require_sign_in() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    caller = signed_in_caller()
    if caller is None:
        session.pop("session_id", None)
        target = request.full_path if request.method == "GET" else None
        return redirect(url_for("dashboard.sign_in", next=target), 303)
    g.caller = caller
    return None


@blp.after_request
def page_headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response


@blp.errorhandler(HTTPException)
@blp.errorhandler(DomainError)
def html_error(error: HTTPException | DomainError) -> tuple[str, int]:
    if isinstance(error, DomainError):
        status, name, message = status_of(error), None, error.detail
    else:
        status, name, message = error.code or 500, error.name, error.description or ""
    titles = {
        400: _("The form expired or was not sent whole"),
        403: _("Not for this token"),
        404: _("Not found"),
        405: _("Not allowed here"),
        409: _("Not possible now"),
        413: _("Too large"),
        422: _("Not accepted"),
        429: _("Too many requests"),
        503: _("Not available right now"),
    }
    if isinstance(error, CSRFError):
        message = _("The form expired. Go back, reload the page and send it again.")
    elif i18n.current_language() != i18n.DEFAULT_LANGUAGE and not isinstance(error, Said):
        # The core's and werkzeug's words are English (the API's): say what to do in the
        # reader's language instead.
        message = ERROR_ADVICE.get(status, _("Something went wrong. Go back and try again."))
    return render_template(
        "dashboard/error.html",
        title=titles.get(status, name or status_title(status)),
        message=message,
        status=status,
        caller=g.get("caller"),
    ), status


class Said(Problem):
    """A page's error whose message is already in the reader's language."""


ERROR_ADVICE = {
    400: _l("The request was not understood. Go back and try again."),
    403: _l("The token you signed in with may not do this. Ask the coordination lead."),
    404: _l("There is nothing here. It may have been removed, or the link is wrong."),
    409: _l("This cannot be done right now. Reload the page to see the current state."),
    413: _l("What you sent is too large. Send it in smaller parts."),
    422: _l("What you sent could not be accepted. Go back, correct it and send it again."),
    429: _l("Too many requests in a short time. Wait a minute, then try again."),
    503: _l("The service is busy or its database is away. Try again in a minute."),
}


def safe_next(target: str | None) -> str:
    """Only a path on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.overview")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("dashboard.overview")
    return target


@blp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    if request.method != "POST":  # GET, HEAD
        return render_template("dashboard/sign_in.html", next=request.args.get("next"))
    secret = (request.form.get("token") or "").strip()
    caller = None
    if secret and len(secret) <= 200:
        with looking_up():
            caller = caller_for_secret(secret)
    if caller is None:
        return render_template(
            "dashboard/sign_in.html",
            next=request.form.get("next"),
            error=_("This token is unknown or revoked. Ask the coordination lead for one."),
        ), 401
    session.clear()
    session["session_id"] = str(sessions.start(caller))
    db.session.commit()
    return redirect(safe_next(request.form.get("next")), 303)


@blp.post("/sign-out")
def sign_out() -> Response:
    session_id = _session_id()
    if session_id is not None:
        sessions.end(session_id)
        db.session.commit()
    session.clear()
    flash(_("Signed out."))
    return redirect(url_for("dashboard.sign_in"), 303)


# --- the overview ------------------------------------------------------------------------


def _moment(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise Said(400, _("Give `at` as an ISO 8601 moment, e.g. 2023-09-25T12:00:00Z.")) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return rules.in_utc(moment)
    except rules.RuleError:
        raise Said(
            400, _("`at` is out of range: give an ISO 8601 moment in years 1 to 9999 UTC.")
        ) from None


def _ready() -> Any:
    return select(Summary).where(Summary.status == SummaryStatus.ready)


def neighbour(summary: Summary, later: bool) -> Summary | None:
    if later:
        query = _ready().where(Summary.as_of > summary.as_of).order_by(Summary.as_of)
    else:
        query = _ready().where(Summary.as_of < summary.as_of).order_by(Summary.as_of.desc())
    return db.session.execute(query.limit(1)).scalar_one_or_none()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_labels(document: dict[str, Any], caller: Caller) -> dict[str, str]:
    """Labels of the groups named in flags (in the caller's view of the summary: of the
    sites whose groups it sees)."""
    ids = {f["group_id"] for f in document["flags"] if f.get("group_id")}
    if not ids:
        return {}
    rows = db.session.execute(
        select(Group.id, Group.label, Group.site_id).where(
            Group.id.in_([uuid.UUID(i) for i in ids])
        )
    )
    # A group moved since the summary: shown only if its site now is one the caller sees.
    return {str(group_id): label for group_id, label, site in rows if caller.sees_groups_of(site)}


def site_flags(site: dict[str, Any], labels: dict[str, str]) -> list[dict[str, Any]]:
    """A site's flags, one entry per kind, with what it means."""
    kinds: dict[str, dict[str, Any]] = {}
    for flag in site["flags"]:
        entry = kinds.setdefault(
            flag["code"],
            {
                "code": flag["code"],
                "name": i18n.flag_name(flag["code"]),
                "meaning": str(FLAG_MEANINGS.get(flag["code"], "")),
                "count": 0,
                "messages": [],
                "groups": [],
            },
        )
        entry["count"] += 1
        if flag.get("group_id"):
            if flag["group_id"] in labels:
                entry["groups"].append(labels[flag["group_id"]])
            if len(entry["messages"]) < 3 and flag["code"] != "stale_group":
                entry["messages"].append(i18n.flag_message(flag["message"]))
        elif (message := i18n.flag_message(flag["message"])) not in entry["messages"]:
            entry["messages"].append(message)  # a group's flag, told without it
    return list(kinds.values())


def history_chart(
    summary: Summary, document: dict[str, Any], caller: Caller
) -> charts.LineChart | None:
    readers = not caller.sees_exact_figures
    if readers:
        # Each point as readers see that summary; a site's line only where its people
        # are shown at every point, and no departures (a step would be one group's count).
        points = history.readers_history(current_app.config["SMALL_CELL_THRESHOLD"])
    else:
        points = history.people_history()
    if not points:
        return None
    moments = [p.as_of for p in points]
    names = {s["site_id"]: s["name"] for s in document["sites"]}
    order = {s["site_id"]: i for i, s in enumerate(document["sites"])}
    every = {site for p in points for site in p.sites}
    if readers:
        every = {site for site in every if all(site in p.sites for p in points)}
    biggest = sorted(every, key=lambda site: -max(p.sites.get(site, 0) for p in points))[
        :LINES_PER_SITE
    ]
    series: list[tuple[str, list[int], str, bool]] = [
        (_("All sites"), [p.people for p in points], charts.TOTAL_COLOUR, False)
    ]
    for site in biggest:
        colour = charts.site_colour(order.get(site, len(order)))
        series.append(
            (names.get(site, site), [p.sites.get(site, 0) for p in points], colour, False)
        )
    departed = (
        [] if readers else history.cumulative(history.departures_timeline(moments[-1]), moments)
    )
    if any(departed):
        series.append((_("Departed (cumulative)"), departed, charts.DEPARTED_COLOUR, True))
    return charts.line_chart(
        moments,
        series,
        links=[url_for("dashboard.overview", at=iso(m)) for m in moments],
        titles=[
            _(
                "%(moment)s UTC: %(people)s waiting",
                moment=i18n.moment(p.as_of, "dd MMM y HH:mm", UTC),
                people=i18n.number(p.people),
            )
            for p in points
        ],
        current=summary.as_of,
    )


@blp.get("/")
def overview() -> Any:
    caller: Caller = g.caller
    at = _moment(request.args.get("at"))
    summary = summaries_domain.latest_ready(at)
    # Reloading is asked for (a screen in a meeting), never imposed: a page that reloads
    # under a screen reader's or a slow reader's feet fails WCAG 2.2.1.
    reloading = at is None and request.args.get("reload") == "on"
    refresh = current_app.config["DASHBOARD_REFRESH_SECONDS"] if reloading else None
    context: dict[str, Any] = {
        "caller": caller,
        "refresh": refresh,
        "reload_every": current_app.config["DASHBOARD_REFRESH_SECONDS"] if at is None else None,
        "can_request": caller.role in (Role.admin, Role.coordinator),
        "at": at,
        "suspended": subscriptions.suspended() if caller.is_admin else [],
        "iso": iso,
    }
    if summary is None:
        return render_template("dashboard/overview.html", summary=None, **context)
    threshold = current_app.config["SMALL_CELL_THRESHOLD"]
    document = visibility.summary_seen(
        suppression.view(summary.document or {}, caller.sees_exact_figures, threshold),
        caller.group_view,
    )
    labels = group_labels(document, caller)
    sites = []
    for site in document["sites"]:
        last = site.get("last_observed_at")
        last_at = datetime.fromisoformat(last) if last else None
        sites.append(
            {
                **site,
                "last_at": last_at,
                "age_hours": (summary.as_of - last_at).total_seconds() / 3600 if last_at else None,
                "flag_kinds": site_flags(site, labels),
            }
        )
    # A suppressed site has no bar: its length would give the figure away.
    bars = charts.bar_chart(
        [(s["name"], s["people"], s["capacity"]) for s in sites if s["people"] is not None]
    )
    return render_template(
        "dashboard/overview.html",
        summary=summary,
        document=document,
        totals=suppression.marked(document["totals"], threshold),
        sites=[suppression.marked(site, threshold) for site in sites],
        bars=bars,
        line=history_chart(summary, document, caller),
        map=site_map.site_map(document["sites"], site_coordinates()),
        earlier=neighbour(summary, later=False),
        later=neighbour(summary, later=True),
        need_units=NEED_UNITS,
        **context,
    )


def site_coordinates() -> dict[str, tuple[float, float]]:
    """Where each site is (those with both coordinates), for the map."""
    rows = db.session.execute(
        select(Site.id, Site.latitude, Site.longitude).where(
            Site.latitude.is_not(None), Site.longitude.is_not(None)
        )
    )
    return {site_id: (latitude, longitude) for site_id, latitude, longitude in rows}


@blp.post("/request-summary")
def request_summary() -> Response:
    """Ask for a summary as of now (coordinators, admins); a worker builds it."""

    caller: Caller = g.caller
    caller.require_role(Role.admin, Role.coordinator)
    requested = summaries_domain.request_summary(caller.token_id)
    summary = requested.summary
    db.session.commit()
    if requested.hand_out and not handoff.build_summary(summary.id, on_demand=True):
        summaries_domain.not_handed_out(summary.id)
        db.session.commit()
    flash(
        _(
            "A summary as of %(moment)s UTC was requested; it shows here when a worker has "
            "built it.",
            moment=i18n.moment(summary.as_of, "dd MMM y HH:mm", UTC),
        )
    )
    return redirect(url_for("dashboard.overview"), 303)


@blp.post("/subscriptions/<uuid:subscription_id>/resume")
def resume_subscription(subscription_id: uuid.UUID) -> Response:
    """Resume a suspended subscription (admins), as POST .../resume does in the API."""
    caller: Caller = g.caller
    subscription = subscriptions.resume_subscription(caller, subscription_id)
    db.session.commit()
    flash(
        _(
            "Reports to %(email)s are sent again from the next scheduled moment.",
            email=subscription.email,
        )
    )
    return redirect(url_for("dashboard.overview"), 303)


# --- CSV import (admins) ------------------------------------------------------------------


@blp.route("/import", methods=["GET", "POST"])
@csrf.exempt  # checked below, once the body limit is raised for the file
def import_reports() -> Any:
    """Upload a CSV (admins): checked at once for what can be, then imported by a worker
    while the job's page shows its progress."""
    caller: Caller = g.caller
    caller.require_role(Role.admin)
    context = {"caller": caller, "columns": importing.COLUMNS, "job": None, "error": None}
    if request.method != "POST":  # GET, HEAD
        return render_template("dashboard/import.html", **context)
    limit = current_app.config["MAX_IMPORT_BYTES"]
    request.max_content_length = limit
    try:
        csrf.protect()
        upload = request.files.get("file")
        content = upload.read() if upload is not None and upload.filename else None
    except RequestEntityTooLarge:
        context["error"] = _(
            "The file is larger than %(limit)s bytes; split it into parts.",
            limit=i18n.number(limit),
        )
        return render_template("dashboard/import.html", **context), 413
    if upload is None or content is None:
        context["error"] = _("Choose a CSV file to import.")
        return render_template("dashboard/import.html", **context), 422
    try:
        job = import_runs.start_upload(caller, content, upload.filename or "upload.csv")
    except importing.ImportFileError as exc:
        context["error"] = exc.detail
        return render_template("dashboard/import.html", **context), 422
    return redirect(url_for("dashboard.import_job", job_id=job.id), 303)


@blp.get("/import/<uuid:job_id>")
def import_job(job_id: uuid.UUID) -> Any:
    """An import's progress; the page reloads itself every few seconds until it is done."""
    caller: Caller = g.caller
    caller.require_role(Role.admin)
    job = import_jobs.find_job(job_id)
    running = job.status is ImportStatus.running
    return render_template(
        "dashboard/import.html",
        caller=caller,
        columns=importing.COLUMNS,
        job=job,
        error=None,
        refresh=IMPORT_REFRESH_SECONDS if running else None,
    )


# --- template helpers ---------------------------------------------------------------------


@blp.app_template_filter("num")
def number(value: Any) -> str:
    """A figure for the language; a suppressed figure's mark ("< 5") as is."""
    if isinstance(value, float) and not value.is_integer():
        return i18n.number(value, decimals=1)
    return i18n.number(value)


@blp.app_template_filter("signed")
def signed(value: int | str | None) -> Markup:
    if isinstance(value, str):
        return Markup('<span class="change none">{}</span>').format(i18n.number(value))
    if not value:
        return Markup('<span class="change none">±0</span>')
    kind = "up" if value > 0 else "down"
    return Markup('<span class="change {}">{}</span>').format(kind, i18n.signed(value, "−"))


@blp.app_template_filter("when")
def when(value: datetime | str | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return i18n.moment(value, "dd MMM y, HH:mm 'UTC'", UTC)


@blp.app_template_filter("hours")
def hours(value: float | None) -> str:
    if value is None:
        return _("no count yet")
    if value < 1:
        minutes = max(0, round(value * 60))
        return ngettext("%(num)d min before", "%(num)d min before", minutes)
    if value < 48:
        whole = round(value)
        return ngettext("%(num)d h before", "%(num)d h before", whole)
    days = round(value / 24)
    return ngettext("%(num)d day before", "%(num)d days before", days)


# --- admin pages (tokens, groups of a site, sites), and a reader's own subscriptions and
# webhooks (admins: all): their routes on this blueprint ----------------------------------
from service.dashboard import (  # noqa: E402, F401
    admin_groups,
    admin_sites,
    admin_tokens,
    self_subscriptions,
    self_webhooks,
)
