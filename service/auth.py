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
from collections.abc import Callable
from typing import Any, TypeVar

from cachetools import TTLCache
from flask import Flask, current_app, g, request

from service.domain.callers import Caller
from service.domain.tokens import caller_for_secret, hash_token
from service.errors import Problem
from service.models import Role
from service.sqlite import READS, looking_up

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
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise _unauthorized("Send your token as 'Authorization: Bearer <token>'.")
    recent: _RecentCallers | None = current_app.extensions["recent_callers"]
    caller = recent.get(secret) if recent is not None and request.method in READS else None
    if caller is None:
        with looking_up():
            caller = caller_for_secret(secret)
        if recent is not None:
            recent.keep(secret, caller)
    if caller is None:
        raise _unauthorized("This token is unknown or revoked. Ask the coordination lead for one.")
    g.caller = caller


class _RecentCallers:
    """Who held which token in the last `seconds`: keyed by the token's hash (no secret
    kept here), for at most `MAX` tokens."""

    MAX = 1000

    def __init__(self, seconds: float) -> None:
        self._seen: TTLCache[str, Caller] = TTLCache(maxsize=self.MAX, ttl=seconds)
        self._lock = threading.Lock()  # a TTLCache is not safe across threads

    def get(self, secret: str) -> Caller | None:
        with self._lock:
            return self._seen.get(hash_token(secret))

    def keep(self, secret: str, caller: Caller | None) -> None:
        key = hash_token(secret)
        with self._lock:
            if caller is None:
                self._seen.pop(key, None)
            else:
                self._seen[key] = caller


def init_app(app: Flask) -> None:
    """Every /api/v1 request is authenticated; reads may go by a recent look-up."""
    seconds = app.config["TOKEN_CACHE_SECONDS"]
    app.extensions["recent_callers"] = _RecentCallers(seconds) if seconds > 0 else None
    app.before_request(authenticate)


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


def sees_groups(view: F) -> F:
    """Refuse a caller who sees no site's groups (readers), saying what it can read,
    before the query is parsed. Which groups it sees is the core's (`Caller.group_sites`)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_caller().group_sites()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
