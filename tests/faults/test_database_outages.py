"""The database away, with the real parts: a PostgreSQL server of the test's own
(stopped, started, its backends terminated), a real Celery worker, a real gunicorn.

- A summary whose building backend is terminated, or whose server stops mid-build, is
  built once the database is back: `ready`, one per period, never `failed` for good.
- Behind gunicorn, every request while PostgreSQL is stopped gets 503 problem+json with
  Retry-After and stores nothing; once it is back, the first request of every thread
  succeeds (pooled connections are checked before use).
- A gunicorn worker SIGKILLed while its request holds an idempotency key: a resend is
  told 409 with a short Retry-After only while PostgreSQL still has the dead backend,
  which it ends within seconds (client_connection_check_interval) even while its
  statement waits; then the resend stores the report, once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_retry
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import select

import workers.tasks
from service import create_app, handoff
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Group, Report, Role, Site, Summary, SummaryStatus
from tests.backends import REDIS_URL, on_services
from tests.browser import live_server
from tests.conftest import QUEUE
from tests.helpers import CENTRE, hours_ago, wait_for
from tests.pgcluster import Cluster, private_postgres

pytestmark = pytest.mark.skipif(
    not on_services(),
    reason="stops a PostgreSQL server of its own; runs in the PostgreSQL + Redis pass",
)

TEMPLATE = "needs_template"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One server for the module, with a migrated database each test copies."""
    with private_postgres() as server:
        app = create_app(_settings(server.create_database(TEMPLATE), tmp_path_factory.mktemp("t")))
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
            seed_sites(OPERATOR)
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        yield server


def _settings(url: str, instance: Path) -> dict[str, Any]:
    return {
        "DATABASE_URL": url,
        "INSTANCE_PATH": str(instance),
        "CELERY_BROKER_URL": REDIS_URL,
        # A queue of the test's own: no other worker of the run takes its tasks.
        "CELERY_QUEUE": f"{QUEUE}-{uuid.uuid4().hex[:8]}",
        "CELERY_KEY_PREFIX": f"{QUEUE}:",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def database(cluster: Cluster) -> str:
    name = f"needs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{name}"


@pytest.fixture
def app(database: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app(_settings(database, tmp_path / "app"))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _group_and_token(app: Flask, total: int | None = None) -> tuple[str, str]:
    """A group at the centre (counted `total` an hour ago, if given), and a coordinator's
    token for the centre."""
    with app.app_context():
        group = Group(site_id=CENTRE, label="Stadium families")
        db.session.add(group)
        _, secret = issue_token(Role.coordinator, "phone", [db.session.get_one(Site, CENTRE)])
        db.session.commit()
        group_id = str(group.id)
    if total is not None:
        with app.test_client() as client:
            response = client.post(
                "/api/v1/reports",
                json={"group_id": group_id, "observed_at": hours_ago(1), "total": total},
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert response.status_code == 201, response.get_json()
    return group_id, secret


@contextmanager
def _holding(url: str, statement: str) -> Iterator[psycopg.Connection]:
    """A transaction of the test's own holding a lock (so work that needs it waits),
    released at the end; the server may have gone meanwhile."""
    conn = psycopg.connect(url)
    conn.execute(statement)
    try:
        yield conn
    finally:
        with suppress(psycopg.Error):
            conn.rollback()
        conn.close()


def _backends(url: str, *, waiting: bool) -> list[int]:
    """This database's other backends (only those waiting for a lock, if `waiting`)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND (NOT %s OR wait_event_type = 'Lock')",
            (waiting,),
        ).fetchall()
    return [pid for (pid,) in rows]


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The worker's retries, as they happen; backing off at most a second here (the
    production figures are in workers/tasks.py)."""
    monkeypatch.setattr(workers.tasks, "RETRY_BACKOFF_MAX_SECONDS", 1)
    monkeypatch.setattr(workers.tasks, "RETRIES_WHILE_THE_DATABASE_IS_AWAY", 60)
    seen: list[str] = []

    def record(sender: Any = None, **_: Any) -> None:
        seen.append(sender.name)

    task_retry.connect(record, weak=False)
    yield seen
    task_retry.disconnect(record)


def _scheduled(app: Flask) -> list[tuple[SummaryStatus, Any]]:
    with app.app_context():
        rows = db.session.execute(
            select(Summary.status, Summary.document).where(Summary.period.is_not(None))
        ).all()
        db.session.remove()
    return [tuple(row) for row in rows]


def _settled(app: Flask) -> list[tuple[SummaryStatus, Any]] | None:
    found = _scheduled(app)
    return found if found and all(s is not SummaryStatus.pending for s, _ in found) else None


@contextmanager
def _worker(app: Flask) -> Iterator[None]:
    with start_worker(
        app.extensions["celery"], pool="solo", perform_ping_check=False, shutdown_timeout=30
    ):
        yield


def test_a_build_whose_backend_is_terminated_is_built_once_the_database_answers(
    app: Flask, database: str, retries: list[str]
):
    _group_and_token(app, total=412)
    with _worker(app):
        # The build waits for the reports, locked; its backend is then terminated.
        with _holding(database, "LOCK TABLE reports IN ACCESS EXCLUSIVE MODE"):
            app.extensions["celery"].send_task(handoff.TICK)
            (building,) = wait_for(lambda: _backends(database, waiting=True), timeout=60)
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (building,))
        settled = wait_for(lambda: _settled(app), timeout=60)
    assert [status for status, _ in settled] == [SummaryStatus.ready]
    assert settled[0][1]["totals"]["people"] == 412
    assert handoff.BUILD_SUMMARY in retries


def test_a_build_when_postgresql_stops_is_built_once_it_is_back(
    app: Flask, database: str, cluster: Cluster, retries: list[str]
):
    _group_and_token(app, total=412)
    with _worker(app):
        with _holding(database, "LOCK TABLE reports IN ACCESS EXCLUSIVE MODE"):
            app.extensions["celery"].send_task(handoff.TICK)
            wait_for(lambda: _backends(database, waiting=True), timeout=60)
            cluster.stop()
        try:
            # The build found the server gone, and is retrying.
            wait_for(lambda: handoff.BUILD_SUMMARY in retries, timeout=60)
        finally:
            cluster.start()
        settled = wait_for(lambda: _settled(app), timeout=60)
    assert [status for status, _ in settled] == [SummaryStatus.ready]
    assert settled[0][1]["totals"]["people"] == 412


class Api:
    """Plain HTTP to the live server: (status, headers, body) whatever the status."""

    def __init__(self, base: str, secret: str, group_id: str) -> None:
        self.base, self.secret, self.group_id = base, secret, group_id
        self.observed_at = hours_ago(0.5)  # a resend sends the same body

    def report(self, key: str, total: int = 412, timeout: float = 30) -> tuple[int, Any, Any]:
        body = {"group_id": self.group_id, "observed_at": self.observed_at, "total": total}
        return self._call("POST", "/api/v1/reports", body, {"Idempotency-Key": key}, timeout)

    def sites(self) -> tuple[int, Any, Any]:
        return self._call("GET", "/api/v1/sites", None, {}, 30)

    def _call(
        self, method: str, path: str, body: Any, headers: dict[str, str], timeout: float
    ) -> tuple[int, Any, Any]:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.secret}",
                "Content-Type": "application/json",
                **headers,
            },
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, json.load(response)
        except urllib.error.HTTPError as answered:
            return answered.code, answered.headers, json.load(answered)


def _at_once(calls: list[Any]) -> list[Any]:
    answers: list[Any] = [None] * len(calls)

    def run(n: int) -> None:
        answers[n] = calls[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def _stored_keys(app: Flask) -> list[str]:
    with app.app_context():
        keys = list(db.session.execute(select(Report.client_id)).scalars())
        db.session.remove()
    return keys


def _assert_unavailable(status: int, headers: Any, body: Any) -> None:
    assert status == 503, (status, body)
    assert headers["Content-Type"] == "application/problem+json"
    assert body["status"] == 503 and body["detail"]
    assert 0 < int(headers["Retry-After"]) <= 30


THREADS = 8  # service/serve.py: one gunicorn worker, eight threads


def test_postgresql_stopped_behind_gunicorn_answers_503_then_every_first_request_works(
    app: Flask, database: str, cluster: Cluster, tmp_path: Path
):
    group_id, secret = _group_and_token(app, total=None)
    stored: list[str] = []
    with live_server(database, tmp_path / "web") as base:
        api = Api(base, secret, group_id)

        def reports_at_once() -> list[tuple[str, tuple[int, Any, Any]]]:
            keys = [str(uuid.uuid4()) for _ in range(THREADS)]
            answers = _at_once([lambda k=k: api.report(k) for k in keys])
            return list(zip(keys, answers, strict=True))

        # Every thread holds a pooled connection; then the server restarts, unseen.
        assert [a[0] for _, a in reports_at_once()] == [201] * THREADS
        cluster.stop()
        cluster.start()
        # The first request of each thread after the restart is served, none fails.
        after_restart = reports_at_once()
        assert [a[0] for _, a in after_restart] == [201] * THREADS, after_restart
        assert api.sites()[0] == 200

        cluster.stop()
        try:
            during = reports_at_once() + [("", api.sites())]
        finally:
            cluster.start()
        for _, answer in during:
            _assert_unavailable(*answer)
        back = reports_at_once()
        assert [a[0] for _, a in back] == [201] * THREADS, back
        stored = [k for k, a in after_restart + back if a[0] == 201]
    keys = _stored_keys(app)
    assert len(keys) == 3 * THREADS and len(set(keys)) == len(keys)
    assert set(stored) <= set(keys)
    assert not {k for k, _ in during} & set(keys), "a 503 stored something"


def _gunicorn_worker(instance: Path) -> int:
    """The pid of the live server's gunicorn worker (its master's only child): both carry
    the instance's control socket path in their command line."""
    pids = subprocess.run(
        ["pgrep", "-f", str(instance / "gunicorn.ctl")], capture_output=True, text=True
    ).stdout.split()
    parents = {int(p): int(Path(f"/proc/{p}/stat").read_text().split()[3]) for p in pids}
    (worker,) = [pid for pid, parent in parents.items() if parent in parents]
    return worker


# DATABASE_CLIENT_CHECK_SECONDS for the live server: longer than the default (5), so the
# new gunicorn worker boots well within it on a busy machine and a resend meets the
# dead backend.
CLIENT_CHECK_SECONDS = 8


def _cut_off(api: Api, key: str) -> None:
    with suppress(OSError):  # its server is killed mid-request
        api.report(key)


def test_a_key_held_by_a_killed_request_is_free_again_within_seconds(
    app: Flask, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    group_id, secret = _group_and_token(app, total=None)
    key = str(uuid.uuid4())
    monkeypatch.setenv("DATABASE_CLIENT_CHECK_SECONDS", str(CLIENT_CHECK_SECONDS))
    with live_server(database, tmp_path / "web") as base:
        api = Api(base, secret, group_id)
        worker = _gunicorn_worker(tmp_path / "web")
        # The group's row locked: the request's INSERT holds the key's lock, then waits
        # for the group (its foreign key check) until this transaction ends.
        with _holding(database, f"SELECT 1 FROM groups WHERE id = '{group_id}' FOR UPDATE"):
            first = threading.Thread(target=_cut_off, args=(api, key), daemon=True)
            first.start()
            (dead,) = wait_for(lambda: _backends(database, waiting=True), timeout=60)
            os.kill(worker, signal.SIGKILL)
            killed = time.monotonic()
            first.join(timeout=30)
            # While PostgreSQL still has the dead request's backend, a resend is told the
            # first is in flight, and when to try again. Once it has ended it, the key
            # is free: the resend then waits for the group's lock, as the first did.
            answers: list[tuple[int, Any, Any]] = []
            while True:
                resend = threading.Thread(
                    target=lambda: answers.append(api.report(key, timeout=60)), daemon=True
                )
                resend.start()
                # Answered, or waiting in a backend of its own for the group: its key was free.
                wait_for(
                    lambda r=resend: (
                        not r.is_alive() or set(_backends(database, waiting=True)) - {dead}
                    ),
                    timeout=60,
                )
                if resend.is_alive():
                    break
                status, headers, body = answers[-1]
                assert status == 409, body
                assert 0 < int(headers["Retry-After"]) <= 5
                assert time.monotonic() - killed < 60, "the dead request's backend never ended"
                time.sleep(int(headers["Retry-After"]))  # as a client told so waits
            # PostgreSQL ended it within its check interval, with its statement still
            # waiting for the lock: nothing but the client's death ended it.
            assert dead not in _backends(database, waiting=False)
            held_for = time.monotonic() - killed
        resend.join(timeout=60)
        assert len(answers) >= 2, "no resend met the dead request's backend"
        assert [a[0] for a in answers] == [409] * (len(answers) - 1) + [201], answers
        assert held_for < CLIENT_CHECK_SECONDS + 10, held_for
        assert api.report(key)[0] == 200
    assert _stored_keys(app) == [key]
