"""The flask-smorest Api, answering its errors as problem+json like the rest of the app,
and documenting them so (every error response in the OpenAPI document is an RFC 9457
problem, `application/problem+json`)."""

from __future__ import annotations

import http

from flask import Response
from flask_smorest import Api as SmorestApi
from flask_smorest.pagination import PaginationMetadataSchema
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from service.errors import PROBLEM_JSON, ProblemOut, handle_http_exception


class Api(SmorestApi):
    ERROR_SCHEMA = ProblemOut

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return handle_http_exception(error)

    def _register_responses(self) -> None:
        """flask-smorest's error responses, as problem+json."""
        for status in http.HTTPStatus:
            response: dict[str, object] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "A problem (RFC 9457)", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, default, lazy=True)

    def _register_pagination_header(self) -> None:
        """X-Pagination carries JSON: documented as JSON content, not a plain header value."""
        self.spec.components.header(
            "PAGINATION",
            {
                "description": "Pagination metadata",
                "content": {"application/json": {"schema": PaginationMetadataSchema}},
            },
            lazy=True,
        )
