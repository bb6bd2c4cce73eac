"""The two backends the suite runs on: the embedded default, and PostgreSQL + Redis.

`NT_TEST_BACKEND=services` selects the second; `make test` runs the suite once on each.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

BACKEND = os.environ.get("NT_TEST_BACKEND", "embedded")
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def on_services() -> bool:
    return BACKEND == "services"


def postgres_url(database: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this run; dropped afterwards."""
    name = f"nt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_url(name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def empty_database(folder: Path) -> Iterator[str]:
    """A URL for an empty database of the backend under test."""
    if on_services():
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{folder / 'needs-tracker.db'}"
