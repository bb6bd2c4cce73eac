"""The one writer of head counts: every report reaches the database through here.

`POST /reports` and `POST /reports/batch` hand it sets of sound reports (`write`: it
looks their names up, and stores those that may be stored); the CSV import (command
line, upload jobs) and the demo hand it sets placed and checked already (`store`). It
stores them set-based with their needs, keys and fingerprints, and the audit trail, in
the caller's transaction (the edge commits). One implementation per backend:

- PostgreSQL (`postgres.py`): one statement per set (`INSERT ... ON CONFLICT (token_id,
  client_id) DO NOTHING`; for `write`, the look-ups in the same statement), and COPY
  for an import's chunks;
- SQLite (`sqlite.py`): executemany, inside the write lock every transaction takes.

A report's key is unique per token in the schema (`uq_reports_token_key`): a report
whose key another request stored meanwhile is not stored, and the writer says so (its
id is None); the caller answers it from what the key names.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from service.domain.callers import Caller
from service.domain.headcounts import HeadCount
from service.extensions import db


@dataclass(frozen=True, slots=True)
class NewReport:
    """A sound report, placed: its group and the site it is filed at, and its key."""

    report: HeadCount
    key: str | None
    group_id: uuid.UUID
    site_id: str


@dataclass(frozen=True, slots=True)
class Stored:
    """What a key already names: its report, and the fingerprint of what was sent."""

    report_id: int
    fingerprint: str | None


@dataclass(frozen=True, slots=True)
class Found:
    """What the database knows of a report's names: its group, the report it corrects
    and its key."""

    site_id: str | None  # the group's site; None: there is no such group
    supersedes_group: uuid.UUID | None  # None: there is no such report
    stored: Stored | None  # None: the key is free
    in_flight: bool = False  # another request is storing this key right now


@dataclass(frozen=True, slots=True)
class Written:
    """What `write` did with one report: stored it (`report_id`), or not, and what it
    found, which says why (see `storable`)."""

    found: Found
    report_id: int | None


def storable(caller: Caller, report: HeadCount, found: Found) -> bool:
    """Whether `write` stores a report: its key is free (and held by this request), its
    group exists at a site the caller may write for, and the report it corrects, if any,
    is one of its group's. (The PostgreSQL writer states the same in its SQL.)"""
    return (
        found.stored is None
        and not found.in_flight
        and found.site_id is not None
        and caller.can_write_site(found.site_id)
        and (report.supersedes is None or found.supersedes_group == report.group_id)
    )


T = TypeVar("T")


def first_of_each_key(
    items: Iterable[T], key_of: Callable[[T], str | None]
) -> tuple[list[T], list[T]]:
    """One write stores a key once: the first of each key goes now, the others (in their
    order) with a next round, where the first one's report answers them. Items without
    a key all go now."""
    seen: set[str] = set()
    first: list[T] = []
    later: list[T] = []
    for item in items:
        key = key_of(item)
        if key is not None and key in seen:
            later.append(item)
        else:
            if key is not None:
                seen.add(key)
            first.append(item)
    return first, later


class Writer(Protocol):
    def write(
        self, caller: Caller, received_at: datetime, reports: Sequence[HeadCount]
    ) -> list[Written]:
        """The API's reports (named by group id, keyed by their client_id): looked up,
        and those `storable` stored, with an audit event each, in this transaction. A key
        found free is held until it ends: a second request with it is `in_flight`. A
        storable report whose key another writer stored meanwhile has no report_id."""

    def stored_keys(self, token_id: int | None, keys: Sequence[str]) -> dict[str, Stored]:
        """The keys of these that this token has stored reports under."""

    def group_sites(self, group_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Each existing group's site."""

    def store(
        self,
        caller: Caller,
        received_at: datetime,
        rows: Sequence[NewReport],
        *,
        audit: bool,
    ) -> list[int | None]:
        """Store the rows (ids in their order, the order of receipt); each row's report id,
        or None where its key was stored meanwhile by another request. With `audit`, an
        audit event per report (the API's writes; an import records one for itself)."""


def for_session() -> Writer:
    """The writer for the database the session is bound to."""
    if db.engine.dialect.name == "postgresql":
        from service.domain.writer.postgres import WRITER
    else:
        from service.domain.writer.sqlite import WRITER
    return WRITER


def report_audit(report: NewReport) -> dict[str, object]:
    """What the audit trail keeps of a stored report (no note: it may name people)."""
    return {
        "group_id": str(report.group_id),
        "site_id": report.site_id,
        "observed_at": report.report.observed,
        "total": report.report.total,
        "supersedes": report.report.supersedes,
    }
