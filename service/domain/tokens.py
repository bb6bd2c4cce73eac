"""API tokens: issued with a secret shown once, stored as a hash, looked up per request.

A token is looked up in one query (its row and its sites, joined) on every request, so
a revocation takes effect on the next request: nothing is cached.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, bindparam, select

from service.domain import audit, hot
from service.domain.callers import OPERATOR, Caller
from service.extensions import db
from service.models import ApiToken, Role, Site, token_sites
from service.types import utcnow

TOKEN_PREFIX = "nt_"
# Tokens made for work done on the machine itself (`import`, `demo`).
SYSTEM_PREFIX = "(system)"


def hash_token(secret: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(role: Role, name: str, sites: Iterable[Site] = ()) -> tuple[ApiToken, str]:
    """Create a token (flushed, not committed) and return it with its secret, shown once."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        role=role,
        prefix=secret[:10],
        secret_hash=hash_token(secret),
        sites=list(sites),
    )
    db.session.add(token)
    db.session.flush()
    return token, secret


_tokens = ApiToken.__table__
# A table-level query (no ORM entities to build): every request runs it.
_CALLER = select(
    _tokens.c.id, _tokens.c.name, _tokens.c.role, _tokens.c.revoked_at, token_sites.c.site_id
).select_from(_tokens.outerjoin(token_sites, token_sites.c.token_id == _tokens.c.id))


_BY_HASH = _CALLER.where(_tokens.c.secret_hash == bindparam("secret_hash"))
_BY_ID = _CALLER.where(_tokens.c.id == bindparam("token_id"))


def caller_for_secret(secret: str) -> Caller | None:
    """Who holds this bearer secret, if it names a live token (the API and the sign-in)."""
    return _caller(_BY_HASH, {"secret_hash": hash_token(secret)})


def caller_for_token(token_id: int) -> Caller | None:
    """The caller a token stands for, or None when there is none or it is revoked."""
    return _caller(_BY_ID, {"token_id": token_id})


def _caller(query: Select[Any], params: dict[str, object]) -> Caller | None:
    found = hot.rows(query, params)
    if not found:
        return None
    token_id, name, role, revoked_at, _ = found[0]
    if revoked_at is not None and revoked_at <= utcnow():
        return None
    sites = frozenset(row.site_id for row in found if row.site_id is not None)
    return Caller(token_id=token_id, name=name, role=Role(role), site_ids=sites)


def system_caller(name: str) -> Caller:
    """An admin token for work done on the machine itself (`import`, `demo`), so reports
    keep a token and idempotency keys stay scoped. Its secret is unusable: the stored hash
    is not a SHA-256, so no bearer token can ever match it. Flushed, not committed."""
    token = db.session.execute(
        select(ApiToken).where(
            ApiToken.name == name,
            ApiToken.prefix == SYSTEM_PREFIX,
            ApiToken.revoked_at.is_(None),
        )
    ).scalar_one_or_none()
    if token is None:
        token = ApiToken(
            name=name,
            role=Role.admin,
            prefix=SYSTEM_PREFIX,
            secret_hash="!" + secrets.token_hex(31),
        )
        db.session.add(token)
        db.session.flush()
        audit.record(
            OPERATOR, "token.create", "token", token.id, after={"name": name, "role": "admin"}
        )
    return Caller(token_id=token.id, name=token.name, role=token.role)
