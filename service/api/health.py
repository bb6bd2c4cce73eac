"""Liveness and readiness, for load balancers and compose healthchecks."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from service.extensions import db

blp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@blp.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to serve: the database answers and the broker takes connections."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {name: "ok" if ok else "down" for name, ok in checks.items()},
    }
    return jsonify(body), 200 if ready else 503


def _database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("database check failed", extra={"error_type": type(exc).__name__})
        db.session.rollback()
        return False


def _broker_ok() -> bool:
    """Connect, and ask the queue its length: a round trip, not just an open socket."""
    celery_app = current_app.extensions["celery"]
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            connection.default_channel._size(celery_app.conf.task_default_queue)
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("broker check failed", extra={"error_type": type(exc).__name__})
        return False
