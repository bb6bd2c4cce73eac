"""/field/: the coordinators' app on a phone, offline first (SPEC: the field app).

The server gives the shell and nothing else: one HTML page per language (its text from
the gettext catalogs, the messages its scripts show and the rules' limits rendered into
it as JSON data blocks, which CSP does not execute), the web app manifest, the service
worker and its icons. The shell, its scripts and styles are public; every datum comes
from /api/v1 with the bearer token the app keeps in IndexedDB. The sign-in link carries
the token in its fragment (`/field/#token=...`), which browsers never send: it reaches
no server log.

The service worker (`/field/sw.js`, scope /field/) precaches the shell in the three
languages and the static files under a cache named for their version (a hash of what
they are), and serves them from that cache, online or not; it never caches an /api/
answer (the app keeps its data in IndexedDB).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _

from service import i18n
from service.domain import headcounts, rules
from service.models import NEEDS_SECTORS, SADD_KEYS, VULNERABLE_KEYS, GroupStatus

blp = Blueprint("field", __name__, url_prefix="/field")

PACKAGE = Path(__file__).resolve().parent.parent
STATIC = PACKAGE / "static" / "field"
TEMPLATES = PACKAGE / "templates" / "field"
WORKER = STATIC / "sw.js"

SHELL_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; worker-src 'self'; "
    "manifest-src 'self'; img-src 'self'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The worker fetches what it precaches (connect-src); it runs no other script.
WORKER_POLICY = "default-src 'none'; connect-src 'self'"


def limits() -> dict[str, Any]:
    """The rules' limits, as data for the scripts (never retyped in JavaScript)."""
    return {
        "count_maximum": rules.COUNT_MAXIMUM,
        "clock_skew_seconds": current_app.config["CLOCK_SKEW_SECONDS"],
        "earliest_observation": rules.EARLIEST_OBSERVATION.isoformat(),
        "note_length": headcounts.NOTE_LENGTH,
        "need_note_length": headcounts.NEED_NOTE_LENGTH,
        "label_length": headcounts.LABEL_LENGTH,
        "max_needs": headcounts.MAX_NEEDS,
        "batch_limit": current_app.config["REPORTS_BATCH_LIMIT"],
        "sadd_keys": list(SADD_KEYS),
        "vulnerable_keys": list(VULNERABLE_KEYS),
        "sectors": list(NEEDS_SECTORS),
        "statuses": [status.value for status in GroupStatus],
    }


def messages() -> dict[str, str]:
    """What the scripts show, in the request's language. The rules' messages are the
    API's words (tests/test_field.py holds the English ones to the domain's)."""
    maximum = f"{rules.COUNT_MAXIMUM:,}"
    return {
        # the rules, as the API words them
        "missing": _("Missing data for required field."),
        "not_integer": _("Not a valid integer."),
        "negative": _("Must be 0 or more."),
        "too_large": _("Must be at most %(maximum)s.", maximum=maximum),
        "future": _("Must not be in the future."),
        "too_early": _("Must be in 2000 or later; check the year."),
        "not_datetime": _("Not a valid datetime."),
        "breakdown_sum": _("The breakdown adds up to %(added)s, not the total %(total)s."),
        "exceeds_total": _("Must not exceed the total %(total)s."),
        "too_long": _("At most %(length)s characters."),
        "too_many": _("Longer than maximum length %(length)s."),
        "empty": _("Must not be empty."),
        "control": _("Must not contain control characters."),
        "invisible": _("Must not contain invisible or text-direction characters."),
        "invalid_fields": _("The report has invalid fields; see errors."),
        "broken_rule": _("The report breaks a counting rule; see errors."),
        # the app's own
        "queued": _("Queued"),
        "sent": _("Sent"),
        "already": _("Already there"),
        "refused": _("Refused"),
        "offline": _("Offline"),
        "online": _("Online"),
        "syncing": _("Syncing…"),
        "sync_failed": _("Could not reach the server; trying again in %(seconds)s s."),
        "synced_at": _("Last sync %(moment)s"),
        "never_synced": _("Not synced yet"),
        "as_of": _("as of %(moment)s"),
        "groups_as_of": _("Groups as of %(moment)s"),
        "no_count": _("No count yet"),
        "people": _("%(count)s people"),
        "queued_count": _("%(count)s queued"),
        "count_saved": _("Count saved on this phone. It is sent when there is a network."),
        "group_saved": _("Group saved on this phone. You can count it now."),
        "status_saved": _("Change saved on this phone."),
        "sum_line": _("Breakdown sum: %(added)s of %(total)s"),
        "sum_matches": _("The breakdown matches the total."),
        "departed_since": _(
            "Stored. This group has departed since; the count stays as a fact of its moment."
        ),
        "newer_count": _("A newer count from a colleague: %(count)s people, %(moment)s."),
        "signed_out": _("Signed out."),
        "token_refused": _("This token is unknown or revoked. Ask the coordination lead for one."),
        "not_coordinator": _(
            "This token cannot submit counts. Ask the coordination lead for a coordinator token."
        ),
        "confirm_sign_out": _("Sign out and forget the groups on this phone?"),
        "confirm_discard": _(
            "%(count)s counts or changes are not sent yet. Save them as a CSV file first "
            "(Cancel), or discard them and sign out (OK)?"
        ),
        "confirm_remove": _("Remove this item from the outbox? It will not be sent."),
        "status_waiting": _("Waiting"),
        "status_in_transit": _("In transit"),
        "status_departed": _("Departed"),
        "status_closed": _("Closed"),
        "kind_report": _("Count"),
        "kind_correction": _("Correction"),
        "kind_group": _("New group"),
        "kind_change": _("Change"),
        "move_to": _("Move to %(site)s"),
        "set_status": _("Mark as: %(status)s"),
        "fix": _("Fix and send again"),
        "remove": _("Remove"),
        "correct": _("Correct"),
        "empty_outbox": _("Nothing waiting to be sent."),
        "no_groups": _("No groups at your sites yet. Register one."),
        "need_sector": _("Sector"),
        "need_severity": _("Severity (1–5)"),
        "need_note": _("Note"),
        "remove_need": _("Remove this need"),
        "zone": _("Time zone: %(zone)s"),
        "persisted": _("This phone keeps the outbox even when storage runs low."),
        "not_persisted": _("The browser may clear the outbox when storage runs low: sync often."),
        "csv_saved": _("CSV saved: %(count)s counts."),
        "handed": _("Handed over in a file"),
        "confirm_handed": _(
            "Will this file be imported instead? OK: this phone stops sending these counts "
            "(they go by the file). Cancel: this phone keeps sending them."
        ),
        "unknown_group": _("Unknown group"),
        "correcting": _("Correcting the count of %(moment)s (%(count)s people)."),
        "recent_counts": _("Recent counts"),
        "no_recent": _("No counts known on this phone yet; sync to see them."),
        **{f"sector_{s}": label for s, label in _sector_names().items()},
        **{f"sadd_{k}": label for k, label in _sadd_names().items()},
        **{f"vulnerable_{k}": label for k, label in _vulnerable_names().items()},
    }


def _sector_names() -> dict[str, str]:
    return {
        "water": _("Water"),
        "food": _("Food"),
        "shelter": _("Shelter"),
        "health": _("Health"),
        "wash": _("Sanitation and hygiene"),
        "protection": _("Protection"),
        "transport": _("Transport"),
        "fuel": _("Fuel"),
        "nfi": _("Household items"),
    }


def _sadd_names() -> dict[str, str]:
    return {
        "female_0_4": _("Girls 0–4"),
        "female_5_17": _("Girls 5–17"),
        "female_18_59": _("Women 18–59"),
        "female_60_plus": _("Women 60+"),
        "male_0_4": _("Boys 0–4"),
        "male_5_17": _("Boys 5–17"),
        "male_18_59": _("Men 18–59"),
        "male_60_plus": _("Men 60+"),
    }


def _vulnerable_names() -> dict[str, str]:
    return {
        "pregnant_lactating": _("Pregnant or breastfeeding"),
        "disabled": _("With a disability"),
        "unaccompanied_minors": _("Children without parents"),
        "injured": _("Injured"),
        "chronically_ill": _("Chronically ill"),
    }


def shell_language() -> str:
    """`?lang=` (the service worker precaches each language so), else the person's."""
    asked = request.args.get("lang")
    return asked if asked in i18n.LANGUAGES else i18n.chosen_language()


@cache
def _files_digest() -> str:
    digest = hashlib.sha256()
    for folder in (STATIC, TEMPLATES, Path(__file__).resolve().parent):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix != ".pyc":
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def version() -> str:
    """The version of the app's files and of the limits and translations rendered into
    the shell: a new one makes the service worker precache everything afresh. Worked
    out once per app (files change with a deploy, which starts new processes)."""
    known = current_app.extensions.get("field_version")
    if known is None:
        known = current_app.extensions["field_version"] = _version()
    return known


def _version() -> str:
    digest = hashlib.sha256(_files_digest().encode())
    digest.update(json.dumps(limits(), sort_keys=True).encode())
    for language in i18n.LANGUAGES:
        catalog = i18n.TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo"
        if catalog.exists():
            digest.update(catalog.read_bytes())
    return digest.hexdigest()[:16]


def static_files() -> list[str]:
    """The URLs of the app's static files (the worker itself, and the vendored library's
    licence, aside)."""
    urls = []
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path != WORKER and path.suffix in (".js", ".css", ".png", ".svg"):
            urls.append(url_for("static", filename=f"field/{path.relative_to(STATIC)}"))
    return urls


@blp.after_request
def field_headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-cache")
    if request.endpoint in ("field.shell", "field.manifest"):
        response.vary.update(("Cookie", "Accept-Language"))  # their language is the person's
    response.headers["Content-Security-Policy"] = (
        WORKER_POLICY if request.endpoint == "field.worker" else SHELL_POLICY
    )
    return response


@blp.get("/")
def shell() -> str:
    language = shell_language()
    with force_locale(language):
        return render_template(
            "field/shell.html",
            language=language,
            languages=i18n.LANGUAGES,
            messages=messages(),
            limits=limits(),
            sectors=_sector_names(),
            sadd=_sadd_names(),
            vulnerable=_vulnerable_names(),
            version=version(),
        )


@blp.get("/manifest.webmanifest")
def manifest() -> Response:
    icons = [
        {
            "src": url_for("static", filename=f"field/icon-{size}.png"),
            "sizes": f"{size}x{size}",
            "type": "image/png",
            "purpose": "any maskable",
        }
        for size in (192, 512)
    ]
    icons.append(
        {
            "src": url_for("static", filename="field/icon.svg"),
            "sizes": "any",
            "type": "image/svg+xml",
        }
    )
    body = {
        "name": _("needs-tracker field"),
        "short_name": _("Field counts"),
        "description": _("Count groups and send their head counts, online or not."),
        "lang": i18n.chosen_language(),
        "start_url": "/field/",
        "scope": "/field/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#0b3d66",
        "icons": icons,
    }
    return Response(json.dumps(body, ensure_ascii=False), mimetype="application/manifest+json")


@blp.get("/sw.js")
def worker() -> Response:
    head = (
        f"const VERSION = {json.dumps(version())};\n"
        f"const SHELLS = {json.dumps([f'/field/?lang={lang}' for lang in i18n.LANGUAGES])};\n"
        f"const FILES = {json.dumps(static_files())};\n"
    )
    return Response(head + WORKER.read_text(), mimetype="text/javascript")
