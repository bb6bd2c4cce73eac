"""What one try at a delivery (an email, a webhook) did: shared by both kinds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What an attempt did, and when the task should run again (None: not again)."""

    status: str
    retry_in: int | None = None
