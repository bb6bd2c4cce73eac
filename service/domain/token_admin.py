"""Managing API tokens (admins): create with a role and site scopes, list, revoke.

The rules a token's creation keeps, stated once for the command line and the dashboard:
its name is a label like any other (shown in listings and the audit log); a coordinator
token names at least one site, other roles none; the sites exist. Creating and revoking
are audited with the caller who did it (the operator on the command line).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from service.domain import audit, rules
from service.domain.callers import Caller
from service.domain.errors import FieldError, Invalid, NotFound
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import ApiToken, Role, Site
from service.types import utcnow


def create_token(
    caller: Caller, role: Role, name: str | None, site_ids: Iterable[str]
) -> tuple[ApiToken, str]:
    """A new token and its secret (shown once); flushed and audited, not committed."""
    caller.require_role(Role.admin)
    wanted = sorted(set(site_ids))
    errors = []
    if name is not None:
        try:
            name = rules.text(name, max_length=200)
        except rules.RuleError as exc:
            errors.append(FieldError("name", exc.message))
    if role is Role.coordinator and not wanted:
        errors.append(FieldError("site", "A coordinator token needs at least one site."))
    if role is not Role.coordinator and wanted:
        errors.append(FieldError("site", "Sites only apply to coordinator tokens."))
    found = []
    for site_id in wanted:
        site = db.session.get(Site, site_id) if rules.SLUG.match(site_id) else None
        if site is None:
            errors.append(FieldError("site", f"There is no site '{site_id}'."))
        else:
            found.append(site)
    if errors:
        raise Invalid(" ".join(e.message for e in errors), errors=errors)
    api_token, secret = issue_token(role, name or f"{role.value} token", found)
    audit.record(
        caller,
        "token.create",
        "token",
        api_token.id,
        after={"name": api_token.name, "role": role.value, "sites": wanted},
    )
    return api_token, secret


def revoke_token(caller: Caller, token_id: int) -> ApiToken:
    """Revoke a token (again: nothing changes); audited the first time."""
    caller.require_role(Role.admin)
    api_token = db.session.get(ApiToken, token_id)
    if api_token is None:
        raise NotFound(f"There is no token {token_id}.")
    if api_token.revoked_at is None:
        api_token.revoked_at = utcnow()
        audit.record(caller, "token.revoke", "token", token_id, after={"revoked": True})
        db.session.flush()
    return api_token


def list_tokens(caller: Caller) -> list[ApiToken]:
    """Every token, oldest first (never a secret: only a hash is stored)."""
    caller.require_role(Role.admin)
    return list(db.session.execute(select(ApiToken).order_by(ApiToken.id)).scalars())
