"""Bulk head counts from a CSV file: the path `needs-tracker import`, the API's upload and
the demo share.

A row is checked with the same field rules as `POST /api/v1/reports` (the API's own
field classes) and the same counting rules (`reports.check_rules`); a bad row stores
nothing and is reported with its row number, field and message. Good rows are stored
set-based, a chunk at a time, each chunk in one transaction:

1. the idempotency keys already claimed by this token are looked up: the same key with
   the same content is "already imported", with other content it is an error row;
2. groups named by `group_label` + `site_id` are found, or created once per import;
3. the reports (and their needs) are inserted for the new keys;
4. the keys are claimed, each claim naming its report (a resend through the API renders
   its answer from that report, as the first answer was). On PostgreSQL the chunk's
   report ids come from the sequence up front and the reports, needs and claims are
   COPYed in under a savepoint; if another writer claimed one of the keys since step 1,
   the unique constraint refuses the claims, the savepoint undoes the chunk, and it is
   stored again with INSERT ... ON CONFLICT DO NOTHING ... RETURNING. There (and on
   SQLite) a key claimed by another writer is not returned: the unique constraint
   decided, and this chunk's report for it is deleted again before the transaction
   commits, so it is never seen, let alone counted twice.

Rows are read and checked one chunk ahead, in a thread, while the previous chunk is in
the database.

A row's key is its `client_id` (as in a batch), or a key derived from the row's
content, so importing the same file again stores nothing new.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import queue
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite

from service import audit
from service.api.fields import Count, Moment, SiteId, Text
from service.auth import OPERATOR, Caller
from service.domain.groups import create_group
from service.domain.reports import check_rules, request_fingerprint
from service.errors import Problem
from service.extensions import db
from service.models import (
    NEEDS_SECTORS,
    SADD_KEYS,
    VULNERABLE_KEYS,
    ApiToken,
    Group,
    IdempotencyRecord,
    Report,
    ReportNeed,
    Role,
)
from service.types import utcnow

# One transaction per chunk: big enough for set-based inserts to pay off, small enough
# that a chunk's parameters stay well inside SQLite's and PostgreSQL's limits.
CHUNK_SIZE = 2000
# The longest cell read (csv's own default); a longer one makes the file unreadable.
MAX_CELL = 131072

GROUP_COLUMNS = ("group_id", "group_label")
COLUMNS = (
    "client_id",
    "site_id",
    "group_label",
    "group_id",
    "observed_at",
    "total",
    *SADD_KEYS,
    *VULNERABLE_KEYS,
    "needs",
    "note",
)
REQUIRED_COLUMNS = ("observed_at", "total")
MAX_NEEDS = len(NEEDS_SECTORS) * 5  # as ReportIn.needs

# The API's own field classes, so a CSV cell passes exactly when the JSON value would.
_MOMENT = Moment()
_SITE = SiteId()
_LABEL = Text(max_length=200)
_NOTE = Text(max_length=2000, multiline=True, allow_none=True)
_NEED_NOTE = Text(max_length=1000, multiline=True, allow_none=True)
_INTEGER = re.compile(r"[+-]?\d{1,15}")
_SECTORS = ", ".join(NEEDS_SECTORS)
MISSING = "Missing data for required field."

_reports = Report.__table__
_needs = ReportNeed.__table__
_claims = IdempotencyRecord.__table__


class ImportFileError(Exception):
    """The file as a whole cannot be read: not UTF-8, empty, or without the columns needed."""

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[str] = (),
        unknown: Iterable[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.missing = list(missing)
        self.unknown = list(unknown)

    @property
    def errors(self) -> list[dict[str, str]]:
        return [{"field": name, "message": "Missing column."} for name in self.missing] + [
            {"field": name, "message": "Unknown column."} for name in self.unknown
        ]


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
# Reading the file
# ---------------------------------------------------------------------------------------


class CsvSource:
    """A CSV file read twice: once to check it whole (encoding, header, row count) before
    anything is stored, then row by row. Rows are numbered as a spreadsheet shows them
    (the header is row 1); blank rows are skipped."""

    def __init__(self, opener: Callable[[], IO[bytes]], name: str) -> None:
        self._open = opener
        self.name = name
        self.header: list[str] = []
        self.delimiter = ","
        self.row_count = 0

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> CsvSource:
        return cls(lambda: io.BytesIO(data), name)

    @classmethod
    def from_path(cls, path: Any) -> CsvSource:
        return cls(lambda: open(path, "rb"), str(path))  # noqa: SIM115 - closed by the reader

    def check(self) -> CsvSource:
        with self._open() as raw:
            first = raw.read(4)
            if not first:
                raise ImportFileError("The file is empty.")
            if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise ImportFileError(
                    "The file is UTF-16 text; save it as 'CSV UTF-8' (comma-separated)."
                )
        count = 0
        for count, _ in enumerate(self._records(), start=1):  # noqa: B007 - counting
            pass
        self.row_count = count
        return self

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        yield from self._records()

    def _records(self) -> Iterator[tuple[int, dict[str, str]]]:
        with self._open() as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
            number = 0
            try:
                header_line = text.readline()
                if not header_line.strip():
                    raise ImportFileError("The file has no header row.")
                self.delimiter = ";" if "," not in header_line and ";" in header_line else ","
                reader = csv.reader(
                    _chain_first(header_line, text), delimiter=self.delimiter, strict=True
                )
                self.header = _check_header(next(reader))
                width = len(self.header)
                number = 1
                for cells in reader:
                    number += 1
                    if not any(cell.strip() for cell in cells):
                        continue
                    if len(cells) > width:
                        # Reported as a row error: the extra cells have no column.
                        yield number, {"": f"{len(cells)} cells for {width} columns"}
                        continue
                    yield number, dict(zip(self.header, cells, strict=False))
            except UnicodeDecodeError as exc:
                raise ImportFileError(
                    f"The file is not UTF-8 text (near row {number + 1}: byte "
                    f"{exc.object[exc.start : exc.start + 1]!r}); save it as 'CSV UTF-8'."
                ) from None
            except csv.Error as exc:
                raise ImportFileError(f"Row {number + 1} cannot be read as CSV: {exc}.") from None


def _chain_first(first: str, rest: IO[str]) -> Iterator[str]:
    yield first
    yield from rest


def _check_header(cells: list[str]) -> list[str]:
    header = [cell.strip().lower() for cell in cells]
    unknown = [name for name in header if name and name not in COLUMNS]
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if not any(name in header for name in GROUP_COLUMNS):
        missing.append("group_id or group_label")
    if "group_label" in header and "site_id" not in header:
        missing.append("site_id")
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing column(s): " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s): " + ", ".join(unknown))
        raise ImportFileError(
            "The header row does not fit: "
            + "; ".join(parts)
            + ". The columns are: "
            + ", ".join(COLUMNS)
            + ".",
            missing=missing,
            unknown=unknown,
        )
    if duplicates:
        raise ImportFileError("Columns named twice: " + ", ".join(duplicates) + ".")
    if "" in header:
        raise ImportFileError("Every column needs a name in the header row.")
    return header


# ---------------------------------------------------------------------------------------
# Checking a row
# ---------------------------------------------------------------------------------------


@dataclass
class Row:
    number: int
    key: str
    fingerprint: str
    client_id: str | None
    data: dict[str, Any]
    group_id: uuid.UUID | None
    site_id: str | None
    group_label: str | None


def _messages(exc: ValidationError) -> list[str]:
    messages = exc.messages
    if isinstance(messages, dict):
        return [str(m) for value in messages.values() for m in value]
    return [str(m) for m in messages]


# The hot cells are checked here without marshmallow's per-call overhead, with the same
# rules and messages as the API's fields (tests/test_imports.py holds the two together).
_COUNT_MAX = Count.MAXIMUM
_TOO_BIG = f"Must be at most {_COUNT_MAX:,}."


def _count(raw: str) -> int:
    text = raw.strip()
    if not _INTEGER.fullmatch(text):
        raise ValidationError("Not a valid integer.")
    number = int(text)
    if number < 0:
        raise ValidationError("Must be 0 or more.")
    if number > _COUNT_MAX:
        raise ValidationError(_TOO_BIG)
    return number


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise ValidationError("Not a valid UUID.") from None


def _moment(raw: str) -> datetime:
    """As the API's Moment (marshmallow reads ISO 8601 with `datetime.fromisoformat`); what
    the quick path does not take goes to the field itself, for its exact answer."""
    try:
        moment = datetime.fromisoformat(raw.strip())
        if moment.tzinfo is not None and moment.utcoffset() is not None:
            return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    return _MOMENT.deserialize(raw.strip())


def _memo(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """For cells that repeat (site ids, labels): check each distinct value once."""
    seen: dict[str, tuple[bool, Any]] = {}

    def check(raw: str) -> Any:
        if raw not in seen:
            if len(seen) > 10000:
                seen.clear()
            try:
                seen[raw] = (True, parse(raw))
            except ValidationError as exc:
                seen[raw] = (False, exc)
        ok, value = seen[raw]
        if not ok:
            raise value
        return value

    return check


_site_id = _memo(lambda raw: _SITE.deserialize(raw.strip()))
_label = _memo(_LABEL.deserialize)


def _parse_needs(raw: str, errors: list[tuple[str, str]]) -> list[dict[str, Any]]:
    items = [item for item in raw.split(";") if item.strip()]
    if len(items) > MAX_NEEDS:
        errors.append(("needs", f"Longer than maximum length {MAX_NEEDS}."))
        return []
    needs = []
    for index, item in enumerate(items):
        sector, _, rest = item.partition(":")
        severity, _, note = rest.partition(":")
        sector = sector.strip()
        name = f"needs.{index}"
        if not rest:
            errors.append((name, "Write a need as sector:severity (e.g. water:4), ';' between."))
            continue
        need: dict[str, Any] = {"sector": sector}
        if sector not in NEEDS_SECTORS:
            errors.append((f"{name}.sector", f"Must be one of: {_SECTORS}."))
        text = severity.strip()
        if not _INTEGER.fullmatch(text):
            errors.append((f"{name}.severity", "Not a valid integer."))
        elif not 1 <= int(text) <= 5:
            errors.append(
                (
                    f"{name}.severity",
                    "Must be greater than or equal to 1 and less than or equal to 5.",
                )
            )
        else:
            need["severity"] = int(text)
        if note.strip():
            try:
                need["note"] = _NEED_NOTE.deserialize(note)
            except ValidationError as exc:
                errors.extend((f"{name}.note", m) for m in _messages(exc))
        needs.append(need)
    return needs


def parse_row(number: int, cells: dict[str, str], now: datetime) -> Row | list[tuple[str, str]]:
    """A row's report (with its key and fingerprint), or its errors as (field, message)."""
    if "" in cells:
        return [("", f"The row has more cells than the header: {cells['']}.")]
    errors: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    # The cells with something in them (most are empty in most files).
    present = {name: value for name, value in cells.items() if value and not value.isspace()}

    def take(
        name: str, parse: Callable[[str], Any], *, required: bool = False, as_field: str = ""
    ) -> Any:
        raw = present.get(name)
        if raw is None:
            if required:
                errors.append((as_field or name, MISSING))
            return None
        try:
            return parse(raw)
        except ValidationError as exc:
            errors.extend((as_field or name, m) for m in _messages(exc))
            return None

    client_id = take("client_id", _uuid)
    group_id = take("group_id", _uuid)
    label = take("group_label", _label)
    site_id = take("site_id", _site_id)
    if group_id is None and label is None and not any(name in present for name in GROUP_COLUMNS):
        errors.append(("group_id", "Give the group's group_id, or its group_label and site_id."))
    elif group_id is not None and label is not None:
        errors.append(("group_label", "Give group_id or group_label, not both."))
    elif label is not None and site_id is None and "site_id" not in present:
        errors.append(("site_id", MISSING))

    observed_at = take("observed_at", _moment, required=True)
    total = take("total", _count, required=True)

    sadd = None
    if any(key in present for key in SADD_KEYS):
        sadd = {key: take(key, _count, required=True, as_field=f"sadd.{key}") for key in SADD_KEYS}
    vulnerable = {}
    for key in VULNERABLE_KEYS:
        if key in present:
            value = take(key, _count, as_field=f"vulnerable.{key}")
            if value is not None:
                vulnerable[key] = value
    raw_needs = present.get("needs")
    needs = _parse_needs(raw_needs, errors) if raw_needs is not None else []
    note = take("note", _NOTE.deserialize) if "note" in present else None

    if errors:
        return errors
    data["observed_at"] = observed_at
    data["total"] = total
    if sadd is not None:
        data["sadd"] = sadd
    if vulnerable:
        data["vulnerable"] = vulnerable
    if needs:
        data["needs"] = needs
    if note is not None:
        data["note"] = note
    rule_errors = check_rules(data, now)
    if rule_errors:
        return [(e["field"], e["message"]) for e in rule_errors]
    if group_id is not None:
        data["group_id"] = group_id
    else:
        data["site_id"] = site_id
        data["group_label"] = label
    fingerprint = request_fingerprint(data)
    key = str(client_id) if client_id is not None else f"import:{fingerprint}"
    return Row(
        number=number,
        key=key,
        fingerprint=fingerprint,
        client_id=str(client_id) if client_id is not None else None,
        data=data,
        group_id=group_id,
        site_id=site_id,
        group_label=label,
    )


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


def _insert(table: Any) -> Any:
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


Checked = tuple[int, "Row | list[tuple[str, str]]", "str | None"]


def _checked_chunks(
    rows: Iterable[tuple[int, dict[str, str]]], size: int
) -> Iterator[list[Checked]]:
    chunk: list[Checked] = []
    now = datetime.now(UTC)
    for number, cells in rows:
        client_id = (cells.get("client_id") or "").strip() or None
        chunk.append((number, parse_row(number, cells, now), client_id))
        if len(chunk) >= size:
            yield chunk
            chunk = []
            now = datetime.now(UTC)
    if chunk:
        yield chunk


_DONE = object()


def _checked_ahead(
    rows: Iterable[tuple[int, dict[str, str]]], size: int
) -> Iterator[list[Checked]]:
    """`_checked_chunks`, one chunk ahead in a thread (errors are raised here, in order)."""
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
                for chunk in _checked_chunks(rows, size):
                    if not put(chunk):
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
        self._labels: dict[tuple[str, str], uuid.UUID | str] = {}

    # -- driving ---------------------------------------------------------------------

    def feed(self, rows: Iterable[tuple[int, dict[str, str]]]) -> None:
        # The next chunk is read and checked (plain Python, in a thread) while this one
        # is in the database: the driver lets go of the interpreter while it waits.
        for chunk in _checked_ahead(rows, self.chunk_size):
            self._chunk(chunk)

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

    def _chunk(self, chunk: list[Checked]) -> None:
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
            self._store(rows)
        except BaseException:
            db.session.rollback()
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
        while rows:
            # A key twice in one chunk: the first goes now, the rest with the next round,
            # where the first's claim decides (same content: already imported).
            unique: dict[str, Row] = {}
            later: list[Row] = []
            for row in rows:
                if row.key in unique:
                    later.append(row)
                else:
                    unique[row.key] = row
            fresh = self._not_yet_claimed(list(unique.values()))
            placed = self._place(fresh)
            stored = self._insert(placed)
            db.session.commit()
            self.result.stored += stored
            rows = later

    def _not_yet_claimed(self, rows: list[Row]) -> list[Row]:
        if not rows:
            return []
        existing = self._claims([row.key for row in rows])
        fresh = []
        for row in rows:
            if row.key in existing:
                self._settle(row, existing[row.key])
            else:
                fresh.append(row)
        return fresh

    def _claims(self, keys: list[str]) -> dict[str, tuple[str, int | None]]:
        writer = _postgres if db.engine.dialect.name == "postgresql" else _generic
        return writer.claims(self.caller.token_id, keys)

    def _settle(self, row: Row, existing: tuple[str, int | None]) -> None:
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
            self._fail(
                row,
                field_name,
                "The same report is being stored by another request right now; import again "
                "in a minute.",
            )
        else:
            self.result.already_imported += 1

    def _place(self, rows: list[Row]) -> list[tuple[Row, uuid.UUID, str]]:
        """Each row's group and site (creating groups named by label), checked for the caller."""
        self._load_groups({row.group_id for row in rows if row.group_id is not None})
        placed = []
        for row in rows:
            if row.group_id is not None:
                site_id = self._group_sites.get(row.group_id)
                if site_id is None:
                    self._fail(row, "group_id", "Unknown group; register it first.")
                    continue
                if row.site_id is not None and row.site_id != site_id:
                    self._fail(
                        row, "site_id", f"The group is at site '{site_id}', not '{row.site_id}'."
                    )
                    continue
                group_id = row.group_id
            else:
                assert row.site_id is not None and row.group_label is not None
                found = self._group_by_label(row.site_id, row.group_label)
                if isinstance(found, str):
                    self._fail(row, "group_label", found)
                    continue
                group_id, site_id = found, row.site_id
            if not self.caller.can_write_site(site_id):
                self._fail(row, "site_id", f"This token may not write for site '{site_id}'.")
                continue
            placed.append((row, group_id, site_id))
        return placed

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
                    self.result.groups_created += 1
        return self._labels[key]

    def _insert(self, placed: list[Placed]) -> int:
        """Store the placed rows; returns how many were stored (claimed by this import)."""
        if not placed:
            return 0
        writer = _postgres if db.engine.dialect.name == "postgresql" else _generic
        report_ids, claimed = writer.store(self.caller.token_id, utcnow(), placed)
        raced = [row for row, _, _ in placed if row.key not in claimed]
        if raced:
            # Claimed by another writer since our look-up: theirs stands, ours goes.
            writer.discard([report_ids[row.key] for row in raced])
            existing = self._claims([row.key for row in raced])
            for row in raced:
                self._settle(row, existing[row.key])
        return len(placed) - len(raced)


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
            _insert(_claims)
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


def _copy_text(value: str | None) -> str:
    """A text value in COPY's text format (tabs, newlines and backslashes escaped)."""
    if value is None:
        return "\\N"
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _copy_int(value: int | None) -> str:
    return "\\N" if value is None else str(value)


_CLAIMS_UNIQUE = "uq_idempotency_records_token_key"
_COPY_REPORTS = (
    "COPY reports (id, group_id, site_id, observed_at, received_at, total, "
    + ", ".join((*SADD_KEYS, *VULNERABLE_KEYS))
    + ", note, client_id, token_id) FROM STDIN"
)
_COPY_NEEDS = "COPY report_needs (report_id, sector, severity, note) FROM STDIN"
_COPY_CLAIMS = (
    "COPY idempotency_records (token_id, key, fingerprint, claimed_at, report_id, "
    "response_status) FROM STDIN"
)


class _PostgresWriter(_GenericWriter):
    """The same writes on PostgreSQL with COPY, straight into the tables (every index,
    check constraint and foreign key applies to COPY as to INSERT).

    The chunk's report ids are taken from the reports' sequence first, in the order of
    the file (the id is the order of receipt, the counting rule's tie-breaker), so the
    reports, their needs and the claims naming them are three COPYs with nothing to
    read back. The claims are plain inserts under a savepoint: when another writer has
    claimed one of the keys since our look-up, the unique constraint refuses the COPY,
    the savepoint undoes the chunk's reports with it, and the chunk is stored again the
    careful way (`store_racing`), where the constraint decides key by key."""

    def store(
        self, token_id: int | None, received_at: datetime, placed: list[Placed]
    ) -> tuple[dict[str, int], set[str]]:
        import psycopg.errors

        connection = db.session.connection()
        report_ids = sorted(
            connection.execute(
                text("SELECT nextval('reports_id_seq') FROM generate_series(1, :n)"),
                {"n": len(placed)},
            ).scalars()
        )
        reports: list[str] = []
        needs: list[str] = []
        claims: list[str] = []
        token = _copy_int(token_id)
        received = received_at.isoformat()
        ids: dict[str, int] = {}
        for (row, gid, site), report_id in zip(placed, report_ids, strict=True):
            data = row.data
            sadd = data.get("sadd") or {}
            vulnerable = data.get("vulnerable") or {}
            ids[row.key] = report_id
            rid = str(report_id)
            key = _copy_text(row.key)
            reports.append(
                "\t".join(
                    (
                        rid,
                        str(gid),
                        _copy_text(site),
                        data["observed_at"].isoformat(),
                        received,
                        str(data["total"]),
                        *[_copy_int(sadd.get(k)) for k in SADD_KEYS],
                        *[_copy_int(vulnerable.get(k)) for k in VULNERABLE_KEYS],
                        _copy_text(data.get("note")),
                        key,
                        token,
                    )
                )
            )
            for need in data.get("needs", ()):
                needs.append(
                    f"{rid}\t{_copy_text(need['sector'])}\t{need['severity']}\t"
                    f"{_copy_text(need.get('note'))}"
                )
            claims.append(f"{token}\t{key}\t{row.fingerprint}\t{received}\t{rid}\t201")
        cursor = connection.connection.driver_connection.cursor()
        try:
            with db.session.begin_nested():
                for statement, lines in (
                    (_COPY_REPORTS, reports),
                    (_COPY_NEEDS, needs),
                    (_COPY_CLAIMS, claims),
                ):
                    if lines:
                        with cursor.copy(statement) as copy:
                            copy.write("\n".join(lines) + "\n")
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != _CLAIMS_UNIQUE:
                raise
            return self.store_racing(token_id, received_at, placed)
        finally:
            cursor.close()
        return ids, set(ids)

    def store_racing(
        self, token_id: int | None, received_at: datetime, placed: list[Placed]
    ) -> tuple[dict[str, int], set[str]]:
        """One statement for the chunk: the rows travel as one JSON parameter, and
        data-modifying CTEs insert the reports, their needs and the claims, ON CONFLICT
        DO NOTHING, saying which keys this chunk claimed."""
        rows = []
        needs = []
        for row, gid, site in placed:
            values = _report_values(row, gid, site, received_at, token_id)
            # As JSON-native values, so the whole chunk is encoded in C.
            values["group_id"] = str(gid)
            values["observed_at"] = row.data["observed_at"].isoformat()
            del values["received_at"], values["token_id"], values["supersedes_id"]
            values["fingerprint"] = row.fingerprint
            rows.append(values)
            for need in row.data.get("needs", ()):
                needs.append(
                    {
                        "client_id": row.key,
                        "sector": need["sector"],
                        "severity": need["severity"],
                        "note": need.get("note"),
                    }
                )
        names = ", ".join(name for name, _ in _REPORT_COLUMNS)
        recordset = [*_REPORT_COLUMNS, ("fingerprint", "text")]
        columns = _recordset(recordset)
        column_names = ", ".join(name for name, _ in recordset)
        result = db.session.execute(
            text(
                # Ids in the order of the file: the id is the order of receipt, the
                # counting rule's tie-breaker (and needs keep the order they were given).
                "WITH u AS (SELECT * FROM ROWS FROM (json_to_recordset(CAST(:rows AS json)) "
                f"AS ({columns})) WITH ORDINALITY AS u({column_names}, ord)), "
                f"r AS (INSERT INTO reports ({names}, received_at, token_id) "
                f"SELECT {names}, :received_at, :token_id FROM u ORDER BY ord "
                "RETURNING id, client_id), "
                "n AS (INSERT INTO report_needs (report_id, sector, severity, note) "
                "SELECT r.id, x.sector, x.severity, x.note FROM ROWS FROM (json_to_recordset("
                "CAST(:needs AS json)) AS (client_id text, sector text, severity integer, "
                "note text)) WITH ORDINALITY AS x(client_id, sector, severity, note, ord) "
                "JOIN r USING (client_id) ORDER BY x.ord), "
                "c AS (INSERT INTO idempotency_records (token_id, key, fingerprint, claimed_at, "
                "report_id, response_status) "
                "SELECT :token_id, u.client_id, u.fingerprint, :received_at, r.id, 201 "
                "FROM u JOIN r USING (client_id) "
                "ON CONFLICT (token_id, key) DO NOTHING RETURNING key) "
                "SELECT r.id, r.client_id, c.key IS NOT NULL FROM r LEFT JOIN c "
                "ON c.key = r.client_id"
            ),
            {
                "rows": _json(rows),
                "needs": _json(needs),
                "received_at": received_at,
                "token_id": token_id,
            },
        )
        report_ids: dict[str, int] = {}
        claimed: set[str] = set()
        for report_id, key, is_claimed in result:
            report_ids[key] = report_id
            if is_claimed:
                claimed.add(key)
        return report_ids, claimed

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

    def claim(
        self, token_id: int | None, claims: list[dict[str, Any]], claimed_at: datetime
    ) -> set[str]:
        rows = db.session.execute(
            text(
                "INSERT INTO idempotency_records (token_id, key, fingerprint, claimed_at, "
                "report_id, response_status) "
                "SELECT :token_id, u.key, u.fingerprint, :claimed_at, u.report_id, 201 "
                "FROM json_to_recordset(CAST(:rows AS json)) "
                "AS u(key text, fingerprint text, report_id integer) "
                "ON CONFLICT (token_id, key) DO NOTHING RETURNING key"
            ),
            {"token_id": token_id, "claimed_at": claimed_at, "rows": _json(claims)},
        )
        return set(rows.scalars())

    def reports(self, values: list[dict[str, Any]]) -> dict[str, int]:
        names = ", ".join(name for name, _ in _REPORT_COLUMNS)
        first = values[0]
        rows = db.session.execute(
            text(
                f"INSERT INTO reports ({names}, received_at, token_id) "
                f"SELECT {names}, :received_at, :token_id "
                f"FROM json_to_recordset(CAST(:rows AS json)) AS u({_recordset(_REPORT_COLUMNS)}) "
                "RETURNING id, client_id"
            ),
            {
                "rows": _json(values),
                "received_at": first["received_at"],
                "token_id": first["token_id"],
            },
        )
        return {key: report_id for report_id, key in rows}

    def needs(self, values: list[dict[str, Any]]) -> None:
        db.session.execute(
            text(
                "INSERT INTO report_needs (report_id, sector, severity, note) "
                "SELECT report_id, sector, severity, note FROM json_to_recordset("
                "CAST(:rows AS json)) AS u(report_id integer, sector text, severity integer, "
                "note text)"
            ),
            {"rows": _json(values)},
        )


_generic = _GenericWriter()
_postgres = _PostgresWriter()


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
