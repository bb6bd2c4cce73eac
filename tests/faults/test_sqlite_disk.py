"""A full disk on the embedded default (SQLite, and the broker in SQLite beside it).

`needs-tracker serve` runs on a small tmpfs of its own while coordinators stream
reports; a filler file then takes every byte left. While the disk is full a write is
answered 201 or 503 with Retry-After (never 500) and a 503 stores nothing; /readyz says
not ready, and why. Once the space is freed everything resumes by itself: writes are
stored again, the worker builds a summary, and every report answered 2xx is stored
exactly once. NT_FAULTS_LONG=1 keeps the disk full for a minute instead of seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask_migrate import upgrade
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service import create_app, handoff
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Report, Role, Site
from tests.backends import on_services
from tests.browser import free_port
from tests.helpers import CENTRE, hours_ago

pytestmark = pytest.mark.skipif(on_services(), reason="the embedded default's disk")

NEEDS_TRACKER = str(Path(sys.executable).parent / "needs-tracker")
FULL_FOR = 60.0 if os.environ.get("NT_FAULTS_LONG") else 2.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _prepare(instance: Path) -> dict[str, str]:
    """The instance migrated, with a coordinator's token and a group to report on."""
    app = create_app({"INSTANCE_PATH": str(instance)})
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        seed_sites(OPERATOR)
        site = db.session.get(Site, CENTRE)
        _, coordinator = issue_token(Role.coordinator, "field", [site])
        db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {coordinator}"}
    group = client.post(
        "/api/v1/groups", json={"site_id": CENTRE, "label": "Hangar 2"}, headers=headers
    )
    assert group.status_code == 201, group.get_json()
    with app.app_context():
        db.engine.dispose()
    return {"token": coordinator, "group_id": group.get_json()["id"]}


class Stream:
    """Coordinators sending reports one after another, each with its own client_id,
    every answer kept."""

    def __init__(self, base: str, token: str, group_id: str) -> None:
        self.base, self.group_id = base, group_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.answers: list[tuple[str, int, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.is_set():
            client_id = str(uuid.uuid4())
            body = {
                "group_id": self.group_id,
                "observed_at": hours_ago(1),
                "total": 20,
                "client_id": client_id,
            }
            try:
                answer = requests.post(
                    f"{self.base}/api/v1/reports", json=body, headers=self.headers, timeout=60
                )
            except requests.RequestException:
                self.answers.append((client_id, 0, {}))
                continue
            self.answers.append((client_id, answer.status_code, dict(answer.headers)))
            time.sleep(0.05)

    def count(self, status: int) -> int:
        return sum(1 for _, code, _ in list(self.answers) if code == status)


def _fill(disk: Path) -> Path:
    """A file that takes every byte left on the disk."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _queue_ticks(instance: Path, count: int) -> None:
    app = create_app({"INSTANCE_PATH": str(instance)})
    celery = app.extensions["celery"]
    with app.app_context(), celery.connection_for_write() as connection:
        for _ in range(count):
            celery.send_task(handoff.TICK, connection=connection)
        db.engine.dispose()


def _until(check: Any, timeout: float, log_path: Path, every: float = 0.2) -> Any:
    """`check()`'s first truthy answer within `timeout`; else fail with serve's log."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, (
            "timed out; serve's log:\n" + log_path.read_text()[-4000:]
        )
        time.sleep(every)
    return result


def _status(url: str) -> tuple[int, dict[str, Any]]:
    try:
        answer = requests.get(url, timeout=10)
    except requests.RequestException:
        return 0, {}
    return answer.status_code, answer.json() if answer.content else {}


def test_a_full_disk_answers_503_and_everything_resumes_once_space_is_back(
    small_disk: Path, tmp_path: Path
):
    instance = small_disk / "instance"
    prepared = _prepare(instance)
    port = free_port()
    env = dict(os.environ, INSTANCE_PATH=str(instance), PORT=str(port), LOG_LEVEL="WARNING")
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"  # off the small disk: the log must not fill it
    with log_path.open("w") as log:
        serve = subprocess.Popen(
            [NEEDS_TRACKER, "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _until(lambda: _status(f"{base}/readyz")[0] == 200, 90, log_path)
            # The worker consuming (the disk fills under it, not before it starts).
            _until(lambda: re.search(r"scheduled@\S+ ready\.", log_path.read_text()), 90, log_path)
            with Stream(base, prepared["token"], prepared["group_id"]) as stream:
                _until(lambda: stream.count(201) >= 3, 60, log_path)
                # The worker busy with its queue as the disk fills: taking a message
                # writes to the broker's file.
                _queue_ticks(instance, 10)
                filler = _fill(small_disk)

                # Not ready, and it says why.
                def not_ready() -> dict[str, Any] | None:
                    status, body = _status(f"{base}/readyz")
                    return body if status == 503 else None

                body = _until(not_ready, 60, log_path)
                assert body["checks"]["disk"] != "ok", body
                # Writes are refused while the disk stays full.
                _until(lambda: stream.count(503) >= 3, 60, log_path)
                full_until = time.monotonic() + FULL_FOR
                while time.monotonic() < full_until:
                    assert serve.poll() is None, log_path.read_text()[-3000:]
                    time.sleep(0.5)

                filler.unlink()
                _until(lambda: _status(f"{base}/readyz")[0] == 200, 120, log_path)
                written = stream.count(201)
                _until(lambda: stream.count(201) >= written + 3, 60, log_path)

            # The worker took the disk being full and builds a summary now.
            headers = stream.headers
            asked = requests.post(f"{base}/api/v1/summaries", json={}, headers=headers, timeout=30)
            assert asked.status_code == 202, asked.text

            def built() -> bool:
                summary = requests.get(
                    base + asked.headers["Location"], headers=headers, timeout=30
                ).json()
                return summary["status"] == "ready"

            _until(built, 120, log_path, every=0.5)
            assert serve.poll() is None, log_path.read_text()[-3000:]
            # Each part rode it out: serve had nothing to start again.
            assert "serve: " not in log_path.read_text(), log_path.read_text()[-3000:]
        finally:
            serve.send_signal(signal.SIGINT)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()

    answers = stream.answers
    statuses = {code for _, code, _ in answers}
    assert statuses <= {201, 503}, (statuses, log_path.read_text()[-3000:])
    for _, code, headers in answers:
        if code == 503:
            assert int(headers["Retry-After"]) > 0
            assert headers["Content-Type"].startswith("application/problem+json")
    app = create_app({"INSTANCE_PATH": str(instance)})
    with app.app_context():
        stored = dict(
            db.session.execute(
                select(Report.client_id, func.count()).group_by(Report.client_id)
            ).all()
        )
        db.engine.dispose()
    for client_id, code, _ in answers:
        expected = 1 if code == 201 else 0
        assert stored.get(client_id, 0) == expected, (
            client_id,
            code,
        )


def test_the_embedded_broker_gives_its_connection_back_when_a_write_fails(small_disk: Path):
    """The worker's side of it, in the transport itself: each time taking a message fails
    on the full disk the worker reconnects with a new channel. kombu's own channel kept
    its failed session (and its pooled connection) for as long as it lived, so a worker
    that reconnected often enough met `QueuePool limit ... reached` and died."""
    from kombu import Connection

    create_app({"INSTANCE_PATH": str(small_disk / "app")})  # chooses the transport
    url = f"sqla+sqlite:///{small_disk / 'broker.db'}"
    options = {"connect_args": {"timeout": 1}, "pool_size": 2, "max_overflow": 0, "pool_timeout": 1}
    with Connection(url, transport_options=options) as connection:
        queue = connection.SimpleQueue("faults")
        for number in range(5):
            queue.put({"number": number})
        filler = _fill(small_disk)
        channels = []  # held, as a consumer's reconnects may hold them
        try:
            for _ in range(6):  # more than the pool has connections
                attempt = Connection(url, transport_options=options)
                channel = attempt.default_channel
                channels.append((attempt, channel))
                with pytest.raises(OperationalError, match="full"):
                    channel._get("faults")
                attempt.release()
        finally:
            filler.unlink()
        taken = [queue.get(timeout=5).payload["number"] for _ in range(5)]
        assert sorted(taken) == list(range(5))  # none lost, none taken twice
        queue.close()
