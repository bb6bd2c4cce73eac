"""The field app (/field/) in headless Chromium, against the app served by gunicorn: a
coordinator signs in by the QR link, counts offline, and every count arrives once.

One server and one browser for the module; each test has its own browser context (its
own IndexedDB, service worker and cookies, as a phone of its own) and its own groups.
Screenshots of the app at 360 px, in each language, are saved in test-output/.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask_babel import force_locale

from service import create_app
from service.domain import headcounts, rules
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Role, Site
from tests import browser
from tests.conftest import _empty_tables, _settings
from tests.helpers import AIRPORT, CENTRE, hours_ago
from tests.openapi_check import CheckedClient

PHONE = {"width": 360, "height": 780}
VENDORED_IDB = "e01b45d2e088a7197e8b41ba9b51a0876969da67cc08e6efbc3d5d7ab6ac836c"
STATIC = Path(__file__).resolve().parent.parent / "service" / "static" / "field"


class Field:
    """The module's server, browser and a test client on the same database."""

    def __init__(self, app: Any, base: str, chromium: Any, log: Path) -> None:
        self.app, self.base, self.chromium, self.log = app, base, chromium, log
        self.client = app.test_client()

    def token(self, role: str, *sites: str, name: str = "field test") -> str:
        with self.app.app_context():
            found = [db.session.get(Site, s) for s in sites]
            _, secret = issue_token(Role(role), name, found)
            db.session.commit()
        return secret

    def get(self, path: str, secret: str) -> Any:
        response = self.client.get(path, headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def group(self, secret: str, site: str, label: str) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/groups",
            json={"site_id": site, "label": label},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def reports(self, secret: str, group_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v1/reports?group_id={group_id}&page_size=1000", secret)

    def phone(self, **options: Any) -> tuple[Any, Any]:
        context = self.chromium.new_context(viewport=PHONE, **options)
        return context, context.new_page()

    def sign_in(self, page: Any, secret: str) -> None:
        """Open the link the QR code of `token create --qr` (and the token page) holds."""
        from service.signin_link import signin_url

        link = signin_url(secret, self.base)
        assert link == f"{self.base}/field/#token={secret}"
        page.goto(link)
        page.wait_for_selector("body[data-view=groups]")
        # The first sync has read the groups back.
        page.wait_for_function(
            "() => !document.querySelector('#groups-asof').textContent.match(/^Not/)"
        )


@pytest.fixture(scope="module")
def field(database_url, broker_url, tmp_path_factory) -> Any:
    browser.require_chromium()
    folder = tmp_path_factory.mktemp("field")
    app = create_app(_settings(folder / "app", database_url, broker_url))
    app.test_client_class = CheckedClient
    with app.app_context():
        seed_sites(OPERATOR)
        db.session.commit()
    with (
        browser.live_server(database_url, folder / "web", app.config["CELERY_BROKER_URL"]) as base,
        browser.chromium() as chromium,
    ):
        yield Field(app, base, chromium, folder / "web" / "gunicorn.log")
    with app.app_context():
        _empty_tables()
        db.session.remove()
        db.engine.dispose()


def open_outbox(page: Any) -> None:
    page.click("#tabs button[data-view=outbox]")
    page.wait_for_selector("body[data-view=outbox]")


def states(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#outbox-list li[data-state]", "ns => ns.map(n => n.dataset.state)"
    )


def wait_states(page: Any, expected: list[str]) -> None:
    """The outbox (newest first) shows these states; it re-renders after each sync."""
    page.wait_for_function(
        "expected => JSON.stringify([...document.querySelectorAll('#outbox-list li[data-state]')]"
        ".map(n => n.dataset.state)) === JSON.stringify(expected)",
        arg=expected,
        timeout=30_000,
    )


def count(page: Any, group_label: str, total: int, *, moment: str | None = None) -> None:
    """Submit a head count for a group from the groups list."""
    page.click("#tabs button[data-view=groups]")
    card = page.locator("#group-list li.card", has_text=group_label)
    card.locator("button.count-group").click()
    page.wait_for_selector("body[data-view=count]")
    page.fill("#f-total", str(total))
    if moment:
        page.fill("#f-observed", moment)
    page.click("#save-count")
    page.wait_for_selector("body[data-view=groups]")


def register(page: Any, label: str) -> None:
    page.click("#tabs button[data-view=groups]")
    page.click("#new-group")
    page.fill("#g-label", label)
    page.click("#save-group")
    page.wait_for_selector("body[data-view=count]")


def access_lines(field: Field) -> list[str]:
    return [
        line for line in field.log.read_text().splitlines() if '"GET ' in line or '"POST ' in line
    ]


def test_offline_group_and_three_counts_arrive_exactly_once_and_the_token_is_never_logged(field):
    secret = field.token("coordinator", CENTRE, name="coordinator centre")
    context, page = field.phone()
    field.sign_in(page, secret)
    assert page.url == f"{field.base}/field/"  # the fragment is gone from the address bar
    assert page.evaluate("() => location.hash") == ""
    # The service worker controls the page once it has precached the shells and files.
    page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=30_000)

    context.set_offline(True)
    served_before = len(access_lines(field))
    register(page, "Hangar 7 families")
    page.fill("#f-total", "40")
    page.click("#save-count")
    page.wait_for_selector("body[data-view=groups]")
    count(page, "Hangar 7 families", 42)
    count(page, "Hangar 7 families", 45)
    open_outbox(page)
    assert states(page) == ["queued"] * 4
    assert "Offline" in page.inner_text("#net")
    page.close()

    # Reopened with no network: the service worker serves the shell and its files.
    page = context.new_page()
    page.goto(f"{field.base}/field/")
    page.wait_for_selector("body[data-view=groups]")
    assert page.locator("#group-list li.card", has_text="Hangar 7 families").count() == 1
    open_outbox(page)
    assert states(page) == ["queued"] * 4
    assert len(access_lines(field)) == served_before, "the server was reached while offline"

    context.set_offline(False)  # the `online` event starts the sync
    wait_states(page, ["sent", "sent", "sent", "sent"])

    groups = [
        g
        for g in field.get(f"/api/v1/groups?site_id={CENTRE}&page_size=1000", secret)
        if g["label"] == "Hangar 7 families"
    ]
    assert len(groups) == 1
    stored = field.reports(secret, groups[0]["id"])
    assert sorted(r["total"] for r in stored) == [40, 42, 45]
    assert groups[0]["current_count"] in (40, 42, 45)
    assert len({r["client_id"] for r in stored}) == 3

    # The service worker keeps the shells and files; no answer of the API is cached.
    cached = page.evaluate(
        """async () => {
            const paths = [];
            for (const name of await caches.keys()) {
                const cache = await caches.open(name);
                for (const request of await cache.keys()) paths.push(new URL(request.url).pathname);
            }
            return paths;
        }"""
    )
    assert "/field/" in cached and "/static/field/app.js" in cached
    assert not [path for path in cached if path.startswith("/api/")]

    # Syncing again stores nothing new.
    page.click("#view-outbox .sync-now")
    wait_states(page, ["sent"] * 4)
    assert len(field.reports(secret, groups[0]["id"])) == 3
    context.close()

    log = field.log.read_text()
    assert "GET /field/ " in log and "GET /api/v1/me " in log
    assert secret not in log


def test_a_lost_answer_and_a_second_tab_still_store_each_count_once(field):
    admin = field.token("admin")
    secret = field.token("coordinator", CENTRE)
    group = field.group(admin, CENTRE, "Convoy 12 from Martuni")
    context, page = field.phone()
    field.sign_in(page, secret)
    context.set_offline(True)
    count(page, "Convoy 12", 120)
    count(page, "Convoy 12", 118)

    # The batch reaches the server and is stored; its answer is lost on the way back.
    lost = []

    def lose_the_answer(route: Any) -> None:
        response = route.fetch()
        lost.append(response.status)
        route.abort("connectionreset")

    page.route("**/api/v1/reports/batch", lose_the_answer)
    batch = "**/api/v1/reports/batch"
    with page.expect_event("requestfailed", lambda r: "/reports/batch" in r.url, timeout=30_000):
        context.set_offline(False)  # the `online` event starts the sync
    assert lost == [200]
    assert len(field.reports(admin, group["id"])) == 2  # stored, though the phone never heard
    page.unroute(batch)
    open_outbox(page)
    assert states(page) == ["queued", "queued"]

    # Two tabs sync at the same moment: one sends, the other waits its turn.
    second = context.new_page()
    page.evaluate("document.querySelector('#view-outbox .sync-now').click()")
    second.goto(f"{field.base}/field/")
    second.wait_for_selector("body[data-view=groups]")
    open_outbox(second)
    wait_states(second, ["already", "already"])
    open_outbox(page)
    wait_states(page, ["already", "already"])

    stored = field.reports(admin, group["id"])
    assert sorted(r["total"] for r in stored) == [118, 120]
    context.close()


def test_a_count_refused_by_the_server_is_fixed_and_sent_again(field):
    """A phone whose clock runs a day fast: its counts pass its own check, the server
    refuses them as in the future; fixed, the count is sent again and stored."""
    admin = field.token("admin")
    secret = field.token("coordinator", CENTRE)
    group = field.group(admin, CENTRE, "School 5 families")
    context, page = field.phone()
    field.sign_in(page, secret)
    page.clock.set_fixed_time(datetime.now(UTC) + timedelta(days=1))
    page.reload()
    page.wait_for_selector("body[data-view=groups]")
    count(page, "School 5 families", 64)
    open_outbox(page)
    wait_states(page, ["refused"])
    refused = page.locator("#outbox-list li[data-state=refused]")
    assert "observed_at: Must not be in the future." in refused.inner_text()

    refused.locator("button.fix").click()
    page.wait_for_selector("body[data-view=count]")
    assert page.input_value("#f-total") == "64"
    right = datetime.now().astimezone() - timedelta(minutes=5)
    page.fill("#f-observed", right.strftime("%Y-%m-%dT%H:%M:%S"))
    page.click("#save-count")
    open_outbox(page)
    wait_states(page, ["sent"])  # the refused one gave way to its fix

    stored = field.reports(admin, group["id"])
    assert [r["total"] for r in stored] == [64]
    context.close()


def test_status_move_correction_and_a_count_for_a_group_departed_meanwhile(field):
    admin = field.token("admin")
    secret = field.token("coordinator", CENTRE, AIRPORT)
    moving = field.group(admin, CENTRE, "Bus 3 from Askeran")
    leaving = field.group(admin, CENTRE, "Hangar 2 families")
    first = field.client.post(
        "/api/v1/reports",
        json={"group_id": moving["id"], "observed_at": hours_ago(2), "total": 30},
        headers={"Authorization": f"Bearer {admin}"},
    ).get_json()
    context, page = field.phone()
    field.sign_in(page, secret)

    context.set_offline(True)
    # A correction of the count of two hours ago (the server's): 33, not 30.
    page.locator("#group-list li.card", has_text="Bus 3").locator("button.open-group").click()
    page.wait_for_selector("body[data-view=detail]")
    page.click(f"#detail-reports li[data-report='{first['id']}'] button.correct")
    page.wait_for_selector("body[data-view=count]")
    page.fill("#f-total", "33")
    page.click("#save-count")
    # The bus moves on to the airport, in transit.
    page.locator("#group-list li.card", has_text="Bus 3").locator("button.open-group").click()
    page.click("#detail-statuses button[data-status=in_transit]")
    page.select_option("#detail-move", AIRPORT)
    page.click("#detail-move-go")
    # A count of the hangar, which (unknown to the phone) departs meanwhile.
    count(page, "Hangar 2 families", 75)
    response = field.client.patch(
        f"/api/v1/groups/{leaving['id']}",
        json={"status": "departed"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert response.status_code == 200

    context.set_offline(False)
    open_outbox(page)
    wait_states(page, ["sent"] * 4)
    departed_note = page.locator("#outbox-list li", has_text="Hangar 2 families").inner_text()
    assert "departed since" in departed_note

    moved = field.get(f"/api/v1/groups/{moving['id']}", secret)
    assert (moved["site_id"], moved["status"]) == (AIRPORT, "in_transit")
    assert moved["current_count"] == 33  # the correction: same moment, received later
    correction = [r for r in field.reports(secret, moving["id"]) if r["id"] != first["id"]]
    assert [(r["total"], r["supersedes"]) for r in correction] == [(33, first["id"])]
    assert [r["total"] for r in field.reports(secret, leaving["id"])] == [75]
    # The groups list shows the server's state after the sync.
    from playwright.sync_api import expect

    page.click("#tabs button[data-view=groups]")
    hangar = page.locator("#group-list li.card", has_text="Hangar 2 families")
    expect(hangar).to_contain_text("Departed")
    context.close()


def test_the_outbox_saved_as_csv_is_imported_with_the_same_counts(field, tmp_path):
    admin = field.token("admin")
    secret = field.token("coordinator", AIRPORT)
    known = field.group(admin, AIRPORT, "Tent row B")
    context, page = field.phone(accept_downloads=True)
    field.sign_in(page, secret)
    context.set_offline(True)
    count(page, "Tent row B", 210)
    register(page, "Families from Vank")
    page.fill("#f-total", "16")
    page.click("summary:has-text('Sex and age')")
    for key, value in zip(
        ("female_0_4", "female_5_17", "female_18_59", "female_60_plus"), (1, 2, 3, 2), strict=True
    ):
        page.fill(f"#f-sadd-{key}", str(value))
    for key, value in zip(
        ("male_0_4", "male_5_17", "male_18_59", "male_60_plus"), (1, 2, 4, 1), strict=True
    ):
        page.fill(f"#f-sadd-{key}", str(value))
    assert "16 of 16" in page.inner_text("#sadd-sum")
    page.click("#needs-box summary")
    page.click("#add-need")
    page.select_option("#needs-list li >> nth=0 >> select[name=need_sector]", "water")
    page.fill("#needs-list li >> nth=0 >> input[name=need_note]", "no tank since Monday")
    page.fill("#f-note", "Two elderly need help walking")
    page.click("#save-count")
    page.wait_for_selector("body[data-view=groups]")

    open_outbox(page)
    page.once("dialog", lambda dialog: dialog.accept())  # yes, the file goes instead
    with page.expect_download() as download:
        page.click("#save-csv")
    path = tmp_path / "outbox.csv"
    download.value.save_as(path)
    wait_states(page, ["handed", "handed", "handed"])  # newest first: count, group, count
    # Back online, the phone sends none of them: they go by the file only.
    context.set_offline(False)
    online = page.evaluate("() => new Date().toISOString()")
    page.click("#view-outbox .sync-now")
    page.wait_for_function("t => (document.body.dataset.lastSync || '') > t", arg=online)
    assert field.reports(admin, known["id"]) == []
    context.close()  # the phone is wiped

    env = dict(os.environ, DATABASE_URL=field.app.config["DATABASE_URL"])
    env["INSTANCE_PATH"] = str(tmp_path / "cli")
    command = [str(Path(sys.executable).parent / "needs-tracker"), "import", str(path)]
    for _ in range(2):  # importing the file again stores nothing new
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout and "2 already imported" in done.stdout

    assert [r["total"] for r in field.reports(admin, known["id"])] == [210]
    vank = [
        g
        for g in field.get(f"/api/v1/groups?site_id={AIRPORT}", admin)
        if g["label"] == "Families from Vank"
    ]
    assert len(vank) == 1
    (stored,) = field.reports(admin, vank[0]["id"])
    assert stored["total"] == 16 and sum(stored["sadd"].values()) == 16
    assert stored["sadd"]["male_18_59"] == 4
    assert stored["needs"] == [{"sector": "water", "severity": 3, "note": "no tank since Monday"}]
    assert stored["note"] == "Two elderly need help walking"


INVALID = [
    # (what is typed, the body the API is sent for the same input)
    ({"#f-total": "1000001"}, {"total": 1_000_001}),
    (
        {
            "#f-total": "10",
            "#f-sadd-female_0_4": "2",
            **{
                f"#f-sadd-{k}": "1"
                for k in (
                    "female_5_17",
                    "female_18_59",
                    "female_60_plus",
                    "male_0_4",
                    "male_5_17",
                    "male_18_59",
                    "male_60_plus",
                )
            },
        },
        {
            "total": 10,
            "sadd": {"female_0_4": 2}
            | {
                k: 1
                for k in (
                    "female_5_17",
                    "female_18_59",
                    "female_60_plus",
                    "male_0_4",
                    "male_5_17",
                    "male_18_59",
                    "male_60_plus",
                )
            },
        },
    ),
    ({"#f-total": "5", "#f-vulnerable-injured": "6"}, {"total": 5, "vulnerable": {"injured": 6}}),
    ({"#f-total": "5", "observed": timedelta(days=2)}, {"total": 5, "observed": timedelta(days=2)}),
    (
        {"#f-total": "5", "observed": -timedelta(days=365 * 30)},
        {"total": 5, "observed": -timedelta(days=365 * 30)},
    ),
]


def test_the_app_refuses_what_the_api_refuses_with_the_same_words(field):
    admin = field.token("admin")
    secret = field.token("coordinator", CENTRE)
    group = field.group(admin, CENTRE, "Rules check group")
    context, page = field.phone()
    field.sign_in(page, secret)
    for typed, sent in INVALID:
        page.click("#tabs button[data-view=groups]")
        page.locator("#group-list li.card", has_text="Rules check group").locator(
            "button.count-group"
        ).click()
        page.wait_for_selector("body[data-view=count]")
        moment = datetime.now().astimezone().replace(microsecond=0) - timedelta(minutes=1)
        moment += typed.get("observed", timedelta())
        page.fill("#f-observed", moment.strftime("%Y-%m-%dT%H:%M:%S"))
        page.eval_on_selector_all("details", "boxes => boxes.forEach(b => { b.open = true; })")
        for selector, value in typed.items():
            if selector.startswith("#"):
                page.fill(selector, value)
        page.click("#save-count")
        body = {k: v for k, v in sent.items() if k != "observed"}
        body |= {"group_id": group["id"], "observed_at": moment.isoformat()}
        problem = field.client.post(
            "/api/v1/reports", json=body, headers={"Authorization": f"Bearer {secret}"}
        ).get_json()
        assert problem["status"] == 422, problem
        assert page.inner_text("#count-summary") == problem["detail"]
        for error in problem["errors"]:
            box = page.locator(f"[id='err-{error['field']}']")
            assert box.inner_text() == error["message"], error
        page.click("#view-count button.back")
    open_outbox(page)
    assert states(page) == []  # nothing invalid was queued
    context.close()


SCENE = (
    ("Hangar 4 families", 212, 3),
    ("Truck 9 from Hadrut", 48, 1),
    ("School 5, 2nd floor", 131, 6),
)


@pytest.fixture(scope="module")
def scene(field) -> dict[str, str]:
    """A coordinator of one site (the airport) with three counted groups, for pictures."""
    admin = field.token("admin")
    for label, total, hours in SCENE:
        group = field.group(admin, AIRPORT, label)
        field.client.post(
            "/api/v1/reports",
            json={"group_id": group["id"], "observed_at": hours_ago(hours), "total": total},
            headers={"Authorization": f"Bearer {admin}"},
        )
    return {"secret": field.token("coordinator", AIRPORT, name="Coordinator, airport")}


@pytest.mark.parametrize("language", ["en", "hy", "ru"])
def test_screenshots_of_the_field_app_at_360_px(field, scene, language):
    context, page = field.phone(locale={"en": "en-GB", "hy": "hy-AM", "ru": "ru-RU"}[language])
    context.add_cookies([{"name": "lang", "value": language, "url": field.base}])
    field_sign_in_any_language(field, page, scene["secret"])
    assert page.get_attribute("html", "lang") == language
    browser.screenshot(page, f"field-{language}-groups.png")
    page.locator("#group-list li.card", has_text="Hangar 4").locator("button.count-group").click()
    page.wait_for_selector("body[data-view=count]")
    page.fill("#f-total", "215")
    page.click("#sadd-box summary")
    for key, value in zip(
        ("female_0_4", "female_5_17", "female_18_59", "female_60_plus", "male_0_4"),
        (14, 38, 61, 19, 12),
        strict=True,
    ):
        page.fill(f"#f-sadd-{key}", str(value))
    browser.screenshot(page, f"field-{language}-count.png")
    context.set_offline(True)
    page.click("#save-count")
    page.wait_for_selector("#count-summary:not([hidden])")  # three boxes left empty
    for key, value in zip(("male_5_17", "male_18_59", "male_60_plus"), (30, 29, 12), strict=True):
        page.fill(f"#f-sadd-{key}", str(value))
    page.click("#save-count")
    page.wait_for_selector("body[data-view=groups]")
    open_outbox(page)
    browser.screenshot(page, f"field-{language}-outbox.png")
    page.click("#tabs button[data-view=groups]")
    page.locator("#group-list li.card", has_text="Truck 9").locator("button.open-group").click()
    page.wait_for_selector("body[data-view=detail]")
    browser.screenshot(page, f"field-{language}-group.png")
    page.click("#tabs button[data-view=more]")
    page.wait_for_selector("body[data-view=more]")
    browser.screenshot(page, f"field-{language}-more.png")
    context.close()


def field_sign_in_any_language(field: Field, page: Any, secret: str) -> None:
    page.goto(f"{field.base}/field/#token={secret}")
    page.wait_for_selector("body[data-view=groups]")
    page.wait_for_function("() => document.querySelectorAll('#group-list li.group').length > 0")


def test_the_shell_is_public_and_carries_its_own_policy_and_limits(field):
    response = field.client.get("/field/?lang=hy")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    page = response.get_data(as_text=True)
    assert '<html lang="hy">' in page
    assert f'"count_maximum": {rules.COUNT_MAXIMUM}' in page
    worker = field.client.get("/field/sw.js")
    assert worker.mimetype == "text/javascript"
    assert "connect-src 'self'" in worker.headers["Content-Security-Policy"]
    manifest = field.client.get("/field/manifest.webmanifest").get_json()
    assert (manifest["scope"], manifest["start_url"]) == ("/field/", "/field/")
    assert {icon["sizes"] for icon in manifest["icons"]} == {"192x192", "512x512", "any"}
    for icon in manifest["icons"]:
        answer = field.client.get(icon["src"])
        assert answer.status_code == 200
        answer.close()


def test_the_rules_messages_in_english_are_the_apis(field):
    from service.field import messages

    with field.app.test_request_context("/field/"), force_locale("en"):
        shown = messages()
    assert shown["too_large"] == rules.TOO_LARGE
    assert shown["missing"] == rules.MISSING
    assert shown["invalid_fields"] == headcounts.INVALID_FIELDS
    assert shown["broken_rule"] == headcounts.BROKEN_RULE
    for key, probe in {
        "negative": lambda: rules.count(-1),
        "too_long": lambda: rules.text("x" * 3, max_length=2),
        "empty": lambda: rules.text(" ", max_length=2),
        "control": lambda: rules.text("a\x01b", max_length=9),
    }.items():
        with pytest.raises(rules.RuleError) as refused:
            probe()
        assert re.sub(r"%\(\w+\)s", "2", shown[key]) == refused.value.message, key


def test_the_vendored_indexeddb_wrapper_is_the_one_named():
    data = (STATIC / "vendor" / "idb-8.0.4.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == VENDORED_IDB
    assert VENDORED_IDB in (STATIC / "vendor" / "README.md").read_text()
    assert (STATIC / "vendor" / "idb-LICENSE.txt").read_text().startswith("ISC License")


def test_the_language_switcher_and_sign_out_offering_the_csv_first(field):
    secret = field.token("coordinator", CENTRE)
    field.group(field.token("admin"), CENTRE, "Switcher group")
    context, page = field.phone(accept_downloads=True)
    field.sign_in(page, secret)
    page.click("#tabs button[data-view=more]")
    page.click("button.lang[data-lang=ru]")
    page.wait_for_function("() => document.documentElement.lang === 'ru'")
    page.wait_for_selector("body[data-view=groups]")
    assert page.get_attribute("button.lang[data-lang=ru]", "lang") == "ru"
    assert {c["name"]: c["value"] for c in context.cookies()}["lang"] == "ru"

    context.set_offline(True)
    count(page, "Switcher group", 12)
    page.click("#tabs button[data-view=more]")
    page.wait_for_selector("body[data-view=more]")
    # One count not sent: "Cancel" saves the CSV first and keeps everything.
    page.once("dialog", lambda dialog: dialog.dismiss())
    with page.expect_download() as download:
        page.click("#sign-out")
    assert download.value.suggested_filename.endswith(".csv")
    assert page.evaluate("() => document.body.dataset.view") == "more"
    # "OK" discards it and forgets the token, the groups and the outbox.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#sign-out")
    page.wait_for_selector("body[data-view=signin]")
    page.reload()
    page.wait_for_selector("body[data-view=signin]")
    assert page.locator("#tabs").is_hidden()
    browser.screenshot(page, "field-ru-signin.png")
    left = page.evaluate(
        """async () => {
            const db = await new Promise((ok) => { const r = indexedDB.open("needs-tracker-field");
                r.onsuccess = () => ok(r.result); });
            const count = (name) => new Promise((ok) => {
                const r = db.transaction(name).objectStore(name).count();
                r.onsuccess = () => ok(r.result);
            });
            return [await count("settings"), await count("groups"), await count("outbox")];
        }"""
    )
    assert left == [0, 0, 0]
    context.close()


def test_every_message_the_scripts_show_is_rendered_into_the_shell(field):
    """A message named in a script but missing from the shell would show "undefined"."""
    from service.field import messages

    with field.app.test_request_context("/field/"):
        rendered = set(messages())
    named = set()
    for script in ("app.js", "rules.js"):
        named |= set(re.findall(r"\b(?:M|this\.m)\.([a-z_]+)", (STATIC / script).read_text()))
    named |= {f"status_{status}" for status in ("waiting", "in_transit", "departed", "closed")}
    assert named and not named - rendered, named - rendered


def test_a_failed_sync_retries_by_itself_and_shows_a_colleagues_newer_count(field):
    admin = field.token("admin")
    secret = field.token("coordinator", CENTRE)
    group = field.group(admin, CENTRE, "Stadium stand C")
    context, page = field.phone()
    field.sign_in(page, secret)
    context.set_offline(True)
    earlier = datetime.now().astimezone().replace(microsecond=0) - timedelta(minutes=20)
    count(page, "Stadium stand C", 90, moment=earlier.strftime("%Y-%m-%dT%H:%M:%S"))
    # A colleague counts the same group later, from another phone.
    field.client.post(
        "/api/v1/reports",
        json={"group_id": group["id"], "observed_at": hours_ago(0.1), "total": 97},
        headers={"Authorization": f"Bearer {admin}"},
    )

    # The first try after the network returns fails (the server cannot be reached)...
    failed = []

    def unreachable(route: Any) -> None:
        failed.append(route.request.url)
        route.abort("connectionrefused")

    page.route("**/api/v1/reports/batch", unreachable, times=1)
    with page.expect_event("requestfailed", lambda r: "/reports/batch" in r.url, timeout=30_000):
        context.set_offline(False)
    open_outbox(page)
    assert states(page) == ["queued"]
    assert "trying again in 5 s" in page.inner_text("#sync-state")
    # ... and the app tries again by itself, with no click and no event.
    wait_states(page, ["sent"])
    assert len(failed) == 1
    assert sorted(r["total"] for r in field.reports(admin, group["id"])) == [90, 97]

    page.click("#tabs button[data-view=groups]")
    card = page.locator("#group-list li.card", has_text="Stadium stand C")
    from playwright.sync_api import expect

    expect(card).to_contain_text("97 people")
    expect(card).to_contain_text("A newer count from a colleague: 97 people")
    context.close()
