"""The few queries run by nearly every request (a token's look-up, the latest summary's
ETag), run on PostgreSQL through the driver with their SQL compiled once.

Measured under load (bench/http.py, a 304 poll): SQLAlchemy's execution of a Core
statement (its compilation cache look-up, execution context and result processing)
cost about a seventh of the request. The statement is still written once, as a Core
select; elsewhere (SQLite) it runs as usual. Values come back as the driver gives them:
the caller converts what the column types would have (an enum's text, a moment's zone).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Row, Select
from sqlalchemy.dialects import postgresql

from service.extensions import db

_POSTGRESQL = postgresql.psycopg.dialect()  # type: ignore[attr-defined]


@functools.cache
def _compiled(statement: Select[Any]) -> tuple[str, dict[str, Any]]:
    """The statement's SQL for psycopg, and the values it carries itself (a status, a
    limit), as the driver takes them."""
    compiled = statement.compile(dialect=_POSTGRESQL)
    carried = {}
    for name, value in compiled.params.items():
        if value is not None:
            process = compiled.binds[name].type.bind_processor(_POSTGRESQL)
            carried[name] = process(value) if process else value
    return str(compiled), carried


def rows(statement: Select[Any], params: dict[str, Any] | None = None) -> list[Row[Any]]:
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        sql, carried = _compiled(statement)
        return list(connection.exec_driver_sql(sql, {**carried, **(params or {})}).all())
    return list(connection.execute(statement, params or {}).all())
