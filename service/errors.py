"""RFC 9457 problem details for every error the service answers with."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Flask, Response, json
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, InternalServerError

from service.domain import errors as domain
from service.domain.availability import database_away

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class FieldErrorOut(Schema):
    field = fields.String(metadata={"description": "As sent: `sadd.male_0_4`, `needs.1.severity`."})
    message = fields.String()


class ProblemOut(Schema):
    """RFC 9457 problem details, as every error is answered (`application/problem+json`)."""

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String(allow_none=True)
    errors = fields.List(fields.Nested(FieldErrorOut))


class Problem(HTTPException):
    """An HTTP error carrying problem details; raise it anywhere in a request."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description=detail)
        self.code = status
        self.title = title
        self.errors = errors
        self.extra_headers = dict(headers or {})


def field_errors(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """Flatten marshmallow/webargs messages into `[{"field": "sadd.male_0_4", "message": ...}]`."""
    return list(_walk(messages, prefix))


def _walk(messages: Any, path: str) -> Iterator[dict[str, str]]:
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = str(key)
            if name == "_schema":
                name = ""
            yield from _walk(value, f"{path}.{name}" if path and name else (path or name))
    elif isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            for message in messages:
                yield {"field": path, "message": message}
        else:
            for item in messages:
                yield from _walk(item, path)
    else:
        yield {"field": path, "message": str(messages)}


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = problem_body(status, detail, title=title, errors=errors)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_body(
    status: int,
    detail: str | None,
    *,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """An RFC 9457 problem document (also each failed item of a batch)."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or status_title(status),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


def status_title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if isinstance(error, Problem):
        return problem_response(
            status,
            error.description or "",
            title=error.title,
            errors=error.errors,
            headers=error.extra_headers,
        )
    errors = None
    detail = error.description or status_title(status)
    # webargs/flask-smorest attach validation messages as error.data["messages"].
    data = getattr(error, "data", None) or {}
    if isinstance(data, Mapping) and "messages" in data:
        errors = field_errors(_without_location(data["messages"]))
        detail = "The request has invalid fields; see errors."
    if status == 413:
        detail = (
            "The request body is larger than this service accepts; send fewer reports per batch."
        )
    headers = {}
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    return problem_response(status, detail, errors=errors, headers=headers)


def _without_location(messages: Any) -> Any:
    """webargs nests messages under the location ("json", "query"); keep that only if mixed."""
    if isinstance(messages, Mapping) and len(messages) == 1:
        ((location, inner),) = messages.items()
        if location in {"json", "query", "headers", "form", "files", "view_args"}:
            return inner
    return messages


# The core's errors, as HTTP statuses. The same key sent with another body is 422 (the
# Idempotency-Key draft's answer), so it is an `Invalid` with its own title.
STATUS: dict[type[domain.DomainError], int] = {
    domain.NotFound: 404,
    domain.Invalid: 422,
    domain.Forbidden: 403,
    domain.Conflict: 409,
    domain.InProgress: 409,
    domain.Unavailable: 503,
}


def status_of(error: domain.DomainError) -> int:
    return next(code for kind, code in STATUS.items() if isinstance(error, kind))


def domain_problem(error: domain.DomainError) -> dict[str, Any]:
    """The problem document of a core error (also each refused item of a batch)."""
    errors = [e.as_dict() for e in error.errors] or None
    return problem_body(status_of(error), error.detail, title=error.title, errors=errors)


def handle_domain_error(error: domain.DomainError) -> Response:
    headers = {}
    if isinstance(error, domain.InProgress | domain.Unavailable):
        headers["Retry-After"] = str(error.retry_after)
    body = domain_problem(error)
    response = Response(json.dumps(body), status=body["status"], mimetype=PROBLEM_JSON)
    response.headers.update(headers)
    return response


def handle_unexpected(error: Exception) -> Response:
    away = database_away(error)
    if away is not None:
        # Not our bug: the database or disk is away. The client is told when to retry.
        log.warning("database unavailable", extra={"error_type": type(error).__name__})
        return handle_domain_error(away)
    log.exception("unhandled error", extra={"error_type": type(error).__name__})
    return problem_response(
        500,
        "Something went wrong on our side; nothing was stored. Try again, and tell the "
        "coordination lead if it keeps happening.",
    )


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(domain.DomainError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(InternalServerError, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
