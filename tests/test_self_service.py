"""Self-service subscriptions and webhooks on the dashboard (issue #14): a reader signs
in and manages its own email subscriptions (with a preview of a schedule's next five
moments in its time zone) and webhooks (the secret shown once), and reads each one's
delivery log; another reader's are hidden (404, not listed), in the API and on the
pages; admins see and manage all, with their owners. Driven with Flask's test client,
and once in headless Chromium against gunicorn.
"""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from service.domain.tokens import hash_token
from service.extensions import db
from service.models import (
    ApiToken,
    Delivery,
    Subscription,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests import browser
from tests.helpers import CENTRE, count_rows, summary_now
from tests.test_dashboard import signed_in
from workers.tasks import attempt_webhook

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_ID = re.compile(r'name="form_id" value="([^"]+)"')
WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
HOOK_URL = "http://127.0.0.1:9/hook"  # discard port, loopback (allowed below): no answer
MINE = {"email": "desk@ngo.example.org", "cron": "0 8 * * *", "timezone": "Asia/Yerevan"}


@pytest.fixture
def app(make_app):
    return make_app(WEBHOOK_ALLOWED_HOSTS=("127.0.0.1",), WEBHOOK_TIMEOUT_SECONDS=1)


def token_id(app, secret: str) -> int:
    with app.app_context():
        return db.session.execute(
            select(ApiToken.id).where(ApiToken.secret_hash == hash_token(secret))
        ).scalar_one()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def post_form(client, path: str, data: dict, page: str | None = None):
    """A form as the page at `page` (default: `path`) sends it, with its CSRF token and,
    when it has one, its form id."""
    html = client.get(page or path).get_data(as_text=True)
    fields = {"csrf_token": CSRF.search(html).group(1), **data}
    if "form_id" not in data and (form_id := FORM_ID.search(html)):
        fields["form_id"] = form_id.group(1)
    return client.post(path, data=fields)


def table(response, table_id: str) -> str:
    html = response.get_data(as_text=True)
    return re.search(rf'<table id="{table_id}">.*?</table>', html, re.S).group(0)


def stored(app, model, ident):
    with app.app_context():
        row = db.session.get(model, ident)
        if row is not None:
            db.session.expunge(row)
        return row


# --- subscriptions ---------------------------------------------------------------------------


def test_a_reader_previews_creates_reads_and_stops_its_own_subscription(app, auth):
    secret = auth.token("reader", name="NGO desk")
    reader = signed_in(app, secret)
    page = reader.get("/subscriptions").get_data(as_text=True)
    assert "No subscriptions yet." in page and 'href="/subscriptions"' in page  # nav link

    # Preview: the form again with the next five moments at 08:00 Yerevan; nothing written.
    preview = post_form(reader, "/subscriptions", {**MINE, "preview": "1", "site": CENTRE})
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    listed = re.search(r'<div id="schedule-preview".*?</div>', html, re.S).group(0)
    moments = re.findall(r"<li>([^<]*)</li>", listed)
    assert len(moments) == 5 and all(m.endswith("08:00") for m in moments), moments
    assert "Asia/Yerevan" in listed
    assert 'value="desk@ngo.example.org"' in html  # the form keeps what was typed
    assert re.search(rf'value="{CENTRE}" checked', html)
    assert count_rows(app, Subscription) == 0

    created = post_form(
        reader, "/subscriptions", {**MINE, "site": CENTRE, "format": "hxl", "language": "hy"}
    )
    assert created.status_code == 303
    owner_id = token_id(app, secret)
    with app.app_context():
        subscription = db.session.execute(select(Subscription)).scalar_one()
        assert subscription.owner_token_id == owner_id
        assert (subscription.site_ids, subscription.formats) == ([CENTRE], ["hxl"])
        assert (subscription.language, subscription.timezone) == ("hy", "Asia/Yerevan")
        subscription_id = subscription.id
    listing = reader.get("/subscriptions").get_data(as_text=True)
    assert "desk@ngo.example.org" in listing and "Owner (token)" not in listing
    # The same through the API, with the reader's own token.
    api = app.test_client().get("/api/v1/subscriptions", headers=bearer(secret)).get_json()
    assert [s["id"] for s in api] == [str(subscription_id)]

    detail = reader.get(f"/subscriptions/{subscription_id}").get_data(as_text=True)
    assert len(re.findall(r"<li>[^<]*08:00</li>", detail)) == 5
    assert "Nothing delivered yet." in detail

    stopped = post_form(reader, f"/subscriptions/{subscription_id}/delete", {}, "/subscriptions")
    assert stopped.status_code == 303
    assert stored(app, Subscription, subscription_id).deleted_at is not None
    listing = table(reader.get("/subscriptions"), "subscriptions")
    assert "No subscriptions yet." in listing and "desk@ngo.example.org" not in listing
    # Its log stays readable to its owner.
    assert reader.get(f"/subscriptions/{subscription_id}").status_code == 200


def test_send_now_puts_a_delivery_in_the_owners_log(app, client, auth):
    secret = auth.token("reader")
    reader = signed_in(app, secret)
    made = client.post("/api/v1/subscriptions", json=MINE, headers=bearer(secret)).get_json()
    path = f"/subscriptions/{made['id']}"
    # No summary yet: said so, nothing queued.
    response = post_form(reader, f"{path}/send", {}, path)
    assert response.status_code == 303
    assert "No summary is ready yet" in reader.get(path).get_data(as_text=True)
    assert count_rows(app, Delivery) == 0

    summary_now(app, client, auth.admin, build_here=True)
    assert post_form(reader, f"{path}/send", {}, path).status_code == 303
    log = reader.get(path).get_data(as_text=True)
    rows = re.search(r'<table id="deliveries">.*?</table>', log, re.S).group(0)
    assert "sent by hand" in rows
    assert count_rows(app, Delivery) == 1


def test_another_readers_subscription_is_hidden_and_untouched(app, client, auth):
    owner, other = auth.token("reader", name="NGO one"), auth.token("reader", name="NGO two")
    made = client.post("/api/v1/subscriptions", json=MINE, headers=bearer(owner)).get_json()
    summary_now(app, client, auth.admin, build_here=True)
    intruder = signed_in(app, other)
    assert "desk@ngo.example.org" not in intruder.get("/subscriptions").get_data(as_text=True)
    path = f"/subscriptions/{made['id']}"
    assert intruder.get(path).status_code == 404
    for action in ("send", "delete"):
        assert post_form(intruder, f"{path}/{action}", {}, "/subscriptions").status_code == 404
    assert stored(app, Subscription, uuid.UUID(made["id"])).deleted_at is None
    assert count_rows(app, Delivery) == 0
    api = app.test_client()
    assert api.get("/api/v1/subscriptions", headers=bearer(other)).get_json() == []
    assert api.get(f"/api/v1{path}", headers=bearer(other)).status_code == 404

    # An admin sees it, with its owner, and may stop it.
    admin = signed_in(app, auth.token("admin"))
    listing = admin.get("/subscriptions").get_data(as_text=True)
    assert "desk@ngo.example.org" in listing
    assert f"{token_id(app, owner)} (NGO one)" in listing
    assert post_form(admin, f"{path}/delete", {}, "/subscriptions").status_code == 303
    assert stored(app, Subscription, uuid.UUID(made["id"])).deleted_at is not None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"email": "a@ngo.example.org, b@ngo.example.org"}, "email"),
        ({"cron": "every day"}, "cron"),
        ({"cron": "0 8 31 2 *"}, "cron"),  # never fires
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"language": "fr"}, "language"),
        ({"format": "pdf"}, "formats"),
    ],
)
def test_a_refused_subscription_form_says_why_and_writes_nothing(app, auth, change, field):
    reader = signed_in(app, auth.token("reader"))
    response = post_form(reader, "/subscriptions", {**MINE, **change})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing was saved" in page and f"<code>{field}" in page
    assert count_rows(app, Subscription) == 0


def test_an_unknown_site_and_a_bad_preview_are_refused_with_a_message(app, auth):
    reader = signed_in(app, auth.token("reader"))
    response = post_form(reader, "/subscriptions", {**MINE, "site": "atlantis"})
    assert response.status_code == 422 and "There is no site" in response.get_data(as_text=True)
    preview = post_form(reader, "/subscriptions", {**MINE, "cron": "61 * * * *", "preview": "1"})
    assert preview.status_code == 422
    html = preview.get_data(as_text=True)
    assert "This schedule cannot be used" in html and 'id="schedule-preview"' not in html
    empty = post_form(reader, "/subscriptions", {"timezone": "UTC", "preview": "1"})
    assert empty.status_code == 422 and "Give a schedule" in empty.get_data(as_text=True)
    assert count_rows(app, Subscription) == 0


def test_the_self_service_forms_need_their_csrf_token(app, auth):
    reader = signed_in(app, auth.token("reader"))
    assert reader.post("/subscriptions", data=MINE).status_code == 400
    assert reader.post("/webhooks", data={"url": HOOK_URL, "format": "json"}).status_code == 400
    assert count_rows(app, Subscription) == 0 and count_rows(app, WebhookEndpoint) == 0


def test_coordinators_have_no_subscriptions_or_webhooks_pages(app, auth):
    coordinator = signed_in(app, auth.token("coordinator", CENTRE))
    assert coordinator.get("/subscriptions").status_code == 403
    assert coordinator.get("/webhooks").status_code == 403
    assert 'href="/subscriptions"' not in coordinator.get("/").get_data(as_text=True)


# --- webhooks ------------------------------------------------------------------------------


def test_a_webhook_secret_is_shown_once_and_a_resent_form_makes_nothing_twice(app, auth):
    secret = auth.token("reader")
    reader = signed_in(app, secret)
    page = reader.get("/webhooks").get_data(as_text=True)
    form = {
        "csrf_token": CSRF.search(page).group(1),
        "form_id": FORM_ID.search(page).group(1),
        "url": HOOK_URL,
        "event": ["summary.ready", "flag.raised"],
        "format": "json",
    }
    response = reader.post("/webhooks", data=form)
    assert response.status_code == 200  # the answer itself: no redirect, no secret in a URL
    shown = WEBHOOK_SECRET.search(response.get_data(as_text=True)).group(0)
    assert response.headers["Cache-Control"] == "no-store"
    owner_id = token_id(app, secret)
    with app.app_context():
        endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
        assert endpoint.secret == shown and endpoint.owner_token_id == owner_id
        assert endpoint.events == ["summary.ready", "flag.raised"]
        endpoint_id = endpoint.id
    for path in ("/webhooks", f"/webhooks/{endpoint_id}"):
        assert shown not in reader.get(path).get_data(as_text=True)
    # A reload sends the same form again: nothing new, and it says what it made.
    again = reader.post("/webhooks", data=form)
    assert again.status_code == 409
    assert str(endpoint_id) in again.get_data(as_text=True)
    assert WEBHOOK_SECRET.search(again.get_data(as_text=True)) is None
    assert count_rows(app, WebhookEndpoint) == 1

    # A new secret, shown once; the form sent again turns nothing over a second time.
    detail = reader.get(f"/webhooks/{endpoint_id}").get_data(as_text=True)
    rotate = {"csrf_token": CSRF.search(detail).group(1), "form_id": FORM_ID.search(detail)[1]}
    rotated = reader.post(f"/webhooks/{endpoint_id}/rotate-secret", data=rotate)
    assert rotated.status_code == 200
    new = WEBHOOK_SECRET.search(rotated.get_data(as_text=True)).group(0)
    assert new != shown and stored(app, WebhookEndpoint, endpoint_id).secret == new
    assert stored(app, WebhookEndpoint, endpoint_id).previous_secret == shown
    resent = reader.post(f"/webhooks/{endpoint_id}/rotate-secret", data=rotate)
    assert resent.status_code == 303
    assert stored(app, WebhookEndpoint, endpoint_id).secret == new


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"url": "ftp://hooks.example.org/x"}, "<code>url</code>"),
        ({"url": ""}, "<code>url</code>"),
        ({"format": []}, "<code>formats</code>"),
        ({"event": "group.moved"}, "<code>events"),
        ({"site": "atlantis"}, "There is no site"),
    ],
)
def test_a_refused_webhook_form_says_why_and_registers_nothing(app, auth, change, expected):
    reader = signed_in(app, auth.token("reader"))
    form = {"url": HOOK_URL, "format": "json", "event": "summary.ready", **change}
    response = post_form(reader, "/webhooks", form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing was saved" in page and expected in page
    assert WEBHOOK_SECRET.search(page) is None
    assert count_rows(app, WebhookEndpoint) == 0


def test_a_webhooks_delivery_log_is_its_owners_and_another_reader_sees_nothing(app, client, auth):
    owner, other = auth.token("reader", name="NGO one"), auth.token("reader", name="NGO two")
    made = client.post("/api/v1/webhooks", json={"url": HOOK_URL}, headers=bearer(owner))
    endpoint_id = made.get_json()["id"]
    summary_now(app, client, auth.admin, build_here=True)
    with app.app_context():
        delivery = db.session.execute(select(WebhookDelivery)).scalar_one()
        attempt_webhook(delivery.id)  # port 9 on loopback: refused, logged as an attempt
    mine = signed_in(app, owner)
    log = mine.get(f"/webhooks/{endpoint_id}").get_data(as_text=True)
    rows = re.search(r'<table id="deliveries">.*?</table>', log, re.S).group(0)
    assert "summary.ready" in rows and "not tried yet" not in rows
    assert re.search(r'<td class="n">1</td>', rows)

    intruder = signed_in(app, other)
    assert HOOK_URL not in intruder.get("/webhooks").get_data(as_text=True)
    path = f"/webhooks/{endpoint_id}"
    assert intruder.get(path).status_code == 404
    for action in ("rotate-secret", "delete"):
        assert post_form(intruder, f"{path}/{action}", {}, "/webhooks").status_code == 404
    endpoint = stored(app, WebhookEndpoint, uuid.UUID(endpoint_id))
    assert endpoint.deleted_at is None and endpoint.previous_secret is None

    admin = signed_in(app, auth.token("admin"))
    assert f"{token_id(app, owner)} (NGO one)" in admin.get("/webhooks").get_data(as_text=True)
    assert post_form(mine, f"{path}/delete", {}, "/webhooks").status_code == 303
    assert stored(app, WebhookEndpoint, uuid.UUID(endpoint_id)).deleted_at is not None
    assert HOOK_URL not in table(mine.get("/webhooks"), "webhooks")


# --- in Chromium --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(database_url, broker_url, tmp_path_factory):
    """The app under gunicorn and one Chromium, for this module."""
    browser.require_chromium()
    instance = tmp_path_factory.mktemp("self-service-web")
    with (
        browser.live_server(database_url, instance, broker_url) as base,
        browser.chromium() as chromium,
    ):
        yield base, chromium


def test_subscriptions_managed_by_a_reader_in_chromium_another_readers_hidden(
    served, app, client, auth
):
    base, chromium = served
    summary_now(app, client, auth.admin, build_here=True)
    theirs = auth.token("reader", name="Another NGO")
    hidden = {**MINE, "email": "hidden@other-ngo.example.org"}
    other = client.post("/api/v1/subscriptions", json=hidden, headers=bearer(theirs))
    assert other.status_code == 201

    page = chromium.new_page(viewport={"width": 1000, "height": 1100})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    browser.sign_in(page, base, auth.token("reader", name="NGO desk"))
    page.click("nav >> text=Subscriptions")
    assert "hidden@other-ngo.example.org" not in page.content()
    page.fill("#subscription-email", "desk@ngo.example.org")
    page.fill("#subscription-cron", "0 8,20 * * *")
    page.fill("#subscription-timezone", "Asia/Yerevan")
    page.check(f'input[name=site][value="{CENTRE}"]')
    page.click("#preview-schedule")
    moments = page.locator("#schedule-preview li")
    assert moments.count() == 5
    times = [text.rsplit(" ", 1)[-1] for text in moments.all_inner_texts()]
    assert set(times) <= {"08:00", "20:00"} and len(set(times)) == 2, times
    assert page.locator(f'input[name=site][value="{CENTRE}"]').is_checked()
    page.click("#create-subscription")
    page.wait_for_selector("p.flash")
    assert page.locator("#subscriptions").inner_text().count("desk@ngo.example.org") == 1
    assert "hidden@other-ngo.example.org" not in page.content()

    page.click("#subscriptions >> text=desk@ngo.example.org")
    assert page.locator("#next-moments li").count() == 5
    page.click("#send-now")
    page.wait_for_selector("p.flash")
    row = page.locator("#deliveries tbody tr").first
    assert "sent by hand" in row.inner_text()
    browser.screenshot(page, "dashboard-self-service-subscription.png")

    assert [e for e in errors if "Content Security Policy" in e] == []  # (a favicon 404 is not)
    response = page.goto(f"{base}/subscriptions/{other.get_json()['id']}")
    assert response.status == 404
