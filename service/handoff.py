"""Handing work to the workers: the one module that knows the tasks' names.

The core stores what is to be done (a pending summary, a queued delivery, an import
job) and returns its id; the edge commits, then hands the id out here. Nothing here
touches the database: when the broker is down, `False` comes back, the work stays
stored, and the scheduler's sweep hands it out once the broker is back.

Two queues: the schedule's work (ticks, period summaries, email deliveries) goes to
CELERY_QUEUE; work a person asked for (on-demand summaries, CSV imports) to its
".on-demand" twin, served by a worker of its own, so a flood of requests never holds
up a scheduled summary or email. Both names derive from CELERY_QUEUE, so deployments
(and test runs) sharing a broker stay apart.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flask import current_app

log = logging.getLogger(__name__)

# Task names: explicit, so they survive refactors (workers/tasks.py registers them).
BUILD_SUMMARY = "summaries.build"
TICK = "summaries.tick"
DISPATCH_SUBSCRIPTIONS = "subscriptions.dispatch"
SEND_DELIVERY = "deliveries.send"
RUN_IMPORT = "imports.run"
SEND_WEBHOOK = "webhooks.send"


def scheduled_queue(config: Mapping[str, Any]) -> str:
    return str(config["CELERY_QUEUE"])


def on_demand_queue(config: Mapping[str, Any]) -> str:
    return f"{config['CELERY_QUEUE']}.on-demand"


def build_summary(summary_id: uuid.UUID, *, on_demand: bool) -> bool:
    """A summary someone asked for goes to the on-demand queue, a period's to the schedule's."""
    return _send(BUILD_SUMMARY, summary_id, on_demand=on_demand)


def send_delivery(delivery_id: uuid.UUID) -> bool:
    return _send(SEND_DELIVERY, delivery_id, on_demand=False)


def run_import(job_id: uuid.UUID) -> bool:
    # An upload can take minutes: it must not hold up the schedule either.
    return _send(RUN_IMPORT, job_id, on_demand=True)


def send_deliveries(delivery_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Hand out each delivery; returns those the broker did not take."""
    return [delivery_id for delivery_id in delivery_ids if not send_delivery(delivery_id)]


def send_webhooks(delivery_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Hand out each webhook delivery (the schedule's queue); returns those not taken."""
    return [d for d in delivery_ids if not _send(SEND_WEBHOOK, d, on_demand=False)]


def _send(task: str, work_id: uuid.UUID, *, on_demand: bool) -> bool:
    config = current_app.config
    queue = on_demand_queue(config) if on_demand else scheduled_queue(config)
    try:
        current_app.extensions["celery"].send_task(task, args=[str(work_id)], queue=queue)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the sweep catches up
        log.warning(
            "broker unavailable; work left for the sweep",
            extra={"task": task, "work_id": str(work_id), "error_type": type(exc).__name__},
        )
        return False
    return True
