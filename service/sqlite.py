"""SQLite's one writer, shared so that nobody waits for what they do not need.

SQLite (the embedded default) lets one connection write at a time; in WAL mode readers
never wait for it. So:

- A request that only reads (GET, HEAD) runs in deferred transactions: it takes no lock,
  and a long write (an import's chunk, a summary being stored) does not hold it up.
- A request that writes looks its caller up first in a deferred read, which then ends;
  its own transaction takes the write lock at its first statement (BEGIN IMMEDIATE), so
  two writers queue on the busy timeout instead of one failing when its read turns into
  a write (SQLITE_BUSY_SNAPSHOT). No lock is held while its body is still arriving: a
  slow upload keeps nobody waiting.
- Outside a request (workers, the scheduler, the command line) every transaction takes
  the write lock up front, as before. A long write in steps (an import's chunks) pauses
  between them, so the requests waiting for the lock get their turn.

How long a transaction waits for the lock: a request briefly (then 503 with
Retry-After, through `availability.database_away`: the client tries again), a worker
longer (its work is queued, and nobody waits on the line for it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app, g, has_request_context, request
from sqlalchemy import event

from service.extensions import db

# The requests that only read (the token cache's rule too: service/auth.py).
READS = ("GET", "HEAD")


def tune(engine: Any, request_busy_seconds: float, worker_busy_seconds: float) -> None:
    """WAL, foreign keys on, and each transaction begun as described above."""
    waits = {True: int(request_busy_seconds * 1000), False: int(worker_busy_seconds * 1000)}

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        in_request = has_request_context()
        wait = waits[in_request]
        # A pooled connection serves requests and (in tests) workers in turn.
        if connection.info.get("busy_timeout") != wait:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={wait}")
            connection.info["busy_timeout"] = wait
        reading = in_request and (request.method in READS or g.get("looking_up", False))
        connection.exec_driver_sql("BEGIN DEFERRED" if reading else "BEGIN IMMEDIATE")


# SQLite's busy handler looks for the lock again after at most 100 ms of sleep: a
# writer that took it back at once after each step would keep the others out.
WRITERS_TURN_SECONDS = 0.1


def give_writers_a_turn() -> None:
    """Between the steps of a long write (nothing held): on SQLite, a moment for the
    requests waiting on the lock. 0.1 s a chunk of 2,000 rows; during an import of
    60,000 rows a request's write waited at most 1.7 s instead of 4.2 s (measured once,
    on a busy 2-core machine)."""
    if on_sqlite():
        time.sleep(WRITERS_TURN_SECONDS)


def on_sqlite() -> bool:
    return bool(current_app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"))


@contextmanager
def looking_up() -> Iterator[None]:
    """Around a request's look-up of its caller: on SQLite, in a write request, the look-up
    is a read that takes no lock, and it ends with the block (nothing was written), so the
    request's writes take the lock only when they start."""
    if request.method in READS or not on_sqlite():
        yield
        return
    g.looking_up = True
    try:
        yield
    finally:
        g.looking_up = False
        db.session.rollback()
