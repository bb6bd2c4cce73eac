"""Dashboard sessions: a browser signed in with a token, until it signs out.

The browser's signed cookie names a session row, not the token: signing out ends the
row on the server, so a copy of the cookie taken before (a shared computer, a proxy's
log, a stolen backup of the browser's profile) no longer signs anyone in. Revoking the
token ends all its sessions at once, as every request checks the token too.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from service.domain.callers import Caller
from service.domain.tokens import caller_for_token
from service.extensions import db
from service.models import DashboardSession
from service.types import utcnow


def start(caller: Caller) -> uuid.UUID:
    """A new session for the caller's token (flushed; the edge commits)."""
    assert caller.token_id is not None
    session = DashboardSession(token_id=caller.token_id, created_at=utcnow())
    db.session.add(session)
    db.session.flush()
    return session.id


def caller_for_session(session_id: uuid.UUID) -> Caller | None:
    """Who the session signs in: None once it ended or its token was revoked."""
    token_id = db.session.execute(
        select(DashboardSession.token_id).where(
            DashboardSession.id == session_id, DashboardSession.ended_at.is_(None)
        )
    ).scalar_one_or_none()
    return None if token_id is None else caller_for_token(token_id)


def end(session_id: uuid.UUID) -> None:
    db.session.execute(
        update(DashboardSession)
        .where(DashboardSession.id == session_id, DashboardSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
