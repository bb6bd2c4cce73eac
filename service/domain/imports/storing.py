"""Storing checked rows set-based: reports, their needs and the idempotency claims naming
them, a chunk at a time (COPY on PostgreSQL, multi-row INSERT ... RETURNING on SQLite)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite

from service.domain.imports.checking import Row
from service.extensions import db
from service.models import SADD_KEYS, VULNERABLE_KEYS, IdempotencyRecord, Report, ReportNeed

_reports = Report.__table__
_needs = ReportNeed.__table__
_claims = IdempotencyRecord.__table__


Placed = tuple[Row, uuid.UUID, str]


def _report_values(
    row: Row, group_id: uuid.UUID, site_id: str, received_at: datetime, token_id: int | None
) -> dict[str, Any]:
    data = row.data
    sadd = data.get("sadd") or {}
    vulnerable = data.get("vulnerable") or {}
    return {
        "group_id": group_id,
        "site_id": site_id,
        "observed_at": data["observed_at"],
        "received_at": received_at,
        "total": data["total"],
        **{key: sadd.get(key) for key in SADD_KEYS},
        **{key: vulnerable.get(key) for key in VULNERABLE_KEYS},
        "note": data.get("note"),
        "supersedes_id": None,
        "client_id": row.key,
        "token_id": token_id,
    }


class _GenericWriter:
    """Set-based writes with SQLAlchemy's multi-row INSERT ... RETURNING (SQLite)."""

    def store(
        self, token_id: int | None, received_at: datetime, placed: list[Placed]
    ) -> tuple[dict[str, int], set[str]]:
        """Insert the reports and their needs, then claim their keys (step 3 and 4)."""
        report_ids = self.reports(
            [_report_values(row, gid, site, received_at, token_id) for row, gid, site in placed]
        )
        needs = [
            {
                "report_id": report_ids[row.key],
                "sector": need["sector"],
                "severity": need["severity"],
                "note": need.get("note"),
            }
            for row, _, _ in placed
            for need in row.data.get("needs", ())
        ]
        if needs:
            self.needs(needs)
        claimed = self.claim(
            token_id,
            [
                {
                    "key": row.key,
                    "fingerprint": row.fingerprint,
                    "report_id": report_ids[row.key],
                }
                for row, gid, site in placed
            ],
            received_at,
        )
        return report_ids, claimed

    def claims(self, token_id: int | None, keys: list[str]) -> dict[str, tuple[str, int | None]]:
        """The keys already claimed by this token: (fingerprint, response status) each."""
        found = db.session.execute(
            select(_claims.c.key, _claims.c.fingerprint, _claims.c.response_status).where(
                _claims.c.token_id == token_id, _claims.c.key.in_(keys)
            )
        )
        return {key: (fingerprint, status) for key, fingerprint, status in found}

    def claim(
        self, token_id: int | None, claims: list[dict[str, Any]], claimed_at: datetime
    ) -> set[str]:
        rows = db.session.execute(
            sqlite.insert(_claims)
            .on_conflict_do_nothing(index_elements=["token_id", "key"])
            .returning(_claims.c.key),
            [
                {
                    "token_id": token_id,
                    "key": claim["key"],
                    "fingerprint": claim["fingerprint"],
                    "claimed_at": claimed_at,
                    "report_id": claim["report_id"],
                    "response_status": 201,
                }
                for claim in claims
            ],
        )
        return set(rows.scalars())

    def reports(self, values: list[dict[str, Any]]) -> dict[str, int]:
        rows = db.session.execute(
            _reports.insert().returning(_reports.c.id, _reports.c.client_id), values
        )
        return {key: report_id for report_id, key in rows}

    def needs(self, values: list[dict[str, Any]]) -> None:
        db.session.execute(_needs.insert(), values)

    def discard(self, report_ids: list[int]) -> None:
        db.session.execute(_needs.delete().where(_needs.c.report_id.in_(report_ids)))
        db.session.execute(_reports.delete().where(_reports.c.id.in_(report_ids)))


_REPORT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("group_id", "uuid"),
    ("site_id", "text"),
    ("observed_at", "timestamptz"),
    ("total", "integer"),
    *((key, "integer") for key in SADD_KEYS),
    *((key, "integer") for key in VULNERABLE_KEYS),
    ("note", "text"),
    ("client_id", "text"),
)


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_json_value, separators=(",", ":"))


def _json_value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # UUIDs


def _recordset(columns: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns)


_CLAIMS_UNIQUE = "uq_idempotency_records_token_key"

# The lines of one row for COPY's text format: its report, its needs (none or more
# lines) and its claim, each line ending in a newline.
Lines = tuple[str, str, str]
Store = Callable[[int | None, datetime, list[Placed]], tuple[dict[str, int], set[str]]]


class KeyTaken(Exception):
    """A key in the chunk is claimed already: the COPY was refused, nothing is stored."""


def _copy_text(value: str | None) -> str:
    """A text value in COPY's text format (tabs, newlines and backslashes escaped)."""
    if value is None:
        return "\\N"
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _copy_int(value: int | None) -> str:
    return "\\N" if value is None else str(value)


_COPY_REPORTS = (
    "COPY reports (id, group_id, site_id, received_at, token_id, observed_at, total, "
    + ", ".join((*SADD_KEYS, *VULNERABLE_KEYS))
    + ", note, client_id) FROM STDIN"
)
_COPY_NEEDS = "COPY report_needs (report_id, sector, severity, note) FROM STDIN"
_COPY_CLAIMS = (
    "COPY idempotency_records (token_id, key, fingerprint, claimed_at, report_id, "
    "response_status) FROM STDIN"
)
_NO_SADD = "\t".join(["\\N"] * len(SADD_KEYS))
_NO_VULNERABLE = "\t".join(["\\N"] * len(VULNERABLE_KEYS))


def lay_out(
    placed: list[Placed], token_id: int | None, received_at: datetime, names: dict[Any, str]
) -> list[Lines]:
    """Each placed row's COPY lines, with a report id from the sequence (in the order of
    the file: the id is the order of receipt, the counting rule's tie-breaker). `names`
    keeps each group's and site's text, written once per import."""
    report_ids = _postgres.reserve_ids(len(placed))
    # What every line of the chunk shares.
    received = received_at.isoformat()
    claim_tail = f"\t{received}\t"
    token = _copy_int(token_id)
    lines = []
    for (row, gid, site), report_id in zip(placed, report_ids, strict=True):
        data = row.data
        group = names.get(gid)
        if group is None:
            group = names[gid] = str(gid)
        where = names.get(site)
        if where is None:
            where = names[site] = _copy_text(site)
        sadd = data.get("sadd")
        vulnerable = data.get("vulnerable")
        note = data.get("note")
        # A sector is one of NEEDS_SECTORS and a key a UUID's text or "import:" and hex
        # digits: both go in as they are.
        report = (
            f"{report_id}\t{group}\t{where}\t{received}\t{token}\t{row.observed}\t"
            f"{data['total']}\t"
            f"{_SADD_LINE % tuple(map(sadd.__getitem__, SADD_KEYS)) if sadd else _NO_SADD}\t"
            f"{_vulnerable_cells(vulnerable) if vulnerable else _NO_VULNERABLE}\t"
            f"{_copy_text(note)}\t{row.key}\n"
        )
        needs = data.get("needs")
        laid_needs = (
            "".join(
                f"{report_id}\t{need['sector']}\t{need['severity']}\t"
                f"{_copy_text(need.get('note'))}\n"
                for need in needs
            )
            if needs
            else ""
        )
        claim = f"{token}\t{row.key}\t{row.fingerprint}{claim_tail}{report_id}\t201\n"
        lines.append((report, laid_needs, claim))
    return lines


# A row's eight breakdown cells.
_SADD_LINE = "\t".join(["%d"] * len(SADD_KEYS))


def _vulnerable_cells(vulnerable: dict[str, int]) -> str:
    return "\t".join([_copy_int(vulnerable.get(key)) for key in VULNERABLE_KEYS])


class _PostgresWriter:
    """The same writes on PostgreSQL with COPY, straight into the tables (every index,
    check constraint and foreign key applies to COPY as to INSERT).

    The chunk's report ids are taken from the reports' sequence first and its lines laid
    out (`lay_out`, in the checking thread), so the reports, their needs and the claims
    naming them are three COPYs with nothing to read back. When a key is claimed
    already, the unique constraint refuses the claims and the chunk's transaction is
    rolled back (it holds nothing else); the chunk is then stored the careful way
    (`store_racing`), where the constraint decides key by key."""

    def copy_lines(self, lines: list[Lines]) -> None:
        """COPY the rows' reports, needs and claims into the session's transaction;
        `KeyTaken` (the transaction is then aborted) when a key is claimed already."""
        import psycopg.errors

        connection = db.session.connection()
        cursor = connection.connection.driver_connection.cursor()
        try:
            for statement, part in ((_COPY_REPORTS, 0), (_COPY_NEEDS, 1), (_COPY_CLAIMS, 2)):
                data = "".join(row[part] for row in lines)
                if data:
                    with cursor.copy(statement) as copy:
                        copy.write(data)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != _CLAIMS_UNIQUE:
                raise
            raise KeyTaken from None
        finally:
            cursor.close()

    def store_racing(
        self, token_id: int | None, received_at: datetime, placed: list[Placed]
    ) -> tuple[dict[str, int], set[str]]:
        """One statement for the chunk, the rows as one JSON parameter: the claims go in
        first, ON CONFLICT DO NOTHING, and only the keys this chunk claimed get their
        report and needs (foreign keys are checked at the end of the statement). A key
        another writer holds gets nothing here: there is nothing to take back."""
        report_ids = self.reserve_ids(len(placed))
        rows = []
        needs = []
        for (row, gid, site), report_id in zip(placed, report_ids, strict=True):
            values = _report_values(row, gid, site, received_at, token_id)
            # As JSON-native values, so the whole chunk is encoded in C.
            values["id"] = report_id
            values["group_id"] = str(gid)
            values["observed_at"] = row.data["observed_at"].isoformat()
            del values["received_at"], values["token_id"], values["supersedes_id"]
            values["fingerprint"] = row.fingerprint
            rows.append(values)
            for need in row.data.get("needs", ()):
                needs.append(
                    {
                        "report_id": report_id,
                        "sector": need["sector"],
                        "severity": need["severity"],
                        "note": need.get("note"),
                    }
                )
        names = ", ".join(name for name, _ in _REPORT_COLUMNS)
        columns = _recordset([("id", "integer"), *_REPORT_COLUMNS, ("fingerprint", "text")])
        result = db.session.execute(
            text(
                f"WITH u AS (SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS ({columns})), "
                "c AS (INSERT INTO idempotency_records (token_id, key, fingerprint, claimed_at, "
                "report_id, response_status) "
                "SELECT :token_id, client_id, fingerprint, :received_at, id, 201 FROM u "
                "ORDER BY id ON CONFLICT (token_id, key) DO NOTHING RETURNING key, report_id), "
                f"r AS (INSERT INTO reports (id, {names}, received_at, token_id) "
                f"SELECT u.id, {', '.join(f'u.{name}' for name, _ in _REPORT_COLUMNS)}, "
                ":received_at, :token_id FROM u JOIN c ON c.report_id = u.id ORDER BY u.id "
                "RETURNING id), "
                "n AS (INSERT INTO report_needs (report_id, sector, severity, note) "
                "SELECT x.report_id, x.sector, x.severity, x.note FROM ROWS FROM ("
                "json_to_recordset(CAST(:needs AS json)) AS (report_id integer, sector text, "
                "severity integer, note text)) WITH ORDINALITY AS x(report_id, sector, "
                "severity, note, ord) JOIN r ON r.id = x.report_id ORDER BY x.ord) "
                "SELECT key, report_id FROM c"
            ),
            {
                "rows": _json(rows),
                "needs": _json(needs),
                "received_at": received_at,
                "token_id": token_id,
            },
        )
        stored = dict(result.tuples().all())
        return stored, set(stored)

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

    def claims(self, token_id: int | None, keys: list[str]) -> dict[str, tuple[str, int | None]]:
        # One probe of the unique index per key, whatever the planner's statistics say
        # (a table grown by this very import looks tiny to it, and a join would scan
        # every claim of the token for each chunk).
        found = db.session.execute(
            text(
                "SELECT k.key, c.fingerprint, c.response_status "
                "FROM unnest(CAST(:keys AS text[])) AS k(key) CROSS JOIN LATERAL ("
                "SELECT fingerprint, response_status FROM idempotency_records c "
                "WHERE c.token_id = :token_id AND c.key = k.key LIMIT 1) AS c"
            ),
            {"keys": keys, "token_id": token_id},
        )
        return {key: (fingerprint, status) for key, fingerprint, status in found}


_generic = _GenericWriter()
_postgres = _PostgresWriter()
