"""Structured (JSON) logs. Never log tokens, Authorization headers or people's details."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_needs_tracker", False) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    handler._needs_tracker = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def json_formatter() -> JsonFormatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
