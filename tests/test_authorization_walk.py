"""Every route in the URL map, walked with every kind of caller and with the ids of each
site, against ONE table of who may do what (README "Who sees what").

A route or method missing from the table fails the walk, so a new route must be
classified before it ships. Each request's outcome is one of: allowed (`OK`), not signed
in (`401`; on the dashboard, the redirect to its sign-in page), `403` or `404`. A refused
write must leave every table as it was, no answer may be a 500, and no answer may carry
the label, origin, note or id of a group the caller may not see.

Columns: anonymous, unknown token, revoked token, admin, a coordinator on a route naming
one of its own site's ids, a coordinator on another site's ids, a reader. Both
coordinators (of site A, of site B) are walked on the ids of both sites.
"""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.domain.tokens import hash_token
from service.extensions import db
from service.models import ApiToken
from service.types import utcnow
from tests.conftest import Auth
from tests.helpers import AIRPORT, CENTRE, hours_ago, report_body

SITE_A, SITE_B = CENTRE, AIRPORT
EVERY_SITE = "(no site filter)"
OK, SIGN_IN = "allowed", 401
READS = ("GET", "HEAD")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Expect:
    anonymous: object
    unknown: object
    revoked: object
    admin: object
    own: object  # a coordinator, on its own site's ids
    other: object  # a coordinator, on another site's ids
    reader: object


def api(admin: object, own: object, other: object, reader: object) -> Expect:
    """An /api/v1 route: a bearer token is needed first."""
    return Expect(SIGN_IN, SIGN_IN, SIGN_IN, admin, own, other, reader)


def page(admin: object, own: object, other: object, reader: object) -> Expect:
    """A dashboard page: signed in first (else redirected to the sign-in page)."""
    return Expect(SIGN_IN, SIGN_IN, SIGN_IN, admin, own, other, reader)


PUBLIC = Expect(OK, OK, OK, OK, OK, OK, OK)
EVERY_TOKEN = api(OK, OK, OK, OK)
ADMIN_ONLY = api(OK, 403, 403, 403)
ADMIN_ONLY_PAGE = page(OK, 403, 403, 403)
SITE_HOLDERS = api(OK, OK, 403, 403)  # writes for a site: its coordinators and admins
# Webhooks: admins all, readers their own (the walk's is the admin's: 404 to a reader).
WEBHOOK_OWNERS = api(OK, 403, 403, OK)
ANOTHERS_WEBHOOK = api(OK, 403, 403, 404)


Send = Callable[["World", str], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Route:
    expect: Expect
    send: Send  # (world, site) -> (path, request kwargs)
    per_site: bool = False  # walked with site A's ids and site B's ids
    listing: bool = False  # a list: walked also without a site filter (coordinators: "own")


def at(path: str) -> Send:
    return lambda world, site: (path, {})


def with_ids(template: str, **kwargs: Any) -> Send:
    """A path naming the ids of `site`'s objects ({group}, {report}, {job}, ...)."""
    return lambda world, site: (template.format(**world.ids[site]), dict(kwargs))


def listed(path: str) -> Send:
    """A list, filtered by `site`'s id, or (EVERY_SITE) not filtered."""
    return lambda world, site: (path if site == EVERY_SITE else f"{path}?site_id={site}", {})


def send_json(template: str, body: Callable[[World, str], Any]) -> Send:
    return lambda world, site: (template.format(**world.ids[site]), {"json": body(world, site)})


def form(path: str, fields: Callable[[World, str], dict[str, Any]] | None = None) -> Send:
    """A dashboard form, with the session's CSRF token (added when sent)."""
    return lambda world, site: (path, {"data": fields(world, site) if fields else {}})


def new_site(world: World, site: str) -> dict[str, Any]:
    return {"id": f"walk-{uuid.uuid4().hex[:12]}", "name": "Walk site", "kind": "city"}


def new_group(world: World, site: str) -> dict[str, Any]:
    return {"site_id": site, "label": "Walk group"}


def new_report(world: World, site: str) -> dict[str, Any]:
    return report_body(world.ids[site]["group"], 7)


def new_subscription(world: World, site: str) -> dict[str, Any]:
    return {
        "email": "walk@ngo.example.org",
        "cron": "0 7 * * *",
        "timezone": "UTC",
        "site_ids": [site],
    }


def csv_of(world: World, site: str) -> bytes:
    return f"group_id,observed_at,total\n{world.ids[site]['group']},{hours_ago(3)},9\n".encode()


def csv_upload(world: World, site: str) -> tuple[str, dict[str, Any]]:
    return "/api/v1/reports/import", {"data": csv_of(world, site), "content_type": "text/csv"}


def delete_subscription(world: World, site: str) -> tuple[str, dict[str, Any]]:
    # A fresh one each time, so an allowed delete leaves the walk's own for the others.
    return f"/api/v1/subscriptions/{world.subscription(site)}", {}


def new_webhook(world: World, site: str) -> dict[str, Any]:
    # Port 9 (discard) on loopback, listed in WEBHOOK_ALLOWED_HOSTS below: nothing is sent.
    return {"url": "http://127.0.0.1:9/walk", "site_ids": [site]}


def delete_webhook(world: World, site: str) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/webhooks/{world.webhook(site)}", {}


def dashboard_upload(world: World, site: str) -> tuple[str, dict[str, Any]]:
    upload = {"file": (io.BytesIO(csv_of(world, site)), "walk.csv")}
    return "/import", {"data": upload, "content_type": "multipart/form-data"}


def sign_in_form(world: World, site: str) -> dict[str, Any]:
    return {"token": world.current_secret or ""}


def revoke_a_token(world: World, site: str) -> tuple[str, dict[str, Any]]:
    # A fresh token each time, so an allowed revoke leaves the walk's own tokens alive.
    secret = world.auth.token("reader", name="walk to revoke")
    with world.app.app_context():
        found = select(ApiToken.id).where(ApiToken.secret_hash == hash_token(secret))
        return f"/tokens/{db.session.execute(found).scalar_one()}/revoke", {"data": {}}


# --- THE table --------------------------------------------------------------------------

ROUTES: dict[tuple[str, str], Route] = {
    # sites: read by every token, written by admins
    ("GET", "/api/v1/sites"): Route(EVERY_TOKEN, at("/api/v1/sites")),
    ("POST", "/api/v1/sites"): Route(ADMIN_ONLY, send_json("/api/v1/sites", new_site)),
    ("GET", "/api/v1/sites/<string:site_id>"): Route(
        EVERY_TOKEN, with_ids("/api/v1/sites/{site}"), per_site=True
    ),
    ("PATCH", "/api/v1/sites/<string:site_id>"): Route(
        ADMIN_ONLY,
        send_json("/api/v1/sites/{site}", lambda w, s: {"capacity": 5000}),
        per_site=True,
    ),
    # groups: coordinators of their sites, admins; never readers
    ("GET", "/api/v1/groups"): Route(
        SITE_HOLDERS, listed("/api/v1/groups"), per_site=True, listing=True
    ),
    ("POST", "/api/v1/groups"): Route(
        SITE_HOLDERS, send_json("/api/v1/groups", new_group), per_site=True
    ),
    ("GET", "/api/v1/groups/<uuid:group_id>"): Route(
        api(OK, OK, 404, 403), with_ids("/api/v1/groups/{group}"), per_site=True
    ),
    ("PATCH", "/api/v1/groups/<uuid:group_id>"): Route(
        api(OK, OK, 404, 403),
        send_json("/api/v1/groups/{group}", lambda w, s: {"label": "Walk renamed"}),
        per_site=True,
    ),
    # reports (head counts, with their notes): the same
    ("GET", "/api/v1/reports"): Route(
        SITE_HOLDERS, listed("/api/v1/reports"), per_site=True, listing=True
    ),
    ("POST", "/api/v1/reports"): Route(
        SITE_HOLDERS, send_json("/api/v1/reports", new_report), per_site=True
    ),
    ("POST", "/api/v1/reports/batch"): Route(
        SITE_HOLDERS,
        send_json("/api/v1/reports/batch", lambda w, s: {"reports": [new_report(w, s)]}),
        per_site=True,
    ),
    ("GET", "/api/v1/reports/<int:report_id>"): Route(
        api(OK, OK, 404, 403), with_ids("/api/v1/reports/{report}"), per_site=True
    ),
    # imports: admins
    ("POST", "/api/v1/reports/import"): Route(ADMIN_ONLY, csv_upload, per_site=True),
    ("GET", "/api/v1/imports/<uuid:job_id>"): Route(
        ADMIN_ONLY, with_ids("/api/v1/imports/{job}"), per_site=True
    ),
    # the caller itself (the field app asks who its token is)
    ("GET", "/api/v1/me"): Route(EVERY_TOKEN, at("/api/v1/me")),
    # summaries: read by every token; asked for by coordinators and admins
    ("GET", "/api/v1/summaries"): Route(EVERY_TOKEN, at("/api/v1/summaries")),
    ("POST", "/api/v1/summaries"): Route(
        api(OK, OK, OK, 403),
        send_json("/api/v1/summaries", lambda w, s: {"as_of": hours_ago(2)}),
    ),
    ("GET", "/api/v1/summaries/latest"): Route(EVERY_TOKEN, at("/api/v1/summaries/latest")),
    ("GET", "/api/v1/summaries/<uuid:summary_id>"): Route(
        EVERY_TOKEN, with_ids("/api/v1/summaries/{summary}")
    ),
    ("GET", "/api/v1/summaries/latest/package"): Route(
        EVERY_TOKEN, at("/api/v1/summaries/latest/package")
    ),
    ("GET", "/api/v1/summaries/<uuid:summary_id>/package"): Route(
        EVERY_TOKEN, with_ids("/api/v1/summaries/{summary}/package")
    ),
    # subscriptions and their deliveries: admins
    ("GET", "/api/v1/subscriptions"): Route(ADMIN_ONLY, at("/api/v1/subscriptions")),
    ("POST", "/api/v1/subscriptions"): Route(
        ADMIN_ONLY, send_json("/api/v1/subscriptions", new_subscription), per_site=True
    ),
    ("GET", "/api/v1/subscriptions/<uuid:subscription_id>"): Route(
        ADMIN_ONLY, with_ids("/api/v1/subscriptions/{subscription}"), per_site=True
    ),
    ("DELETE", "/api/v1/subscriptions/<uuid:subscription_id>"): Route(
        ADMIN_ONLY, delete_subscription, per_site=True
    ),
    ("POST", "/api/v1/subscriptions/<uuid:subscription_id>/send"): Route(
        ADMIN_ONLY, with_ids("/api/v1/subscriptions/{subscription}/send"), per_site=True
    ),
    ("POST", "/api/v1/subscriptions/<uuid:subscription_id>/resume"): Route(
        ADMIN_ONLY, with_ids("/api/v1/subscriptions/{subscription}/resume"), per_site=True
    ),
    ("GET", "/api/v1/subscriptions/<uuid:subscription_id>/deliveries"): Route(
        ADMIN_ONLY, with_ids("/api/v1/subscriptions/{subscription}/deliveries"), per_site=True
    ),
    ("GET", "/api/v1/subscriptions/<uuid:subscription_id>/deliveries/<uuid:delivery_id>"): Route(
        ADMIN_ONLY,
        with_ids("/api/v1/subscriptions/{subscription}/deliveries/{delivery}"),
        per_site=True,
    ),
    # webhooks: admins, and readers for their own
    ("GET", "/api/v1/webhooks"): Route(WEBHOOK_OWNERS, at("/api/v1/webhooks")),
    ("POST", "/api/v1/webhooks"): Route(
        WEBHOOK_OWNERS, send_json("/api/v1/webhooks", new_webhook), per_site=True
    ),
    ("GET", "/api/v1/webhooks/<uuid:webhook_id>"): Route(
        ANOTHERS_WEBHOOK, with_ids("/api/v1/webhooks/{webhook}"), per_site=True
    ),
    ("DELETE", "/api/v1/webhooks/<uuid:webhook_id>"): Route(
        ANOTHERS_WEBHOOK, delete_webhook, per_site=True
    ),
    ("POST", "/api/v1/webhooks/<uuid:webhook_id>/rotate-secret"): Route(
        ANOTHERS_WEBHOOK, with_ids("/api/v1/webhooks/{webhook}/rotate-secret"), per_site=True
    ),
    ("GET", "/api/v1/webhooks/<uuid:webhook_id>/deliveries"): Route(
        ANOTHERS_WEBHOOK, with_ids("/api/v1/webhooks/{webhook}/deliveries"), per_site=True
    ),
    # public: the API's documents, health, the unsubscribe link (its signed token is the key)
    ("GET", "/api/v1/openapi.json"): Route(PUBLIC, at("/api/v1/openapi.json")),
    ("GET", "/api/v1/docs"): Route(PUBLIC, at("/api/v1/docs")),
    ("GET", "/api/v1/docs/assets/<path:filename>"): Route(
        PUBLIC, at("/api/v1/docs/assets/swagger-ui.css")
    ),
    ("GET", "/healthz"): Route(PUBLIC, at("/healthz")),
    ("GET", "/readyz"): Route(PUBLIC, at("/readyz")),
    ("GET", "/unsubscribe"): Route(PUBLIC, with_ids("/unsubscribe?token={unsubscribe}")),
    ("POST", "/unsubscribe"): Route(PUBLIC, with_ids("/unsubscribe?token={unsubscribe}")),
    ("GET", "/static/<path:filename>"): Route(PUBLIC, at("/static/dashboard.css")),
    # the language switcher: sets the `lang` cookie (a display preference) and goes back
    ("GET", "/language/<code>"): Route(PUBLIC, at("/language/hy?next=/")),
    # the field app's shell, manifest and service worker: public (its data is the API's)
    ("GET", "/field/"): Route(PUBLIC, at("/field/")),
    ("GET", "/field/manifest.webmanifest"): Route(PUBLIC, at("/field/manifest.webmanifest")),
    ("GET", "/field/sw.js"): Route(PUBLIC, at("/field/sw.js")),
    # the dashboard: signed in with a token; the same rules as the API
    ("GET", "/"): Route(page(OK, OK, OK, OK), at("/")),
    ("POST", "/request-summary"): Route(page(OK, OK, OK, 403), form("/request-summary")),
    ("GET", "/import"): Route(ADMIN_ONLY_PAGE, at("/import")),
    ("POST", "/import"): Route(ADMIN_ONLY_PAGE, dashboard_upload, per_site=True),
    ("GET", "/import/<uuid:job_id>"): Route(
        ADMIN_ONLY_PAGE, with_ids("/import/{job}"), per_site=True
    ),
    ("POST", "/subscriptions/<uuid:subscription_id>/resume"): Route(
        ADMIN_ONLY_PAGE, with_ids("/subscriptions/{subscription}/resume"), per_site=True
    ),
    # the admin pages: tokens and sites for admins; a site's groups as in the API
    ("GET", "/tokens"): Route(ADMIN_ONLY_PAGE, at("/tokens")),
    ("POST", "/tokens"): Route(
        ADMIN_ONLY_PAGE, form("/tokens", lambda w, s: {"role": "reader", "name": "walk"})
    ),
    ("POST", "/tokens/<int:token_id>/revoke"): Route(ADMIN_ONLY_PAGE, revoke_a_token),
    ("GET", "/sites"): Route(ADMIN_ONLY_PAGE, at("/sites")),
    ("POST", "/sites"): Route(ADMIN_ONLY_PAGE, form("/sites", new_site)),
    ("POST", "/sites/<string:site_id>"): Route(
        ADMIN_ONLY_PAGE,
        lambda w, s: (f"/sites/{s}", {"data": {"capacity": "5000"}}),
        per_site=True,
    ),
    ("GET", "/groups"): Route(page(OK, OK, OK, 403), at("/groups")),
    ("GET", "/sites/<string:site_id>/groups"): Route(
        page(OK, OK, 403, 403), with_ids("/sites/{site}/groups"), per_site=True
    ),
    ("POST", "/sites/<string:site_id>/groups"): Route(
        page(OK, OK, 403, 403),
        lambda w, s: (f"/sites/{s}/groups", {"data": {"label": "Walk group"}}),
        per_site=True,
    ),
    ("POST", "/groups/<uuid:group_id>"): Route(
        page(OK, OK, 404, 403),
        lambda w, s: (f"/groups/{w.ids[s]['group']}", {"data": {"status": "waiting"}}),
        per_site=True,
    ),
    ("GET", "/sign-in"): Route(PUBLIC, at("/sign-in")),
    # Signing in with the caller's own token: refused for no, an unknown or a revoked one.
    ("POST", "/sign-in"): Route(
        Expect(SIGN_IN, SIGN_IN, SIGN_IN, OK, OK, OK, OK), form("/sign-in", sign_in_form)
    ),
    # Everyone ends on the sign-in page (signed out, or never signed in).
    ("POST", "/sign-out"): Route(
        Expect(SIGN_IN, SIGN_IN, SIGN_IN, SIGN_IN, SIGN_IN, SIGN_IN, SIGN_IN), form("/sign-out")
    ),
}
# Requests that end the session they are sent in: each gets a session of its own.
ENDS_SESSION = {("POST", "/sign-in"), ("POST", "/sign-out")}
CALLERS = ("anonymous", "unknown", "revoked", "admin", "coordinator-a", "coordinator-b", "reader")


# --- the world walked -------------------------------------------------------------------


@dataclass
class World:
    app: Flask
    auth: Auth
    secrets: dict[str, str | None]
    ids: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What only the callers who see a site's groups may see, per site.
    private: dict[str, list[str]] = field(default_factory=dict)
    current_secret: str | None = None

    def admin_call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.secrets['admin']}"}
        response = self.app.test_client().open(path, method=method, headers=headers, **kwargs)
        assert response.status_code < 300, (path, response.get_data(as_text=True))
        return response

    def subscription(self, site: str) -> str:
        created = self.admin_call(
            "POST", "/api/v1/subscriptions", json=new_subscription(self, site)
        )
        return created.get_json()["id"]

    def webhook(self, site: str) -> str:
        created = self.admin_call("POST", "/api/v1/webhooks", json=new_webhook(self, site))
        return created.get_json()["id"]


def revoke(app: Flask, secret: str) -> None:
    with app.app_context():
        token = db.session.execute(
            select(ApiToken).where(ApiToken.secret_hash == hash_token(secret))
        ).scalar_one()
        token.revoked_at = utcnow()
        db.session.commit()


def build_world(app: Flask) -> World:
    auth = Auth(app)
    secrets: dict[str, str | None] = {
        "anonymous": None,
        "unknown": "nt_" + "x" * 43,
        "revoked": auth.token("coordinator", SITE_A, name="walk revoked"),
        "admin": auth.token("admin", name="walk admin"),
        "coordinator-a": auth.token("coordinator", SITE_A, name="walk coordinator A"),
        "coordinator-b": auth.token("coordinator", SITE_B, name="walk coordinator B"),
        "reader": auth.token("reader", name="walk reader"),
    }
    revoke(app, secrets["revoked"])  # type: ignore[arg-type]
    world = World(app, auth, secrets)
    for site in (SITE_A, SITE_B):
        tag = f"SECRET-{site}"
        group = world.admin_call(
            "POST",
            "/api/v1/groups",
            json={"site_id": site, "label": f"{tag} label", "origin": f"{tag} origin"},
        ).get_json()
        note = {"sector": "water", "severity": 4, "note": f"{tag} need note"}
        body = report_body(group["id"], 40, note=f"{tag} note", needs=[note])
        report = world.admin_call("POST", "/api/v1/reports", json=body).get_json()
        # A second count far from the first: the summary flags this one group.
        jump = report_body(group["id"], 100, hours_ago(0.5))
        world.admin_call("POST", "/api/v1/reports", json=jump)
        world.ids[site] = {"site": site, "group": group["id"], "report": report["id"]}
        job = world.admin_call(
            "POST", "/api/v1/reports/import", data=csv_of(world, site), content_type="text/csv"
        ).get_json()
        world.ids[site]["job"] = job["id"]
        world.private[site] = [tag, group["id"]]
    summary = world.admin_call("POST", "/api/v1/summaries", json={}).get_json()
    with app.app_context():
        from service.domain import subscriptions as subscriptions_domain
        from service.domain import summaries

        summaries.build(uuid.UUID(summary["id"]))
        db.session.commit()
    for site in (SITE_A, SITE_B):
        subscription = world.subscription(site)
        delivery = world.admin_call("POST", f"/api/v1/subscriptions/{subscription}/send").get_json()
        with app.app_context():
            link = subscriptions_domain.unsubscribe_token(uuid.UUID(subscription))
        world.ids[site] |= {
            "summary": summary["id"],
            "subscription": subscription,
            "delivery": delivery["id"],
            "unsubscribe": link,
            "webhook": world.webhook(site),
        }
    return world


# --- walking ----------------------------------------------------------------------------


def snapshot(app: Flask) -> dict[str, list[str]]:
    """Every row of every table."""
    with app.app_context():
        return {
            table.name: sorted(repr(tuple(row)) for row in db.session.execute(table.select()))
            for table in db.metadata.sorted_tables
        }


def changed(after: dict, before: dict | None, method: str, rule: str) -> bool:
    """Whether a refused request wrote anything. Signing out lands on the sign-in page
    like a refusal, and its one write is the point: the session it ends on the server."""
    if (method, rule) == ("POST", "/sign-out"):
        after, before = (
            {name: rows for name, rows in snap.items() if name != "dashboard_sessions"}
            for snap in (after, before or {})
        )
    return after != before


def column(caller: str, site: str) -> str:
    if caller.startswith("coordinator-"):
        if site == EVERY_SITE:  # a list of every site it may see: its own
            return "own"
        holds = SITE_A if caller == "coordinator-a" else SITE_B
        return "own" if site == holds else "other"
    return caller


def outcome(response: Any) -> object:
    status = response.status_code
    location = response.headers.get("Location", "")
    if status in (302, 303) and location.startswith("/sign-in"):
        return SIGN_IN
    if status in (401, 403, 404):
        return status
    if status < 400:
        if response.mimetype == "application/json":
            results = response.get_json(silent=True) if status == 200 else None
            if isinstance(results, dict) and "results" in results:  # a batch: its item's
                (item,) = results["results"]
                return OK if item["status"] < 300 else item["status"]
        return OK
    return status


class Walker:
    def __init__(self, world: World) -> None:
        self.world = world
        self.api_clients: dict[str, FlaskClient] = {}
        self.pages: dict[str, tuple[FlaskClient, str]] = {}

    def page_client(self, caller: str, fresh: bool = False) -> tuple[FlaskClient, str]:
        """A browser session of `caller`, and its CSRF token."""
        if not fresh and caller in self.pages:
            return self.pages[caller]
        client = self.world.app.test_client()
        secret = self.world.secrets[caller]
        if caller == "revoked":  # signed in, then its token revoked
            secret = self.world.auth.token("coordinator", SITE_A, name="walk revoked page")
        if caller == "unknown":
            with client.session_transaction() as session:
                session["token_id"] = 2**30  # no such token
        elif secret is not None:
            response = client.post(
                "/sign-in", data={"token": secret, "csrf_token": csrf_of(client)}
            )
            assert response.status_code == 303, response.get_data(as_text=True)
        token = csrf_of(client)
        if caller == "revoked":
            revoke(self.world.app, secret)  # type: ignore[arg-type]
        if not fresh:
            self.pages[caller] = (client, token)
        return client, token

    def prepare(
        self, caller: str, method: str, rule: str, route: Route, site: str
    ) -> Callable[[], Any]:
        """The request, ready to send: whatever it needs made (a session, a fresh
        subscription to delete) is made now, before the database is looked at."""
        world = self.world
        world.current_secret = world.secrets[caller]
        path, kwargs = route.send(world, site)
        if is_page(rule):
            client, csrf = self.page_client(caller, fresh=(method, rule) in ENDS_SESSION)
            if method not in READS:
                kwargs.setdefault("data", {})["csrf_token"] = csrf
            return lambda: client.open(path, method=method, **kwargs)
        headers = {}
        if world.secrets[caller] is not None:
            headers["Authorization"] = f"Bearer {world.secrets[caller]}"
        client = world.app.test_client()
        return lambda: client.open(path, method=method, headers=headers, **kwargs)


def csrf_of(client: FlaskClient) -> str:
    found = CSRF.search(client.get("/sign-in").get_data(as_text=True))
    assert found, "no CSRF token on the sign-in page"
    return found.group(1)


def is_page(rule: str) -> bool:
    return not rule.startswith(("/api/", "/healthz", "/readyz", "/unsubscribe", "/static/"))


def rules_and_methods(app: Flask) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"OPTIONS"}):  # type: ignore[operator]
            found.append((method, rule.rule))
    return sorted(found)


def test_every_route_is_in_the_table(app):
    walked = set(rules_and_methods(app))
    classified = set(ROUTES) | {("HEAD", rule) for method, rule in ROUTES if method == "GET"}
    assert sorted(walked - classified) == [], "routes missing from the table: classify them"
    assert sorted(classified - walked) == [], "routes in the table that the app does not have"


def test_walk_every_route_with_every_caller_and_every_sites_ids(make_app):
    # Hundreds of refused tokens from one address: the rate limits (tests/test_limits.py)
    # would answer 429 before the rules walked here are reached.
    app = make_app(
        TOKEN_CACHE_SECONDS=0, RATELIMIT_ENABLED=False, WEBHOOK_ALLOWED_HOSTS=("127.0.0.1",)
    )
    # HEAD is walked too, and the OpenAPI document (held by tests/test_openapi.py and
    # the checked client elsewhere) does not list it: the plain client here.
    app.test_client_class = FlaskClient
    world = build_world(app)
    walker = Walker(world)
    wrong: list[str] = []
    for method, rule in rules_and_methods(app):
        route = ROUTES.get(("GET" if method == "HEAD" else method, rule))
        if route is None:
            wrong.append(f"{method} {rule}: not in the table")
            continue
        sites = (SITE_A, SITE_B) if route.per_site else (SITE_B,)
        for site in sites + (EVERY_SITE,) if route.listing else sites:
            for caller in CALLERS:
                expected = getattr(route.expect, column(caller, site))
                writes = method not in READS
                send = walker.prepare(caller, method, rule, route, site)
                before = snapshot(app) if writes else None
                response = send()
                got = outcome(response)
                where = f"{method} {rule} [{caller}, ids of {site}]"
                if response.status_code >= 500:
                    wrong.append(f"{where}: {response.status_code} {response.get_data(True)[:200]}")
                    response.close()
                    continue
                if got != expected:
                    wrong.append(f"{where}: expected {expected}, got {response.status_code}")
                if writes and got != OK and changed(snapshot(app), before, method, rule):
                    wrong.append(f"{where}: refused ({got}) but wrote to the database")
                if rule.startswith("/api/v1") and response.status_code in (401, 403, 404):
                    if response.mimetype != "application/problem+json":
                        wrong.append(f"{where}: {got} is not problem+json")
                leak = leaked(world, caller, response)
                if leak:
                    wrong.append(f"{where}: shows {leak!r}, which this caller may not see")
                response.close()
    assert wrong == [], "\n".join(wrong)


def leaked(world: World, caller: str, response: Any) -> str | None:
    """A label, origin, note or group id of a site whose groups `caller` may not see."""
    if caller == "admin" or response.status_code >= 300 or response.mimetype.startswith("image"):
        return None
    if response.mimetype == "application/zip" and response.get_data():  # a package: its files
        with zipfile.ZipFile(io.BytesIO(response.get_data())) as archive:
            body = "".join(archive.read(name).decode() for name in archive.namelist())
    else:
        body = response.get_data(as_text=True)
    for site, private in world.private.items():
        if caller == {SITE_A: "coordinator-a", SITE_B: "coordinator-b"}[site]:
            continue
        for text in private:
            if text in body:
                return text
    return None
