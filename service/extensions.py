"""Extensions, created unbound here and bound to an app in `create_app`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_babel import Babel
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import JSON, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, registry

from service.types import UTCDateTime

# Stable constraint names, so Alembic migrations name the same thing on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    # Passed as an explicit registry: a type_annotation_map on the base class crashes
    # Flask-SQLAlchemy 3.1 (pallets-eco/flask-sqlalchemy#1361).
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={
            datetime: UTCDateTime(),
            dict[str, Any]: JSON().with_variant(JSONB(), "postgresql"),
            list[dict[str, Any]]: JSON().with_variant(JSONB(), "postgresql"),
        },
    )


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
# CSRF tokens on the dashboard's forms; see service/__init__.py for what is exempt.
csrf = CSRFProtect()
# Pages and emails in en, hy, ru: see service/i18n.py.
babel = Babel()
