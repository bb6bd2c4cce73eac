"""The data `python -m bench.http` runs on: the seeded sites, groups at one site, tokens,
a few hundred reports and one ready summary, in a migrated throw-away database."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from sqlalchemy import text
from werkzeug.http import unquote_etag

from bench import data
from service.domain import summaries
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Role, Site, Summary

SITE = "stepanakert-centre"
GROUPS = 200

_GROUPS = text(
    """
    INSERT INTO groups (id, site_id, label, status, created_at, updated_at)
    SELECT gen_random_uuid(), :site, format('Bench group %s', i), 'waiting',
           now() - interval '2 days', now() - interval '2 days'
    FROM generate_series(1, :groups) AS i
    """
)
# Two earlier counts per group, so the summary and the counting rule have work to do.
_REPORTS = text(
    """
    INSERT INTO reports (group_id, site_id, observed_at, received_at, total, token_id)
    SELECT g.id, g.site_id, now() - k * interval '3 hours' - random() * interval '1 hour',
           now() - k * interval '3 hours', 20 + (random() * 380)::int, :token
    FROM groups g CROSS JOIN generate_series(1, 2) AS k
    """
)


@dataclass(frozen=True)
class Fixture:
    # Bearer secrets of a coordinator for SITE, one per server: idempotency keys are
    # scoped to a token, and ours' look-up of a token's keys must not be fed the
    # baseline's hundreds of thousands of rows.
    coordinators: dict[str, str]
    reader: str  # bearer secret of a reader
    groups: list[str]  # the groups at SITE


@dataclass(frozen=True)
class Latest:
    body: bytes
    etag: str  # unquoted


def prepare(url: str, servers: tuple[str, ...]) -> Fixture:
    """Migrate the database at `url` and fill it; returns what the load scripts need."""
    with data.migrated_app(url) as app, app.app_context():
        seed_sites(OPERATOR)
        site = db.session.get_one(Site, SITE)
        tokens = {name: issue_token(Role.coordinator, f"bench {name}", [site]) for name in servers}
        _, reader = issue_token(Role.reader, "bench reader")
        db.session.execute(_GROUPS, {"site": SITE, "groups": GROUPS})
        db.session.execute(_REPORTS, {"token": tokens[servers[0]][0].id})
        groups = db.session.execute(text("SELECT id FROM groups WHERE site_id = :s"), {"s": SITE})
        group_ids = sorted(str(g) for g in groups.scalars())
        # A summary row as the scheduler writes one, built here instead of by a worker.
        summary = Summary(as_of=db.session.execute(text("SELECT now()")).scalar_one())
        db.session.add(summary)
        db.session.commit()
        if not summaries.build(summary.id):
            raise RuntimeError("the summary was not built")
        db.session.commit()
    return Fixture({name: secret for name, (_, secret) in tokens.items()}, reader, group_ids)


def fetch_latest(base_url: str, reader: str) -> Latest:
    """What ours answers GET /api/v1/summaries/latest: the baseline serves the same bytes."""
    call = urllib.request.Request(
        f"{base_url}/api/v1/summaries/latest", headers={"Authorization": f"Bearer {reader}"}
    )
    with urllib.request.urlopen(call, timeout=10) as answer:
        etag, _ = unquote_etag(answer.headers["ETag"])
        return Latest(answer.read(), etag)
