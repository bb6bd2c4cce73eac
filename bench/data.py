"""A throw-away PostgreSQL database, migrated like production, and set-based data loading.

Everything is loaded with `INSERT ... SELECT generate_series(...)` in the database: no
Python loop of ORM inserts. The data has the shapes the summary looks for: most groups
counted in the last hours, a few stale ones, a few miscounts (conflicts and jumps), a
share of reports with a full sex-and-age breakdown, vulnerabilities, reported needs,
departures with their status history, and a few moves between sites.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime

import click
import psycopg
from flask import Flask
from flask_migrate import upgrade
from psycopg import sql

from service import create_app
from service.extensions import db
from service.models import NEEDS_SECTORS, SADD_KEYS
from tests.backends import postgres_database

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Every 50th group (by a hash of its id) is never counted in the last 8 hours: stale.
STALE_GROUP = 1
# Every 50th group (another residue) moved here from another site days ago.
MOVED_GROUP = 2
# Every 20th group has departed, within the last 3 hours (so some in this period).
DEPARTED_EVERY = 20


def throwaway_database() -> AbstractContextManager[str]:
    """A new, empty database for one benchmark run; dropped at the end."""
    return postgres_database(ADMIN_URL, prefix="bench")


@contextmanager
def migrated_app(url: str) -> Iterator[Flask]:
    """The app on that database, with the schema built by the migrations."""
    with tempfile.TemporaryDirectory(prefix="nt-bench-") as instance:
        app = create_app({"INSTANCE_PATH": instance, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"})
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
        try:
            yield app
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def run_setup(app: Flask, conn: psycopg.Connection, url: str, statements: Sequence[str]) -> None:
    """Statements to try a change with; the app's connections are renewed to see them."""
    name = sql.Identifier(url.rpartition("/")[2]).as_string(conn)
    for statement in statements:
        click.echo(f"  setup: {statement}")
        conn.execute(statement.replace("{database}", name).encode())
    with app.app_context():
        db.engine.dispose()


def _group_hash(column: str) -> str:
    return f"abs(hashtext({column}::text))"


def load_fixed(conn: psycopg.Connection, now: datetime, sites: int, groups: int) -> None:
    """Sites, one API token, groups, their departures and moves."""
    params = {"now": now, "sites": sites, "groups": groups}
    conn.execute("SELECT setseed(0.42)")
    conn.execute(
        """
        INSERT INTO sites (id, name, kind, capacity, active, created_at, updated_at)
        SELECT format('bench-site-%%s', lpad(i::text, 3, '0')), format('Bench site %%s', i),
               'other', CASE WHEN i %% 10 = 0 THEN 40000 END, true, %(now)s, %(now)s
        FROM generate_series(1, %(sites)s) AS i
        """,
        params,
    )
    conn.execute(
        """
        INSERT INTO api_tokens (name, role, prefix, secret_hash, created_at)
        VALUES ('bench loader', 'admin', 'bench',
                encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'hex'), %(now)s)
        """,
        params,
    )
    conn.execute(
        f"""
        INSERT INTO groups (id, site_id, label, origin, status, created_at, updated_at)
        SELECT gen_random_uuid(),
               format('bench-site-%%s', lpad((1 + (i - 1) %% %(sites)s)::text, 3, '0')),
               format('Group %%s', i), format('Village %%s', 1 + i %% 300),
               CASE WHEN i %% {DEPARTED_EVERY} = 0 THEN 'departed' ELSE 'waiting' END,
               %(now)s - interval '5 days', %(now)s - interval '5 days'
        FROM generate_series(1, %(groups)s) AS i
        """,
        params,
    )
    conn.execute(
        """
        INSERT INTO group_status_changes (group_id, from_status, to_status, changed_at)
        SELECT id, 'waiting', 'departed', %(now)s - random() * interval '3 hours'
        FROM groups WHERE status = 'departed'
        """,
        params,
    )
    conn.execute(
        f"""
        INSERT INTO group_moves (group_id, from_site_id, to_site_id, moved_at)
        SELECT g.id,
               (SELECT s.id FROM sites s WHERE s.id <> g.site_id ORDER BY s.id LIMIT 1),
               g.site_id, %(now)s - interval '4 days'
        FROM groups g WHERE {_group_hash("g.id")} %% 50 = {MOVED_GROUP}
        """,
        params,
    )


def _sadd_columns() -> tuple[str, str]:
    """The eight breakdown columns, as shares of `total` whose floors leave a remainder ≥ 0."""
    percents = (8, 12, 25, 6, 8, 11, 22)
    parts = [f"total * {p} / 100" for p in percents]
    parts.append(f"total - ({' + '.join(parts)})")
    names = ", ".join(SADD_KEYS)
    values = ", ".join(f"CASE WHEN with_sadd THEN {p} END" for p in parts)
    return names, values


def load_reports(
    conn: psycopg.Connection, now: datetime, per_group: int, first: bool
) -> tuple[int, int]:
    """`per_group` more reports for every group, in order of receipt, and some needs.

    The first batch gives every (non-stale) group a count in the last 3 hours; all
    observations are at or before `now`. Returns (reports, needs) inserted.
    """
    token_id = conn.execute("SELECT min(id) FROM api_tokens").fetchone()[0]
    after = conn.execute("SELECT coalesce(max(id), 0) FROM reports").fetchone()[0]
    sadd_names, sadd_values = _sadd_columns()
    params = {"now": now, "per_group": per_group, "first": first, "token": token_id}
    reports = conn.execute(
        f"""
        WITH drawn AS (
            SELECT g.id AS group_id, g.site_id, {_group_hash("g.id")} AS h, k,
                   random() AS r1, random() AS r2, random() AS r3
            FROM groups g CROSS JOIN generate_series(1, %(per_group)s) AS k
        ), shaped AS (
            SELECT group_id, site_id, r2, r3,
                   %(now)s::timestamptz - CASE
                       WHEN h %% 50 = {STALE_GROUP}
                           THEN interval '8 hours' + r1 * interval '64 hours'
                       WHEN %(first)s AND k = 1 THEN r1 * interval '3 hours'
                       ELSE r1 * interval '72 hours'
                   END AS observed_at,
                   (CASE WHEN r2 < 0.01 THEN (20 + h %% 400) * (0.4 + r3)
                         ELSE (20 + h %% 400) * (0.97 + 0.06 * r3) END)::int AS total,
                   r2 >= 0.4 AS with_sadd,
                   r2 BETWEEN 0.3 AND 0.8 AS with_vulnerable
            FROM drawn
        )
        INSERT INTO reports (
            group_id, site_id, observed_at, received_at, total, {sadd_names},
            pregnant_lactating, disabled, unaccompanied_minors, injured, chronically_ill,
            token_id
        )
        SELECT group_id, site_id, observed_at,
               least(observed_at + r3 * interval '30 minutes', %(now)s::timestamptz), total,
               {sadd_values},
               CASE WHEN with_vulnerable THEN total * 3 / 100 END,
               CASE WHEN with_vulnerable THEN total / 50 END,
               CASE WHEN with_vulnerable THEN total / 100 END,
               CASE WHEN with_vulnerable THEN total / 40 END,
               CASE WHEN with_vulnerable THEN total / 20 END,
               %(token)s
        FROM shaped
        ORDER BY least(observed_at + r3 * interval '30 minutes', %(now)s::timestamptz)
        """,
        params,
    ).rowcount
    sectors = "ARRAY[" + ", ".join(f"'{s}'" for s in NEEDS_SECTORS) + "]"
    needs = conn.execute(
        f"""
        INSERT INTO report_needs (report_id, sector, severity, note)
        SELECT id, ({sectors})[1 + id %% 9], 1 + (id / 9) %% 5, NULL
        FROM reports WHERE id > %(after)s AND id %% 3 = 0
        UNION ALL
        SELECT id, ({sectors})[1 + (id + 4) %% 9], 1 + (id / 7) %% 5, 'bench'
        FROM reports WHERE id > %(after)s AND id %% 9 = 0
        """,
        {"after": after},
    ).rowcount
    return reports, needs


def analyze(conn: psycopg.Connection) -> None:
    """Fresh statistics and visibility map, as autovacuum would leave them."""
    conn.execute("VACUUM (ANALYZE)")
