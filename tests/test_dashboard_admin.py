"""The dashboard's admin pages: tokens (created with a QR sign-in link, shown once,
listed, revoked), the groups of a site (registered, status changed, moved), sites
(added, capacity and coordinates edited). Driven with Flask's test client, and once in
headless Chromium against gunicorn.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest
from sqlalchemy import select

from service.domain.tokens import hash_token
from service.extensions import db
from service.models import ApiToken, AuditEvent, Group, GroupMove, GroupStatusChange, Site
from tests import browser
from tests.helpers import AIRPORT, CENTRE, count_rows, create_group, post_report
from tests.test_dashboard import csrf_token, signed_in

SECRET = re.compile(r"nt_[A-Za-z0-9_-]{43}")


def post_form(client, path: str, data: dict | None = None, with_csrf: bool = True):
    data = dict(data or {})
    if with_csrf:
        data["csrf_token"] = csrf_token(client, "/sign-in")
    return client.post(path, data=data)


def token_row(app, secret: str) -> ApiToken | None:
    with app.app_context():
        token = db.session.execute(
            select(ApiToken).where(ApiToken.secret_hash == hash_token(secret))
        ).scalar_one_or_none()
        if token is not None:
            db.session.expunge(token)
        return token


def audit_actions(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        events = list(
            db.session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars()
        )
        for event in events:
            db.session.expunge(event)
        return events


# --- who may open what ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/tokens", "/sites"])
def test_token_and_site_pages_are_for_admins_only(app, auth, path):
    assert signed_in(app, auth.token("admin")).get(path).status_code == 200
    for role, sites in (("coordinator", (CENTRE,)), ("reader", ())):
        client = signed_in(app, auth.token(role, *sites))
        assert client.get(path).status_code == 403
        # Nor can they write there, with a good form.
        before = (count_rows(app, ApiToken), count_rows(app, Site))
        assert (
            post_form(client, path, {"role": "admin", "id": "new-site", "name": "x"}).status_code
            == 403
        )
        assert (count_rows(app, ApiToken), count_rows(app, Site)) == before


def test_groups_pages_follow_the_sites_on_the_token(app, client, auth):
    admin = auth.admin
    airport_group = create_group(client, admin, AIRPORT, label="Hangar 1 families")
    coordinator = signed_in(app, auth.token("coordinator", CENTRE))
    index = coordinator.get("/groups").get_data(as_text=True)
    assert f"/sites/{CENTRE}/groups" in index and f"/sites/{AIRPORT}/groups" not in index
    assert coordinator.get(f"/sites/{CENTRE}/groups").status_code == 200
    other = coordinator.get(f"/sites/{AIRPORT}/groups")
    assert other.status_code == 403 and "Hangar 1" not in other.get_data(as_text=True)
    # Another site's group: not found, and nothing changed.
    changed = post_form(coordinator, f"/groups/{airport_group['id']}", {"status": "departed"})
    assert changed.status_code == 404
    assert post_form(coordinator, f"/sites/{AIRPORT}/groups", {"label": "Mine"}).status_code == 403
    reader = signed_in(app, auth.token("reader"))
    assert reader.get("/groups").status_code == 403
    assert reader.get(f"/sites/{CENTRE}/groups").status_code == 403
    with app.app_context():
        group = db.session.get(Group, uuid.UUID(airport_group["id"]))
        assert group.status.value == "waiting"
    assert count_rows(app, Group) == 1


def test_every_admin_form_needs_its_csrf_token(app, client, auth):
    group = create_group(client, auth.admin)
    admin = signed_in(app, auth.token("admin"))
    forms = [
        ("/tokens", {"role": "reader"}),
        ("/tokens/1/revoke", {}),
        ("/sites", {"id": "goris-school-3", "name": "Goris school 3", "kind": "other"}),
        (f"/sites/{CENTRE}", {"capacity": "10"}),
        (f"/sites/{CENTRE}/groups", {"label": "Forged"}),
        (f"/groups/{group['id']}", {"status": "departed"}),
    ]
    before = {model: count_rows(app, model) for model in (ApiToken, Site, Group, AuditEvent)}
    for path, data in forms:
        response = post_form(admin, path, data, with_csrf=False)
        assert response.status_code == 400, path
        assert "The form expired" in response.get_data(as_text=True)
    assert {model: count_rows(app, model) for model in before} == before


# --- tokens -----------------------------------------------------------------------------


def test_a_token_is_shown_once_with_its_qr_sign_in_link_and_never_in_a_url(app, auth, caplog):
    caplog.set_level(logging.DEBUG)
    admin_secret = auth.token("admin", name="lead")
    admin = signed_in(app, admin_secret)
    response = post_form(
        admin, "/tokens", {"role": "coordinator", "name": "Airport phone 1", "site": [AIRPORT]}
    )
    assert response.status_code == 200 and "Location" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    (secret,) = set(SECRET.findall(page))
    link = f"{app.config['PUBLIC_BASE_URL']}/field/#token={secret}"
    assert f'value="{link}"' in page
    assert re.search(r'<svg [^>]*class="signin-qr"', page) and "<path" in page
    assert "data:" not in page  # the CSP allows no data: images: the QR is inline SVG
    assert f'href="{link}"' not in page  # a link, clicked, would sign this browser in

    token = token_row(app, secret)
    assert token is not None and token.role.value == "coordinator"
    assert token.name == "Airport phone 1"
    # It works, for its site only.
    headers = {"Authorization": f"Bearer {secret}"}
    client = app.test_client()
    body = {"site_id": AIRPORT, "label": "Hangar 3"}
    assert client.post("/api/v1/groups", json=body, headers=headers).status_code == 201
    body = {"site_id": CENTRE, "label": "School 5"}
    assert client.post("/api/v1/groups", json=body, headers=headers).status_code == 403

    # Never again: not in the list, not in any log line.
    listing = admin.get("/tokens").get_data(as_text=True)
    assert "Airport phone 1" in listing and secret[:10] in listing and secret not in listing
    access = [r for r in caplog.records if r.name == "needs_tracker.access"]
    assert "/tokens" in [getattr(r, "path", None) for r in access]  # the requests were logged
    for record in caplog.records:
        logged = json.dumps(record.__dict__, default=str)
        assert secret not in logged and admin_secret not in logged
    (event,) = [e for e in audit_actions(app, "token.create") if e.entity_id == str(token.id)]
    assert event.after == {"name": "Airport phone 1", "role": "coordinator", "sites": [AIRPORT]}
    assert event.token_id == token_row(app, admin_secret).id


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"role": "coordinator", "name": "No site"}, "needs at least one site"),
        ({"role": "reader", "site": [CENTRE]}, "only apply to coordinator tokens"),
        ({"role": "coordinator", "site": ["atlantis"]}, "no site &#39;atlantis&#39;"),
        ({"role": "coordinator", "site": [CENTRE], "name": "ops\u202eteam"}, "Must not contain"),
        ({"role": "superuser"}, "choose a role"),
        ({}, "choose a role"),
    ],
)
def test_a_refused_token_form_says_why_and_makes_no_token(app, auth, form, message):
    admin = signed_in(app, auth.token("admin"))
    before = count_rows(app, ApiToken), count_rows(app, AuditEvent)
    response = post_form(admin, "/tokens", form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing was saved" in page and message in page
    assert not SECRET.search(page)
    assert (count_rows(app, ApiToken), count_rows(app, AuditEvent)) == before


def test_revoking_a_token_stops_it_and_is_audited(app, client, auth):
    secret = auth.token("coordinator", CENTRE, name="lost phone")
    token_id = token_row(app, secret).id
    admin = signed_in(app, auth.token("admin"))
    response = post_form(admin, f"/tokens/{token_id}/revoke")
    assert response.status_code == 303 and response.headers["Location"] == "/tokens"
    assert "is revoked" in admin.get("/tokens").get_data(as_text=True)
    assert token_row(app, secret).revoked_at is not None
    body = {"site_id": CENTRE, "label": "After revoking"}
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.post("/api/v1/groups", json=body, headers=headers).status_code == 401
    assert post_form(admin, f"/tokens/{token_id}/revoke").status_code == 303  # again: a no-op
    assert [e.entity_id for e in audit_actions(app, "token.revoke")] == [str(token_id)]
    assert post_form(admin, "/tokens/999999/revoke").status_code == 404


# --- groups of a site -----------------------------------------------------------------


def test_a_coordinator_registers_a_group_and_sees_its_count(app, client, auth):
    coordinator = signed_in(app, auth.token("coordinator", CENTRE))
    response = post_form(
        coordinator, f"/sites/{CENTRE}/groups", {"label": " Families from Askeran ", "origin": ""}
    )
    assert response.status_code == 303
    with app.app_context():
        group = db.session.execute(select(Group)).scalar_one()
        assert (group.label, group.origin, group.site_id) == ("Families from Askeran", None, CENTRE)
        group_id = str(group.id)
    assert [e.entity_id for e in audit_actions(app, "group.create")] == [group_id]
    post_report(client, auth.admin, group_id, 137, 2)
    page = coordinator.get(f"/sites/{CENTRE}/groups").get_data(as_text=True)
    row = page[page.index("Families from Askeran") :]
    assert ">137<" in row and "not counted yet" not in row.split("</tr>")[0]


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"label": ""}, "label"),
        ({"label": "Hangar\x002"}, "label"),
        ({"label": "l" * 201}, "label"),
        ({"label": "Hangar 2", "status": "teleported"}, "status"),
        ({"label": "Hangar 2", "origin": "o" * 201}, "origin"),
    ],
)
def test_a_refused_group_form_says_why_and_stores_nothing(app, auth, form, field):
    admin = signed_in(app, auth.token("admin"))
    response = post_form(admin, f"/sites/{CENTRE}/groups", form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing was saved" in page and f"<code>{field}</code>" in page
    assert count_rows(app, Group) == 0


def test_group_status_changes_and_moves_are_kept_in_its_history(app, client, auth):
    group = create_group(client, auth.admin, CENTRE, label="Convoy 4")
    both = signed_in(app, auth.token("coordinator", CENTRE, AIRPORT))
    page = both.get(f"/sites/{CENTRE}/groups").get_data(as_text=True)
    assert f'<option value="{AIRPORT}">' in page  # it may move groups there

    assert post_form(both, f"/groups/{group['id']}", {"status": "in_transit"}).status_code == 303
    assert "is now: in transit" in both.get(f"/sites/{CENTRE}/groups").get_data(as_text=True)
    assert post_form(both, f"/groups/{group['id']}", {"site_id": AIRPORT}).status_code == 303
    assert "moved to" in both.get(f"/sites/{CENTRE}/groups").get_data(as_text=True)
    with app.app_context():
        stored = db.session.get(Group, uuid.UUID(group["id"]))
        assert (stored.site_id, stored.status.value) == (AIRPORT, "in_transit")
    assert count_rows(app, GroupMove) == 1 and count_rows(app, GroupStatusChange) == 1
    assert "Convoy 4" in both.get(f"/sites/{AIRPORT}/groups").get_data(as_text=True)


def test_a_group_cannot_be_moved_where_the_caller_may_not_write(app, client, auth):
    group = create_group(client, auth.admin, CENTRE, label="Convoy 5")
    coordinator = signed_in(app, auth.token("coordinator", CENTRE))
    page = coordinator.get(f"/sites/{CENTRE}/groups").get_data(as_text=True)
    assert f'<option value="{AIRPORT}">' not in page  # not offered
    forged = post_form(coordinator, f"/groups/{group['id']}", {"site_id": AIRPORT})
    assert forged.status_code == 403
    bad = post_form(coordinator, f"/groups/{group['id']}", {"status": "teleported"})
    assert bad.status_code == 422 and "Nothing was saved" in bad.get_data(as_text=True)
    empty = post_form(coordinator, f"/groups/{group['id']}", {})
    assert empty.status_code == 422
    with app.app_context():
        stored = db.session.get(Group, uuid.UUID(group["id"]))
        assert (stored.site_id, stored.status.value) == (CENTRE, "waiting")
    assert count_rows(app, GroupMove) == 0 and count_rows(app, GroupStatusChange) == 0


# --- sites ------------------------------------------------------------------------------


def test_an_admin_adds_a_site_and_edits_its_capacity_and_coordinates(app, auth):
    admin = signed_in(app, auth.token("admin"))
    form = {
        "id": "goris-school-3",
        "name": "Goris, school 3",
        "kind": "reception_centre",
        "capacity": "400",
        "latitude": "39.5075",
        "longitude": "46.3389",
    }
    assert post_form(admin, "/sites", form).status_code == 303
    edit = {"capacity": "450", "latitude": "39,51", "longitude": "46.34"}
    assert post_form(admin, "/sites/goris-school-3", edit).status_code == 303
    with app.app_context():
        site = db.session.get(Site, "goris-school-3")
        assert (site.capacity, site.latitude, site.longitude) == (450, 39.51, 46.34)
        assert site.kind.value == "reception_centre"
    assert [e.entity_id for e in audit_actions(app, "site.update")] == ["goris-school-3"]
    # Cleared boxes clear the values.
    cleared = {"capacity": "", "latitude": "", "longitude": ""}
    assert post_form(admin, "/sites/goris-school-3", cleared).status_code == 303
    with app.app_context():
        site = db.session.get(Site, "goris-school-3")
        assert (site.capacity, site.latitude, site.longitude) == (None, None, None)


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"capacity": "-5"}, "capacity"),
        ({"capacity": "many"}, "capacity"),
        ({"capacity": "4.5"}, "capacity"),
        ({"latitude": "95"}, "latitude"),
        ({"longitude": "nan"}, "longitude"),
        ({"longitude": "1e999"}, "longitude"),
    ],
)
def test_a_refused_site_edit_says_why_and_changes_nothing(app, auth, form, field):
    admin = signed_in(app, auth.token("admin"))
    full = {"capacity": "100", "latitude": "39.8", "longitude": "46.7", **form}
    response = post_form(admin, f"/sites/{CENTRE}", full)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Nothing was saved" in page and f"<code>{field}</code>" in page
    with app.app_context():
        site = db.session.get(Site, CENTRE)
        assert (site.capacity, site.latitude) == (None, 39.8177)


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"id": CENTRE, "name": "Again", "kind": "city"}, "already exists"),
        ({"id": "Not A Slug", "name": "X", "kind": "city"}, "<code>id</code>"),
        ({"id": "new-site", "name": "", "kind": "city"}, "<code>name</code>"),
        ({"id": "new-site", "name": "X", "kind": "castle"}, "<code>kind</code>"),
    ],
)
def test_a_refused_new_site_says_why_and_adds_nothing(app, auth, form, expected):
    admin = signed_in(app, auth.token("admin"))
    before = count_rows(app, Site)
    response = post_form(admin, "/sites", form)
    assert response.status_code == 422
    assert expected in response.get_data(as_text=True)
    assert count_rows(app, Site) == before


def test_an_unknown_site_is_a_page_not_found(app, auth):
    admin = signed_in(app, auth.token("admin"))
    assert admin.get("/sites/atlantis/groups").status_code == 404
    assert admin.get("/sites/a%00b/groups").status_code == 404
    assert post_form(admin, "/sites/atlantis", {"capacity": "5"}).status_code == 404


# --- in Chromium --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(database_url, broker_url, tmp_path_factory):
    """The app under gunicorn and one Chromium, for this module."""
    browser.require_chromium()
    instance = tmp_path_factory.mktemp("admin-web")
    with (
        browser.live_server(database_url, instance, broker_url) as base,
        browser.chromium() as chromium,
    ):
        yield base, chromium


def test_an_admin_creates_a_coordinator_token_and_sees_its_qr_code_in_chromium(served, auth):
    base, chromium = served
    page = chromium.new_page(viewport={"width": 1000, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    browser.sign_in(page, base, auth.token("admin"))
    page.click("nav >> text=Tokens")
    page.select_option("#token-role", "coordinator")
    page.fill("#token-name", "Airport phone 2")
    page.check(f'input[name=site][value="{AIRPORT}"]')
    page.click("#new-token button[type=submit]")
    page.wait_for_selector("#token-created")

    assert page.url == f"{base}/tokens"  # the answer to the POST: no secret in a URL
    qr = page.locator("svg.signin-qr")
    box = qr.bounding_box()
    assert box and box["width"] >= 200 and abs(box["width"] - box["height"]) < 1
    link = page.locator("#signin-link").input_value()
    secret = page.locator("#token-secret").input_value()
    assert link.startswith("http") and link.endswith(f"/field/#token={secret}")
    assert SECRET.fullmatch(secret)
    assert [e for e in errors if "Content Security Policy" in e] == []
    browser.screenshot(page, "dashboard-token-created.png")
    page.close()
