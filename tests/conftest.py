"""Fixtures: a migrated database per test session, emptied after every test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker, test_worker_started
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service import create_app
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Role, Site
from tests.backends import REDIS_URL, empty_database, on_services
from tests.openapi_check import CheckedClient
from tests.smtp import SmtpServer


def pytest_report_header() -> str:
    return f"needs-tracker backend: {'PostgreSQL + Redis' if on_services() else 'embedded'}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backend_independent: touches no database and no broker (pure rules, configuration, "
        "imports); run in the embedded pass only",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL + Redis pass is for what the real parts can change: it skips the
    tests marked backend_independent, which the embedded pass has run on the same code."""
    if not on_services():
        return
    skip = pytest.mark.skip(reason="backend_independent: the embedded pass runs it")
    for item in items:
        if item.get_closest_marker("backend_independent"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database for the session, built by the migrations (so every test runs on them)."""
    folder = tmp_path_factory.mktemp("db")
    with empty_database(folder) as url:
        app = create_app(_settings(folder, url))
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
            db.engine.dispose()
        yield url


# One queue per test run, so runs sharing a Redis never take each other's tasks.
QUEUE = f"nt-test-{uuid.uuid4().hex[:10]}"


def _settings(instance: Path, database_url: str, broker_url: str | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "TESTING": True,
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": database_url,
        "CELERY_QUEUE": QUEUE,
        "CELERY_KEY_PREFIX": f"{QUEUE}:",
        # Rate-limit counters of each app of their own (on Redis they would outlive it and
        # carry over to the next test), as each process's memory would be.
        "RATELIMIT_KEY_PREFIX": f"{QUEUE}:limits:{uuid.uuid4().hex[:8]}",
    }
    if on_services():
        settings["CELERY_BROKER_URL"] = REDIS_URL
    elif broker_url:
        settings["CELERY_BROKER_URL"] = broker_url
    return settings


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One broker for the session, so a worker started once serves every test's app."""
    if on_services():
        return REDIS_URL
    return f"sqla+sqlite:///{tmp_path_factory.mktemp('broker') / 'broker.db'}"


@pytest.fixture(scope="session", autouse=True)
def _drop_test_queue() -> Iterator[None]:
    yield
    if on_services():
        # Queues and unacknowledged tasks of this run, its workers' included.
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{QUEUE}:*"):
            client.delete(key)
        client.close()


@pytest.fixture
def make_app(database_url: str, broker_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build an app on the session database with extra settings; cleaned up after."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        settings = _settings(tmp_path / "instance", database_url, broker_url)
        app = create_app({**settings, **overrides})
        # Every answer from the API is held to the OpenAPI document it serves.
        app.test_client_class = CheckedClient
        with app.app_context():
            if not apps:
                seed_sites(OPERATOR)
                db.session.commit()
        apps.append(app)
        return app

    yield build
    if apps:
        with apps[0].app_context():
            _empty_tables()
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _empty_tables() -> None:
    """Empty every table. A module's worker may still be finishing a build the test
    left behind; PostgreSQL then reports a deadlock with the TRUNCATE, and we retry."""
    tables = list(reversed(db.metadata.sorted_tables))
    for attempt in range(10):
        db.session.rollback()
        try:
            if db.engine.dialect.name == "postgresql":
                names = ", ".join(f'"{t.name}"' for t in tables)
                db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    db.session.execute(table.delete())
            db.session.commit()
            return
        except OperationalError:
            if attempt == 9:
                raise
            time.sleep(0.2)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Auth:
    """Makes tokens and the headers that carry them."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def token(self, role: str, *sites: str, name: str | None = None) -> str:
        with self.app.app_context():
            found = [db.session.get(Site, s) for s in sites]
            assert all(found), f"unknown site in {sites}"
            _, secret = issue_token(Role(role), name or f"test {role}", found)
            db.session.commit()
        return secret

    def headers(self, role: str, *sites: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, *sites)}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.headers("admin")


@pytest.fixture
def auth(app: Flask) -> Auth:
    return Auth(app)


@pytest.fixture(scope="module")
def module_worker(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A real Celery worker for a whole test module: it serves every test's app, since
    they all share the session's database and broker."""
    import workers.tasks  # noqa: F401 - registers the tasks, as the worker's `include` does

    app = create_app(_settings(tmp_path_factory.mktemp("worker"), database_url, broker_url))
    celery_app = app.extensions["celery"]
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as w:
        yield w
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def celery_worker(app: Flask) -> Iterator[Any]:
    """A real Celery worker (solo pool, in a thread) on the backend's broker."""
    import workers.tasks  # noqa: F401 - registers the tasks, as the worker's `include` does

    celery_app = app.extensions["celery"]
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as w:
        yield w


# How long a test worker on the embedded broker waits for a task in one turn of its loop.
TEST_WORKER_TURN_SECONDS = 0.25


@test_worker_started.connect(weak=False)
def _quick_to_stop(sender: Any = None, worker: Any = None, consumer: Any = None, **_: Any) -> None:
    """A worker on the embedded broker (kombu's SQLAlchemy transport) looks for a task once
    a second, and notices it is asked to stop only between turns of 2 s, and one more turn
    after that (celery's synloop): about 4 s to stop, at every test that started one.
    Every test worker (start_worker) gets turns of TEST_WORKER_TURN_SECONDS instead, and
    looks that often: stopped in well under a second, and a task handed out is taken
    sooner. What it does with a task is unchanged. (Called in the worker's thread before
    its loop starts. On Redis the worker waits on the socket: nothing to change.)"""
    connection = consumer.connection
    if not connection.transport_cls.startswith("sqla"):
        return
    transport = connection.transport
    drain = transport.drain_events

    def drain_events(connection: Any, timeout: float | None = None) -> Any:
        if timeout is None:  # waiting until a task comes: as it was
            return drain(connection)
        return drain(connection, timeout=min(timeout, TEST_WORKER_TURN_SECONDS))

    transport.drain_events = drain_events


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port; `stop()` and `start()` it to
    take SMTP down and bring it back, `refuse(address, "550 ...")` to reject a recipient."""
    server = SmtpServer().start()
    yield server
    server.stop()
