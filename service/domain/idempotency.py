"""Idempotency keys, after the IETF draft "The Idempotency-Key HTTP Header Field".

A key is scoped to the caller's token. The first request claims it (a committed row,
so a simultaneous resend sees it); the answer (its status and the report it stored) is
recorded in the same transaction as the report, so "stored" and "answered" can never
disagree. A resend gets the same answer, rendered again from that report
(reports are append-only, so it renders as it did the first time; the CSV import
records claims the same way); the same key with another body is 422; a resend while
the first is still in flight is 409. A claim whose request died is taken over after
IDEMPOTENCY_LOCK_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from service.errors import Problem
from service.extensions import db
from service.models import IdempotencyRecord
from service.types import utcnow


@dataclass(frozen=True)
class Replay:
    """The answer to the first request with this key: its status and the report it stored."""

    status: int
    report_id: int


# What json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str) builds
# for every call, built once (the CSV import fingerprints every row).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(payload: dict[str, Any]) -> str:
    canonical = _CANONICAL.encode(payload)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(token_id: int, key: str, print_: str) -> IdempotencyRecord | Replay:
    """Claim `key` for this request (committed), or say what the earlier request got."""
    record = IdempotencyRecord(token_id=token_id, key=key, fingerprint=print_)
    db.session.add(record)
    try:
        db.session.commit()
        return record
    except IntegrityError:
        db.session.rollback()
    existing = db.session.execute(
        db.select(IdempotencyRecord).where(
            IdempotencyRecord.token_id == token_id, IdempotencyRecord.key == key
        )
    ).scalar_one()
    if existing.fingerprint != print_:
        raise Problem(
            422,
            "This idempotency key was already used for a different report. Use a new key "
            "for a new report; resend the same body to get the first answer.",
            title="Idempotency key reused",
        )
    if existing.response_status is not None:
        return Replay(existing.response_status, existing.report_id)
    if _take_over_abandoned(existing):
        return existing
    raise Problem(
        409,
        "The first request with this idempotency key is still being processed; resend "
        "the same request in a moment to get its answer.",
        title="Request in progress",
        headers={"Retry-After": "1"},
    )


def _take_over_abandoned(record: IdempotencyRecord) -> bool:
    lock = timedelta(seconds=current_app.config["IDEMPOTENCY_LOCK_SECONDS"])
    claimed_at = record.claimed_at
    if claimed_at > utcnow() - lock:
        return False
    # Compare-and-set, so only one of several resends takes over a dead claim.
    taken = db.session.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == record.id,
            IdempotencyRecord.response_status.is_(None),
            IdempotencyRecord.claimed_at == claimed_at,
        )
        .values(claimed_at=utcnow())
        .execution_options(synchronize_session="fetch")
    ).rowcount
    db.session.commit()
    return taken == 1


def complete(record: IdempotencyRecord, status: int, report_id: int) -> None:
    """Record the answer; commits with the caller's transaction (and so with the report)."""
    record.response_status = status
    record.report_id = report_id


def release(record: IdempotencyRecord) -> None:
    """Free the key after a request that stored nothing, so a corrected resend can use it."""
    db.session.rollback()
    db.session.execute(
        db.delete(IdempotencyRecord).where(
            IdempotencyRecord.id == record.id, IdempotencyRecord.response_status.is_(None)
        )
    )
    db.session.commit()
