"""Bulk head counts from a CSV file: what `needs-tracker import`, an uploaded import job
and the demo share.

Each row is read by the one rule (`headcounts.read_report`, as a CSV row spells a
report); a bad row stores nothing and is reported with its row number, field and
message. Good rows are stored through the one writer (service/domain/writer), a chunk
at a time:

1. the keys this token has stored reports under are looked up: the same key with the
   same content is "already imported", with other content it is an error row (on
   PostgreSQL this look-up is skipped until a chunk meets a stored key: the unique
   (token, key) constraint finds them as surely, and a new file goes in faster);
2. groups named by `group_label` + `site_id` are found, or created once per import;
3. the reports (and their needs) are stored, each under its key. On PostgreSQL the
   chunk's report ids come from the sequence up front and its rows are COPYed in, in
   a savepoint; if a key is taken, the unique constraint refuses the COPY, the
   savepoint is rolled back, and the chunk is stored again by the writer's one
   statement, where the constraint decides key by key. On SQLite the writer inserts
   them, inside the write lock every transaction holds.

The edge owns the transaction: after each chunk is written (flushed) the importer calls
`on_chunk`, where the command line or the import job commits it and shows progress.

Rows are read and checked one chunk ahead, in a thread, while the previous chunk is in
the database (`checking.quick_row` first, `checking.parse_row` where it steps aside).
On PostgreSQL that thread also does step 2 and 3's groundwork with its own session:
groups are found or created (and committed) there, report ids taken and the COPY lines
laid out, so the importing thread only looks keys up when needed and sends the lines.

A row's key is its `client_id` (as in a batch), or a key derived from the row's
content, so importing the same file again stores nothing new.
"""

from __future__ import annotations

import csv
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from sqlalchemy import select

from service.domain import audit
from service.domain.callers import Caller
from service.domain.errors import DomainError
from service.domain.groups import create_group
from service.domain.headcounts import latest_observation
from service.domain.imports.checking import Row, parse_row, quick_row
from service.domain.imports.reading import COLUMNS, CsvSource, ImportFileError
from service.domain.settings import context_for_a_thread
from service.domain.writer import NewReport, Stored, Writer, first_of_each_key, for_session
from service.extensions import db
from service.models import Group
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
    "parse_row",
    "write_error_report",
]

# One chunk at a time: big enough for set-based writes to pay off, small enough that a
# chunk's parameters stay well inside SQLite's and PostgreSQL's limits.
CHUNK_SIZE = 2000
IMPORT_TOKEN_NAME = "command-line import"

IN_FLIGHT = (
    "The same report is being stored by another request right now; import again in a minute."
)

# A row refused when placed: the row, the field and why.
Refusal = tuple[Row, str, str]
# A row as checked: its number, the report or its errors, and its client_id as written.
Checked = tuple[int, "Row | list[tuple[str, str]]", "str | None"]
# A row placed, with its COPY lines (PostgreSQL).
Laid = tuple[Row, NewReport, Any]


@dataclass
class Prepared:
    """A chunk checked, placed and laid out for COPY in the checking thread (PostgreSQL)."""

    checked: list[Checked]
    # The first row of each key, then the rows repeating a key (stored a round later).
    placed: list[Laid]
    again: list[Laid]
    refused: list[Refusal]
    groups_created: int
    # Rows whose keys were found stored before placing (a re-import), with what they name.
    known: list[tuple[Row, Stored]]


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


def checked_chunks(
    rows: Iterable[tuple[int, dict[str, str]]], size: int
) -> Iterator[list[Checked]]:
    """Rows checked, `size` at a time: the quick path first, the careful one where needed."""
    chunk: list[Checked] = []
    latest = latest_observation()
    for number, cells in rows:
        client_id = (cells.get("client_id") or "").strip() or None
        checked = quick_row(number, cells, latest) or parse_row(number, cells, latest)
        chunk.append((number, checked, client_id))
        if len(chunk) >= size:
            yield chunk
            chunk = []
            latest = latest_observation()
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
    in_app = context_for_a_thread()
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
            with in_app():
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


def _row_of_laid(item: Laid) -> Row:
    return item[0]


def _key_of_row(row: Row) -> str:
    return row.key


def _key_of_laid(item: Laid) -> str:
    return item[0].key


class Importer:
    """Imports rows for one caller; `feed` as many times as needed, then `finish` once.

    `on_chunk(result)` is called after each chunk is written: the edge commits there (and
    shows progress). If a chunk fails, the edge rolls back and calls `interrupted`.
    """

    def __init__(
        self,
        caller: Caller,
        file_name: str,
        *,
        chunk_size: int | None = None,
        on_chunk: Callable[[ImportResult], None] | None = None,
    ) -> None:
        self.caller = caller
        self.result = ImportResult(file=file_name)
        self.chunk_size = chunk_size or CHUNK_SIZE
        self.on_chunk = on_chunk
        self._group_sites: dict[uuid.UUID, str | None] = {}
        self._writer: Writer = for_session()
        # PostgreSQL: chunks are prepared in the checking thread and COPYed before their
        # keys are looked up (a taken key costs one COPY undone). SQLite: placed and
        # stored here, keys looked up first.
        self._copies = hasattr(self._writer, "copy")
        self._look_first = False  # PostgreSQL only: set once a chunk meets stored keys
        self._keys_met = 0
        self._labels: dict[tuple[str, str], uuid.UUID | str] = {}
        self._groups_created = 0  # by the thread that places rows
        self._names: dict[Any, str] = {}

    # -- driving ---------------------------------------------------------------------

    def feed(self, rows: Iterable[tuple[int, dict[str, str]]]) -> None:
        # The next chunk is read and checked (plain Python, in a thread) while this one
        # is in the database: the driver lets go of the interpreter while it waits.
        #
        # On PostgreSQL the checking thread also places each chunk (groups looked up or
        # created, in its own committed transactions), takes its report ids and lays
        # out its COPY lines, so this thread only sends them: the database is busy for
        # the whole import instead of waiting on Python between chunks.
        self._group_sites.clear()  # groups may have moved since the last feed
        prepare = self._prepare if self._copies else None
        for item in _checked_ahead(rows, self.chunk_size, prepare):
            self._chunk(item)

    def finish(self) -> ImportResult:
        """One audit event for the whole import (not one per row); flushed."""
        self.result.errors.sort(key=lambda e: e.row)
        self._record()
        return self.result

    def interrupted(self) -> None:
        """After a failed chunk was rolled back: the chunks before it are stored, and the
        audit trail says so, and by whom (flushed)."""
        self._record(interrupted=True)

    def _record(self, interrupted: bool = False) -> None:
        after = self.result.counts()
        if interrupted:
            after["interrupted"] = True
        audit.record(self.caller, "reports.import", "import", uuid.uuid4(), after=after)

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
            if not prepared:
                # Groups created in the chunk's transaction go with it.
                self._group_sites.clear()
                self._labels.clear()
            raise
        if self.on_chunk:
            self.on_chunk(self.result)

    def _error(self, number: int, name: str, message: str, client_id: str | None) -> None:
        self.result.errors.append(RowError(number, name, message, client_id))

    def _fail(self, row: Row, name: str, message: str) -> None:
        self._error(row.number, name, message, row.report.client_id)
        self.result.failed += 1

    # -- one chunk ---------------------------------------------------------------------

    def _store(self, rows: list[Row]) -> None:
        """A chunk on SQLite: keys looked up, rows placed and stored."""
        while rows:
            batch, rows = first_of_each_key(rows, _key_of_row)
            placed, refused = self._place(self._not_stored_yet(batch, _itself))
            for row, name, message in refused:
                self._fail(row, name, message)
            self._write(placed)

    def _prepare(self, chunk: list[Checked]) -> Prepared:
        """In the checking thread, with its own session: place the chunk's rows (groups
        created are committed here, so the chunk's transaction holds only its COPYs),
        take their report ids and lay out their lines."""
        created = self._groups_created
        rows = [parsed for _, parsed, _ in chunk if isinstance(parsed, Row)]
        known: list[tuple[Row, Stored]] = []
        if self._look_first and rows:
            # A re-import: rows stored already need no placing, ids or lines. (Read as
            # the importing thread left it a chunk ago: a hint, the constraint decides.)
            stored = self._stored([row.key for row in rows])
            known = [(row, stored[row.key]) for row in rows if row.key in stored]
            rows = [row for row in rows if row.key not in stored]
        placed, refused = self._place(rows)
        laid: list[Laid] = []
        if placed:
            writer: Any = self._writer
            ids = writer.reserve_ids(len(placed))
            new = [p.new for p in placed]
            lines = writer.lay_out(new, ids, self.caller.token_id, utcnow(), self._names)
            laid = [(p.report_row, p.new, line) for p, line in zip(placed, lines, strict=True)]
        db.session.commit()
        first, again = first_of_each_key(laid, _key_of_laid)
        return Prepared(
            checked=chunk,
            placed=first,
            again=again,
            refused=refused,
            groups_created=self._groups_created - created,
            known=known,
        )

    def _store_prepared(self, prepared: Prepared) -> None:
        """A prepared chunk on PostgreSQL: only look-ups and COPYs are left to do here.
        While an import meets no key stored before (a new file), rows are COPYed without
        looking their keys up: the unique constraint still decides (`KeyTaken`). Once a
        chunk meets stored keys (a re-import), the next ones look first."""
        met_before = self._keys_met
        for row, stored in prepared.known:
            self._settle(row, stored)
        # A row imported before is "already imported", whatever is wrong now.
        for row, name, message in self._not_stored_yet(prepared.refused, _row_of_refusal):
            self._fail(row, name, message)
        batch, todo, look_first = prepared.placed, prepared.again, self._look_first
        while batch:
            if look_first:
                batch = self._not_stored_yet(batch, _row_of_laid)
            self._copy(batch)
            look_first = True
            batch, todo = first_of_each_key(todo, _key_of_laid)
        self._look_first = self._keys_met > met_before

    def _copy(self, items: list[Laid]) -> None:
        from service.domain.writer.postgres import KeyTaken

        if not items:
            return
        writer: Any = self._writer
        try:
            writer.copy([lines for _, _, lines in items])
        except KeyTaken:
            # Someone holds one of the keys: nothing of the COPY stayed; store the chunk
            # again through the writer's statement, where the constraint decides.
            self._write([Placed(row, new) for row, new, _ in items])
            return
        self.result.stored += len(items)

    def _not_stored_yet(self, items: list[T], row_of: Callable[[T], Row]) -> list[T]:
        """The items whose row's key is not stored under yet; the others are settled."""
        if not items:
            return []
        stored = self._stored([row_of(item).key for item in items])
        left = []
        for item in items:
            row = row_of(item)
            if row.key in stored:
                self._settle(row, stored[row.key])
            else:
                left.append(item)
        return left

    def _stored(self, keys: list[str]) -> dict[str, Stored]:
        return self._writer.stored_keys(self.caller.token_id, keys)

    def _settle(self, row: Row, stored: Stored) -> None:
        self._keys_met += 1
        if stored.fingerprint == row.report.fingerprint:
            self.result.already_imported += 1
        elif row.report.client_id:
            self._fail(
                row,
                "client_id",
                "This client_id was already used for a different report; give a new report "
                "a new client_id.",
            )
        else:
            self._fail(row, "", "A different report already has this row's key.")

    def _place(self, rows: list[Row]) -> tuple[list[Placed], list[Refusal]]:
        """Each row's group and site (creating groups named by label), checked for the
        caller; and the rows refused, with the field and why."""
        self._load_groups({row.report.group_id for row in rows} - {None})  # type: ignore[arg-type]
        placed: list[Placed] = []
        refused: list[Refusal] = []
        for row in rows:
            report = row.report
            if report.group_id is not None:
                site_id = self._group_sites.get(report.group_id)
                if site_id is None:
                    refused.append((row, "group_id", "Unknown group; register it first."))
                    continue
                if report.site_id is not None and report.site_id != site_id:
                    refused.append(
                        (
                            row,
                            "site_id",
                            f"The group is at site '{site_id}', not '{report.site_id}'.",
                        )
                    )
                    continue
                group_id = report.group_id
            else:
                assert report.site_id is not None and report.group_label is not None
                found = self._group_by_label(report.site_id, report.group_label)
                if isinstance(found, str):
                    refused.append((row, "group_label", found))
                    continue
                group_id, site_id = found, report.site_id
            if not self.caller.can_write_site(site_id):
                refused.append((row, "site_id", f"This token may not write for site '{site_id}'."))
                continue
            placed.append(Placed(row, NewReport(report, row.key, group_id, site_id)))
        return placed, refused

    def _load_groups(self, ids: set[uuid.UUID]) -> None:
        wanted = [gid for gid in ids if gid not in self._group_sites]
        if not wanted:
            return
        for gid in wanted:
            self._group_sites[gid] = None
        self._group_sites.update(self._writer.group_sites(wanted))

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
                except DomainError as refused:
                    self._labels[key] = refused.detail
                else:
                    self._labels[key] = group.id
                    self._group_sites[group.id] = site_id
                    self._groups_created += 1
        return self._labels[key]

    def _write(self, placed: list[Placed]) -> None:
        """Store the placed rows through the writer; a row whose key another writer stored
        meanwhile is settled against what that key names."""
        if not placed:
            return
        ids = self._writer.store(self.caller, utcnow(), [p.new for p in placed], audit=False)
        raced = [
            p.report_row for p, report_id in zip(placed, ids, strict=True) if report_id is None
        ]
        self.result.stored += len(placed) - len(raced)
        if raced:
            stored = self._stored([row.key for row in raced])
            for row in raced:
                if row.key in stored:
                    self._settle(row, stored[row.key])
                else:  # its writer has rolled back since: free again, but not stored here
                    self._fail(row, "client_id" if row.report.client_id else "", IN_FLIGHT)


@dataclass(frozen=True, slots=True)
class Placed:
    """A sound row, placed at its group and site, as the writer takes it."""

    report_row: Row
    new: NewReport


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
