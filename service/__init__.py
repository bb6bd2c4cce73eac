"""needs-tracker: head counts of displaced people, aggregated into situation summaries.

The package's own import stays light: the web edge (the API, the dashboard, their error
handling) is imported by `create_app`, so the core (`service.domain`) can be imported
by workers, the command line and tests without any of it.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from flask import Flask, g, request, send_from_directory
from werkzeug.middleware.proxy_fix import ProxyFix

import config as settings
from service import sqlite
from service.extensions import csrf, db, migrate
from service.headers import security_headers
from service.instance_folder import keep_private
from service.logs import configure_logging

access_log = logging.getLogger("needs_tracker.access")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    from swagger_ui_bundle import swagger_ui_path

    from service import auth, i18n, limits
    from service.cli import register_commands
    from service.errors import register_error_handlers

    conf = settings.load(config)
    instance_path = Path(conf["INSTANCE_PATH"])
    keep_private(instance_path)
    app = Flask(__name__, instance_path=str(instance_path))
    app.config.update(conf)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _instance_secret(instance_path)
    app.config.update(_openapi_settings())
    configure_logging(app.config["LOG_LEVEL"])
    if app.config["TRUSTED_PROXIES"]:
        # Behind that many proxies: the client's address and scheme from their headers
        # (werkzeug's ProxyFix takes the right-most N entries, the ones they added).
        proxies = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]

    i18n.init_app(app)
    register_extensions(app)
    register_error_handlers(app)
    register_commands(app)
    app.before_request(_start_timer)
    app.before_request(_reads_without_a_transaction)
    limits.init_app(app)  # before the token check: over a limit, no token is looked up
    auth.init_app(app)
    app.after_request(_log_request)
    app.after_request(security_headers)
    app.add_url_rule(
        "/api/v1/docs/assets/<path:filename>",
        "swagger_ui_assets",
        lambda filename: send_from_directory(swagger_ui_path, filename),
    )
    return app


def register_extensions(app: Flask) -> None:
    from service.api import register_blueprints
    from service.celery_app import celery_init_app
    from service.openapi import Api

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sqlite.tune(
                db.engine,
                app.config["SQLITE_BUSY_TIMEOUT_SECONDS"],
                app.config["SQLITE_WORKER_BUSY_TIMEOUT_SECONDS"],
            )
    # Batch mode: SQLite can only ALTER a table by copying it.
    migrate.init_app(
        app,
        db,
        directory=str(settings.PROJECT_ROOT / "migrations"),
        render_as_batch=True,
        compare_type=True,
    )
    api = Api(app)
    register_blueprints(api)
    register_dashboard(app)
    celery_init_app(app)


# Browser forms carry a CSRF token. These take none, and must not: the API authenticates
# every call with a bearer token (it reads no cookie), health checks are GETs, and the
# unsubscribe link carries its own signed token (mail clients POST it, RFC 8058).
CSRF_EXEMPT_BLUEPRINTS = ("health", "unsubscribe")


def register_dashboard(app: Flask) -> None:
    from service.dashboard import blp as dashboard
    from service.field import blp as field

    app.register_blueprint(dashboard)
    app.register_blueprint(field)  # the coordinators' app at /field/
    csrf.init_app(app)
    for name, blueprint in app.blueprints.items():
        if (blueprint.url_prefix or "").startswith("/api/v1") or name in CSRF_EXEMPT_BLUEPRINTS:
            csrf.exempt(blueprint)


def _reads_without_a_transaction() -> None:
    """An API read (GET) on PostgreSQL runs its queries in autocommit: each sees what is
    committed, and there is no transaction to begin or roll back (two round trips a
    request fewer; NGOs poll). Writes keep theirs. Summaries are immutable and a page of
    a list is one query, so reads lose nothing by it. (SQLite's reads take no lock
    either: see service/sqlite.py.)"""
    if request.method in ("GET", "HEAD") and request.path.startswith("/api/v1/"):
        if db.engine.dialect.name == "postgresql":
            db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _instance_secret(instance_path: Path) -> str:
    """A per-instance secret kept in the instance folder when SECRET_KEY is not set."""
    path = instance_path / "secret_key"
    if not path.exists():
        # Written whole in a 0600 temporary file, then linked into place: never readable
        # by others, never seen half-written, and one key when processes start together.
        descriptor, temporary = tempfile.mkstemp(dir=instance_path, prefix=".secret_key.")
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(48))
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


def _openapi_settings() -> dict[str, Any]:
    return {
        "API_TITLE": "needs-tracker",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        # Served from the package: the field has bad connections, so no CDN.
        "OPENAPI_SWAGGER_UI_URL": "/api/v1/docs/assets/",
        "API_SPEC_OPTIONS": {
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
            "info": {
                "description": "Head counts of people waiting at sites, and the situation "
                "summaries built from them. Every call needs `Authorization: Bearer <token>`."
            },
        },
    }


def _start_timer() -> None:
    g.started = time.perf_counter()


def _log_request(response: Any) -> Any:
    caller = g.get("caller")
    access_log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(
                (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1
            ),
            "token_id": caller.token_id if caller else None,
        },
    )
    return response
