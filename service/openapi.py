"""The flask-smorest Api, answering its errors as problem+json like the rest of the app,
and documenting them so (every error response in the OpenAPI document is an RFC 9457
problem, `application/problem+json`).

The errors an operation can answer are documented once, here, by what the operation is
(`ErrorResponses`), rather than on each handler, and without a catch-all `default`: a
client (and schemathesis) can rely on an operation answering only the statuses listed.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from typing import Any, TypeVar

from apispec import BasePlugin
from flask import Response
from flask_smorest import Api as SmorestApi
from flask_smorest.pagination import PaginationMetadataSchema
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from service.errors import PROBLEM_JSON, ProblemOut, handle_http_exception

F = TypeVar("F", bound=Callable[..., Any])
RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 0},
}

# What each common error means here, and the headers it carries.
ERRORS: dict[int, dict[str, Any]] = {
    400: {"description": "The body is not well-formed JSON (or not the media type it says)."},
    401: {
        "description": "No token, or a token that is unknown or revoked.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    403: {"description": "The token's role, or its sites, do not allow this."},
    404: {"description": "No such object (or none yet)."},
    409: {
        "description": "Conflicts with what is stored (or what is not ready yet); or the same "
        "request is in flight, and then `Retry-After` says when to resend.",
        "headers": {"Retry-After": RETRY_AFTER},
    },
    413: {"description": "The body is larger than this service accepts."},
    415: {"description": "The body is not of a media type this operation accepts."},
    422: {"description": "The request has invalid fields; `errors` names each."},
    429: {
        "description": "Over a rate limit; wait `Retry-After` seconds.",
        "headers": {"Retry-After": RETRY_AFTER},
    },
    503: {
        "description": "The database or the disk is unavailable; try again after `Retry-After`.",
        "headers": {"Retry-After": RETRY_AFTER},
    },
}

# What an operation that can answer 409 names: `@blp.alt_response(409, response=CONFLICT)`.
CONFLICT = http.HTTPStatus.CONFLICT.name
# ... and 404 where no id is in its path (`GET /summaries/latest` before any is ready).
NOT_FOUND = http.HTTPStatus.NOT_FOUND.name

# Any call can be unauthenticated, refused, over a limit, or come while the database is down.
EVERY_OPERATION = (401, 403, 429, 503)
# An operation with an id in its path can name an object that is not there.
WITH_PATH_IDS = (404,)
# An operation that reads a body can be sent a broken, too large or foreign one.
WITH_BODY = (400, 413, 415, 422)
# An operation with query parameters can be sent invalid ones.
WITH_QUERY = (422,)


def reads_header(parameter: dict[str, Any]) -> Callable[[F], F]:
    """Document a request header the operation reads, beside its other parameters
    (`blp.doc(parameters=...)` would replace its query parameters). Innermost decorator."""

    def decorator(view: F) -> F:
        doc = view.__dict__.setdefault("_apidoc", {})
        doc.setdefault("arguments", {}).setdefault("parameters", []).append(parameter)
        return view

    return decorator


class ErrorResponses(BasePlugin):
    """apispec plugin: adds the error responses an operation can give, by what it takes."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        takes_ids = bool(rule is not None and rule.arguments)
        for operation in (operations or {}).values():
            statuses = list(EVERY_OPERATION)
            if takes_ids:
                statuses += WITH_PATH_IDS
            if "requestBody" in operation:
                statuses += WITH_BODY
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                statuses += WITH_QUERY
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                if str(status) not in responses and status not in responses:
                    responses[str(status)] = http.HTTPStatus(status).name


class Api(SmorestApi):
    ERROR_SCHEMA = ProblemOut
    # No catch-all: each operation lists the errors it gives (ErrorResponses).
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _init_spec(self, *, extra_plugins: Any = None, **kwargs: Any) -> None:
        super()._init_spec(extra_plugins=[*(extra_plugins or ()), ErrorResponses()], **kwargs)

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return handle_http_exception(error)

    def _register_responses(self) -> None:
        """flask-smorest's error responses, as problem+json, with what they mean here."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            response.update(ERRORS.get(status, {}))
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)

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
