"""The `needs-tracker` command: a Flask CLI group bound to the app factory."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext

from service import audit
from service.auth import OPERATOR, issue_token
from service.domain.sites import seed_sites
from service.extensions import db
from service.models import ApiToken, Role, Site
from service.types import utcnow


def _create_app() -> Flask:
    from service import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False)
def cli() -> None:
    """needs-tracker: head counts of displaced people and situation summaries."""


def register_commands(app: Flask) -> None:
    from service.serve import serve

    app.cli.add_command(seed)
    app.cli.add_command(token)
    app.cli.add_command(serve)


@click.command()
@with_appcontext
def seed() -> None:
    """Add the default sites (Stepanakert centre and airport) if they are missing."""
    added = seed_sites(OPERATOR)
    db.session.commit()
    click.echo(f"seeded: {', '.join(added)}" if added else "seed: the default sites are there")


@click.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--site", "sites", multiple=True, help="A site a coordinator may write for.")
@click.option("--name", default=None, help="What the token is for (a team, not a person).")
@with_appcontext
def token_create(role: str, sites: tuple[str, ...], name: str | None) -> None:
    """Create a token and print it, once, as the last line."""
    role_ = Role(role)
    if role_ is Role.coordinator and not sites:
        raise click.UsageError("A coordinator token needs at least one --site.")
    if role_ is not Role.coordinator and sites:
        raise click.UsageError("--site only applies to coordinator tokens.")
    found = []
    for site_id in sites:
        site = db.session.get(Site, site_id)
        if site is None:
            raise click.UsageError(f"There is no site '{site_id}' (see GET /api/v1/sites).")
        found.append(site)
    api_token, secret = issue_token(role_, name or f"{role} token", found)
    db.session.flush()
    audit.record(
        OPERATOR,
        "token.create",
        "token",
        api_token.id,
        after={"name": api_token.name, "role": role, "sites": sorted(sites)},
    )
    db.session.commit()
    click.echo(f"token {api_token.id} ({role}{': ' + ', '.join(sites) if sites else ''}) created.")
    click.echo("Keep it safe: it is shown only now.")
    click.echo(secret)


@token.command("list")
@with_appcontext
def token_list() -> None:
    """List tokens (never their secrets)."""
    tokens = db.session.execute(db.select(ApiToken).order_by(ApiToken.id)).scalars()
    for t in tokens:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        sites = ",".join(t.site_ids) or "-"
        click.echo(f"{t.id}\t{t.prefix}…\t{t.role.value}\t{sites}\t{state}\t{t.name}")


@token.command("revoke")
@click.argument("token_id", type=int)
@with_appcontext
def token_revoke(token_id: int) -> None:
    """Revoke a token; it stops working at once."""
    api_token = db.session.get(ApiToken, token_id)
    if api_token is None:
        raise click.UsageError(f"There is no token {token_id} (see `needs-tracker token list`).")
    if api_token.revoked_at is None:
        api_token.revoked_at = utcnow()
        audit.record(OPERATOR, "token.revoke", "token", token_id, after={"revoked": True})
        db.session.commit()
    click.echo(f"token {token_id} revoked")
