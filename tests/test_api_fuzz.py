"""schemathesis against `/api/v1/openapi.json`, with a token of each role (admin, a
coordinator of one site, reader): every operation, fed requests generated from the
document, must answer no 500, only the statuses the document lists for it, and bodies
and content types as the document says.

The app has a database of its own (the fuzzer's writes reach no other test), seeded so
the fuzzer reaches real sites, groups, reports, summaries, subscriptions, deliveries and
imports and not only 404s. `make test` runs a bounded, derandomized number of examples
per operation and role (stable in CI); README's "The API fuzzed" gives the long form.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask_migrate import upgrade
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from service import create_app
from service.domain import summaries
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Role, Site, Summary, SummaryStatus
from tests.backends import REDIS_URL, empty_database, on_services
from tests.conftest import QUEUE
from tests.helpers import AIRPORT, CENTRE, SADD_40, hours_ago

# Bounded and derandomized in `make test`; the long form raises the count and, with
# NT_FUZZ_RANDOM=1, tries other requests each run (README: "The API fuzzed").
EXAMPLES = int(os.environ.get("NT_FUZZ_EXAMPLES", "12"))
DERANDOMIZE = not os.environ.get("NT_FUZZ_RANDOM")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
# The ids of the objects seeded in the fuzzer's database (filled by `world`), so that
# generated cases can name them.
SEEDED: dict[str, list[str]] = {}
DELETABLE: dict[str, list[str]] = {}


@dataclass
class World:
    """The fuzzer's app and a token per role (the seeded objects' ids are in SEEDED)."""

    app: Flask
    tokens: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("fuzz")
    with empty_database(folder) as url:
        app = create_app(_settings(folder, url))
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
            seed_sites(OPERATOR)
            db.session.commit()
        world = World(app)
        _seed(world)
        yield world
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _settings(folder: Path, url: str) -> dict[str, Any]:
    # A queue no worker of the suite listens on: the fuzzer's work is stored, never run.
    settings: dict[str, Any] = {
        "TESTING": True,
        "INSTANCE_PATH": str(folder / "instance"),
        "DATABASE_URL": url,
        "CELERY_QUEUE": f"{QUEUE}-fuzz",
        "CELERY_KEY_PREFIX": f"{QUEUE}:",
    }
    if on_services():
        settings["CELERY_BROKER_URL"] = REDIS_URL
    else:
        settings["CELERY_BROKER_URL"] = f"sqla+sqlite:///{folder / 'broker.db'}"
    return settings


def _seed(world: World) -> None:
    """Tokens of each role, and objects of every kind an operation can name."""
    app = world.app
    with app.app_context():
        for role, sites in (("admin", []), ("coordinator", [CENTRE]), ("reader", [])):
            found = [db.session.get(Site, s) for s in sites]
            _, world.tokens[role] = issue_token(Role(role), f"fuzz {role}", found)
        db.session.commit()
    client = app.test_client()
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}

    def made(path: str, status: int, **kwargs: Any) -> str:
        response = client.post(path, headers=admin, **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)
        return str(response.get_json()["id"])

    # Groups at the coordinator's site and at another one, each with a report.
    groups = [
        made("/api/v1/groups", 201, json={"site_id": site, "label": f"Hangar {n}"})
        for n, site in enumerate((CENTRE, AIRPORT))
    ]
    report = {"total": 40, "sadd": SADD_40, "needs": [{"sector": "wash", "severity": 3}]}
    reports = [
        made("/api/v1/reports", 201, json={**report, "group_id": g, "observed_at": hours_ago(2)})
        for g in groups
    ]
    # A ready summary (built here, as a worker would), and a pending one.
    ready = made("/api/v1/summaries", 202, json={})
    with app.app_context():
        summaries.build(uuid.UUID(ready))
        db.session.commit()
    pending = made("/api/v1/summaries", 202, json={"as_of": hours_ago(1)})
    subscription = {"email": "sitrep@ngo.example.org", "cron": "0 7 * * *", "timezone": "UTC"}
    subscriptions = [made("/api/v1/subscriptions", 201, json=subscription) for _ in range(2)]
    delivery = made(f"/api/v1/subscriptions/{subscriptions[0]}/send", 202)
    upload = f"group_id,observed_at,total\n{groups[0]},{hours_ago(3)},9\n".encode()
    job = made(
        "/api/v1/reports/import",
        202,
        data={"file": (io.BytesIO(upload), "day.csv")},
        content_type="multipart/form-data",
    )
    SEEDED.clear()
    SEEDED.update(
        site_id=[CENTRE, AIRPORT],
        group_id=groups,
        report_id=reports,
        summary_id=[ready, pending],
        subscription_id=subscriptions[:1],
        delivery_id=[delivery],
        job_id=[job],
    )
    # DELETE stops a subscription: it gets one of its own, so the others still find theirs.
    DELETABLE["subscription_id"] = subscriptions[1:]


def _served_document() -> dict[str, Any]:
    """The document as the app serves it (no database needed to serve it). Read when the
    module is collected, so each operation is a test of its own."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "TESTING": True,
                "INSTANCE_PATH": folder,
                "SECRET_KEY": secrets.token_urlsafe(48),
                "DATABASE_URL": f"sqlite:///{folder}/unused.db",
            }
        )
        return app.test_client().get("/api/v1/openapi.json").get_json()


DOCUMENT = _served_document()
# As an admin, who may call everything: schemathesis's coverage phase (boundary values,
# missing and wrong-typed fields, other methods on each path) and then random cases.
as_admin = schemathesis.openapi.from_dict(DOCUMENT)
# As a coordinator and a reader, what they may and may not call and see: random cases
# (the coverage phase's inputs are the same for every role; the budget goes to roles).
FUZZING_ONLY = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
as_others = schemathesis.openapi.from_dict(DOCUMENT, config=FUZZING_ONLY)


def flatmap_case(context: Any, case: Any) -> st.SearchStrategy:
    """Half the time, an id in the path or the body names a seeded object: the fuzzer then
    reaches real sites, groups, reports and summaries, not only 404s."""
    known = {**SEEDED, **DELETABLE} if case.method.upper() == "DELETE" else SEEDED
    slots = [("path", name) for name in case.path_parameters or {} if name in known]
    if isinstance(case.body, dict):
        slots += [("body", name) for name in ("site_id", "group_id") if name in case.body]
    if not slots:
        return st.just(case)
    choices = st.tuples(*(st.one_of(st.none(), st.sampled_from(known[name])) for _, name in slots))

    def aim(chosen: tuple[str | None, ...]) -> Any:
        for (where, name), value in zip(slots, chosen, strict=True):
            if value is not None:
                (case.path_parameters if where == "path" else case.body)[name] = value
        return case

    return choices.map(aim)


for _schema in (as_admin, as_others):
    _schema.hook(flatmap_case)

SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@as_admin.parametrize()
@SETTINGS
def test_every_operation_as_admin(case: Any, world: World) -> None:
    call_and_validate(case, world, "admin")


@pytest.mark.parametrize("role", ["coordinator", "reader"])
@as_others.parametrize()
@SETTINGS
def test_every_operation_as_coordinator_and_reader(case: Any, world: World, role: str) -> None:
    call_and_validate(case, world, role)


def call_and_validate(case: Any, world: World, role: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {world.tokens[role]}"}
    case.call_and_validate(app=world.app, checks=[*CHECKS, accepted_summaries_build(world)])


def accepted_summaries_build(world: World) -> Any:
    """A summary the API accepted (202) is one a worker can build: a build that would fail
    in the worker fails here, at the request that asked for it."""

    def check(ctx: Any, response: Any, case: Any) -> None:
        if (case.method.upper(), case.path) != ("POST", "/api/v1/summaries"):
            return
        if response.status_code != 202:
            return
        summary_id = uuid.UUID(response.json()["id"])
        with world.app.app_context():
            summaries.build(summary_id)  # as the worker would (nothing when already built)
            db.session.commit()
            status = db.session.get(Summary, summary_id).status
        assert status is SummaryStatus.ready, (summary_id, status)

    return check
