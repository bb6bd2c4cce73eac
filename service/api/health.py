"""Liveness and readiness, for load balancers and compose healthchecks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

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
    """Ready to serve: the database answers, the broker takes connections, and the disk
    the embedded database and broker write to has room."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    folders = _sqlite_folders()
    if folders:
        checks["disk"] = all(_has_room(folder) for folder in folders)
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {name: "ok" if ok else _DOWN.get(name, "down") for name, ok in checks.items()},
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


_DOWN = {"disk": "full"}


def _sqlite_folders() -> set[Path]:
    """The folders of the SQLite files (database, embedded broker): a full disk there
    refuses every write, while reads, and so `SELECT 1`, still pass."""
    urls = (
        current_app.config["SQLALCHEMY_DATABASE_URI"],
        current_app.config["CELERY_BROKER_URL"].removeprefix("sqla+"),
    )
    return {
        Path(url.removeprefix("sqlite:///")).parent for url in urls if url.startswith("sqlite:///")
    }


def _has_room(folder: Path) -> bool:
    """At least DISK_MIN_FREE_MB free for this process (a write probe would pass with a
    few pages left, and SQLite's journal needs more than one)."""
    try:
        stats = os.statvfs(folder)
    except OSError as exc:
        log.warning("disk check failed", extra={"error_type": type(exc).__name__})
        return False
    free = stats.f_bavail * stats.f_frsize
    if free < current_app.config["DISK_MIN_FREE_MB"] * 1024 * 1024:
        log.warning("disk nearly full", extra={"free_bytes": free})
        return False
    return True
