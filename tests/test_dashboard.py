"""The dashboard at `/`: sign-in, sessions, CSRF, what each role sees and may do.

These drive the pages with Flask's test client; tests/test_browser.py drives them in
headless Chromium against a real server.
"""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from service.dashboard import charts
from service.models import Report, Summary
from tests.helpers import (
    AIRPORT,
    CENTRE,
    count_rows,
    create_group,
    hours_ago,
    post_report,
    summary_now,
    wait_for,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path: str = "/sign-in") -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def signed_in(app, secret: str):
    client = app.test_client()
    response = client.post("/sign-in", data={"token": secret, "csrf_token": csrf_token(client)})
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def session_payload(cookie_value: str) -> dict:
    """What the signed session cookie carries (it is signed, not encrypted)."""
    data = cookie_value.split(".")[0]
    compressed = data.startswith(".")
    raw = base64.urlsafe_b64decode(data.lstrip(".") + "=" * (-len(data) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


def a_situation(app, client, auth):
    admin = auth.admin
    hangar = create_group(client, admin, AIRPORT, label="Hangar 1 families")
    school = create_group(client, admin, CENTRE, label="School 5 families")
    quiet = create_group(client, admin, CENTRE, label="Quiet courtyard families")
    post_report(client, admin, hangar["id"], 715, 2)
    post_report(client, admin, school["id"], 300, 1)
    post_report(client, admin, quiet["id"], 40, 9)  # stale: flagged with its group
    return summary_now(app, client, admin, build_here=True)


def test_pages_ask_for_sign_in_first(client):
    response = client.get("/?at=2023-09-25T12:00:00Z")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/sign-in?next=")
    assert client.get("/import").status_code == 303
    # With a valid CSRF token, so the sign-in guard (not CSRF) is what answers.
    posted = client.post("/request-summary", data={"csrf_token": csrf_token(client)})
    assert posted.status_code == 303
    assert posted.headers["Location"].startswith("/sign-in")


def test_sign_in_keeps_only_a_session_id_in_an_httponly_samesite_cookie(app, auth):
    secret = auth.token("reader")
    client = app.test_client()
    response = client.post(
        "/sign-in", data={"token": secret, "csrf_token": csrf_token(client), "next": "/?at=x"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/?at=x"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # SESSION_COOKIE_SECURE is off for localhost by default
    payload = session_payload(cookie.split(";")[0].split("=", 1)[1])
    assert set(payload) <= {"session_id", "csrf_token", "_flashes"}
    assert uuid.UUID(payload["session_id"])  # a server-side session's id, not the token
    assert secret not in cookie and secret[3:20] not in cookie
    assert client.get("/").status_code == 200


def test_the_secure_flag_is_set_when_configured(make_app, monkeypatch):
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "true")
    app = make_app()
    from tests.conftest import Auth

    secret = Auth(app).token("reader")
    client = app.test_client()
    response = client.post("/sign-in", data={"token": secret, "csrf_token": csrf_token(client)})
    assert "Secure" in response.headers["Set-Cookie"]


def test_an_unknown_token_or_a_form_without_csrf_token_is_refused(app, auth):
    client = app.test_client()
    wrong = client.post("/sign-in", data={"token": "nt_guess", "csrf_token": csrf_token(client)})
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.get_data(as_text=True)
    forged = app.test_client().post("/sign-in", data={"token": auth.token("admin")})
    assert forged.status_code == 400
    assert "form expired" in forged.get_data(as_text=True)


def test_only_paths_on_this_site_are_followed_after_sign_in(app, auth):
    client = app.test_client()
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = client.post(
            "/sign-in",
            data={"token": auth.token("reader"), "csrf_token": csrf_token(client), "next": target},
        )
        assert response.headers["Location"] == "/"


def test_a_revoked_token_signs_the_browser_out_at_the_next_request(app, auth):
    client = signed_in(app, auth.token("admin", name="to revoke"))
    assert client.get("/").status_code == 200
    listing = app.test_cli_runner().invoke(args=["token", "list"]).output
    token_id = next(line for line in listing.splitlines() if "to revoke" in line).split("\t")[0]
    app.test_cli_runner().invoke(args=["token", "revoke", token_id])
    response = client.get("/")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/sign-in")


def test_sign_out_needs_the_form_and_forgets_the_session(app, auth):
    client = signed_in(app, auth.token("reader"))
    assert client.post("/sign-out").status_code == 400  # no CSRF token: not a form of ours
    assert client.get("/").status_code == 200
    response = client.post("/sign-out", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 303
    assert client.get("/").status_code == 303


def test_the_overview_shows_the_latest_summary_as_the_api_does(app, client, auth):
    a_situation(app, client, auth)
    latest = client.get("/api/v1/summaries/latest", headers=auth.admin).get_json()
    reader = signed_in(app, auth.token("reader"))
    page = reader.get("/")
    html = page.get_data(as_text=True)

    assert page.status_code == 200
    assert f'id="total-people" data-value="{latest["totals"]["people"]}"' in html
    assert f'id="total-groups" data-value="{latest["totals"]["groups"]}"' in html
    for entry in latest["sites"]:
        row = re.search(rf'data-site="{entry["site_id"]}">.*?data-value="(\d+)"', html, re.S)
        assert row and int(row.group(1)) == entry["people"]
    # Bars per site, and the history line, as SVG in the page.
    assert html.count('<li class="bar">') == len(latest["sites"])
    assert re.search(r'<polyline points="[\d.]+,[\d.]+', html)
    assert "water_litres_per_day" not in html and "Water (L/day)" in html
    assert "stale group" in html and FLAG_MEANING_STALE in html
    # It reloads itself only when asked to (a screen in a meeting), and says how to stop.
    assert 'http-equiv="refresh"' not in html and 'href="/?reload=on"' in html
    reloading = reader.get("/?reload=on").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="60">' in reloading
    assert 'id="stop-reloading"' in reloading
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


FLAG_MEANING_STALE = "has not been counted for a while"


def test_a_reader_sees_aggregates_but_no_group_labels_and_no_admin_actions(app, client, auth):
    a_situation(app, client, auth)
    reader = signed_in(app, auth.token("reader"))
    html = reader.get("/").get_data(as_text=True)
    assert "Quiet courtyard families" not in html
    assert "request-summary" not in html and "/import" not in html
    token = csrf_token(reader, "/")
    assert reader.post("/request-summary", data={"csrf_token": token}).status_code == 403
    assert reader.get("/import").status_code == 403
    upload = reader.post(
        "/import",
        data={"csrf_token": token, "file": (io.BytesIO(b"group_id,observed_at,total\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 403
    assert "Not for this token" in upload.get_data(as_text=True)

    coordinator = signed_in(app, auth.token("coordinator", CENTRE))
    page = coordinator.get("/").get_data(as_text=True)
    assert "Quiet courtyard families" in page
    assert "request-summary" in page and "/import" not in page


def test_a_coordinator_can_ask_for_a_summary_now(app, client, auth):
    coordinator = signed_in(app, auth.token("coordinator", CENTRE))
    assert "No summary yet" in coordinator.get("/").get_data(as_text=True)
    before = count_rows(app, Summary)
    response = coordinator.post(
        "/request-summary", data={"csrf_token": csrf_token(coordinator, "/")}
    )
    assert response.status_code == 303
    assert count_rows(app, Summary) == before + 1
    assert "was requested" in coordinator.get("/").get_data(as_text=True)
    assert coordinator.post("/request-summary").status_code == 400


def test_an_admin_uploads_a_csv_on_the_dashboard(app, client, auth, module_worker):
    group = create_group(client, auth.admin, CENTRE)
    admin = signed_in(app, auth.token("admin"))
    text = (
        "group_id,observed_at,total\n"
        f"{group['id']},{hours_ago(1)},120\n"
        f"{group['id']},{hours_ago(1)},-3\n"
    )

    def send(token: str | None):
        data = {"file": (io.BytesIO(text.encode()), "day one.csv")}
        if token:
            data["csrf_token"] = token
        return admin.post("/import", data=data, content_type="multipart/form-data")

    assert send(None).status_code == 400
    sent = send(csrf_token(admin, "/import"))
    assert sent.status_code == 303
    job_page = sent.headers["Location"]
    assert re.fullmatch(r"/import/[0-9a-f-]{36}", job_page)

    def done() -> str | None:
        html = admin.get(job_page).get_data(as_text=True)
        return html if "Done: every row" in html else None

    running = admin.get(job_page).get_data(as_text=True)
    assert "Done: every row" in running or 'http-equiv="refresh"' in running
    html = wait_for(done)
    assert 'http-equiv="refresh"' not in html  # it stops reloading once done
    assert '<strong id="failed">1</strong>' in html
    assert "Must be 0 or more." in html
    assert count_rows(app, Report) == 1


def test_a_too_large_upload_on_the_dashboard_is_413(make_app):
    app = make_app(MAX_IMPORT_BYTES=1000)
    from tests.conftest import Auth

    admin = signed_in(app, Auth(app).token("admin"))
    response = admin.post(
        "/import",
        data={
            "csrf_token": csrf_token(admin, "/import"),
            "file": (io.BytesIO(b"x" * 5000), "big.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert "larger than 1,000 bytes" in response.get_data(as_text=True)


def test_the_api_takes_no_cookie_and_needs_no_csrf_token(app, auth):
    browser = signed_in(app, auth.token("admin"))
    assert browser.get("/api/v1/sites").status_code == 401  # the session is not a token
    created = browser.post(
        "/api/v1/groups",
        json={"site_id": CENTRE, "label": "By token"},
        headers=auth.admin,
    )
    assert created.status_code == 201


def test_a_past_summary_is_shown_by_its_moment(app, client, auth):
    group = create_group(client, auth.admin, AIRPORT)
    post_report(client, auth.admin, group["id"], 5000, 30)
    past = summary_now(app, client, auth.admin, as_of=hours_ago(24), build_here=True)
    post_report(client, auth.admin, group["id"], 715, 1)
    summary_now(app, client, auth.admin, build_here=True)
    reader = signed_in(app, auth.token("reader"))

    moment = datetime.fromisoformat(past["as_of"]) + timedelta(minutes=5)
    html = reader.get(f"/?at={moment.strftime('%Y-%m-%dT%H:%M:%SZ')}").get_data(as_text=True)
    assert 'id="total-people" data-value="5000"' in html
    assert "http-equiv" not in html  # a past moment does not reload
    assert 'rel="next"' in html
    assert 'data-value="715"' in reader.get("/").get_data(as_text=True)
    assert reader.get("/?at=last%20tuesday").status_code == 400


def test_the_time_axis_folds_long_gaps_into_a_break():
    start = datetime(2023, 9, 20, tzinfo=UTC)
    replay = [start + timedelta(hours=h) for h in range(0, 24 * 13, 6)]
    now = [datetime(2026, 11, 27, h, tzinfo=UTC) for h in range(3)]
    axis = charts.TimeAxis(replay + now, 0, 1000)
    assert len(axis.stretches) == 2 and len(axis.breaks()) == 1
    xs = [axis.x(m) for m in replay + now]
    assert xs == sorted(xs)
    assert axis.x(replay[-1]) > 700  # the replay keeps most of the width
    assert 0 <= min(xs) and max(xs) <= 1000
    labels = [label for _, label in axis.ticks()]
    assert labels[0] == "20 Sep 2023" and "27 Nov 2026" in labels


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [(0, [0, 1]), (7, [0, 2, 4, 6, 8]), (87902, [0, 20000, 40000, 60000, 80000, 100000])],
)
def test_chart_ticks_are_round_numbers(maximum, ticks):
    assert charts.nice_ticks(maximum) == ticks


EXTREME_MOMENTS = [
    "0001-01-01T00:00:00+05:00",  # no UTC equivalent
    "9999-12-31T23:59:59-05:00",  # nor this
    "0001-01-01T00:00:00Z",  # the earliest moment there is
    "9999-12-31T23:59:59Z",  # the latest
]


def test_an_out_of_range_moment_is_a_400_or_a_page_never_a_500(app, client, auth):
    a_situation(app, client, auth)
    page = signed_in(app, auth.token("reader"))
    reader = auth.headers("reader")
    for moment in EXTREME_MOMENTS:
        shown = page.get("/", query_string={"at": moment})
        if moment.endswith("Z"):
            assert shown.status_code == 200, (moment, shown.get_data(as_text=True))
        else:
            assert shown.status_code == 400, (moment, shown.get_data(as_text=True))
            assert "`at` is out of range" in shown.get_data(as_text=True)
        for name in ("since", "until"):
            listed = client.get("/api/v1/summaries", query_string={name: moment}, headers=reader)
            assert listed.status_code in (200, 422), listed.get_data(as_text=True)
        asked = client.post("/api/v1/summaries", json={"as_of": moment}, headers=auth.admin)
        assert asked.status_code in (200, 201, 202, 422), asked.get_data(as_text=True)


def test_signing_out_ends_the_session_on_the_server(app, auth):
    """A copy of the cookie (a shared machine, a proxy's log) is worth nothing once its
    browser signed out, though the token itself stays valid."""
    secret = auth.token("reader")
    client = signed_in(app, secret)
    cookie = client.get_cookie("session")
    assert cookie is not None
    copied = app.test_client()
    copied.set_cookie("session", cookie.value)
    assert copied.get("/").status_code == 200

    client.post("/sign-out", data={"csrf_token": csrf_token(client, "/")})

    replayed = app.test_client()
    replayed.set_cookie("session", cookie.value)
    response = replayed.get("/")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/sign-in")
    assert signed_in(app, secret).get("/").status_code == 200  # the token still signs in
