"""Who is acting: a token's holder, the operator at the command line, or a recipient
following an unsubscribe link. Every write in the core is checked against one."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.domain.errors import Forbidden
from service.models import Role


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the token's id, name, role and the sites it may write for."""

    token_id: int | None
    name: str
    role: Role
    site_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    @property
    def sees_exact_figures(self) -> bool:
        """Admins and coordinators see a summary as built; readers (and email recipients)
        see it with small cells suppressed (service/domain/suppression.py)."""
        return self.role in (Role.admin, Role.coordinator)

    def require_role(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(
                f"A {self.role.value} token cannot do this; it needs one of: "
                + ", ".join(r.value for r in roles)
                + "."
            )

    def can_write_site(self, site_id: str) -> bool:
        return self.is_admin or (self.role is Role.coordinator and site_id in self.site_ids)

    def require_site(self, site_id: str) -> None:
        self.require_role(Role.admin, Role.coordinator)
        if not self.can_write_site(site_id):
            raise Forbidden(
                f"This token may not write for site '{site_id}'. Ask the coordination lead for "
                "a token that names it."
            )


OPERATOR = Caller(token_id=None, name="operator (command line)", role=Role.admin)
# The recipient is the one acting when an unsubscribe link is used.
RECIPIENT = Caller(token_id=None, name="recipient (unsubscribe link)", role=Role.reader)
