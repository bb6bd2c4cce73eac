"""Faults against the real parts: exactly once is the database's, not the timing's.

A PostgreSQL server of the test's own is stalled (every process stopped) while a phone
keeps resending the same head count, timing out and trying again, as phones do on a bad
network. When the database comes back, every resend that piled up reaches it at once:
one report is stored, and every answer the phone got names that one report.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask_migrate import upgrade
from sqlalchemy import func, select

from service import create_app
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Group, Report, Role, Site
from service.types import utcnow
from tests.backends import on_services
from tests.browser import live_server
from tests.helpers import CENTRE, wait_for
from tests.pgcluster import private_postgres

pytestmark = pytest.mark.skipif(
    not on_services(),
    reason="stalls a PostgreSQL server of its own; runs in the PostgreSQL + Redis pass",
)


class Phone:
    """Sends one head count with one key until it gets an answer, timing out after
    `timeout` seconds and trying again at once, as a field app on a bad network does."""

    def __init__(self, base: str, secret: str, body: dict[str, Any], key: str, timeout: float):
        self.request = dict(
            url=f"{base}/api/v1/reports",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {secret}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
            method="POST",
        )
        self.timeout = timeout
        self.timeouts = 0
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(**self.request)
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    self.answers.append((response.status, json.load(response)))
                    return
            except urllib.error.HTTPError as refused:
                self.answers.append((refused.code, json.load(refused)))
                if refused.code != 409:  # 409: still in flight; anything else is final
                    return
                time.sleep(float(refused.headers.get("Retry-After", "1")))
            except (TimeoutError, urllib.error.URLError):
                self.timeouts += 1


def test_a_stalled_database_while_a_phone_resends_stores_the_report_once(tmp_path: Path):
    with private_postgres() as server:
        url = server.create_database("needs")
        app = create_app(
            {"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path / "app"), "LOG_LEVEL": "WARNING"}
        )
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
            seed_sites(OPERATOR)
            group = Group(site_id=CENTRE, label="Stadium families")
            db.session.add(group)
            _, secret = issue_token(Role.coordinator, "phone", [db.session.get_one(Site, CENTRE)])
            db.session.commit()
            group_id = str(group.id)
        key = str(uuid.uuid4())
        body = {"group_id": group_id, "observed_at": utcnow().isoformat(), "total": 412}

        with live_server(url, tmp_path / "web") as base:
            phone = Phone(base, secret, body, key, timeout=1.5)
            server.stall()
            try:
                phone.thread.start()
                # The first request and three resends are stuck in the stalled database.
                wait_for(lambda: phone.timeouts >= 4, timeout=30)
            finally:
                server.resume()
            phone.thread.join(timeout=90)
            assert not phone.thread.is_alive(), "the phone never got an answer"

        with app.app_context():
            stored = db.session.execute(
                select(Report.id, Report.total).where(Report.client_id == key)
            ).all()
            assert db.session.execute(select(func.count()).select_from(Report)).scalar() == 1
            db.session.remove()
            db.engine.dispose()
    assert len(stored) == 1
    status, answer = phone.answers[-1]
    assert status in (200, 201), phone.answers
    assert (answer["id"], answer["total"]) == tuple(stored[0])
