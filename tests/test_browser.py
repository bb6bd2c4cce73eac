"""The dashboard in headless Chromium, against the app served by gunicorn.

Screenshots are saved in test-output/ for people to look at.
"""

from __future__ import annotations

import re

import pytest

from tests import browser
from tests.helpers import AIRPORT, CENTRE, create_group, hours_ago, post_report, summary_now


@pytest.fixture
def situation(app, client, auth, tmp_path):
    """Two sites with people, a ready summary, and the server with a browser."""
    browser.require_chromium()
    admin = auth.admin
    hangar = create_group(client, admin, AIRPORT, label="Hangar 1 families")
    school = create_group(client, admin, CENTRE, label="School 5 families")
    post_report(client, admin, hangar["id"], 4800, 30)
    summary_now(app, client, admin, as_of=hours_ago(26), build_here=True)
    post_report(client, admin, hangar["id"], 715, 2)
    post_report(client, admin, school["id"], 1250, 1)
    latest = summary_now(app, client, admin, build_here=True)
    with (
        browser.live_server(
            app.config["DATABASE_URL"], tmp_path / "web", app.config["CELERY_BROKER_URL"]
        ) as base,
        browser.chromium() as chromium,
    ):
        yield {"base": base, "chromium": chromium, "latest": latest}


def test_sign_in_see_the_api_totals_and_the_charts_then_sign_out(situation, auth):
    base, latest = situation["base"], situation["latest"]
    page = situation["chromium"].new_page(viewport={"width": 1200, "height": 900})

    page.goto(base + "/")
    assert "/sign-in" in page.url
    browser.sign_in(page, base, auth.token("coordinator", CENTRE))

    assert page.locator("#total-people").inner_text() == f"{latest['totals']['people']:,}"
    assert page.locator("#total-groups").inner_text() == str(latest["totals"]["groups"])
    for entry in latest["sites"]:
        cell = page.locator(f'tr[data-site="{entry["site_id"]}"] td.people')
        assert cell.inner_text() == f"{entry['people']:,}"
    # The charts are drawn: bars with a width, and the line through both summaries.
    bars = page.locator("ul.bars rect")
    assert bars.count() == len(latest["sites"])
    assert max(bars.nth(i).bounding_box()["width"] for i in range(bars.count())) > 300
    line = page.locator("svg.chart.line polyline").first
    assert len(line.get_attribute("points").split()) == 2
    assert line.bounding_box()["width"] > 200
    browser.screenshot(page, "dashboard-coordinator.png")

    page.click("#request-summary")
    assert "was requested" in page.locator(".flash").inner_text()

    # The API link opens the docs, drawn under their Content-Security-Policy.
    assert_api_docs_render_under_their_csp(page, base)
    page.goto(base + "/")

    page.click("#sign-out")
    assert "/sign-in" in page.url
    assert "Signed out." in page.content()
    page.goto(base + "/")
    assert "/sign-in" in page.url


def test_a_reader_cannot_reach_admin_actions(situation, auth):
    base = situation["base"]
    page = situation["chromium"].new_page(viewport={"width": 390, "height": 844})
    browser.sign_in(page, base, auth.token("reader"))

    assert page.locator("#request-summary").count() == 0
    assert page.locator("a[href='/import']").count() == 0
    assert page.locator("#total-people").is_visible()
    browser.screenshot(page, "dashboard-reader-phone.png")

    response = page.goto(base + "/import")
    assert response.status == 403
    assert "Not for this token" in page.content()
    # Posting the admin form anyway, with this session's own CSRF token, is refused.
    page.goto(base + "/")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    posted = page.request.post(base + "/request-summary", form={"csrf_token": token})
    assert posted.status == 403
    uploaded = page.request.post(
        base + "/import",
        multipart={
            "csrf_token": token,
            "file": {"name": "a.csv", "mimeType": "text/csv", "buffer": b"group_id,total\n"},
        },
    )
    assert uploaded.status == 403


def test_an_admin_imports_a_file_in_the_browser(situation, auth, tmp_path, module_worker):
    base = situation["base"]
    page = situation["chromium"].new_page(viewport={"width": 1200, "height": 900})
    browser.sign_in(page, base, auth.token("admin"))
    page.click("a[href='/import']")
    csv_file = tmp_path / "day.csv"
    csv_file.write_text(
        "site_id,group_label,observed_at,total,needs\n"
        f"{CENTRE},Stadium families,2023-09-26T14:30:00+04:00,320,water:4;shelter:3\n"
        f"{CENTRE},Stadium families,2023-09-26T20:30:00+04:00,-1,\n"
    )
    page.set_input_files("#file", str(csv_file))
    page.click("form[enctype] button[type=submit]")
    # A worker imports it; the job's page reloads itself until it is done.
    assert re.search(r"/import/[0-9a-f-]{36}$", page.url)
    page.locator("#import-status", has_text="Done").wait_for(timeout=30_000)
    assert page.locator("#stored").inner_text() == "1"
    assert page.locator("#failed").inner_text() == "1"
    assert re.search(r"Must be 0 or more", page.locator("#import-result").inner_text())
    browser.screenshot(page, "dashboard-import.png")


def assert_api_docs_render_under_their_csp(page, base: str) -> None:
    """Swagger UI (served from the package) draws every operation with a CSP that allows
    no inline script and no framing, and the browser reports no CSP violation."""
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with page.expect_navigation() as navigation:
        page.click("a[href='/api/v1/docs']")
    headers = navigation.value.headers
    policy = headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy, policy
    assert "frame-ancestors 'none'" in policy
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("x-content-type-options") == "nosniff"

    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() > 20  # every operation is drawn
    assert page.locator(".info .title").inner_text().startswith("needs-tracker")
    violations = [line for line in console if "Content Security Policy" in line]
    assert violations == [] and errors == [], (violations, errors)
    browser.screenshot(page, "api-docs.png")

    # API answers are never sniffed into something else, nor framed.
    api = page.request.get(base + "/api/v1/summaries")
    assert api.status == 401
    assert api.headers.get("x-content-type-options") == "nosniff"
    assert "frame-ancestors 'none'" in api.headers.get("content-security-policy", "")
