"""Accessibility: every page people use, checked by axe-core in headless Chromium.

No serious or critical WCAG 2.1 A/AA violation (tests/a11y.py) on each page of the table
below, at a 360 px phone's width and at a desktop's, in each language. One server and one
browser serve the whole module; each case opens its page in a tab of a browser context
kept per role and language (signed in as the page's role, with the language cookie the
switcher sets), and checks it at each width.

To check another page, add a row to PAGES; another language, to LANGUAGES; another width,
to WIDTHS.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from service import create_app, importing
from service.domain import subscriptions
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.extensions import db
from service.signin_link import FIELD_PATH
from tests import browser
from tests.a11y import assert_accessible, new_context
from tests.conftest import Auth, _empty_tables, _settings
from tests.helpers import (
    AIRPORT,
    CENTRE,
    SADD_40,
    create_group,
    hours_ago,
    post_report,
    summary_now,
)
from tests.openapi_check import CheckedClient

LANGUAGES = ("en", "hy", "ru")
WIDTHS = {"phone": {"width": 360, "height": 740}, "desktop": {"width": 1280, "height": 900}}


# The latest situation reloads itself (<meta http-equiv="refresh">) only when a person
# asked for it (`?reload=on`, for a screen in a meeting) and the page offers "Stop
# reloading": WCAG 2.2.1 (Timing Adjustable) lets a person turn it off. axe flags any
# meta refresh all the same (meta-refresh, critical): allowed by name on that page only,
# and the check fails once it is no longer found. Every other page is checked whole.
RELOADS = frozenset({"meta-refresh"})


@dataclass(frozen=True)
class Page:
    name: str
    path: str  # may name the module's data: {unsubscribe}, {field_link}, ...
    role: str | None  # signed in with a token of this role; None: not signed in
    status: int
    shows: str  # a selector only this page has: the check ran on the page it means to
    allowed: frozenset[str] = frozenset()  # axe rules known to fail here (see above)
    # Waited for once the page is loaded, before anything is clicked.
    ready: str | None = None
    # Selectors clicked in turn after that; with `sends`, the last one sends a form, and
    # the page checked (and its status) is the answer.
    clicks: tuple[str, ...] = ()
    sends: bool = False
    # The browser context: one per role, language and device (the field app keeps its
    # token and its outbox on the device).
    device: str = "browser"


PAGES = (
    Page("sign-in", "/sign-in", None, 200, "#token"),
    Page("overview", "/", "admin", 200, "#total-people"),
    Page("overview-reader", "/", "reader", 200, "#total-people"),
    Page("overview-reloading", "/?reload=on", "admin", 200, "#stop-reloading", allowed=RELOADS),
    Page("overview-earlier", "/?at={earlier}", "coordinator", 200, "a[rel=next]"),
    Page("import", "/import", "admin", 200, "#file"),
    Page("import-result", "/import/{import_job}", "admin", 200, "#import-result table"),
    Page("error-forbidden", "/import", "reader", 403, "p.error[role=alert]"),
    Page("error-not-found", "/import/{unknown_job}", "admin", 404, "p.error[role=alert]"),
    Page("unsubscribe", "{unsubscribe}", None, 200, "form button[type=submit]"),
    Page("tokens", "/tokens", "admin", 200, "#new-token"),
    Page(
        "token-refused",
        "/tokens",
        "admin",
        422,
        "#new-token",
        clicks=("#new-token button[type=submit]",),  # a coordinator with no site
        sends=True,
    ),
    Page(
        "token-created",
        "/tokens",
        "admin",
        200,
        "#token-created",
        clicks=(f"#new-token input[name=site][value={CENTRE}]", "#new-token button[type=submit]"),
        sends=True,
    ),
    Page("sites", "/sites", "admin", 200, "#new-site"),
    Page("site-groups", f"/sites/{CENTRE}/groups", "admin", 200, "#new-group"),
    Page("site-groups-coordinator", f"/sites/{CENTRE}/groups", "coordinator", 200, "#groups"),
    # A reader's own subscriptions and webhooks (an admin's view of one subscription).
    Page("subscriptions", "/subscriptions", "reader", 200, "#new-subscription"),
    Page(
        "subscription-preview",
        "/subscriptions",
        "reader",
        200,
        "#schedule-preview",
        clicks=("#preview-schedule",),
        sends=True,
    ),
    Page("subscription", "/subscriptions/{subscription}", "admin", 200, "#deliveries"),
    Page("webhooks", "/webhooks", "reader", 200, "#new-webhook"),
    Page(
        "webhook-refused",
        "/webhooks",
        "reader",
        422,
        "#form-error",
        clicks=("#register-webhook",),  # no URL
        sends=True,
    ),
    # The field app (/field/), on a phone that has never signed in, then on one signed in
    # by the QR code's link as a coordinator of one site: each of its views.
    Page("field-sign-in", "/field/", None, 200, "body[data-view=signin]", device="new phone"),
    *(
        Page(
            f"field-{view}",
            "{field_link}",
            None,
            200,
            f"body[data-view={view}]",
            ready="#group-list li.card",  # signed in, the groups read back
            clicks=clicks,
            device="phone",
        )
        for view, clicks in (
            ("groups", ()),
            ("count", ("#group-list li.card button.count-group",)),
            ("group", ("#new-group",)),
            ("detail", ("#group-list li.card button.open-group",)),
            ("outbox", ("#tabs button[data-view=outbox]",)),
            ("more", ("#tabs button[data-view=more]",)),
        )
    ),
)


@dataclass
class Served:
    base: str
    chromium: Any
    sessions: dict[str, Any]  # role: the signed-in browser's storage state
    paths: dict[str, str]
    contexts: dict[tuple[str | None, str, str], Any] = field(default_factory=dict)

    def context(self, role: str | None, language: str, device: str) -> Any:
        """One browser context per role, language and device (signed in, with the
        language cookie the switcher sets), kept for the module: each page opens a tab."""
        if (role, language, device) not in self.contexts:
            context = new_context(
                self.chromium,
                viewport=next(iter(WIDTHS.values())),
                locale=language,
                storage_state=self.sessions.get(role),
            )
            context.add_cookies([{"name": "lang", "value": language, "url": self.base}])
            self.contexts[role, language, device] = context
        return self.contexts[role, language, device]


@pytest.fixture(scope="module")
def served(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A situation worth looking at (two sites, counts with breakdowns, vulnerabilities
    and needs, two summaries, a stale group flagged, a subscription), served by gunicorn,
    with one browser, and a signed-in session per role."""
    browser.require_chromium()
    instance = tmp_path_factory.mktemp("a11y") / "instance"
    # The same instance folder as the server: the same secret signs the unsubscribe link.
    app = create_app(_settings(instance, database_url, broker_url))
    app.test_client_class = CheckedClient
    try:
        with app.app_context():
            seed_sites(OPERATOR)
            db.session.commit()
        client, auth = app.test_client(), Auth(app)
        paths = _situation(app, client, auth)
        with (
            browser.live_server(database_url, instance, broker_url) as base,
            browser.chromium() as chromium,
        ):
            sessions = {}
            for role in {page.role for page in PAGES if page.role}:
                context = chromium.new_context()
                sites = (CENTRE,) if role == "coordinator" else ()  # a coordinator of one site
                browser.sign_in(context.new_page(), base, auth.token(role, *sites))
                sessions[role] = context.storage_state()
                context.close()
            yield Served(base, chromium, sessions, paths)
    finally:
        with app.app_context():
            _empty_tables()
            db.session.remove()
            db.engine.dispose()


def _situation(app: Any, client: Any, auth: Auth) -> dict[str, str]:
    admin = auth.admin
    field_secret = auth.token("coordinator", CENTRE, name="field phone")
    hangar = create_group(client, admin, AIRPORT, label="Hangar 1 families")
    school = create_group(client, admin, CENTRE, label="School 5 families")
    quiet = create_group(client, admin, CENTRE, label="Quiet courtyard families")
    post_report(client, admin, hangar["id"], 4800, 30)
    earlier = summary_now(app, client, admin, as_of=hours_ago(26), build_here=True)
    post_report(
        client,
        admin,
        hangar["id"],
        40,
        2,
        sadd=SADD_40,
        vulnerable={"pregnant_lactating": 3, "disabled": 2, "unaccompanied_minors": 1},
        needs=[
            {"sector": "water", "severity": 4, "note": "Two tanks for the whole hangar"},
            {"sector": "shelter", "severity": 3},
        ],
    )
    post_report(client, admin, school["id"], 1250, 1)
    post_report(client, admin, quiet["id"], 40, 9)  # stale: flagged
    summary_now(app, client, admin, build_here=True)
    subscription = client.post(
        "/api/v1/subscriptions",
        json={"email": "sitrep@ngo.example.org", "cron": "0 7 * * *", "timezone": "Asia/Yerevan"},
        headers=admin,
    )
    assert subscription.status_code == 201, subscription.get_json()
    # An import with rows refused, run here as a worker would: its page lists them.
    upload = client.post(
        "/api/v1/reports/import",
        data=(
            "site_id,group_label,observed_at,total,needs\n"
            f"{CENTRE},Stadium families,{hours_ago(3)},320,water:4;shelter:3\n"
            f"{CENTRE},Stadium families,{hours_ago(2)},-1,\n"
            f"{CENTRE},Stadium families,not a moment,12,\n"
        ),
        content_type="text/csv",
        headers=admin,
    )
    assert upload.status_code == 202, upload.get_json()
    job_id = upload.get_json()["id"]
    with app.app_context():
        importing.run_import(uuid.UUID(job_id))
        link = subscriptions.unsubscribe_url(uuid.UUID(subscription.get_json()["id"]))
    return {
        "earlier": quote(earlier["as_of"]),
        "import_job": job_id,
        "unsubscribe": link.removeprefix(app.config["PUBLIC_BASE_URL"]),
        "unknown_job": str(uuid.uuid4()),
        "subscription": subscription.get_json()["id"],
        # The QR code's sign-in link, for a coordinator of the centre (secret in the fragment).
        "field_link": f"{FIELD_PATH}#token={quote(field_secret, safe='')}",
    }


CASES = [
    pytest.param(page, language, id=f"{page.name}-{language}")
    for page, language in itertools.product(PAGES, LANGUAGES)
]


@pytest.mark.parametrize(("page", "language"), CASES)
def test_no_serious_accessibility_violations(served: Served, page: Page, language: str):
    """The page is loaded (and axe injected) once, then checked at each width in turn:
    the viewport is resized, and the layout with it."""
    tab = served.context(page.role, language, page.device).new_page()
    try:
        response = tab.goto(served.base + page.path.format(**served.paths))
        if page.ready:
            tab.wait_for_selector(page.ready)
        for number, selector in enumerate(page.clicks, start=1):
            if page.sends and number == len(page.clicks):
                with tab.expect_navigation() as sent:
                    tab.click(selector)
                response = sent.value
            else:
                tab.click(selector)
        assert response.status == page.status, (page, response.url)
        tab.wait_for_selector(page.shows, state="attached")  # the page (or view) meant
        # Screen readers pick their voice by it.
        assert tab.evaluate("document.documentElement.lang") == language
        for width, size in WIDTHS.items():
            tab.set_viewport_size(size)
            try:
                results = assert_accessible(tab, allowed=page.allowed)
            except AssertionError as failure:
                raise AssertionError(f"{width}, {size['width']} px wide: {failure}") from None
            found = {violation["id"] for violation in results["violations"]}
            assert page.allowed <= found, f"no longer found, remove the allowance: {page.allowed}"
    finally:
        tab.close()
