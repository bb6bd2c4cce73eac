"""The embedded broker: kombu's SQLAlchemy transport (`sqla+sqlite:///…`), made to
survive its database failing.

kombu's channel keeps one SQLAlchemy session for its life. When a write to the broker's
file fails (the disk is full, the file is locked), the session is left in a failed
transaction and the channel never closes it: the worker reconnects and opens another,
and another, until the connection pool is exhausted (`QueuePool limit ... reached`) and
the worker dies, for good, though the disk has room again. Here a channel gives its
session back (rolled back, closed) whenever an operation fails and when it closes, so a
reconnect starts clean and the worker resumes by itself once the file can be written.
The messages are untouched: a message is taken only by a commit that succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty
from typing import Any

from kombu import transport as kombu_transports
from kombu.transport import sqlalchemy as kombu_sqla
from sqlalchemy import exc as sa

log = logging.getLogger(__name__)


class Channel(kombu_sqla.Channel):
    def _get(self, queue: str) -> Any:
        with self._session_given_back_on_error():
            return super()._get(queue)

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        with self._session_given_back_on_error():
            super()._put(queue, payload, **kwargs)

    def _size(self, queue: str) -> int:
        with self._session_given_back_on_error():
            return int(super()._size(queue))

    def _purge(self, queue: str) -> int:
        with self._session_given_back_on_error():
            return int(super()._purge(queue))

    def close(self) -> None:
        self._give_back_session()
        super().close()

    @contextmanager
    def _session_given_back_on_error(self) -> Iterator[None]:
        try:
            yield
        except Empty:  # no message: the transaction ended cleanly
            raise
        except BaseException:
            self._give_back_session()
            raise

    def _give_back_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.rollback()
            session.close()
        except Exception as exc:  # noqa: BLE001 - the connection may be gone already
            log.warning("broker session not closed", extra={"error_type": type(exc).__name__})


class Transport(kombu_sqla.Transport):
    Channel = Channel
    # A session left failed by another thread's error, or a pool that waited too long:
    # also a reason to reconnect (with a fresh session), not to stop the worker.
    connection_errors = (sa.OperationalError, sa.PendingRollbackError, sa.TimeoutError)


def use_for_sqla_urls() -> None:
    """`sqla+…` broker URLs name this transport in this process (kombu reads the name
    from the URL's prefix, so the setting `broker_transport` cannot choose it)."""
    for alias in ("sqla", "sqlalchemy"):
        kombu_transports.TRANSPORT_ALIASES[alias] = f"{__name__}:Transport"
        kombu_transports._transport_cache.pop(alias, None)
