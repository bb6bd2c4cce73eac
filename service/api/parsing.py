"""How request bodies are read: webargs' Flask parser, stricter about what a body is."""

from __future__ import annotations

import json
from typing import Any

import flask
import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from service.errors import Problem


class JSONParser(FlaskParser):
    """Reads JSON bodies, refusing with a 4xx (never a 500) what it cannot read.

    - A body sent with another content type is 415. webargs would ignore it, and the
      client would be told that every field is missing.
    - JSON that Python's decoder gives up on (nested thousands deep, an integer of more
      than 4300 digits) is 400 like any other malformed JSON.
    """

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            if req.get_data(cache=True):
                raise Problem(
                    415,
                    "Send the body as JSON, with 'Content-Type: application/json'.",
                    title="Unsupported Media Type",
                )
            return core.missing
        try:
            return core.parse_json(req.get_data(cache=True))
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as exc:
            raise json.JSONDecodeError(type(exc).__name__, doc="<body>", pos=0) from None


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, reading bodies with `JSONParser`."""

    ARGUMENTS_PARSER = JSONParser()
