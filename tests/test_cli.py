"""The needs-tracker command: seed, tokens, db upgrade and serve."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

from sqlalchemy import delete, func, select

from service import signin_link
from service.extensions import db
from service.models import ApiToken, Site
from tests.backends import REDIS_URL, empty_database, on_services
from tests.conftest import QUEUE
from tests.helpers import wait_for

NEEDS_TRACKER = str(Path(sys.executable).with_name("needs-tracker"))


def test_seed_adds_the_two_sites_once(app, client, auth):
    with app.app_context():  # the fixture seeds them: start from none
        db.session.execute(delete(Site))
        db.session.commit()
    runner = app.test_cli_runner()

    first = runner.invoke(args=["seed"])
    again = runner.invoke(args=["seed"])

    assert first.exit_code == 0 and again.exit_code == 0
    assert first.output.startswith("seeded:")
    assert "default sites are there" in again.output
    sites = client.get("/api/v1/sites", headers=auth.admin).get_json()
    assert [s["id"] for s in sites] == ["stepanakert-airport", "stepanakert-centre"]


def test_token_create_prints_a_working_token_as_last_line(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "token",
            "create",
            "--role",
            "coordinator",
            "--site",
            "stepanakert-airport",
            "--name",
            "airport team",
        ]
    )
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("nt_") and len(secret) >= 46
    headers = {"Authorization": f"Bearer {secret}"}
    allowed = client.post(
        "/api/v1/groups",
        json={"site_id": "stepanakert-airport", "label": "Hangar 3"},
        headers=headers,
    )
    refused = client.post(
        "/api/v1/groups",
        json={"site_id": "stepanakert-centre", "label": "School 5"},
        headers=headers,
    )
    assert (allowed.status_code, refused.status_code) == (201, 403)

    listing = runner.invoke(args=["token", "list"])
    assert "airport team" in listing.output
    assert secret not in listing.output

    token_id = listing.output.strip().splitlines()[-1].split("\t")[0]
    assert runner.invoke(args=["token", "revoke", token_id]).exit_code == 0
    again = {"site_id": "stepanakert-airport", "label": "Hangar 4"}
    assert client.post("/api/v1/groups", json=again, headers=headers).status_code == 401
    # Reads within TOKEN_CACHE_SECONDS (tests/test_auth.py holds that bound).
    wait_for(lambda: client.get("/api/v1/sites", headers=headers).status_code == 401, timeout=5)


def test_token_create_refuses_unknown_site_and_siteless_coordinator(app):
    runner = app.test_cli_runner()
    unknown = runner.invoke(args=["token", "create", "--role", "coordinator", "--site", "mars"])
    assert unknown.exit_code != 0
    assert "no site 'mars'" in unknown.output
    siteless = runner.invoke(args=["token", "create", "--role", "coordinator"])
    assert siteless.exit_code != 0
    assert "--site: A coordinator token needs at least one site" in siteless.output
    reader_with_site = runner.invoke(
        args=["token", "create", "--role", "reader", "--site", "stepanakert-centre"]
    )
    assert reader_with_site.exit_code != 0
    assert "--site: Sites only apply to coordinator tokens" in reader_with_site.output


def test_token_create_with_qr_prints_the_sign_in_link_and_code_and_the_token_last(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["token", "create", "--role", "coordinator", "--site", "stepanakert-centre", "--qr"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").splitlines()
    secret = lines[-1]
    assert secret.startswith("nt_")
    link = f"{app.config['PUBLIC_BASE_URL']}/field/#token={secret}"
    assert f"Sign-in link: {link}" in lines
    # The code: square rows of half blocks, as tall (in rows of two) as it is wide.
    code = [line for line in lines if line and set(line) <= set("█▀▄ ")]
    assert len(code) >= 10 and len({len(line) for line in code}) == 1
    assert abs(len(code) * 2 - len(code[0])) <= 2
    assert signin_link.terminal_text(link) in result.output
    # The secret works.
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/groups", headers=headers).status_code == 200


def test_token_create_writes_the_qr_as_a_png_only_its_owner_reads(app, tmp_path):
    path = tmp_path / "coordinator.png"
    path.write_bytes(b"old")
    path.chmod(0o644)  # a file already there: replaced, and made private
    runner = app.test_cli_runner()
    result = runner.invoke(args=["token", "create", "--role", "admin", "--qr-png", str(path)])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert f"Sign-in link: {signin_link.signin_url(secret, app.config['PUBLIC_BASE_URL'])}" in (
        result.output
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    # A whole PNG: its chunks' CRCs hold and it ends with IEND; square, 8 px a module.
    width, height = _png_size_checked(data)
    assert width == height and width % 8 == 0
    assert (
        width // 8
        == signin_link.qr_code(
            signin_link.signin_url(secret, app.config["PUBLIC_BASE_URL"])
        ).symbol_size(scale=1, border=4)[0]
    )


def test_the_qr_png_is_not_written_through_a_symbolic_link(app, tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    link = tmp_path / "qr.png"
    link.symlink_to(target)
    result = app.test_cli_runner().invoke(
        args=["token", "create", "--role", "admin", "--qr-png", str(link)]
    )
    assert result.exit_code == 1
    assert "No token was created" in result.output and "nt_" not in result.output
    assert target.read_text() == "keep"
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(ApiToken)).scalar_one() == 0


def _png_size_checked(data: bytes) -> tuple[int, int]:
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    return struct.unpack(">II", chunks[0][1][:8])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def not_private(folder: Path) -> list[str]:
    """What in the folder others than its owner could read or enter (group/other bits)."""
    return [
        f"{path} {oct(path.lstat().st_mode & 0o777)}"
        for path in [folder, *folder.rglob("*")]
        if not path.is_symlink() and path.lstat().st_mode & 0o077
    ]


def test_serve_runs_web_worker_and_scheduler_and_stops_on_ctrl_c(tmp_path):
    """...and keeps its instance folder to its owner: the database (and SQLite's -wal and
    -shm), the broker, the outbox, the secret key and beat's schedule, after real use."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)  # as an older version left it
    instance.chmod(0o755)
    # On the embedded default the database is the instance folder's own.
    with empty_database(instance) as database_url:
        port = _free_port()
        env = dict(
            os.environ,
            INSTANCE_PATH=str(instance),
            PORT=str(port),
            DATABASE_URL=database_url,
            SCHEDULER_TICK_SECONDS="1",
            CELERY_QUEUE=QUEUE,
            CELERY_KEY_PREFIX=f"{QUEUE}:",
        )
        if on_services():
            env["CELERY_BROKER_URL"] = REDIS_URL
        log_path = tmp_path / "serve.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [NEEDS_TRACKER, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    status, body = _get(f"http://127.0.0.1:{port}/healthz")
                    break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "serve did not answer within 60 s"
                    time.sleep(0.3)
            assert status == 200
            assert b'"ok"' in body
            ready_status, _ = _get(f"http://127.0.0.1:{port}/readyz")
            assert ready_status == 200
            # serve ran the migrations: a token made now works against the running API.
            created = subprocess.run(
                [NEEDS_TRACKER, "token", "create", "--role", "admin"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            secret = created.stdout.strip().splitlines()[-1]
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/sites",
                headers={"Authorization": f"Bearer {secret}"},
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200

            # serve's scheduler and worker: the period's summary appears by itself.
            def scheduled_ready() -> bool:
                listing = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/v1/summaries?status=ready",
                    headers={"Authorization": f"Bearer {secret}"},
                )
                with urllib.request.urlopen(listing, timeout=5) as response:
                    return any(s["scheduled"] for s in json.load(response))

            deadline = time.monotonic() + 60
            while not scheduled_ready():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "no scheduled summary within 60 s"
                time.sleep(0.5)

            # serve's on-demand worker: a summary asked for is built too.
            bearer = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
            ask = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/summaries", data=b"{}", headers=bearer
            )
            with urllib.request.urlopen(ask, timeout=5) as response:
                location = response.headers["Location"]

            def asked_for_ready() -> bool:
                poll = urllib.request.Request(f"http://127.0.0.1:{port}{location}", headers=bearer)
                with urllib.request.urlopen(poll, timeout=5) as response:
                    return json.load(response)["status"] == "ready"

            deadline = time.monotonic() + 60
            while not asked_for_ready():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the summary asked for was not built in 60 s"
                time.sleep(0.5)

            # An email to the outbox (no SMTP_HOST), written by serve's worker.
            def post(path: str, body: dict) -> dict:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}{path}",
                    data=json.dumps(body).encode(),
                    headers={
                        "Authorization": f"Bearer {secret}",
                        "Content-Type": "application/json",
                    },
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    return json.load(response)

            subscription = post(
                "/api/v1/subscriptions",
                {"email": "sitrep@ngo.example.org", "cron": "0 7 * * *", "timezone": "UTC"},
            )
            post(f"/api/v1/subscriptions/{subscription['id']}/send", {})
            wait_for(lambda: list((instance / "outbox").glob("*.eml")), timeout=60)
            if not on_services():
                assert (instance / "needs-tracker.db-wal").exists()
            assert not (loose := not_private(instance)), "\n".join(loose)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            finally:
                log.close()
        assert process.returncode == 0, log_path.read_text()
        assert not (loose := not_private(instance)), "\n".join(loose)
        names = {path.name for path in instance.iterdir()}
        assert {"secret_key", "outbox"} <= names, names
        assert any(name.startswith("celerybeat-schedule") for name in names), names
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, "the web server outlived serve"


def test_a_token_name_with_invisible_or_line_breaking_characters_is_refused(app):
    runner = app.test_cli_runner()
    for name in ("ops\u202eteam", "ops\nforged\tline", "ops\u2028team"):
        result = runner.invoke(args=["token", "create", "--role", "reader", "--name", name])
        assert result.exit_code == 2, result.output
        assert "--name: Must not contain" in result.output
    listing = runner.invoke(args=["token", "list"]).output
    assert "forged" not in listing and "\u202e" not in listing
    made = runner.invoke(args=["token", "create", "--role", "reader", "--name", "Հայ ops"])
    assert made.exit_code == 0, made.output
