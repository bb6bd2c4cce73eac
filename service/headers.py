"""Security headers on every response: what a browser may do with what we send.

Nothing is sniffed into another type (`nosniff`), nothing is framed (clickjacking), and
each kind of response gets the narrowest Content-Security-Policy it works with: API
answers (JSON, CSV, problems) may load nothing at all; the API docs page runs Swagger UI
from this site only (no inline script; its styles are set by script, which CSP allows;
its icons are data: images); other HTML pages (the unsubscribe page) load nothing but
their own inline style. The dashboard sets its own, stricter one (service/dashboard).
"""

from __future__ import annotations

from flask import Response, request

DOCS_PATH = "/api/v1/docs"
NOTHING = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PAGE = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.path == DOCS_PATH:
        policy = DOCS
    elif response.mimetype == "text/html":
        policy = PAGE
    else:
        policy = NOTHING
    headers.setdefault("Content-Security-Policy", policy)
    return response
