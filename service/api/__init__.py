"""The HTTP API under /api/v1: one blueprint per resource."""

from __future__ import annotations

from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    from service.api import (
        groups,
        health,
        imports,
        me,
        reports,
        sites,
        subscriptions,
        summaries,
        unsubscribe,
        webhooks,
    )

    for module in (sites, groups, reports, imports, summaries, subscriptions, webhooks, me):
        api.register_blueprint(module.blp)
    api._app.register_blueprint(health.blp)
    # Outside /api/v1: the link in emails, opened by recipients without a token.
    api._app.register_blueprint(unsubscribe.blp)
