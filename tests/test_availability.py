"""A database that is away is told apart from a fault in the work: the client gets a 503
with Retry-After (never a 500), and a bug is still a bug."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, PendingRollbackError

from service import create_app
from service.domain.availability import database_away
from tests.backends import on_services
from tests.browser import free_port
from tests.openapi_check import CheckedClient


def _unreachable_url(tmp_path: Path) -> str:
    if on_services():
        return f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    return f"sqlite:///{tmp_path / 'no-such-folder' / 'needs-tracker.db'}"


def test_an_unreachable_database_answers_503_with_retry_after(tmp_path: Path):
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path),
            "DATABASE_URL": _unreachable_url(tmp_path),
        }
    )
    app.test_client_class = CheckedClient
    client = app.test_client()

    for path in ("/api/v1/sites", "/api/v1/summaries/latest"):
        answer = client.get(path, headers={"Authorization": "Bearer some-token"})
        assert answer.status_code == 503, answer.get_data(as_text=True)
        assert answer.mimetype == "application/problem+json"
        assert int(answer.headers["Retry-After"]) > 0
        assert "Try again" in answer.get_json()["detail"]
    assert client.get("/readyz").status_code == 503


def test_a_locked_sqlite_database_is_away_for_a_moment(tmp_path: Path):
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with pytest.raises(OperationalError) as raised, engine.connect() as conn:
        conn.execute(text("SELECT * FROM t"))
    away = database_away(raised.value)
    assert away is not None and away.retry_after <= 5
    holder.close()


def test_a_refused_postgresql_connection_is_away():
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=2)
    assert database_away(raised.value) is not None


def test_a_broken_query_is_a_bug_not_an_outage(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(OperationalError) as raised, engine.connect() as conn:
        conn.execute(text("SELECT no_such_column FROM no_such_table"))
    assert database_away(raised.value) is None
    assert database_away(ValueError("a bad moment")) is None


def test_the_outage_behind_a_pending_rollback_is_found():
    """A cleanup that runs on the dead transaction raises PendingRollbackError; the
    outage that broke it is in its context, and decides."""
    try:
        try:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        finally:
            raise PendingRollbackError("Can't reconnect until invalid transaction is rolled back")
    except PendingRollbackError as error:
        assert database_away(error) is not None
