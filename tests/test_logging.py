"""Logs are structured and never carry tokens."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from urllib.parse import quote

from service.logs import json_formatter
from tests import browser
from tests.helpers import create_group, report_body, wait_for


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


FORGED_LINE = '127.0.0.1 [01/Jan/2026:00:00:00 +0000] "GET /admin HTTP/1.1" 200 0 1ms'
FORGED = "/x" + quote("\n" + FORGED_LINE + "\x00\x1b[31m")


def raw_request(base: str, target: str, user_agent: str = "test") -> bytes:
    """One request sent byte for byte (urllib would quote the target itself)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_the_access_log_escapes_what_a_request_could_forge(app, tmp_path):
    """A %0A in the path would start a forged line in gunicorn's access log, %00 write a
    NUL, %1b drive a terminal: every control character is written escaped, one line per
    request. The real gunicorn, started as `serve` starts it, read from its own log."""
    instance = tmp_path / "web"
    with browser.live_server(app.config["DATABASE_URL"], instance) as base:
        # (gunicorn itself refuses C0 controls in a header; C1 ones, such as NEL, pass.)
        answer = raw_request(base, FORGED, user_agent="agent\x85with\x9bcsi")
        assert answer.startswith(b"HTTP/1.1 ")
        log = instance / "gunicorn.log"
        wait_for(lambda: b"GET /x" in log.read_bytes())
    content = log.read_bytes().decode()
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", content), repr(content)
    lines = [line for line in content.splitlines() if "GET /x" in line]
    assert len(lines) == 1, content
    assert "\\x0a127.0.0.1" in lines[0] and "\\x00\\x1b[31m" in lines[0], lines[0]
    assert '"agent\\x85with\\x9bcsi"' in lines[0], lines[0]
    assert not any(line.startswith(FORGED_LINE) for line in content.splitlines())


def test_the_apps_own_request_log_keeps_a_forged_path_on_one_json_line(client, caplog):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    access = logging.getLogger("needs_tracker.access")
    access.addHandler(handler)
    try:
        client.get("/x%0Aforged%00line%E2%80%A8")
    finally:
        access.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["path"] == "/x\nforged\x00line\u2028"
    assert "\x00" not in stream.getvalue() and "\u2028" not in stream.getvalue()
