"""gunicorn's access log, with what a request brings written escaped.

gunicorn writes the request's path and headers into its log as they came: a `%0A` in a
path starts a forged line of log, `%00` writes a NUL, `%1b[` drives the terminal of
whoever tails the log. Here every control character (C0, DEL, C1 such as NEL, and
Unicode's line and paragraph separators) is written as `\\xNN` / `\\uNNNN`, and a
backslash as `\\\\`, so one request is one line and the line says what was sent.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")


def _escaped(match: re.Match[str]) -> str:
    character = match.group()
    if character == "\\":
        return "\\\\"
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: str) -> str:
    return _UNSAFE.sub(_escaped, value)


class EscapingLogger(Logger):
    """gunicorn's logger, its access log's atoms escaped."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: escape(value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }
