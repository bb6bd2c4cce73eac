"""Is this failure the database (or its disk) being away, or a fault in the work?

The one rule that tells them apart, read by the edge (a 503 with Retry-After instead of
a 500), by the workers (retry later instead of marking the work failed) and by the
readiness check. A part that is away comes back; the same work then succeeds. A bug or
a broken rule does not go away by waiting, so it is never called unavailable.
"""

from __future__ import annotations

import errno
import sqlite3

import psycopg
from sqlalchemy import exc as sa

from service.domain.errors import Unavailable

NOTHING_STORED = "nothing was stored"

# SQLite says why only in words; these are the ones that pass with time or space.
_SQLITE_BUSY = ("database is locked", "database table is locked")
_SQLITE_DISK = ("database or disk is full", "disk i/o error", "unable to open database file")
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS}


def database_away(error: BaseException) -> Unavailable | None:
    """An `Unavailable` saying what is away and when to try again, when `error` (or an
    error it was raised from, or while handling) is the database or the disk; else None."""
    for cause in _chain(error):
        found = _classify(cause)
        if found is not None:
            return found
    return None


def _classify(error: BaseException) -> Unavailable | None:
    if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
        return _unreachable()
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        if any(words in text for words in _SQLITE_BUSY):
            return Unavailable(
                f"The database is busy with other work; {NOTHING_STORED}. Try again in a moment.",
                retry_after=2,
            )
        if any(words in text for words in _SQLITE_DISK):
            return _disk()
        return None
    if isinstance(error, psycopg.errors.DiskFull):
        return _disk()
    # psycopg's OperationalError: the connection failed or was closed, the server is
    # shutting down or starting, out of connections, a deadlock or serialization failure.
    # Each passes: the same work succeeds once it has.
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return _unreachable()
    if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:
        return _disk()
    return None


def _unreachable() -> Unavailable:
    return Unavailable(
        f"The database cannot be reached right now; {NOTHING_STORED}. Try again in a few seconds.",
        retry_after=5,
    )


def _disk() -> Unavailable:
    return Unavailable(
        f"The server's disk is full or failing; {NOTHING_STORED}. Try again later, and tell "
        "the coordination lead: space must be freed on the server.",
        retry_after=30,
    )


def _chain(error: BaseException) -> list[BaseException]:
    """The error, what it wraps (SQLAlchemy's `.orig`) and what it was raised from or
    while handling, each once (a PendingRollbackError hides the OperationalError that
    broke the transaction in its context)."""
    seen: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending.extend(
            e
            for e in (getattr(current, "orig", None), current.__cause__, current.__context__)
            if isinstance(e, BaseException)
        )
    return seen
