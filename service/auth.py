"""The API's bearer tokens at the edge: who is calling, and refusing the wrong role early.

Tokens themselves (issuing, hashing, looking up) are the core's: service/domain/tokens.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from service.domain.callers import Caller
from service.domain.tokens import caller_for_secret
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
    caller = caller_for_secret(secret.strip())
    if caller is None:
        raise _unauthorized("This token is unknown or revoked. Ask the coordination lead for one.")
    g.caller = caller


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
