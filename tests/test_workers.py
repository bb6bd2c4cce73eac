"""Summaries through real Celery workers, on the embedded broker and on Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from celery.contrib.testing.worker import start_worker
from sqlalchemy import select

from service import handoff
from service.domain import summaries
from service.extensions import db
from service.models import Summary, SummaryStatus
from service.serve import queue_worker_commands, worker_command
from tests.backends import on_services
from tests.conftest import QUEUE
from tests.helpers import AIRPORT, at_once, create_group, post_report, wait_for


def summary_state(client, headers, location: str) -> dict:
    return client.get(location, headers=headers).get_json()


def test_requested_summary_is_built_by_a_worker(app, client, auth, celery_worker):
    admin = auth.admin
    group = create_group(client, admin, AIRPORT)
    post_report(client, admin, group["id"], 715, 1)
    response = client.post("/api/v1/summaries", json={}, headers=admin)
    assert response.status_code == 202
    location = response.headers["Location"]
    document = wait_for(
        lambda: (s := summary_state(client, admin, location))["status"] == "ready" and s
    )
    assert document["totals"]["people"] == 715


def test_two_schedulers_firing_make_one_summary_per_period(app, celery_worker):
    celery_app = app.extensions["celery"]
    with app.app_context():
        period = summaries.period_start(summaries.utcnow(), summaries.interval())

    def of_the_period() -> list[Summary]:
        # A short transaction each time: on SQLite an open one would hold the writers off.
        with app.app_context():
            rows = db.session.execute(select(Summary).where(Summary.period == period))
            return list(rows.scalars())

    for _ in range(2):
        celery_app.send_task("summaries.tick")
    wait_for(lambda: [s.status for s in of_the_period()] == [SummaryStatus.ready])
    # Ticks firing together, again and later: still one summary for the period.
    at_once(4, lambda: _tick_in_app(app))
    assert len(of_the_period()) == 1


def _tick_in_app(app) -> None:
    with app.app_context():
        summaries.ensure_scheduled()
        db.session.commit()
        db.session.remove()


def _worker_env(app, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        INSTANCE_PATH=str(tmp_path / "worker-instance"),
        DATABASE_URL=app.config["DATABASE_URL"],
        CELERY_BROKER_URL=app.config["CELERY_BROKER_URL"],
        CELERY_QUEUE=QUEUE,
        CELERY_KEY_PREFIX=f"{QUEUE}:",
        **extra,
    )
    return env


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("a")
    try:
        return subprocess.Popen(
            worker_command("--pool", "solo", "--without-mingle", "--without-gossip"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        out.close()


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        process.wait(timeout=30)


class _HoldTheDatabase:
    """Keeps a worker's build waiting mid-task: an exclusive lock it must wait for."""

    def __init__(self, app) -> None:
        self.app = app
        self.connection = None

    def __enter__(self) -> _HoldTheDatabase:
        url = self.app.config["DATABASE_URL"]
        if on_services():
            self.connection = psycopg.connect(url)
            self.connection.execute("LOCK TABLE reports IN ACCESS EXCLUSIVE MODE")
        else:
            import sqlite3

            self.connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self.connection.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *exc: object) -> None:
        if on_services():
            self.connection.rollback()
        else:
            self.connection.execute("ROLLBACK")
        self.connection.close()


def test_worker_killed_mid_build_still_builds_the_summary_once(app, client, auth, tmp_path):
    admin = auth.admin
    group = create_group(client, admin, AIRPORT)
    post_report(client, admin, group["id"], 5000, 1)
    env = _worker_env(
        app, tmp_path, SUMMARY_BUILD_TIMEOUT_SECONDS="1", CELERY_VISIBILITY_TIMEOUT="3"
    )
    log = tmp_path / "workers.log"
    response = client.post("/api/v1/summaries", json={}, headers=admin)
    summary_id = response.get_json()["id"]
    location = response.headers["Location"]

    with _HoldTheDatabase(app):
        doomed = _start_worker(env, log)
        try:
            # The worker has taken the task and is stuck inside the build.
            wait_for(lambda: summary_id in log.read_text() and "received" in log.read_text())
            time.sleep(1)
        finally:
            _stop(doomed, signal.SIGKILL)
    assert doomed.returncode == -signal.SIGKILL
    assert summary_state(client, admin, location)["status"] == "pending"  # nothing half-built

    survivor = _start_worker(env, log)
    try:
        celery_app = app.extensions["celery"]

        def ready() -> bool:
            # The scheduler's sweep finds the lost build and sends it again.
            celery_app.send_task("summaries.tick")
            time.sleep(1.5)
            return summary_state(client, admin, location)["status"] == "ready"

        wait_for(ready, timeout=60, every=0)
        time.sleep(4)  # time for a re-delivered copy of the task to run too
    finally:
        _stop(survivor)
    document = summary_state(client, admin, location)
    assert document["totals"]["people"] == 5000
    builds = [
        line
        for line in log.read_text().splitlines()
        if "summary built" in line and summary_id in line
    ]
    assert len(builds) == 1, log.read_text()
    with app.app_context():
        assert db.session.get(Summary, uuid.UUID(summary_id)).status is SummaryStatus.ready


def test_broker_down_reports_still_accepted_and_summary_catches_up(make_app, auth, tmp_path):
    if on_services():
        dead_broker = "redis://127.0.0.1:1/0"  # nothing listens there
    else:
        broken = tmp_path / "broken-broker.db"
        broken.write_bytes(b"this is not a database" * 100)
        dead_broker = f"sqla+sqlite:///{broken}"
    down = make_app(CELERY_BROKER_URL=dead_broker)
    client = down.test_client()
    admin = {"Authorization": f"Bearer {auth.__class__(down).token('admin')}"}
    group = create_group(client, admin, AIRPORT)
    post_report(client, admin, group["id"], 2500, 1)

    ready = client.get("/readyz")
    assert ready.status_code == 503
    expected = {"database": "ok", "broker": "down"}
    if not on_services():
        expected["disk"] = "ok"  # the embedded default's disk has room
    assert ready.get_json()["checks"] == expected
    requested = client.post("/api/v1/summaries", json={}, headers=admin)
    assert requested.status_code == 202
    location = requested.headers["Location"]
    assert summary_state(client, admin, location)["status"] == "pending"

    # The broker is back: the next tick hands out the build that could not be sent.
    up = make_app()
    celery_app = up.extensions["celery"]
    import workers.tasks  # noqa: F401

    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        celery_app.send_task("summaries.tick")
        document = wait_for(
            lambda: (s := summary_state(client, admin, location))["status"] == "ready" and s
        )
    assert document["totals"]["people"] == 2500


def test_a_flood_of_asked_for_summaries_never_holds_up_the_schedule(make_app, auth, monkeypatch):
    """200 summaries asked for in 3 s once kept a period's summary (and its emails)
    waiting behind them. With the schedule's worker running as `serve` runs it (its
    queue only) and every on-demand build slow, the period's summary is still built at
    once; the on-demand worker then builds the flood."""
    import workers.tasks  # noqa: F401 - registers the tasks, as the worker's `include` does

    app = make_app(RATELIMIT_ON_DEMAND_SUMMARIES="1000 per minute")
    client = app.test_client()
    coordinator = auth.__class__(app).headers("coordinator", AIRPORT)
    celery_app = app.extensions["celery"]
    slow = threading.Event()
    slow.set()
    real_build = summaries.build

    def build(summary_id: uuid.UUID) -> bool:
        # Slow only for summaries asked for, and outside any transaction (SQLite's
        # write lock is not held while it waits).
        asked_for = db.session.get_one(Summary, summary_id).period is None
        db.session.rollback()
        if asked_for and slow.is_set():
            time.sleep(2)
        return real_build(summary_id)

    monkeypatch.setattr(summaries, "build", build)

    flood = [client.post("/api/v1/summaries", json={}, headers=coordinator) for _ in range(20)]
    assert {r.status_code for r in flood} == {202}
    # One asked for while the broker was away: the tick's sweep hands it out, and to the
    # on-demand queue, not in front of the period's summary.
    with app.app_context():
        lost = summaries.request_summary(None, datetime.now(UTC) - timedelta(hours=1)).summary
        summaries.not_handed_out(lost.id)
        db.session.commit()
        lost_at = f"/api/v1/summaries/{lost.id}"
    with app.app_context():
        period = summaries.period_start(summaries.utcnow(), summaries.interval())

    def the_period() -> list[Summary]:
        with app.app_context():
            rows = db.session.execute(select(Summary).where(Summary.period == period)).scalars()
            found = list(rows)
            db.session.remove()
            return found

    scheduled = handoff.scheduled_queue(app.config)
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=30,
        queues=[scheduled],
        hostname="scheduled@test",
    ):
        celery_app.send_task(handoff.TICK, queue=scheduled)
        # 20 builds of 2 s stood in front of it on one queue: 40 s. On its own: at once.
        ready = wait_for(
            lambda: [s.status for s in the_period()] == [SummaryStatus.ready], timeout=15
        )
        assert ready
        # The schedule's worker took none of them (one queue: FIFO, they came first).
        assert client.get(lost_at, headers=coordinator).get_json()["status"] == "pending"
        slow.clear()

    def all_built() -> bool:
        locations = [r.headers["Location"] for r in flood] + [lost_at]
        states = [client.get(location, headers=coordinator) for location in locations]
        return all(s.get_json()["status"] == "ready" for s in states)

    assert not all_built()
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=30,
        queues=[handoff.on_demand_queue(app.config)],
        hostname="on-demand@test",
    ):
        wait_for(all_built, timeout=60, every=0.5)


def test_serve_runs_one_worker_for_each_queue(app):
    """`serve` starts the schedule's worker and the on-demand one on the queues the
    service hands work to (names derived from CELERY_QUEUE)."""
    commands = queue_worker_commands(app.config)
    served = sorted(cmd[cmd.index("--queues") + 1] for cmd in commands.values())
    assert served == sorted([QUEUE, f"{QUEUE}.on-demand"])
    assert served == sorted(
        [handoff.scheduled_queue(app.config), handoff.on_demand_queue(app.config)]
    )
