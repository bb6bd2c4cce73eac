"""The writer on PostgreSQL: one statement per set of reports, and COPY for imports.

The set goes to the statement as one JSON text (`json_to_recordset`). The statement
takes the report ids from the sequence in the order of the rows (the id is the order of
receipt, the counting rule's tie-breaker), inserts the reports `ON CONFLICT (token_id,
client_id) DO NOTHING`, then the needs and (for the API) the audit events of the
reports it stored, and answers which rows got which id. A row whose key another request
stored meanwhile gets none: the unique constraint decides, whatever the timing.

`write` (the API's reports) does it all in one round trip: the same statement first
looks each report's names up (its group's site, the group of the report it corrects,
what its key names: each by its own index probe, whatever plan the prepared statement
gets), takes a transaction-scoped advisory lock on each free key
(`pg_try_advisory_xact_lock`: a second request with the same key, while the first is
still storing it, finds the lock taken and is told the first is in flight, instead of
waiting on the unique index until it ends), and stores only the reports that may be
stored (writer.storable, stated again in SQL). `store` (an import's rows, placed and
checked already) stores them as given.

An import's chunks go in by COPY (`copy`), their lines laid out beforehand (`lay_out`,
in the import's checking thread) with report ids taken from the sequence (`reserve_ids`).
A key taken already makes the unique constraint refuse the COPY (`KeyTaken`); the chunk
is then stored again with `store`, where the constraint decides key by key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text

from service.domain.callers import Caller
from service.domain.headcounts import HeadCount
from service.domain.writer import Found, NewReport, Stored, Written
from service.extensions import db
from service.models import SADD_KEYS, VULNERABLE_KEYS

KEY_CONSTRAINT = "uq_reports_token_key"

_COUNTS = (*SADD_KEYS, *VULNERABLE_KEYS)
# A set of reports goes to the statement as one JSON text (encoded in C, read by
# json_to_recordset), not as an array per column: psycopg adapts arrays element by
# element in Python, which cost more than the statement itself for a batch of 500.
_RECORD = ", ".join(
    [
        "ord integer",
        "group_id uuid",
        "site_id text",
        "observed text",
        "total integer",
        *(f"{key} integer" for key in _COUNTS),
        "note text",
        "supersedes_id integer",
        "client_id text",
        "fingerprint text",
        "needs json",
    ]
)
_STORED = (
    "group_id, site_id, total, "
    + ", ".join(_COUNTS)
    + ", note, supersedes_id, client_id, fingerprint"
)
_AUDIT = """,
    a AS (
        INSERT INTO audit_events (at, token_id, actor, action, entity_type, entity_id, after)
        SELECT CAST(:received_at AS timestamptz), :token_id, :actor, 'report.create', 'report',
               CAST(u.id AS text),
               jsonb_build_object('group_id', CAST(u.group_id AS text), 'site_id', u.site_id,
                                  'observed_at', u.observed, 'total', u.total,
                                  'supersedes', u.supersedes_id)
        FROM u JOIN r ON r.id = u.id ORDER BY u.ord
    )"""


# The reports of a set, as rows: ord, group_id, site_id, observed, total, the counts,
# note, supersedes_id, client_id, fingerprint, needs (JSON).
_ROWS = f"json_to_recordset(CAST(:rows AS json)) AS x({_RECORD})"
_FIELDS = (
    "group_id, observed, total, "
    + ", ".join(_COUNTS)
    + (", note, supersedes_id, client_id, fingerprint, needs")
)

# `write`: each report's names looked up (its group's site, the group of the report it
# corrects, what its key names), each free key held (a transaction-scoped advisory lock,
# so a second request with it is told it is in flight), and the reports that may be
# stored stored. What may be stored is writer.storable, stated here again in SQL: the key
# is free and held, the group exists at a site the caller may write for (admins: any;
# coordinators: their token's), and a report it corrects is one of its group's.
_CHECKED = f"""
    k AS (
        SELECT x.*, g.site_id AS group_site, s.group_id AS corrected_group,
               e.id AS stored_id, e.fingerprint AS stored_fingerprint
        FROM {_ROWS}
        LEFT JOIN LATERAL (SELECT site_id FROM groups WHERE id = x.group_id LIMIT 1) g ON true
        LEFT JOIN LATERAL (
            SELECT group_id FROM reports WHERE id = x.supersedes_id LIMIT 1
        ) s ON true
        LEFT JOIN LATERAL (
            SELECT id, fingerprint FROM reports
            WHERE token_id = :token_id AND client_id = x.client_id LIMIT 1
        ) e ON true
    ),
    c AS (
        SELECT k.*,
               CASE WHEN k.client_id IS NULL OR k.stored_id IS NOT NULL THEN true
                    ELSE coalesce(
                        pg_try_advisory_xact_lock(hashtextextended(:holder || k.client_id, 0)),
                        true)
               END AS free
        FROM k
    ),
    u AS (
        -- Every row, an id only for those to store: so the planner, which cannot see how
        -- many pass, still expects a set (a filter here made it expect one row and join
        -- the needs and the audit to the stored reports row by row).
        SELECT CASE WHEN stored_id IS NULL AND free AND group_site IS NOT NULL
                         AND (:any_site OR group_site = ANY(CAST(:sites AS text[])))
                         AND (supersedes_id IS NULL OR corrected_group = group_id)
                    THEN nextval('reports_id_seq') END AS id,
               ord, group_site AS site_id, {_FIELDS}
        FROM c
        ORDER BY ord
    )"""
# `store`: the rows as they come (an import has placed and checked them already).
_AS_GIVEN = f"""
    u AS (SELECT nextval('reports_id_seq') AS id, x.* FROM {_ROWS})"""


def _statement(source: str, audit: bool, answer: str) -> Any:
    return text(
        f"""
        WITH {source},
        r AS (
            INSERT INTO reports (id, {_STORED}, observed_at, received_at, token_id)
            SELECT id, {_STORED}, CAST(observed AS timestamptz),
                   CAST(:received_at AS timestamptz), :token_id
            FROM u WHERE id IS NOT NULL ORDER BY ord
            ON CONFLICT (token_id, client_id) DO NOTHING
            RETURNING id
        ),
        n AS (
            INSERT INTO report_needs (report_id, sector, severity, note)
            SELECT u.id, x.sector, x.severity, x.note
            FROM u JOIN r ON r.id = u.id
            CROSS JOIN LATERAL ROWS FROM (
                json_to_recordset(u.needs) AS (sector text, severity integer, note text)
            ) WITH ORDINALITY AS x(sector, severity, note, n)
            WHERE u.needs IS NOT NULL
            ORDER BY u.ord, x.n
        ){_AUDIT if audit else ""}
        {answer}
        """
    )


_STORE = {
    audit: _statement(_AS_GIVEN, audit, "SELECT u.ord, u.id FROM u JOIN r ON r.id = u.id")
    for audit in (True, False)
}
_WRITE = _statement(
    _CHECKED,
    True,
    "SELECT c.group_site, c.corrected_group, c.stored_id, c.stored_fingerprint, c.free, r.id "
    "FROM c LEFT JOIN u ON u.ord = c.ord LEFT JOIN r ON r.id = u.id ORDER BY c.ord",
)


def _as_json(
    ord_: int, report: HeadCount, key: str | None, group_id: Any, site_id: str | None
) -> dict[str, Any]:
    """A row of the statements' JSON: what is not given is left out (read as NULL)."""
    values: dict[str, Any] = {
        "ord": ord_,
        "group_id": str(group_id),
        "observed": report.observed,
        "total": report.total,
    }
    if site_id is not None:
        values["site_id"] = site_id
    if report.sadd:
        values.update(report.sadd)
    if report.vulnerable:
        values.update(report.vulnerable)
    if report.note is not None:
        values["note"] = report.note
    if report.supersedes is not None:
        values["supersedes_id"] = report.supersedes
    if key is not None:
        values["client_id"] = key
        values["fingerprint"] = report.fingerprint
    if report.needs:
        values["needs"] = [
            {"sector": n.sector, "severity": n.severity, "note": n.note} for n in report.needs
        ]
    return values


class PostgresWriter:
    def write(
        self, caller: Caller, received_at: datetime, reports: Sequence[HeadCount]
    ) -> list[Written]:
        """One statement: the reports looked up, checked and (those that may be) stored."""
        rows = db.session.execute(
            _WRITE,
            {
                "rows": json.dumps(
                    [
                        _as_json(n, report, report.client_id, report.group_id, None)
                        for n, report in enumerate(reports)
                    ]
                ),
                "received_at": received_at,
                "token_id": caller.token_id,
                "actor": caller.name,
                "holder": key_lock_prefix(caller.token_id),
                "any_site": caller.is_admin,
                "sites": sorted(caller.site_ids),
            },
        )
        return [
            Written(
                Found(
                    site_id=site_id,
                    supersedes_group=corrected,
                    stored=Stored(stored_id, fingerprint) if stored_id is not None else None,
                    in_flight=not free,
                ),
                report_id,
            )
            for site_id, corrected, stored_id, fingerprint, free, report_id in rows
        ]

    def stored_keys(self, token_id: int | None, keys: Sequence[str]) -> dict[str, Stored]:
        if not keys:
            return {}
        # One probe of the unique index per key, whatever the planner's statistics say
        # (a table grown by this very import looks tiny to it, and a join would scan
        # every report of the token for each chunk).
        found = db.session.execute(
            text(
                "SELECT k.key, e.id, e.fingerprint "
                "FROM unnest(CAST(:keys AS text[])) AS k(key) CROSS JOIN LATERAL ("
                "SELECT id, fingerprint FROM reports e "
                "WHERE e.token_id = :token_id AND e.client_id = k.key LIMIT 1) AS e"
            ),
            {"keys": list(keys), "token_id": token_id},
        )
        return {key: Stored(report_id, fingerprint) for key, report_id, fingerprint in found}

    def group_sites(self, group_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not group_ids:
            return {}
        rows = db.session.execute(
            text("SELECT id, site_id FROM groups WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": list(set(group_ids))},
        )
        return dict(rows.tuples().all())

    def store(
        self,
        caller: Caller,
        received_at: datetime,
        rows: Sequence[NewReport],
        *,
        audit: bool,
    ) -> list[int | None]:
        if not rows:
            return []
        stored = db.session.execute(
            _STORE[audit],
            {
                "rows": json.dumps(
                    [
                        _as_json(n, row.report, row.key, row.group_id, row.site_id)
                        for n, row in enumerate(rows)
                    ]
                ),
                "received_at": received_at,
                "token_id": caller.token_id,
                "actor": caller.name,
            },
        )
        ids: list[int | None] = [None] * len(rows)
        for ord_, report_id in stored:
            ids[ord_] = report_id
        return ids

    # -- an import's chunks, by COPY ---------------------------------------------------

    def reserve_ids(self, count: int) -> list[int]:
        """`count` report ids from the reports' sequence, ascending: the order of the file
        (the id is the order of receipt, the counting rule's tie-breaker)."""
        return db.session.execute(
            text(
                "SELECT array_agg(id ORDER BY id) FROM (SELECT nextval('reports_id_seq') AS id "
                "FROM generate_series(1, :n)) AS ids"
            ),
            {"n": count},
        ).scalar_one()

    def lay_out(
        self,
        rows: Sequence[NewReport],
        report_ids: Sequence[int],
        token_id: int | None,
        received_at: datetime,
        names: dict[Any, str],
    ) -> list[Lines]:
        """Each row's COPY lines, with its report id. `names` keeps each group's and site's
        text, written once per import. A key (a UUID's text, or "import:" and hex digits)
        and a sector (one of NEEDS_SECTORS) go in as they are: nothing in them to escape."""
        received = received_at.isoformat()
        token = _copy_int(token_id)
        lines = []
        for row, report_id in zip(rows, report_ids, strict=True):
            report = row.report
            group = names.get(row.group_id)
            if group is None:
                group = names[row.group_id] = str(row.group_id)
            where = names.get(row.site_id)
            if where is None:
                where = names[row.site_id] = copy_text(row.site_id)
            sadd = report.sadd
            vulnerable = report.vulnerable
            key = row.key if row.key is not None else "\\N"
            signed = report.fingerprint if row.key is not None else "\\N"
            line = (
                f"{report_id}\t{group}\t{where}\t{received}\t{token}\t{report.observed}\t"
                f"{report.total}\t"
                f"{_SADD_LINE % tuple(map(sadd.__getitem__, SADD_KEYS)) if sadd else _NO_SADD}\t"
                f"{_vulnerable_cells(vulnerable) if vulnerable else _NO_VULNERABLE}\t"
                f"{copy_text(report.note)}\t{key}\t{signed}\n"
            )
            needs = (
                "".join(
                    f"{report_id}\t{need.sector}\t{need.severity}\t{copy_text(need.note)}\n"
                    for need in report.needs
                )
                if report.needs
                else ""
            )
            lines.append((line, needs))
        return lines

    def copy(self, lines: Sequence[tuple[str, str]]) -> None:
        """COPY the rows' reports and needs (each row's lines, from `lay_out`) into the
        session's transaction, inside a savepoint: `KeyTaken` (the savepoint rolled
        back, nothing of the chunk stored) when a key is taken already."""
        import psycopg.errors

        savepoint = db.session.begin_nested()
        cursor = db.session.connection().connection.driver_connection.cursor()
        try:
            for statement, part in ((_COPY_REPORTS, 0), (_COPY_NEEDS, 1)):
                data = "".join(row[part] for row in lines)
                if data:
                    with cursor.copy(statement) as copy:
                        copy.write(data)
        except psycopg.errors.UniqueViolation as exc:
            savepoint.rollback()
            if exc.diag.constraint_name != KEY_CONSTRAINT:
                raise
            raise KeyTaken from None
        except BaseException:
            savepoint.rollback()
            raise
        finally:
            cursor.close()
        savepoint.commit()


def key_lock_prefix(token_id: int | None) -> str:
    """The name of a key's lock, before the key: the token, then the key, hashed to 64 bits."""
    return f"report-key:{token_id}:"


class KeyTaken(Exception):
    """A key in the chunk is taken already: the COPY was refused, nothing is stored."""


# -- COPY's text format ------------------------------------------------------------------

_COPY_REPORTS = (
    "COPY reports (id, group_id, site_id, received_at, token_id, observed_at, total, "
    + ", ".join(_COUNTS)
    + ", note, client_id, fingerprint) FROM STDIN"
)
_COPY_NEEDS = "COPY report_needs (report_id, sector, severity, note) FROM STDIN"
_NO_SADD = "\t".join(["\\N"] * len(SADD_KEYS))
_NO_VULNERABLE = "\t".join(["\\N"] * len(VULNERABLE_KEYS))
_SADD_LINE = "\t".join(["%d"] * len(SADD_KEYS))

# The lines of one row for COPY's text format: its report and its needs (none or more
# lines), each line ending in a newline.
Lines = tuple[str, str]


def copy_text(value: str | None) -> str:
    """A text value in COPY's text format (tabs, newlines and backslashes escaped)."""
    if value is None:
        return "\\N"
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _copy_int(value: int | None) -> str:
    return "\\N" if value is None else str(value)


def _vulnerable_cells(vulnerable: dict[str, int]) -> str:
    return "\t".join([_copy_int(vulnerable.get(key)) for key in VULNERABLE_KEYS])


WRITER = PostgresWriter()
