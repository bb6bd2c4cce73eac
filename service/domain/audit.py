"""The audit trail: every write records who did what, when, before and after."""

from __future__ import annotations

from typing import Any

from service.domain.callers import Caller
from service.extensions import db
from service.models import AuditEvent


def record(
    caller: Caller,
    action: str,
    entity_type: str,
    entity_id: object,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add an audit event to the current transaction, so it commits with the change."""
    db.session.add(
        AuditEvent(
            token_id=caller.token_id,
            actor=caller.name,
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id),
            before=before,
            after=after,
        )
    )
