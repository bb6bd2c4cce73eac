"""/api/v1/reports/import: a CSV file of head counts, uploaded by an admin."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, request
from flask.views import MethodView
from marshmallow import Schema, fields
from werkzeug.exceptions import RequestEntityTooLarge

from service.api.parsing import Blueprint
from service.auth import current_caller, requires
from service.domain import imports as domain
from service.errors import Problem
from service.models import Role

blp = Blueprint("imports", __name__, url_prefix="/api/v1/reports/import", description="CSV import")

# At most this many row errors in the answer; the counts always cover every row.
MAX_ERRORS_SHOWN = 1000


class RowErrorOut(Schema):
    row = fields.Integer(
        metadata={"description": "The row as a spreadsheet numbers it (header: 1)."}
    )
    client_id = fields.String(allow_none=True)
    field = fields.String()
    message = fields.String()


class ImportOut(Schema):
    file = fields.String()
    rows = fields.Integer()
    stored = fields.Integer()
    already_imported = fields.Integer()
    failed = fields.Integer()
    groups_created = fields.Integer()
    errors = fields.List(fields.Nested(RowErrorOut))
    errors_truncated = fields.Boolean()


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


@blp.route("")
class ReportImport(MethodView):
    @requires(Role.admin)
    @blp.doc(requestBody=CSV_UPLOAD)
    @blp.response(200, ImportOut)
    def post(self) -> Response:
        """Import head counts from a CSV file (admins). Rows with errors store nothing and
        are listed; a row imported before (same `client_id`, or the same content) is
        counted as `already_imported`. The columns are those of `needs-tracker import`."""
        data, name = uploaded_file()
        try:
            result = domain.import_csv(current_caller(), domain.CsvSource.from_bytes(data, name))
        except domain.ImportFileError as exc:
            raise Problem(422, exc.message, errors=exc.errors or None) from None
        body: dict[str, Any] = result.counts()
        body["errors"] = [e.as_dict() for e in result.errors[:MAX_ERRORS_SHOWN]]
        body["errors_truncated"] = len(result.errors) > MAX_ERRORS_SHOWN
        return jsonify(body)
