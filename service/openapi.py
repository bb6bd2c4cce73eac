"""The flask-smorest Api, answering its errors as problem+json like the rest of the app."""

from __future__ import annotations

from flask import Response
from flask_smorest import Api as SmorestApi
from werkzeug.exceptions import HTTPException

from service.errors import handle_http_exception


class Api(SmorestApi):
    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return handle_http_exception(error)
