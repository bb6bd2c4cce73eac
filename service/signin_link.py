"""The field app's sign-in link and its QR code, for the command line and the dashboard.

The link is `<PUBLIC_BASE_URL>/field/#token=<token>`: the secret travels in the URL's
fragment, which a browser never sends to a server, so no server or proxy logs it.

QR codes by segno (pure Python, no dependencies, maintained, writes PNG and SVG itself
and text for a terminal). Error correction M (15 %): a code on a creased paper or a
phone's screen in the sun still reads, and a token's link stays a small code (version
5, 37 modules).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import quote

import segno
from flask import current_app
from markupsafe import Markup

FIELD_PATH = "/field/"


def signin_url(secret: str, base_url: str | None = None) -> str:
    """The link that signs the field app in with `secret` (base: PUBLIC_BASE_URL)."""
    base = (base_url or current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    return f"{base}{FIELD_PATH}#token={quote(secret, safe='')}"


def qr_code(url: str) -> segno.QRCode:
    return segno.make(url, error="m", micro=False)


def terminal_text(url: str) -> str:
    """The QR code as text for a terminal: Unicode half blocks, two rows a line, no
    colour codes, so it also survives a pipe or an SSH session's log. Drawn light on
    dark, as terminals mostly are; phone cameras read it either way round."""
    out = io.StringIO()
    qr_code(url).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def write_png(url: str, path: Path, scale: int = 8) -> None:
    """Write the QR code as a PNG readable by its owner only (0600): it carries a secret.
    A file there is replaced; a symbolic link is refused rather than followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(descriptor, "wb") as png:
            descriptor = -1
            qr_code(url).save(png, kind="png", scale=scale, border=4)
    finally:
        if descriptor != -1:
            os.close(descriptor)


def svg(url: str, title: str, scale: int = 6) -> Markup:
    """The QR code as inline SVG (no `data:` image, which the dashboard's CSP forbids)."""
    code = qr_code(url).svg_inline(
        scale=scale,
        border=4,
        dark="#000",
        light="#fff",
        title=title,
        svgclass="signin-qr",
        lineclass=None,
        omitsize=False,
    )
    return Markup(code)
