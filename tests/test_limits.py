"""Rate limits: per token on writes and on summaries asked for, per address on sign-in
and on refused tokens. Over one: 429 problem+json with Retry-After, and nothing stored.

On the services pass the counters are in Redis (the broker's), as in production."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import func, select

import config as settings
from service.extensions import db
from service.models import Group, Summary
from tests.backends import on_services
from tests.browser import free_port
from tests.conftest import Auth
from tests.helpers import AIRPORT, hours_ago
from tests.test_dashboard import csrf_token, signed_in


def assert_too_many(response, window_seconds: int = 60) -> None:
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= window_seconds


def assert_problem(response) -> None:
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 429 and body["title"] == "Too Many Requests" and body["detail"]


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_the_counters_are_in_the_brokers_redis_on_the_services_pass(make_app):
    app = make_app()
    expected = "redis://" if on_services() else "memory://"
    assert app.config["RATELIMIT_STORAGE_URI"].startswith(expected)


def test_summaries_asked_for_are_limited_per_token(make_app):
    app = make_app(RATELIMIT_ON_DEMAND_SUMMARIES="3 per minute")
    client, auth = app.test_client(), Auth(app)
    one, other = auth.headers("coordinator", AIRPORT), auth.headers("coordinator", AIRPORT)

    for hours in (1, 2, 3):
        answer = client.post("/api/v1/summaries", json={"as_of": hours_ago(hours)}, headers=one)
        assert answer.status_code == 202
    refused = client.post("/api/v1/summaries", json={"as_of": hours_ago(4)}, headers=one)
    assert_too_many(refused)
    assert_problem(refused)
    assert count(app, Summary) == 3  # the refused request stored nothing
    # Another token is not throttled by this one's limit; reads go on for both.
    assert client.post("/api/v1/summaries", json={}, headers=other).status_code == 202
    assert client.get("/api/v1/summaries", headers=one).status_code == 200


def test_summaries_asked_for_on_the_dashboard_are_limited_per_sign_in(make_app):
    app = make_app(RATELIMIT_ON_DEMAND_SUMMARIES="2 per minute")
    auth = Auth(app)
    one = signed_in(app, auth.token("coordinator", AIRPORT))
    other = signed_in(app, auth.token("coordinator", AIRPORT))

    def ask(client):
        return client.post("/request-summary", data={"csrf_token": csrf_token(client, "/")})

    assert [ask(one).status_code for _ in range(2)] == [303, 303]
    refused = ask(one)
    assert_too_many(refused)
    assert refused.mimetype == "text/html"
    assert count(app, Summary) == 2  # the refused request stored nothing
    assert ask(other).status_code == 303


def test_writes_are_limited_per_token(make_app):
    app = make_app(RATELIMIT_WRITES="4 per minute")
    client, auth = app.test_client(), Auth(app)
    one, other = auth.headers("coordinator", AIRPORT), auth.headers("coordinator", AIRPORT)

    def new_group(headers):
        label = f"Family {secrets.token_hex(3)}"
        return client.post(
            "/api/v1/groups", json={"site_id": AIRPORT, "label": label}, headers=headers
        )

    assert [new_group(one).status_code for _ in range(4)] == [201] * 4
    refused = new_group(one)
    assert_too_many(refused)
    assert_problem(refused)
    assert count(app, Group) == 4
    assert new_group(other).status_code == 201
    assert client.get("/api/v1/groups", headers=one).status_code == 200


def test_an_address_sending_wrong_tokens_is_refused_for_the_window(make_app):
    app = make_app(RATELIMIT_FAILED_AUTH="10 per minute")
    client = app.test_client()
    valid = Auth(app).headers("reader")

    def with_random_token(**kwargs):
        headers = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
        return client.get("/api/v1/sites", headers=headers, **kwargs)

    assert {with_random_token().status_code for _ in range(10)} == {401}
    refused = with_random_token()
    assert_too_many(refused)
    assert_problem(refused)
    assert client.get("/api/v1/sites").status_code == 429  # no token at all: the same
    # That address is refused until the window ends, whatever token it sends now; other
    # addresses are not, and health checks are answered to anyone.
    assert client.get("/api/v1/sites", headers=valid).status_code == 429
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/api/v1/sites", headers=valid, environ_base=elsewhere).status_code == 200
    assert with_random_token(environ_base=elsewhere).status_code == 401
    assert client.get("/healthz").status_code == 200


def test_sign_in_attempts_are_limited_per_address(make_app):
    app = make_app(RATELIMIT_SIGN_IN="3 per minute")
    client = app.test_client()

    def sign_in(token: str):
        return client.post("/sign-in", data={"token": token, "csrf_token": csrf_token(client)})

    assert [sign_in(secrets.token_urlsafe(32)).status_code for _ in range(3)] == [401] * 3
    refused = sign_in(Auth(app).token("admin"))
    assert_too_many(refused)
    assert refused.mimetype == "text/html"  # a page, for the person at the form


@pytest.mark.parametrize(
    ("name", "value"), [("RATELIMIT_WRITES", "lots"), ("RATELIMIT_SIGN_IN", "10 per fortnight")]
)
def test_a_limit_that_cannot_be_read_stops_the_start(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        settings.load()


def test_the_default_store_follows_the_broker(monkeypatch):
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)
    redis = settings.load({"CELERY_BROKER_URL": "redis://cache:6379/2"})
    assert redis["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/2"
    embedded = settings.load({"CELERY_BROKER_URL": "sqla+sqlite:////tmp/broker.db"})
    assert embedded["RATELIMIT_STORAGE_URI"] == "memory://"


@pytest.mark.skipif(not on_services(), reason="memory counters are per process by design")
def test_two_web_processes_count_together_in_redis(make_app):
    """Two gunicorn workers (or two machines) share the counters: a limit is per token,
    not per process."""
    first = make_app(RATELIMIT_FAILED_AUTH="4 per minute")
    second = make_app(
        RATELIMIT_FAILED_AUTH="4 per minute",
        RATELIMIT_KEY_PREFIX=first.config["RATELIMIT_KEY_PREFIX"],
    )
    wrong = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
    for app in (first, second, first, second):
        assert app.test_client().get("/api/v1/sites", headers=wrong).status_code == 401
    assert_too_many(second.test_client().get("/api/v1/sites", headers=wrong))
    assert_too_many(first.test_client().get("/api/v1/sites", headers=wrong))


def test_limits_hold_in_memory_while_their_redis_is_away(make_app):
    """A Redis that does not answer (nothing listens on the port): no 500, and each
    process goes on counting in its own memory."""
    app = make_app(
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
        RATELIMIT_FAILED_AUTH="3 per minute",
    )
    client = app.test_client()
    valid = Auth(app).headers("reader")
    wrong = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
    assert [client.get("/api/v1/sites", headers=wrong).status_code for _ in range(3)] == [401] * 3
    assert_too_many(client.get("/api/v1/sites", headers=wrong))
    elsewhere = {"REMOTE_ADDR": "192.0.2.8"}
    assert client.get("/api/v1/sites", headers=valid, environ_base=elsewhere).status_code == 200
