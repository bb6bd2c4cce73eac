"""The baseline of `python -m bench.http`: the plain version of the same work, in bare Flask.

Plain Flask, plain marshmallow and SQLAlchemy Core (`text()` statements, the engine's
default pool), none of the service's layers: per request one token lookup by hash, a
marshmallow load, one INSERT (one multi-row INSERT for a batch), a commit and a JSON
answer. No idempotency claim, no audit row, no needs rows, no ORM, no access log. It is
served as ours is, by gunicorn with the same settings: `gunicorn bench.bare:app`.

    DATABASE_URL       the benchmark's database (a plain postgresql:// URL)
    BARE_LATEST_BODY   a file holding the bytes ours answers GET /api/v1/summaries/latest
    BARE_LATEST_ETAG   the ETag ours answers with them (unquoted)
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import Connection, create_engine, text

from service.models import SADD_KEYS, VULNERABLE_KEYS  # the columns, nothing else

COLUMNS = (
    "group_id",
    "site_id",
    "observed_at",
    "received_at",
    "total",
    *SADD_KEYS,
    *VULNERABLE_KEYS,
    "note",
    "supersedes_id",
    "client_id",
    "token_id",
)
WRITERS = ("admin", "coordinator")

SaddIn = Schema.from_dict({key: fields.Integer(required=True) for key in SADD_KEYS}, name="SaddIn")


class NeedIn(Schema):
    sector = fields.String(required=True)
    severity = fields.Integer(required=True)
    note = fields.String(allow_none=True, load_default=None)


class ReportIn(Schema):
    group_id = fields.UUID(required=True)
    observed_at = fields.AwareDateTime(required=True)
    total = fields.Integer(required=True)
    sadd = fields.Nested(SaddIn, allow_none=True, load_default=None)
    needs = fields.List(fields.Nested(NeedIn), load_default=list)
    note = fields.String(allow_none=True, load_default=None)
    client_id = fields.UUID(load_default=None)


class BatchIn(Schema):
    reports = fields.List(
        fields.Nested(ReportIn), required=True, validate=validate.Length(min=1, max=500)
    )


TOKEN = text("SELECT id, role FROM api_tokens WHERE secret_hash = :h")
INSERT_ONE = text(
    f"INSERT INTO reports ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(f':{column}' for column in COLUMNS)}) RETURNING id"
)
# A batch in one statement: an array of values per column, paired up by unnest. Not
# INSERT ... VALUES (...), (...) with 10,500 named parameters: psycopg caches only short
# statements, and rewriting that one's placeholders took ~0.1 s a request.
_ARRAY_TYPES = {
    "group_id": "uuid[]",
    "site_id": "text[]",
    "observed_at": "timestamptz[]",
    "received_at": "timestamptz[]",
    "note": "text[]",
    "client_id": "text[]",
}
INSERT_MANY = text(
    f"INSERT INTO reports ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_ARRAY_TYPES.get(c, 'integer[]')})" for c in COLUMNS)
    + ") RETURNING id"
)


def create_app() -> Flask:
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    with engine.connect() as conn:
        # The site of each group, once: the plain app does not look it up per report.
        site_of = dict(conn.execute(text("SELECT id, site_id FROM groups")).all())
    body_file = os.environ.get("BARE_LATEST_BODY")
    latest = Path(body_file).read_bytes() if body_file else None
    etag = os.environ.get("BARE_LATEST_ETAG", "")
    app = Flask(__name__)

    def caller(conn: Connection, *roles: str) -> int:
        header = request.headers.get("Authorization", "")
        secret = header.removeprefix("Bearer ").strip()
        digest = hashlib.sha256(secret.encode()).hexdigest()
        token = conn.execute(TOKEN, {"h": digest}).first()
        if token is None:
            abort(401)
        if roles and token.role not in roles:
            abort(403)
        return token.id

    def row(report: dict[str, Any], token_id: int, key: str | None) -> dict[str, Any]:
        site_id = site_of.get(report["group_id"])
        if site_id is None:
            abort(422)
        sadd = report["sadd"] or {}
        return {
            **dict.fromkeys(COLUMNS),
            **{k: sadd.get(k) for k in SADD_KEYS},
            "group_id": report["group_id"],
            "site_id": site_id,
            "observed_at": report["observed_at"],
            "received_at": datetime.now(UTC),
            "total": report["total"],
            "note": report["note"],
            "client_id": key,
            "token_id": token_id,
        }

    def load(schema: Schema) -> dict[str, Any]:
        try:
            return schema.load(request.get_json())
        except ValidationError as exc:
            abort(Response(str(exc.messages), status=422))

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.post("/api/v1/reports")
    def post_report() -> tuple[Response, int]:
        with engine.begin() as conn:
            token_id = caller(conn, *WRITERS)
            report = load(ReportIn())
            key = report["client_id"] or request.headers.get("Idempotency-Key")
            values = row(report, token_id, str(key) if key else None)
            report_id = conn.execute(INSERT_ONE, values).scalar_one()
        answer = {
            **values,
            "id": report_id,
            "group_id": str(values["group_id"]),
            "observed_at": values["observed_at"].isoformat(),
            "received_at": values["received_at"].isoformat(),
            "sadd": report["sadd"],
            "needs": report["needs"],
        }
        return jsonify(answer), 201

    @app.post("/api/v1/reports/batch")
    def post_batch() -> Response:
        with engine.begin() as conn:
            token_id = caller(conn, *WRITERS)
            reports = load(BatchIn())["reports"]
            params: dict[str, list[Any]] = {column: [] for column in COLUMNS}
            for report in reports:
                key = str(report["client_id"]) if report["client_id"] else None
                for column, value in row(report, token_id, key).items():
                    params[column].append(value)
            # unnest yields the rows in order, and the sequence numbers them in that order.
            ids = sorted(conn.execute(INSERT_MANY, params).scalars())
        results = [
            {"index": n, "status": 201, "report": {"id": report_id}}
            for n, report_id in enumerate(ids)
        ]
        return jsonify(results=results)

    @app.get("/api/v1/summaries/latest")
    def latest_summary() -> Response:
        with engine.connect() as conn:
            caller(conn)
        if latest is None:
            abort(404)
        if request.if_none_match.contains(etag):
            response = Response(status=304)
        else:
            response = Response(latest, mimetype="application/json")
        response.set_etag(etag)
        response.headers["Cache-Control"] = "private, no-cache"
        response.headers["Vary"] = "Accept, Authorization"
        return response

    return app


app = create_app()
