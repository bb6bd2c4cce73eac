"""Who is acting: a token's holder, the operator at the command line, or a recipient
following an unsubscribe link. Every read and write in the core is checked against one.

Who sees what, stated once (README "Who sees what" is its table): everyone with a token
reads sites and summaries (site-level figures). A site's groups, head counts and their
notes are seen by admins (all sites) and by coordinators of the sites on their token;
readers and email recipients see none. `Caller.group_view` is that rule; the API, the
dashboard, the summaries' views (service/domain/visibility.py) and the emails ask it.
"""

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

    # Subscriptions and webhooks are owned by the token that made them: admins manage
    # every one, a reader its own, coordinators none. Another's is "not found".
    def require_manages_own(self) -> None:
        self.require_role(Role.admin, Role.reader)

    def manages(self, owner_token_id: int | None) -> bool:
        return self.is_admin or (owner_token_id is not None and owner_token_id == self.token_id)

    def holds_site(self, site_id: str) -> bool:
        """The caller answers for this site: an admin, or a coordinator it names."""
        return self.is_admin or (self.role is Role.coordinator and site_id in self.site_ids)

    def can_write_site(self, site_id: str) -> bool:
        return self.holds_site(site_id)

    @property
    def group_view(self) -> frozenset[str] | None:
        """THE rule of who sees what below site level: the sites whose groups, head counts
        and notes this caller sees. None: every site (admins); a coordinator: the sites
        on its token; a reader or an email recipient: none."""
        if self.is_admin:
            return None
        if self.role is Role.coordinator:
            return self.site_ids
        return frozenset()

    def sees_groups_of(self, site_id: str) -> bool:
        """May this caller see the groups, head counts and notes of `site_id`?"""
        view = self.group_view
        return view is None or site_id in view

    def group_sites(self) -> frozenset[str] | None:
        """`group_view`, for a request about groups or head counts: a role that sees none
        (readers) is refused, told what it can read."""
        if self.role is Role.reader:
            raise Forbidden(READER_READS, title="Not for this role")
        return self.group_view

    def require_sees_groups_of(self, site_id: str) -> None:
        """Refuse a filter naming a site whose groups this caller may not see (sites are
        public, so saying so gives nothing away)."""
        if self.group_sites() is not None and not self.sees_groups_of(site_id):
            raise Forbidden(
                f"This token sees the groups and head counts of "
                f"{_listed(self.site_ids)} only, not of '{site_id}'.",
                title="Not for this token",
            )

    def require_site(self, site_id: str) -> None:
        self.require_role(Role.admin, Role.coordinator)
        if not self.can_write_site(site_id):
            raise Forbidden(
                f"This token may not write for site '{site_id}'. Ask the coordination lead for "
                "a token that names it."
            )


READER_READS = (
    "A reader token reads sites (/api/v1/sites) and situation summaries "
    "(/api/v1/summaries) with site-level figures. Groups, head counts and their notes "
    "are for coordinators of their sites and admins."
)


def _listed(site_ids: frozenset[str]) -> str:
    return ", ".join(f"'{s}'" for s in sorted(site_ids)) if site_ids else "no site"


OPERATOR = Caller(token_id=None, name="operator (command line)", role=Role.admin)
# The recipient is the one acting when an unsubscribe link is used.
RECIPIENT = Caller(token_id=None, name="recipient (unsubscribe link)", role=Role.reader)
# The service itself, acting on what it saw (a subscription suspended after refusals).
SYSTEM = Caller(token_id=None, name="needs-tracker (automatic)", role=Role.admin)
