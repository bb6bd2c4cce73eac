"""Logs are structured and never carry tokens."""

from __future__ import annotations

import io
import json
import logging

from service.logs import json_formatter
from tests.helpers import create_group, report_body


def test_requests_are_logged_without_the_token(client, auth, caplog):
    secret = auth.token("admin")
    headers = {"Authorization": f"Bearer {secret}"}
    with caplog.at_level(logging.INFO):
        group = create_group(client, headers)
        client.post("/api/v1/reports", json=report_body(group["id"]), headers=headers)
        client.get("/api/v1/sites", headers={"Authorization": f"Bearer {secret}x"})  # 401
    access = [r for r in caplog.records if r.name == "needs_tracker.access"]
    assert [r.status for r in access] == [201, 201, 401]
    assert all(isinstance(r.token_id, int) for r in access[:2])
    for record in caplog.records:
        assert secret not in json.dumps(record.__dict__, default=str)


def test_log_lines_are_json():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("needs_tracker.test")
    logger.addHandler(handler)
    try:
        logger.warning("broker down", extra={"site_id": "stepanakert-airport"})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "broker down"
    assert line["level"] == "WARNING"
    assert line["site_id"] == "stepanakert-airport"
