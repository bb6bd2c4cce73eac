"""schemathesis against `/api/v1/openapi.json`, with a token of each role: every
operation, fed data generated from the document, must answer no 500, only the statuses
the document gives for it, and bodies and content types as the document says.

The app has a database of its own (the fuzzer's writes reach no other test), seeded so
the fuzzer reaches real sites, groups, reports, summaries, subscriptions, deliveries and
imports and not only 404s. `make test` runs a bounded, derandomized number of examples
per operation (stable in CI); `NT_FUZZ_EXAMPLES=500` runs a long one (docs/testing.md).
"""

from __future__ import annotations

import io
import os
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

from service import create_app
from service.domain import summaries
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Role, Site
from tests.backends import REDIS_URL, empty_database, on_services
from tests.conftest import QUEUE
from tests.helpers import AIRPORT, CENTRE, SADD_40, hours_ago

EXAMPLES = int(os.environ.get("NT_FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
ROLES = ("admin", "coordinator", "reader")


@dataclass
class World:
    """The fuzzer's app, a token per role, and the ids of the objects seeded in it."""

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
    """Tokens of each role, and one of every object an operation can address."""
    app = world.app
    with app.app_context():
        for role, sites in (("admin", []), ("coordinator", [CENTRE]), ("reader", [])):
            found = [db.session.get(Site, s) for s in sites]
            _, world.tokens[role] = issue_token(Role(role), f"fuzz {role}", found)
        db.session.commit()
    client = app.test_client()
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}

    def made(response: Any, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.get_data(as_text=True)
        return response.get_json()

    groups = [
        made(
            client.post(
                "/api/v1/groups",
                json={"site_id": site, "label": f"Hangar {n}", "origin": "Martakert"},
                headers=admin,
            ),
            201,
        )["id"]
        for n, site in enumerate((CENTRE, AIRPORT, CENTRE))
    ]
    reports = [
        made(
            client.post(
                "/api/v1/reports",
                json={
                    "group_id": group,
                    "observed_at": hours_ago(2 + n),
                    "total": 40,
                    "sadd": SADD_40,
                    "needs": [{"sector": "wash", "severity": 3}],
                    "note": "Roof leaks",
                },
                headers=admin,
            ),
            201,
        )["id"]
        for n, group in enumerate(groups)
    ]
    summary = made(client.post("/api/v1/summaries", json={}, headers=admin), 202)["id"]
    with app.app_context():
        summaries.build(uuid.UUID(summary))
        db.session.commit()
    pending = made(
        client.post("/api/v1/summaries", json={"as_of": hours_ago(1)}, headers=admin), 202
    )["id"]
    subscription = made(
        client.post(
            "/api/v1/subscriptions",
            json={"email": "sitrep@ngo.example.org", "cron": "0 7 * * *", "timezone": "UTC"},
            headers=admin,
        ),
        201,
    )["id"]
    delivery = made(client.post(f"/api/v1/subscriptions/{subscription}/send", headers=admin), 202)[
        "id"
    ]
    upload = f"group_id,observed_at,total\n{groups[0]},{hours_ago(3)},9\n".encode()
    job = made(
        client.post(
            "/api/v1/reports/import",
            data={"file": (io.BytesIO(upload), "day.csv")},
            headers=admin,
            content_type="multipart/form-data",
        ),
        202,
    )["id"]
    SEEDED.clear()
    SEEDED.update(
        {
            "site_id": [CENTRE, AIRPORT],
            "group_id": groups,
            "report_id": reports,
            "summary_id": [summary, pending],
            "subscription_id": [subscription],
            "delivery_id": [delivery],
            "job_id": [job],
        }
    )


def _served_document() -> dict[str, Any]:
    """The document as the app serves it (no database needed to serve it). Read when the
    module is collected, so each operation is a test of its own."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "TESTING": True,
                "INSTANCE_PATH": folder,
                "SECRET_KEY": "x" * 32,
                "DATABASE_URL": f"sqlite:///{folder}/unused.db",
            }
        )
        return app.test_client().get("/api/v1/openapi.json").get_json()


schema = schemathesis.openapi.from_dict(_served_document())


# The ids of the objects seeded in the fuzzer's database (filled by `world`), so that
# generated cases can name them.
SEEDED: dict[str, list[str]] = {}


@schema.hook
def flatmap_case(context: Any, case: Any) -> st.SearchStrategy:
    """Half the time, an id in the path or the body names a seeded object: the fuzzer then
    reaches real sites, groups, reports and summaries, not only 404s."""
    slots = [("path", name) for name in case.path_parameters or {} if name in SEEDED]
    if isinstance(case.body, dict):
        slots += [("body", name) for name in ("site_id", "group_id") if name in case.body]
    if not slots:
        return st.just(case)
    choices = st.tuples(*(st.one_of(st.none(), st.sampled_from(SEEDED[name])) for _, name in slots))

    def aim(chosen: tuple[str | None, ...]) -> Any:
        for (where, name), value in zip(slots, chosen, strict=True):
            if value is not None:
                (case.path_parameters if where == "path" else case.body)[name] = value
        return case

    return choices.map(aim)


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any, world: World, role: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {world.tokens[role]}"}
    case.call_and_validate(app=world.app, checks=CHECKS)
