"""One Alembic history builds the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from service import create_app
from service.extensions import db
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
