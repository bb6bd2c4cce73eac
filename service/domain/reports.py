"""Head counts: one observation of one group. Append-only; a correction is a new report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app

from service import audit
from service.auth import Caller
from service.domain import idempotency
from service.errors import Problem
from service.extensions import db
from service.models import SADD_KEYS, VULNERABLE_KEYS, Group, Report, ReportNeed

# A typo'd year (0023 for 2023) would otherwise pass as a very old, very stale count.
EARLIEST_OBSERVATION = datetime(2000, 1, 1, tzinfo=UTC)

Render = Callable[[Report], dict[str, Any]]


@dataclass(frozen=True)
class Submitted:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def check_rules(data: dict[str, Any], now: datetime | None = None) -> list[dict[str, str]]:
    """The rules that span fields; returns field errors (empty when the report is sound)."""
    errors: list[dict[str, str]] = []
    now = now or datetime.now(UTC)
    skew = timedelta(seconds=current_app.config["CLOCK_SKEW_SECONDS"])
    if data["observed_at"] > now + skew:
        errors.append({"field": "observed_at", "message": "Must not be in the future."})
    elif data["observed_at"] < EARLIEST_OBSERVATION:
        errors.append(
            {"field": "observed_at", "message": "Must be in 2000 or later; check the year."}
        )
    total = data["total"]
    sadd = data.get("sadd")
    if sadd is not None and sum(sadd.values()) != total:
        errors.append(
            {
                "field": "sadd",
                "message": f"The breakdown adds up to {sum(sadd.values())}, not the total {total}.",
            }
        )
    for key, value in (data.get("vulnerable") or {}).items():
        if value > total:
            errors.append(
                {"field": f"vulnerable.{key}", "message": f"Must not exceed the total {total}."}
            )
    return errors


def request_fingerprint(data: dict[str, Any]) -> str:
    """What makes two reports "the same request": every field but the client_id."""
    canonical = {k: v for k, v in data.items() if k != "client_id"}
    canonical["observed_at"] = data["observed_at"].astimezone(UTC).isoformat()
    return idempotency.fingerprint(canonical)


def submit_report(
    caller: Caller, data: dict[str, Any], key: str | None, render: Render
) -> Submitted:
    """Store one validated report, exactly once per idempotency key."""
    errors = check_rules(data)
    if errors:
        raise Problem(422, "The report breaks a counting rule; see errors.", errors=errors)
    claimed = None
    if key is not None:
        claimed = idempotency.claim(caller.token_id, key, request_fingerprint(data))
        if isinstance(claimed, idempotency.Replay):
            return Submitted(claimed.status, _replayed(claimed, render), replayed=True)
    try:
        report = _store(caller, data, key)
        body = render(report)
        if claimed is not None:
            idempotency.complete(claimed, 201, report.id)
        db.session.commit()
    except BaseException:
        if claimed is not None:
            idempotency.release(claimed)
        else:
            db.session.rollback()
        raise
    return Submitted(201, body)


def _replayed(replay: idempotency.Replay, render: Render) -> dict[str, Any]:
    """The first answer again, rendered from the report it stored (append-only, so the same)."""
    return render(db.session.get_one(Report, replay.report_id))


def _store(caller: Caller, data: dict[str, Any], key: str | None) -> Report:
    group = db.session.get(Group, data["group_id"])
    if group is None:
        raise Problem(
            422,
            f"There is no group '{data['group_id']}'; register it first.",
            errors=[{"field": "group_id", "message": "Unknown group."}],
        )
    caller.require_site(group.site_id)
    supersedes = data.get("supersedes")
    if supersedes is not None:
        earlier = db.session.get(Report, supersedes)
        if earlier is None or earlier.group_id != group.id:
            raise Problem(
                422,
                "A report can only supersede an earlier report of the same group.",
                errors=[{"field": "supersedes", "message": "No such report for this group."}],
            )
    sadd = data.get("sadd") or {}
    vulnerable = data.get("vulnerable") or {}
    report = Report(
        group_id=group.id,
        site_id=group.site_id,
        observed_at=data["observed_at"],
        total=data["total"],
        note=data.get("note"),
        supersedes_id=supersedes,
        client_id=key,
        token_id=caller.token_id,
        **{k: sadd.get(k) for k in SADD_KEYS},
        **{k: vulnerable.get(k) for k in VULNERABLE_KEYS},
        needs=[ReportNeed(**need) for need in data.get("needs") or []],
    )
    db.session.add(report)
    db.session.flush()
    audit.record(
        caller,
        "report.create",
        "report",
        report.id,
        after={
            "group_id": str(group.id),
            "site_id": group.site_id,
            "observed_at": report.observed_at.isoformat(),
            "total": report.total,
            "supersedes": supersedes,
        },
    )
    return report
