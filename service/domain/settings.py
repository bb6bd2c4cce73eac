"""The one seam between the core and the app it runs in: its settings (built by
config.py from the environment), and an app context for a thread of its own.

The core reads its settings here, never from Flask itself: a handler, a task and a
command all run it inside the app, and this is the only place that knows how."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from flask import current_app

# A worker's task is killed after this long (service/celery_app.py sets it so); a lease
# on work (a delivery, an import job) lasts as long, so no second worker takes it while
# the first may still be in it.
TASK_TIME_LIMIT_SECONDS = 900


def setting(name: str) -> Any:
    return current_app.config[name]


def context_for_a_thread() -> Callable[[], AbstractContextManager[Any]]:
    """What a thread the core starts enters to work in this app (its own session)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return app.app_context
