"""The API's bearer tokens at the edge: who is calling, and refusing the wrong role early.

Tokens themselves (issuing, hashing, looking up) are the core's: service/domain/tokens.py.

A read (GET, HEAD) may be let through on who held the token up to TOKEN_CACHE_SECONDS
ago (2 by default; 0: never): looking the token up was a third of a summary poll's
cost. A write always looks the token up again, so a revoked token stores nothing from
the moment it is revoked, and reads nothing TOKEN_CACHE_SECONDS later.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from service.domain.callers import Caller
from service.domain.tokens import caller_for_secret, hash_token
from service.errors import Problem
from service.models import Role

F = TypeVar("F", bound=Callable[..., Any])
# Paths under /api/v1 anyone may read: the interactive docs and the document they load.
PUBLIC_API_PATHS = frozenset({"/api/v1/openapi.json", "/api/v1/docs"})
PUBLIC_API_PREFIX = "/api/v1/docs/"  # the docs' own scripts and styles


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="needs-tracker"'})


def authenticate() -> None:
    """`before_request` for the API: every /api/v1 call but the docs needs a valid token."""
    path = request.path
    if not path.startswith("/api/v1") or path in PUBLIC_API_PATHS:
        return
    if path.startswith(PUBLIC_API_PREFIX):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise _unauthorized("Send your token as 'Authorization: Bearer <token>'.")
    caller = _reader(secret.strip()) if request.method in READS else None
    if caller is None:
        caller = caller_for_secret(secret.strip())
        _READERS.keep(secret.strip(), caller)
    if caller is None:
        raise _unauthorized("This token is unknown or revoked. Ask the coordination lead for one.")
    g.caller = caller


READS = ("GET", "HEAD")


class _RecentCallers:
    """Who held which token, recently: keyed by the token's hash (no secret kept here),
    for at most `MAX` tokens, each for TOKEN_CACHE_SECONDS."""

    MAX = 1000

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, secret: str, seconds: float) -> Caller | None:
        with self._lock:
            seen = self._seen.get(hash_token(secret))
        if seen is None or time.monotonic() - seen[1] > seconds:
            return None
        return seen[0]

    def keep(self, secret: str, caller: Caller | None) -> None:
        key = hash_token(secret)
        with self._lock:
            if caller is None:
                self._seen.pop(key, None)
                return
            self._seen[key] = (caller, time.monotonic())
            self._seen.move_to_end(key)
            while len(self._seen) > self.MAX:
                self._seen.popitem(last=False)


_READERS = _RecentCallers()


def _reader(secret: str) -> Caller | None:
    seconds = current_app.config["TOKEN_CACHE_SECONDS"]
    return _READERS.get(secret, seconds) if seconds > 0 else None


def current_caller() -> Caller:
    return g.caller


def requires(*roles: Role) -> Callable[[F], F]:
    """Refuse a caller of another role before the request body is even parsed."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            current_caller().require_role(*roles)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
