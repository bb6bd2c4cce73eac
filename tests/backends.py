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


@contextmanager
def postgres_database(
    admin_url: str = POSTGRES_ADMIN_URL, prefix: str = "nt_test"
) -> Iterator[str]:
    """A new, empty PostgreSQL database (created through `admin_url`); dropped at the end,
    on errors and on Ctrl-C alike. The benchmarks use it too."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
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
