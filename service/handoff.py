"""Handing work to the workers: the one module that knows the tasks' names.

The core stores what is to be done (a pending summary, a queued delivery, an import
job) and returns its id; the edge commits, then hands the id out here. Nothing here
touches the database: when the broker is down, `False` comes back, the work stays
stored, and the scheduler's sweep hands it out once the broker is back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from flask import current_app

log = logging.getLogger(__name__)

# Task names: explicit, so they survive refactors (workers/tasks.py registers them).
BUILD_SUMMARY = "summaries.build"
TICK = "summaries.tick"
DISPATCH_SUBSCRIPTIONS = "subscriptions.dispatch"
SEND_DELIVERY = "deliveries.send"
RUN_IMPORT = "imports.run"


def build_summary(summary_id: uuid.UUID) -> bool:
    return _send(BUILD_SUMMARY, summary_id)


def send_delivery(delivery_id: uuid.UUID) -> bool:
    return _send(SEND_DELIVERY, delivery_id)


def run_import(job_id: uuid.UUID) -> bool:
    return _send(RUN_IMPORT, job_id)


def send_deliveries(delivery_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Hand out each delivery; returns those the broker did not take."""
    return [delivery_id for delivery_id in delivery_ids if not send_delivery(delivery_id)]


def _send(task: str, work_id: uuid.UUID) -> bool:
    try:
        current_app.extensions["celery"].send_task(task, args=[str(work_id)])
    except Exception as exc:  # noqa: BLE001 - any broker failure: the sweep catches up
        log.warning(
            "broker unavailable; work left for the sweep",
            extra={"task": task, "work_id": str(work_id), "error_type": type(exc).__name__},
        )
        return False
    return True
