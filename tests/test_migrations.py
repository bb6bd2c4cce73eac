"""One Alembic history builds the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import insert, inspect, select

from service import create_app
from service.extensions import db
from service.models import Summary, SummaryStatus
from tests.backends import empty_database


def test_migrations_upgrade_an_empty_database_to_the_models(tmp_path):
    with empty_database(tmp_path) as url:
        app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": url})
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
            with db.engine.connect() as connection:
                context = MigrationContext.configure(
                    connection, opts={"compare_type": True, "render_as_batch": True}
                )
                differences = compare_metadata(context, db.metadata)
            assert differences == []
            tables = set(inspect(db.engine).get_table_names())
            assert {"sites", "groups", "reports", "api_tokens", "audit_events"} <= tables
            db.engine.dispose()


def test_migrations_downgrade_to_nothing_and_back(tmp_path):
    with empty_database(tmp_path) as url:
        app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": url})
        with app.app_context():
            directory = app.extensions["migrate"].directory
            upgrade(directory=directory)
            downgrade(directory=directory, revision="base")
            assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
            upgrade(directory=directory)
            assert "reports" in inspect(db.engine).get_table_names()
            db.engine.dispose()


def test_one_summary_per_moment_keeps_the_built_one_of_repeated_moments(tmp_path):
    """Before the unique key, a moment asked for twice was built twice: the migration
    keeps one of each (the ready one), so the key can be made on a live database."""
    with empty_database(tmp_path) as url:
        app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": url})
        with app.app_context():
            directory = app.extensions["migrate"].directory
            upgrade(directory=directory, revision="0005_import_jobs")
            moment = datetime(2026, 11, 1, 12, tzinfo=UTC)
            other = moment + timedelta(hours=1)
            rows = {
                "failed": dict(as_of=moment, status=SummaryStatus.failed),
                "ready": dict(as_of=moment, status=SummaryStatus.ready),
                "pending": dict(as_of=moment, status=SummaryStatus.pending),
                "other": dict(as_of=other, status=SummaryStatus.pending),
                "period": dict(as_of=moment, period=moment, status=SummaryStatus.ready),
            }
            ids = {name: uuid.uuid4() for name in rows}
            for name, values in rows.items():
                db.session.execute(
                    insert(Summary).values(id=ids[name], requested_at=moment, attempts=1, **values)
                )
            db.session.commit()
            upgrade(directory=directory, revision="0007_one_summary_per_moment")
            kept = set(db.session.execute(select(Summary.id)).scalars())
            assert kept == {ids["ready"], ids["other"], ids["period"]}
            db.session.remove()
            db.engine.dispose()
