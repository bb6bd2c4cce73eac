"""Bearer tokens and the checks every request and every write goes through."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import g, request

from service.errors import Problem
from service.extensions import db
from service.models import ApiToken, Role, Site
from service.types import utcnow

F = TypeVar("F", bound=Callable[..., Any])
TOKEN_PREFIX = "nt_"
# Paths under /api/v1 anyone may read: the interactive docs and the document they load.
PUBLIC_API_PATHS = frozenset({"/api/v1/openapi.json", "/api/v1/docs"})
PUBLIC_API_PREFIX = "/api/v1/docs/"  # the docs' own scripts and styles


def hash_token(secret: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(role: Role, name: str, sites: Iterable[Site] = ()) -> tuple[ApiToken, str]:
    """Create a token (not yet committed) and return it with its secret, shown once."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        role=role,
        prefix=secret[:10],
        secret_hash=hash_token(secret),
        sites=list(sites),
    )
    db.session.add(token)
    return token, secret


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's id, name, role and the sites it may write for."""

    token_id: int | None
    name: str
    role: Role
    site_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    def require_role(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Problem(
                403,
                f"A {self.role.value} token cannot do this; it needs one of: "
                + ", ".join(r.value for r in roles)
                + ".",
            )

    def can_write_site(self, site_id: str) -> bool:
        return self.is_admin or (self.role is Role.coordinator and site_id in self.site_ids)

    def require_site(self, site_id: str) -> None:
        self.require_role(Role.admin, Role.coordinator)
        if not self.can_write_site(site_id):
            raise Problem(
                403,
                f"This token may not write for site '{site_id}'. Ask the coordination lead for "
                "a token that names it.",
            )


OPERATOR = Caller(token_id=None, name="operator (command line)", role=Role.admin)


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


def caller_for_secret(secret: str) -> Caller | None:
    """Who holds this bearer secret, if it names a live token (the API and the sign-in)."""
    token = db.session.execute(
        db.select(ApiToken).where(ApiToken.secret_hash == hash_token(secret))
    ).scalar_one_or_none()
    return caller_for_token(token)


def caller_for_token(token: ApiToken | None) -> Caller | None:
    """The caller a token stands for, or None when there is none or it is revoked."""
    if token is None or (token.revoked_at is not None and token.revoked_at <= utcnow()):
        return None
    return Caller(
        token_id=token.id, name=token.name, role=token.role, site_ids=frozenset(token.site_ids)
    )


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
