"""The HTTP API under /api/v1: one blueprint per resource."""

from __future__ import annotations

from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    from service.api import groups, health, reports, sites, summaries

    for module in (sites, groups, reports, summaries):
        api.register_blueprint(module.blp)
    api._app.register_blueprint(health.blp)
