"""Canonical JSON and its hash: what makes two documents "the same" (summaries' ETags)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Keys sorted, no spaces, ASCII; anything else JSON has no type for (UUIDs, dates) as text.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def digest(payload: Any) -> str:
    """The SHA-256 of `payload`'s canonical JSON, in hex."""
    return hashlib.sha256(_CANONICAL.encode(payload).encode()).hexdigest()
