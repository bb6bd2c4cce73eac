"""The one writer of head counts: every report reaches the database through here.

`POST /reports`, `POST /reports/batch`, the CSV import (command line and upload) and the
demo hand it sets of sound reports (`NewReport`: a HeadCount placed at its group and
site, with its key); it stores them set-based with their needs, their keys and
fingerprints, and the audit trail, in the caller's transaction (the edge commits).
There is one implementation per backend behind this small interface:

- PostgreSQL (`postgres.py`): one statement per set (arrays unnested, `INSERT ... ON
  CONFLICT (token_id, client_id) DO NOTHING`), and COPY for an import's chunks;
- SQLite (`sqlite.py`): executemany, inside the write lock every transaction takes.

A report's key is unique per token in the schema (`uq_reports_token_key`): a report
whose key another request stored meanwhile is not stored, and `store` says so (its id
is None); the caller answers it from what the key names.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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
class Probe:
    """What a report about to be stored names: its group, the report it corrects, its key."""

    group_id: uuid.UUID | None
    supersedes: int | None
    key: str | None


@dataclass(frozen=True, slots=True)
class Found:
    """What the database knows of a Probe's names."""

    site_id: str | None  # the group's site; None: there is no such group
    supersedes_group: uuid.UUID | None  # None: there is no such report
    stored: Stored | None  # None: the key is free
    in_flight: bool = False  # another request is storing this key right now


class Writer(Protocol):
    def look_up(self, token_id: int | None, probes: Sequence[Probe]) -> list[Found]:
        """For each probe, what its names are in the database. A key found free is held
        for this transaction (PostgreSQL: a second request with the same key sees it
        `in_flight` until this one ends)."""

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
