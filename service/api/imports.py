"""Imports of head counts from CSV: `POST /api/v1/reports/import` uploads a file (admins)
and answers 202 at once; a worker runs it; `GET /api/v1/imports/{id}` follows it."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app, request
from flask.views import MethodView
from marshmallow import Schema, fields
from werkzeug.exceptions import RequestEntityTooLarge

from service import importing
from service.api.parsing import Blueprint
from service.auth import current_caller, requires
from service.domain.imports import jobs
from service.errors import Problem
from service.models import ImportJob, ImportStatus, Role

blp = Blueprint("imports", __name__, url_prefix="/api/v1", description="CSV imports")


class RowErrorOut(Schema):
    row = fields.Integer(
        metadata={"description": "The row as a spreadsheet numbers it (header: 1)."}
    )
    client_id = fields.String(allow_none=True)
    field = fields.String()
    message = fields.String()


class ImportOut(Schema):
    id = fields.UUID()
    status = fields.Enum(
        ImportStatus,
        by_value=True,
        metadata={"description": "`running` until a worker has imported every row."},
    )
    file = fields.String(attribute="file_name")
    total_rows = fields.Integer(
        allow_none=True, metadata={"description": "Rows in the file, once it has been read."}
    )
    rows = fields.Integer(metadata={"description": "Rows done so far."})
    stored = fields.Integer()
    already_imported = fields.Integer()
    failed = fields.Integer()
    groups_created = fields.Integer()
    errors = fields.List(
        fields.Nested(RowErrorOut),
        metadata={"description": f"The first {jobs.MAX_ERRORS_KEPT:,} row errors, by row."},
    )
    errors_truncated = fields.Boolean()
    error = fields.String(
        allow_none=True, metadata={"description": "Why the file was refused, or the job stopped."}
    )
    created_at = fields.AwareDateTime()
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)


CSV_UPLOAD = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "text/csv": {"schema": {"type": "string"}},
    },
}


def uploaded_file() -> tuple[bytes, str]:
    """The CSV's bytes and name, from a multipart `file` field or a text/csv body."""
    request.max_content_length = current_app.config["MAX_IMPORT_BYTES"]
    try:
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("file")
            if upload is None:
                raise Problem(
                    422,
                    "Send the CSV as the multipart field 'file'.",
                    errors=[{"field": "file", "message": "Missing data for required field."}],
                )
            return upload.read(), upload.filename or "upload.csv"
        if request.mimetype in {"text/csv", "text/plain", "application/csv"}:
            return request.get_data(), "upload.csv"
    except RequestEntityTooLarge:
        raise Problem(
            413,
            f"The file is larger than {current_app.config['MAX_IMPORT_BYTES']:,} bytes "
            "(MAX_IMPORT_BYTES); split it and upload the parts one after the other.",
        ) from None
    raise Problem(
        415,
        "Send the CSV as multipart/form-data (field 'file') or as a text/csv body.",
        title="Unsupported Media Type",
    )


@blp.route("/reports/import")
class ReportImport(MethodView):
    @requires(Role.admin)
    @blp.doc(requestBody=CSV_UPLOAD)
    @blp.response(202, ImportOut, description="Accepted: poll the `Location` until done.")
    def post(self) -> Any:
        """Import head counts from a CSV file (admins). A worker imports it; follow the
        `Location`. Rows with errors store nothing and are listed; a row imported before
        (same `client_id`, or the same content) counts as `already_imported`. The columns
        are those of `needs-tracker import`."""
        content, name = uploaded_file()
        job = importing.start_upload(current_caller(), content, name)
        return job, 202, {"Location": f"/api/v1/imports/{job.id}"}


@blp.route("/imports/<uuid:job_id>")
class ImportById(MethodView):
    @requires(Role.admin)
    @blp.response(200, ImportOut)
    def get(self, job_id: uuid.UUID) -> ImportJob:
        """An import: its status, and its rows done, stored and failed so far."""
        return jobs.find_job(job_id)
