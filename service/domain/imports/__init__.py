"""Bulk head counts from a CSV file: the path `needs-tracker import`, the API's upload and
the demo share.

A row is checked with the same field rules as `POST /api/v1/reports` (the API's own
field classes) and the same counting rules (`reports.check_rules`); a bad row stores
nothing and is reported with its row number, field and message. Good rows are stored
set-based, a chunk at a time, each chunk in one transaction:

1. the idempotency keys already claimed by this token are looked up: the same key with
   the same content is "already imported", with other content it is an error row (on
   PostgreSQL this look-up is skipped until a chunk meets a taken key: the unique
   constraint in step 4 finds them as surely, and a new file goes in faster);
2. groups named by `group_label` + `site_id` are found, or created once per import;
3. the reports (and their needs) are inserted for the new keys;
4. the keys are claimed, each claim naming its report (a resend through the API renders
   its answer from that report, as the first answer was). On PostgreSQL the chunk's
   report ids come from the sequence up front and the reports, needs and claims are
   COPYed in, in a transaction that holds nothing else; if a key is taken, the unique
   constraint refuses the claims, the transaction is rolled back, and the chunk is
   stored again in one statement that claims first, ON CONFLICT DO NOTHING, and stores
   reports only for the keys it got. On SQLite the reports go in first and a report
   whose key another writer took is deleted again before the transaction commits.
   Either way it is never seen, let alone counted twice.

Rows are read and checked one chunk ahead, in a thread, while the previous chunk is in
the database (`checking.quick_row` first, `checking.parse_row` where it steps aside).
On PostgreSQL that thread also does steps 2 and 3's groundwork with its own session:
groups are found or created (and committed) there, report ids taken and the COPY lines
laid out, so the importing thread only looks keys up when needed and sends the lines.

A row's key is its `client_id` (as in a batch), or a key derived from the row's
content, so importing the same file again stores nothing new.
"""

from __future__ import annotations

import csv
import queue
import secrets
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, TypeVar

from flask import current_app
from sqlalchemy import select

from service import audit
from service.auth import OPERATOR, Caller
from service.domain.groups import create_group
from service.domain.imports.checking import Row, parse_row, quick_row
from service.domain.imports.reading import COLUMNS, CsvSource, ImportFileError
from service.domain.imports.storing import (
    KeyTaken,
    Lines,
    Placed,
    Store,
    _generic,
    _postgres,
    lay_out,
)
from service.errors import Problem
from service.extensions import db
from service.models import ApiToken, Group, Role
from service.types import utcnow

__all__ = [
    "COLUMNS",
    "CHUNK_SIZE",
    "IMPORT_TOKEN_NAME",
    "CsvSource",
    "ImportFileError",
    "ImportResult",
    "Importer",
    "RowError",
    "checked_chunks",
    "import_csv",
    "parse_row",
    "system_caller",
    "write_error_report",
]

# One transaction per chunk: big enough for set-based inserts to pay off, small enough
# that a chunk's parameters stay well inside SQLite's and PostgreSQL's limits.
CHUNK_SIZE = 2000

# Seconds the checking thread may keep the interpreter while the importing one waits.
SWITCH_INTERVAL = 0.0005

IN_FLIGHT = (
    "The same report is being stored by another request right now; import again in a minute."
)

# A row refused when placed: the row, the field and why.
Refusal = tuple[Row, str, str]


@dataclass
class Prepared:
    """A chunk checked, placed and laid out for COPY in the checking thread (PostgreSQL):
    the rows placed, each with its lines (report, needs, claim), and the rows refused."""

    checked: list[Checked]
    # The first row of each key, then the rows repeating a key (stored a round later).
    placed: list[tuple[Placed, Lines]]
    again: list[tuple[Placed, Lines]]
    refused: list[Refusal]
    groups_created: int
    # Rows whose keys were found claimed before placing (a re-import), with the claim.
    claimed: list[tuple[Row, tuple[str, int | None]]]


# A row as checked: its number, the report or its errors, and its client_id as written.
Checked = tuple[int, "Row | list[tuple[str, str]]", "str | None"]


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str
    client_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "client_id": self.client_id,
            "field": self.field,
            "message": self.message,
        }


@dataclass
class ImportResult:
    file: str
    rows: int = 0
    stored: int = 0
    already_imported: int = 0
    failed: int = 0
    groups_created: int = 0
    errors: list[RowError] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "stored": self.stored,
            "already_imported": self.already_imported,
            "failed": self.failed,
            "groups_created": self.groups_created,
        }


# ---------------------------------------------------------------------------------------
# Storing rows
# ---------------------------------------------------------------------------------------


def system_caller(name: str) -> Caller:
    """An admin token for work done on the machine itself (`import`, `demo`), so reports
    keep a token and idempotency keys stay scoped. Its secret is unusable: the stored hash
    is not a SHA-256, so no bearer token can ever match it."""
    token = db.session.execute(
        select(ApiToken).where(
            ApiToken.name == name,
            ApiToken.prefix == SYSTEM_PREFIX,
            ApiToken.revoked_at.is_(None),
        )
    ).scalar_one_or_none()
    if token is None:
        token = ApiToken(
            name=name,
            role=Role.admin,
            prefix=SYSTEM_PREFIX,
            secret_hash="!" + secrets.token_hex(31),
        )
        db.session.add(token)
        db.session.flush()
        audit.record(
            OPERATOR, "token.create", "token", token.id, after={"name": name, "role": "admin"}
        )
        db.session.commit()
    return Caller(token_id=token.id, name=token.name, role=token.role)


SYSTEM_PREFIX = "(system)"
IMPORT_TOKEN_NAME = "command-line import"


def checked_chunks(
    rows: Iterable[tuple[int, dict[str, str]]], size: int
) -> Iterator[list[Checked]]:
    """Rows checked, `size` at a time: the quick path first, the careful one where needed."""
    chunk: list[Checked] = []
    skew = timedelta(seconds=current_app.config["CLOCK_SKEW_SECONDS"])
    now = datetime.now(UTC)
    latest = now + skew
    for number, cells in rows:
        client_id = (cells.get("client_id") or "").strip() or None
        checked = quick_row(number, cells, latest) or parse_row(number, cells, now)
        chunk.append((number, checked, client_id))
        if len(chunk) >= size:
            yield chunk
            chunk = []
            now = datetime.now(UTC)
            latest = now + skew
    if chunk:
        yield chunk


_DONE = object()


def _checked_ahead(
    rows: Iterable[tuple[int, dict[str, str]]],
    size: int,
    prepare: Callable[[list[Checked]], Any] | None = None,
) -> Iterator[Any]:
    """`checked_chunks`, one chunk ahead in a thread (errors are raised here, in order),
    each chunk passed through `prepare` there when given (with the thread's own session)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def check() -> None:
        try:
            with app.app_context():
                for chunk in checked_chunks(rows, size):
                    if not put(prepare(chunk) if prepare else chunk):
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the importing thread
            put(exc)
        else:
            put(_DONE)

    worker = threading.Thread(target=check, name="import-check", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


T = TypeVar("T")


def _itself(row: Row) -> Row:
    return row


def _row_of_refusal(refusal: Refusal) -> Row:
    return refusal[0]


def _row_of_laid_out(item: tuple[Placed, Lines]) -> Row:
    return item[0][0]


def _first_of_each_key(items: list[T], row_of: Callable[[T], Row]) -> tuple[list[T], list[T]]:
    """A key twice in one chunk: the first goes now, the rest with the next round, where
    the first's claim decides (same content: already imported)."""
    first: dict[str, T] = {}
    again: list[T] = []
    for item in items:
        key = row_of(item).key
        if key in first:
            again.append(item)
        else:
            first[key] = item
    return list(first.values()), again


class Importer:
    """Imports rows for one caller; `feed` as many times as needed, then `finish` once."""

    def __init__(
        self,
        caller: Caller,
        file_name: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        on_progress: Callable[[ImportResult], None] | None = None,
    ) -> None:
        self.caller = caller
        self.result = ImportResult(file=file_name)
        self.chunk_size = chunk_size
        self.on_progress = on_progress
        self._group_sites: dict[uuid.UUID, str | None] = {}
        # PostgreSQL: chunks are prepared in the checking thread and stored before
        # their keys are looked up (a taken key costs one COPY undone). SQLite: placed
        # and stored here, keys looked up first (a taken key's report would have to be
        # deleted again).
        self._prepared = db.engine.dialect.name == "postgresql"
        self._writer = _postgres if self._prepared else _generic
        self._look_first = False  # PostgreSQL only: set once a chunk meets taken keys
        self._keys_met = 0
        self._labels: dict[tuple[str, str], uuid.UUID | str] = {}
        self._groups_created = 0  # by the thread that places rows
        self._gid_text: dict[uuid.UUID, str] = {}

    # -- driving ---------------------------------------------------------------------

    def feed(self, rows: Iterable[tuple[int, dict[str, str]]]) -> None:
        # The next chunk is read and checked (plain Python, in a thread) while this one
        # is in the database: the driver lets go of the interpreter while it waits.
        # Each answer from the database then waits for the checking thread to hand the
        # interpreter back, up to the switch interval (5 ms by default, and a chunk
        # takes a dozen round trips): a shorter one keeps the database busy.
        #
        # On PostgreSQL the checking thread also places each chunk (groups looked up or
        # created, in its own committed transactions), takes its report ids and lays
        # out its COPY lines, so this thread only sends them: the database is busy for
        # the whole import instead of waiting on Python between chunks.
        self._group_sites.clear()  # groups may have moved since the last feed
        prepare = self._prepare if self._prepared else None
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
        try:
            for item in _checked_ahead(rows, self.chunk_size, prepare):
                self._chunk(item)
        finally:
            sys.setswitchinterval(interval)

    def finish(self) -> ImportResult:
        """One audit event for the whole import (not one per row)."""
        self.result.errors.sort(key=lambda e: e.row)
        self._record()
        return self.result

    def _record(self, interrupted: bool = False) -> None:
        after = self.result.counts()
        if interrupted:
            # The chunks before this one are stored: the trail says so, and by whom.
            after["interrupted"] = True
        audit.record(self.caller, "reports.import", "import", uuid.uuid4(), after=after)
        db.session.commit()

    def _chunk(self, item: list[Checked] | Prepared) -> None:
        prepared = item if isinstance(item, Prepared) else None
        chunk = prepared.checked if prepared else item
        rows: list[Row] = []
        for number, parsed, client_id in chunk:
            self.result.rows += 1
            if isinstance(parsed, Row):
                rows.append(parsed)
            else:
                for name, message in parsed:
                    self._error(number, name, message, client_id)
                self.result.failed += 1
        try:
            if prepared:
                self.result.groups_created += prepared.groups_created
                self._store_prepared(prepared)
            else:
                created = self._groups_created
                try:
                    self._store(rows)
                finally:
                    self.result.groups_created += self._groups_created - created
        except BaseException:
            db.session.rollback()
            if not prepared:
                # Groups created in the chunk's transaction are gone with it.
                self._group_sites.clear()
                self._labels.clear()
            try:
                self._record(interrupted=True)
            except Exception:  # noqa: BLE001 - the database may be what failed
                db.session.rollback()
            raise
        if self.on_progress:
            self.on_progress(self.result)

    def _error(self, number: int, name: str, message: str, client_id: str | None) -> None:
        self.result.errors.append(RowError(number, name, message, client_id))

    def _fail(self, row: Row, name: str, message: str) -> None:
        self._error(row.number, name, message, row.client_id)
        self.result.failed += 1

    # -- one chunk, one transaction --------------------------------------------------

    def _store(self, rows: list[Row]) -> None:
        """A chunk on SQLite: keys looked up, rows placed and inserted, in one transaction."""
        while rows:
            batch, rows = _first_of_each_key(rows, _itself)
            placed, refused = self._place(self._unclaimed(batch, _itself))
            for row, name, message in refused:
                self._fail(row, name, message)
            self.result.stored += self._insert(placed, _generic.store)
            db.session.commit()

    def _prepare(self, chunk: list[Checked]) -> Prepared:
        """In the checking thread, with its own session: place the chunk's rows (groups
        created are committed here, so the chunk's transaction holds only its COPYs),
        take their report ids and lay out their lines."""
        created = self._groups_created
        rows = [parsed for _, parsed, _ in chunk if isinstance(parsed, Row)]
        claimed = []
        if self._look_first and rows:
            # A re-import: rows claimed already need no placing, ids or lines. (Read as
            # the importing thread left it a chunk ago: a hint, the constraint decides.)
            existing = self._claims([row.key for row in rows])
            claimed = [(row, existing[row.key]) for row in rows if row.key in existing]
            rows = [row for row in rows if row.key not in existing]
        placed, refused = self._place(rows)
        token_id = self.caller.token_id
        lines = lay_out(placed, token_id, utcnow(), self._gid_text) if placed else []
        db.session.commit()
        first, again = _first_of_each_key(list(zip(placed, lines, strict=True)), _row_of_laid_out)
        return Prepared(
            checked=chunk,
            placed=first,
            again=again,
            refused=refused,
            groups_created=self._groups_created - created,
            claimed=claimed,
        )

    def _store_prepared(self, prepared: Prepared) -> None:
        """A prepared chunk on PostgreSQL: only look-ups and COPYs are left to do here.
        While an import meets no key claimed before (a new file), rows are stored without
        looking their keys up: the claims' unique constraint still decides (`KeyTaken`).
        Once a chunk meets taken keys (a re-import), the next ones look first."""
        met_before = self._keys_met
        for row, claim in prepared.claimed:
            self._settle(row, claim)
        # A row imported before is "already imported", whatever is wrong now.
        for row, name, message in self._unclaimed(prepared.refused, _row_of_refusal):
            self._fail(row, name, message)
        batch, todo, look_first = prepared.placed, prepared.again, self._look_first
        while batch:
            if look_first:
                batch = self._unclaimed(batch, _row_of_laid_out)
            self.result.stored += self._insert_prepared(batch)
            db.session.commit()
            look_first = True
            batch, todo = _first_of_each_key(todo, _row_of_laid_out)
        self._look_first = self._keys_met > met_before

    def _insert_prepared(self, items: list[tuple[Placed, Lines]]) -> int:
        if not items:
            return 0
        try:
            _postgres.copy_lines([lines for _, lines in items])
        except KeyTaken:
            # Someone holds one of the keys: the transaction held only these COPYs;
            # store the chunk again the careful way, where the constraint decides.
            db.session.rollback()
            return self._insert([placed for placed, _ in items], _postgres.store_racing)
        return len(items)

    def _unclaimed(self, items: list[T], row_of: Callable[[T], Row]) -> list[T]:
        """The items whose row's key is not claimed yet; the others are settled."""
        if not items:
            return []
        existing = self._claims([row_of(item).key for item in items])
        left = []
        for item in items:
            row = row_of(item)
            if row.key in existing:
                self._settle(row, existing[row.key])
            else:
                left.append(item)
        return left

    def _claims(self, keys: list[str]) -> dict[str, tuple[str, int | None]]:
        return self._writer.claims(self.caller.token_id, keys)

    def _settle(self, row: Row, existing: tuple[str, int | None]) -> None:
        self._keys_met += 1
        fingerprint, status = existing
        field_name = "client_id" if row.client_id else ""
        if fingerprint != row.fingerprint:
            self._fail(
                row,
                field_name,
                "This client_id was already used for a different report; give a new report "
                "a new client_id."
                if row.client_id
                else "A different report already has this row's key.",
            )
        elif status is None:
            self._fail(row, field_name, IN_FLIGHT)
        else:
            self.result.already_imported += 1

    def _place(self, rows: list[Row]) -> tuple[list[Placed], list[Refusal]]:
        """Each row's group and site (creating groups named by label), checked for the
        caller; and the rows refused, with the field and why."""
        self._load_groups({row.group_id for row in rows if row.group_id is not None})
        placed: list[Placed] = []
        refused: list[Refusal] = []
        for row in rows:
            if row.group_id is not None:
                site_id = self._group_sites.get(row.group_id)
                if site_id is None:
                    refused.append((row, "group_id", "Unknown group; register it first."))
                    continue
                if row.site_id is not None and row.site_id != site_id:
                    refused.append(
                        (row, "site_id", f"The group is at site '{site_id}', not '{row.site_id}'.")
                    )
                    continue
                group_id = row.group_id
            else:
                assert row.site_id is not None and row.group_label is not None
                found = self._group_by_label(row.site_id, row.group_label)
                if isinstance(found, str):
                    refused.append((row, "group_label", found))
                    continue
                group_id, site_id = found, row.site_id
            if not self.caller.can_write_site(site_id):
                refused.append((row, "site_id", f"This token may not write for site '{site_id}'."))
                continue
            placed.append((row, group_id, site_id))
        return placed, refused

    def _load_groups(self, ids: set[uuid.UUID]) -> None:
        wanted = [gid for gid in ids if gid not in self._group_sites]
        if not wanted:
            return
        for gid in wanted:
            self._group_sites[gid] = None
        for gid, site_id in db.session.execute(
            select(Group.id, Group.site_id).where(Group.id.in_(wanted))
        ):
            self._group_sites[gid] = site_id

    def _group_by_label(self, site_id: str, label: str) -> uuid.UUID | str:
        key = (site_id, label)
        if key not in self._labels:
            ids = list(
                db.session.execute(
                    select(Group.id).where(Group.site_id == site_id, Group.label == label).limit(2)
                ).scalars()
            )
            if len(ids) > 1:
                self._labels[key] = (
                    f"Two or more groups at '{site_id}' are labelled '{label}'; use group_id."
                )
            elif ids:
                self._labels[key] = ids[0]
            else:
                try:
                    group = create_group(self.caller, {"site_id": site_id, "label": label})
                except Problem as problem:
                    message = problem.description or "The group cannot be created."
                    self._labels[key] = message
                else:
                    self._labels[key] = group.id
                    self._group_sites[group.id] = site_id
                    self._groups_created += 1
        return self._labels[key]

    def _insert(self, placed: list[Placed], store: Store) -> int:
        """Store the placed rows; returns how many were stored (claimed by this import)."""
        if not placed:
            return 0
        report_ids, claimed = store(self.caller.token_id, utcnow(), placed)
        raced = [row for row, _, _ in placed if row.key not in claimed]
        if raced:
            # Claimed by another writer since our look-up (or before: no look-up was
            # made): theirs stands, and a report stored for ours goes (SQLite stores
            # reports before it claims; PostgreSQL's `store_racing` claims first).
            stray = [report_ids[row.key] for row in raced if row.key in report_ids]
            if stray:
                _generic.discard(stray)
            # A key whose other writer has rolled back since is free again, but not
            # stored by this import: said so, as for a claim still in flight.
            for row in self._unclaimed(raced, _itself):
                self._fail(row, "client_id" if row.client_id else "", IN_FLIGHT)
        return len(placed) - len(raced)


def import_csv(
    caller: Caller,
    source: CsvSource,
    *,
    on_progress: Callable[[ImportResult], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> ImportResult:
    """Check the file whole, then import it row by row (see the module's docstring)."""
    source.check()
    importer = Importer(caller, source.name, chunk_size=chunk_size, on_progress=on_progress)
    importer.feed(source.rows())
    return importer.finish()


def write_error_report(result: ImportResult, stream: IO[str]) -> None:
    """The per-row error report: row, client_id, field, message (safe in a spreadsheet)."""
    from service.domain.exports import neutralise

    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(["row", "client_id", "field", "message"])
    for error in result.errors:
        writer.writerow(
            [
                error.row,
                neutralise(error.client_id),
                neutralise(error.field),
                neutralise(error.message),
            ]
        )
