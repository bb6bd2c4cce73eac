"""Every answer the suite gets from the API is checked against the API's own OpenAPI
document (`/api/v1/openapi.json`), with openapi-core: its status is documented for its
operation, and its body is what the document says for that status and content type. So
the document is the truth a client can build on, not a description that drifts."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound

# Paths of the API whose answers are not in the document: the document and its viewer.
UNDOCUMENTED = ("/api/v1/openapi.json", "/api/v1/docs")


# Problem details (RFC 9457) are JSON, with a media type of their own.
PROBLEMS_ARE_JSON = Config(extra_media_type_deserializers={"application/problem+json": json.loads})


class AnsweredRequest(WerkzeugOpenAPIRequest):
    """The request an answer was for: its method and path find the operation. Its body
    was read by the app already (and is not what is checked here)."""

    @property
    def body(self) -> bytes | None:
        return None


class CheckedClient(FlaskClient):
    """A test client that holds every /api/v1 answer to the OpenAPI document it serves."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        request = response.request
        path = request.path
        if response.status_code == 405:
            # The router's answer (no such method on the URL it matched), not an operation's:
            # a document can match another template (`/reports/batch` to `/reports/{id}`).
            assert response.mimetype == "application/problem+json"
        elif path.startswith("/api/v1") and not path.startswith(UNDOCUMENTED):
            try:
                self._document().validate_response(
                    AnsweredRequest(request), WerkzeugOpenAPIResponse(response)
                )
            except (PathNotFound, OperationNotFound):
                # No such operation: only "no such path" or "not this method" may say so.
                assert response.status_code in (404, 405), (request.method, path)
                assert response.mimetype == "application/problem+json"
        return response

    def _document(self) -> OpenAPI:
        """The document `/api/v1/openapi.json` serves (read from the Api that serves it,
        so the check adds no request of its own to the app's log)."""
        app: Flask = self.application
        document = app.extensions.get("tests.openapi")
        if document is None:
            api = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
            with app.app_context():
                served = api.spec.to_dict()
            document = app.extensions["tests.openapi"] = OpenAPI.from_dict(
                served, config=PROBLEMS_ARE_JSON
            )
        return document
