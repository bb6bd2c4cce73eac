"""The `needs-tracker` command: a Flask CLI group bound to the app factory."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext

from service import signin_link
from service.domain import token_admin
from service.domain.callers import OPERATOR
from service.domain.errors import Invalid, NotFound
from service.domain.sites import seed_sites
from service.domain.tokens import system_caller
from service.extensions import db
from service.models import Role


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
    app.cli.add_command(import_reports)
    app.cli.add_command(demo)


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
@click.option(
    "--qr",
    is_flag=True,
    help="Also print the field app's sign-in link and its QR code, to scan with the phone.",
)
@click.option(
    "--qr-png",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write the sign-in QR code as a PNG file, readable by you only (it holds "
    "the token: delete it once the phone is signed in).",
)
@with_appcontext
def token_create(
    role: str, sites: tuple[str, ...], name: str | None, qr: bool, qr_png: Path | None
) -> None:
    """Create a token and print it, once, as the last line."""
    try:
        api_token, secret = token_admin.create_token(OPERATOR, Role(role), name, sites)
    except Invalid as refused:
        raise click.UsageError(
            " ".join(f"--{e.field}: {e.message}" for e in refused.errors) or refused.detail
        ) from None
    link = signin_link.signin_url(secret)
    if qr_png:
        try:  # before the commit: a code that cannot be written leaves no token behind
            signin_link.write_png(link, qr_png)
        except OSError as exc:
            db.session.rollback()
            raise click.ClickException(
                f"Cannot write {qr_png}: {exc.strerror or exc}. No token was created."
            ) from None
    db.session.commit()
    click.echo(f"token {api_token.id} ({role}{': ' + ', '.join(sites) if sites else ''}) created.")
    if qr or qr_png:
        if qr:
            click.echo("Scan this with the phone's camera to sign the field app in:")
            click.echo(signin_link.terminal_text(link), nl=False)
        if qr_png:
            click.echo(f"QR code written to {qr_png} (only you can read it; delete it after).")
        click.echo(f"Sign-in link: {link}")
    click.echo("Keep it safe: it is shown only now.")
    click.echo(secret)


@token.command("list")
@with_appcontext
def token_list() -> None:
    """List tokens (never their secrets)."""
    for t in token_admin.list_tokens(OPERATOR):
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        sites = ",".join(t.site_ids) or "-"
        click.echo(f"{t.id}\t{t.prefix}…\t{t.role.value}\t{sites}\t{state}\t{t.name}")


@token.command("revoke")
@click.argument("token_id", type=int)
@with_appcontext
def token_revoke(token_id: int) -> None:
    """Revoke a token: it writes nothing from now on, and reads nothing after
    TOKEN_CACHE_SECONDS (2 by default)."""
    try:
        token_admin.revoke_token(OPERATOR, token_id)
    except NotFound:
        raise click.UsageError(
            f"There is no token {token_id} (see `needs-tracker token list`)."
        ) from None
    db.session.commit()
    click.echo(f"token {token_id} revoked")


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yields `advance(done)`. click's progress bar on a terminal (no new dependency,
    and it redraws in place); on a pipe or a CI log, where it would print only its
    label, a plain line every tenth of the way instead."""
    if sys.stdout.isatty():
        with click.progressbar(length=total, label=label, show_pos=True) as bar:
            seen = 0

            def advance(done: int) -> None:
                nonlocal seen
                bar.update(done - seen)
                seen = done

            yield advance
        return
    click.echo(f"{label}: {total:,}")
    shown = -1

    def report(done: int) -> None:
        nonlocal shown
        tenth = done * 10 // total if total else 10
        if tenth > shown:
            shown = tenth
            click.echo(f"  {done:,} of {total:,} ({done * 100 // max(total, 1)}%)")

    yield report


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def import_reports(path: Path) -> None:
    """Import head counts from a CSV file (columns: see the README).

    Rows with errors store nothing; they are listed in FILE.errors.csv next to the
    file. Rows imported before are skipped. Exits 1 when any row failed."""
    from service import importing
    from service.domain import imports
    from service.domain.imports import jobs

    source = imports.CsvSource.from_path(path)
    try:
        source.check()
    except imports.ImportFileError as exc:
        raise click.ClickException(f"{path}: {exc.detail}") from None
    caller = system_caller(imports.IMPORT_TOKEN_NAME)
    job = jobs.create_job(caller, path.name, None)
    db.session.commit()
    with (
        progress(source.row_count, f"Importing {path.name}") as advance,
        importing.quick_switching(),
    ):
        result = importing.run_import(job.id, source, on_progress=lambda r: advance(r.rows))
    assert result is not None  # the job was made here, for this run
    report = path.with_name(path.name.removesuffix(".csv") + ".errors.csv")
    click.echo(
        f"{result.rows:,} rows: {result.stored:,} stored, {result.already_imported:,} "
        f"already imported, {result.failed:,} failed; {result.groups_created:,} groups created."
    )
    if result.errors:
        try:
            with report.open("w", newline="", encoding="utf-8") as out:
                imports.write_error_report(result, out)
            click.echo(f"Errors, one line per problem: {report}")
        except OSError as exc:
            click.echo(f"Cannot write {report} ({exc.strerror}); the errors:", err=True)
            imports.write_error_report(result, click.get_text_stream("stderr"))
        raise click.exceptions.Exit(1)
    report.unlink(missing_ok=True)


@click.command()
@with_appcontext
def demo() -> None:
    """Load a replay of 20 September - 3 October 2023 in Nagorno-Karabakh (public
    figures; see service/demo/SOURCES.md) and build its summaries. Safe to run twice."""
    from service import demo as replay
    from service.domain import summaries

    caller = replay.prepare()
    groups = replay.demo_groups()
    created = replay.register_groups(caller, groups)
    with progress(replay.replay_rows(), "Replaying head counts") as advance:
        imported, applied = replay.replay_reports(
            caller, replay.events(groups), lambda r: advance(r.rows)
        )
    periods = replay.periods(summaries.interval())
    with progress(len(periods), "Building summaries") as advance:
        done = 0

        def step(count: int) -> None:
            nonlocal done
            done += count
            advance(done)

        built, total = replay.build_summaries(step)
    click.echo(
        f"groups: {created} registered; moves and departures: {applied} recorded; "
        f"head counts: {imported.stored:,} stored, {imported.already_imported:,} already "
        f"there, {imported.failed:,} failed; summaries: {built} built of {total}."
    )
    click.echo(
        "Open the dashboard and sign in with a token (needs-tracker token create --role "
        "reader); the replay's peak is at /?at=2023-09-25T12:00:00Z"
    )
