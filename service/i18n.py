"""Languages: every page and email in English, Armenian or Russian (Flask-Babel).

A person's language is the `lang` cookie the language switcher sets, else the best
match for their browser's `Accept-Language`, else English. An email is written in its
subscription's `language`, with `flask_babel.force_locale`. Catalogs are
`service/translations/<lang>/LC_MESSAGES/messages.po`, extracted with `babel.cfg`
(`make translations`; docs/translations.md).

Numbers and dates are written by Babel for the language (CLDR data): "5,040" and
"7 Sep 2023" in English, "5 040" and "7 сент. 2023" in Russian. The API's JSON stays
English: it is a contract with machines, not a page.

The switcher is `GET /language/<code>?next=<path>`: it sets the cookie and sends the
browser back to the page it was on (a path on this site only). It is a GET that changes
nothing but a display preference, so it carries no CSRF token: a forged link can at
worst switch someone's language, which the same switcher switches back.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    has_request_context,
    redirect,
    request,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException

from service.extensions import babel

LANGUAGES = ("en", "hy", "ru")
DEFAULT_LANGUAGE = "en"
COOKIE = "lang"
COOKIE_MAX_AGE = timedelta(days=365)
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# Each language named in itself, as the switcher shows it (the same in every language).
LANGUAGE_NAMES = {"en": "English", "hy": "Հայերեն", "ru": "Русский"}

blp = Blueprint("language", __name__)


def chosen_language() -> str:
    """The language of the request being answered (English outside one)."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    cookie = request.cookies.get(COOKIE)
    if cookie in LANGUAGES:
        return cookie
    # The browser's languages in its order of preference, each by its primary tag: "en-GB"
    # is English, before an Armenian it prefers less. (Werkzeug's best_match would take
    # an exact "hy;q=0.8" over "en-GB" first.)
    for value, quality in request.accept_languages:
        primary = value.replace("_", "-").split("-")[0].lower()
        if quality > 0 and primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def current_language() -> str:
    """The language being written now: the request's, or the one an email forces."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT_LANGUAGE


def _locale() -> Locale:
    return get_locale() or Locale.parse(DEFAULT_LANGUAGE)


# --- numbers and dates, for the language -------------------------------------------------


def number(value: Any, decimals: int = 0) -> str:
    """A figure for the language ("5,040", "5 040"); a suppressed figure's mark as is
    ("< 5"), "suppressed" in words; None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return _("suppressed") if value == "suppressed" else value
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(value, format=pattern, locale=_locale())


def signed(value: int, minus: str = "-") -> str:
    """A change with its sign: "+1,234", "-56" (the dashboard passes a true minus)."""
    return ("+" if value > 0 else minus if value < 0 else "") + number(abs(value))


def moment(value: datetime, pattern: str = "d MMM y, HH:mm", zone: tzinfo | None = None) -> str:
    """A moment in the language (CLDR month names), in `zone` (default: the value's own)."""
    return format_datetime(value, pattern, tzinfo=zone or value.tzinfo, locale=_locale())


# --- the domain's words, for people -------------------------------------------------------

SECTORS = {
    "water": _l("water"),
    "food": _l("food"),
    "shelter": _l("shelter"),
    "health": _l("health"),
    "wash": _l("WASH"),
    "protection": _l("protection"),
    "transport": _l("transport"),
    "fuel": _l("fuel"),
    "nfi": _l("non-food items"),
}
SITE_KINDS = {
    "city": _l("city"),
    "assembly_point": _l("assembly point"),
    "airport": _l("airport"),
    "border_crossing": _l("border crossing"),
    "reception_centre": _l("reception centre"),
    "other": _l("other"),
}
FLAG_NAMES = {
    "stale_site": _l("stale site"),
    "stale_group": _l("stale group"),
    "conflicting_counts": _l("conflicting counts"),
    "sudden_jump": _l("sudden jump"),
    "over_capacity": _l("over capacity"),
    "breakdown_missing": _l("breakdown missing"),
}

ROLES = {"admin": _l("admin"), "coordinator": _l("coordinator"), "reader": _l("reader")}

# The countries on the sites' map (service/dashboard/geodata/outlines.json names them).
COUNTRIES = {
    "Armenia": _l("Armenia"),
    "Azerbaijan": _l("Azerbaijan"),
    "Georgia": _l("Georgia"),
    "Iran": _l("Iran"),
    "Russia": _l("Russia"),
    "Turkey": _l("Turkey"),
}


def country(name: str) -> str:
    return str(COUNTRIES.get(name, name))


def role_name(role: Any) -> str:
    """A token's role ("admin", or the Role itself) in the language."""
    value = getattr(role, "value", role)
    return str(ROLES.get(value, value))


def sector(code: str) -> str:
    return str(SECTORS.get(code, code))


def site_kind(code: str) -> str:
    return str(SITE_KINDS.get(code, code.replace("_", " ")))


def flag_name(code: str) -> str:
    return str(FLAG_NAMES.get(code, code.replace("_", " ")))


# A summary's flags carry an English message (the API's JSON is English). Pages and emails
# show it in the reader's language: each form the core writes (service/domain/summaries.py,
# visibility.py, suppression.py) is matched here, its figures kept. A message in no known
# form (an older summary's) is shown as it was written.
_FIGURE = r"(\d+(?:\.\d+)?)"
_FLAG_FORMS: list[tuple[re.Pattern[str], Any]] = [
    (
        re.compile(rf"No head count at this site in the last {_FIGURE} h\."),
        lambda m: _("No head count at this site in the last %(hours)s h.", hours=m[1]),
    ),
    (
        re.compile(rf"Waiting group not counted in the last {_FIGURE} h\."),
        lambda m: _("Waiting group not counted in the last %(hours)s h.", hours=m[1]),
    ),
    (
        re.compile(rf"Counts within an hour disagree: {_FIGURE} vs {_FIGURE}\."),
        lambda m: _("Counts within an hour disagree: %(low)s vs %(high)s.", low=m[1], high=m[2]),
    ),
    (
        re.compile(rf"Count jumped from {_FIGURE} to {_FIGURE}\."),
        lambda m: _("Count jumped from %(before)s to %(after)s.", before=m[1], after=m[2]),
    ),
    (
        re.compile(rf"{_FIGURE} people for a capacity of {_FIGURE}\."),
        lambda m: _(
            "%(people)s people for a capacity of %(capacity)s.", people=m[1], capacity=m[2]
        ),
    ),
    (
        re.compile(rf"No sex-and-age breakdown for {_FIGURE} of {_FIGURE} people\."),
        lambda m: _(
            "No sex-and-age breakdown for %(without)s of %(people)s people.",
            without=m[1],
            people=m[2],
        ),
    ),
]
_FLAG_TEXTS = {
    "A waiting group has not been counted for a while.": _l(
        "A waiting group has not been counted for a while."
    ),
    "Two counts of one group within an hour disagree.": _l(
        "Two counts of one group within an hour disagree."
    ),
    "A group's count changed by more than half since its previous count.": _l(
        "A group's count changed by more than half since its previous count."
    ),
    "One group's data needs a check.": _l("One group's data needs a check."),
    "No recent head count at this site.": _l("No recent head count at this site."),
    "More people than the site's capacity.": _l("More people than the site's capacity."),
    "No sex-and-age breakdown for most people.": _l("No sex-and-age breakdown for most people."),
    "See the data-quality flags.": _l("See the data-quality flags."),
}


def flag_message(message: str) -> str:
    """A flag's message in the language being written."""
    if message in _FLAG_TEXTS:
        return str(_FLAG_TEXTS[message])
    for form, translated in _FLAG_FORMS:
        found = form.fullmatch(message)
        if found:
            return translated(found)
    return message


# --- the switcher ------------------------------------------------------------------------


def _back_here() -> str:
    """Where the switcher sends back to: this page; after a form was sent, the same address
    read with GET when there is such a page (the sign-in form, the unsubscribe link), else
    the overview."""
    if not has_request_context():
        return "/"
    here = request.full_path.rstrip("?")
    if request.method in ("GET", "HEAD"):
        return here
    try:
        current_app.url_map.bind("localhost").match(request.path, method="GET")
    except HTTPException:
        return "/"
    return here


def switcher_links() -> list[dict[str, Any]]:
    """The switcher's links for the page being shown: back to this page, in each language."""
    here = _back_here()
    now = current_language()
    return [
        {
            "code": code,
            "name": LANGUAGE_NAMES[code],
            "href": f"/language/{code}?{urlencode({'next': here})}",
            "current": code == now,
        }
        for code in LANGUAGES
    ]


@blp.get("/language/<code>")
def switch(code: str) -> Response:
    """Remember the language in the `lang` cookie (a year) and go back to `next`."""
    if code not in LANGUAGES:
        abort(404)
    from service.dashboard import safe_next  # the one rule for where a form may send you

    response = redirect(safe_next(request.args.get("next")), 303)
    response.set_cookie(
        COOKIE,
        code,
        max_age=int(COOKIE_MAX_AGE.total_seconds()),
        samesite="Lax",
        httponly=True,
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def language_headers(response: Response) -> Response:
    """A page says its language, and that it depends on the browser's and the cookie's."""
    if response.mimetype == "text/html" and has_request_context():
        response.headers["Content-Language"] = current_language()
        response.vary.update(("Accept-Language", "Cookie"))
    return response


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    babel.init_app(
        app,
        locale_selector=chosen_language,
        default_translation_directories=str(TRANSLATIONS),
    )
    app.register_blueprint(blp)
    app.after_request(language_headers)
    app.add_template_global(current_language, "current_language")
    app.add_template_global(switcher_links, "language_links")
    app.add_template_filter(sector, "sector")
    app.add_template_filter(site_kind, "site_kind")
    app.add_template_filter(flag_name, "flag_name")
    app.add_template_filter(flag_message, "flag_message")
    app.add_template_filter(country, "country")
    app.add_template_filter(role_name, "role_name")
