"""Browser tests: the app as a real server (gunicorn) on loopback, driven by headless
Chromium through Playwright. Debian's `chromium` is the browser (Playwright's wheel
brings only its driver); where it is missing the tests skip, loudly, and in CI fail.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from service.serve import web_command
from tests.backends import REDIS_URL, on_services
from tests.conftest import QUEUE

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots land here (git-ignored), for people to look at after a run.
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = (
        f"\n{'*' * 72}\n* BROWSER TESTS NOT RUN: {CHROMIUM} is missing.\n"
        "* Install Debian's browser: apt-get install -y chromium\n"
        f"{'*' * 72}"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(database_url: str, instance: Path, broker_url: str | None = None) -> Iterator[str]:
    """gunicorn serving the app on a free loopback port, on the given database (and the
    tests' broker, so a test's worker runs the work it hands out)."""
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        INSTANCE_PATH=str(instance),
        CELERY_QUEUE=QUEUE,
        CELERY_KEY_PREFIX=f"{QUEUE}:",
        LOG_LEVEL="WARNING",
        # Each server counts its own rate limits: on the shared Redis, every browser
        # test's sign-ins from 127.0.0.1 would otherwise add up within a minute.
        RATELIMIT_KEY_PREFIX=f"{QUEUE}:{port}:limits",
    )
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    elif on_services():
        env["CELERY_BROKER_URL"] = REDIS_URL
    log_path = instance / "gunicorn.log"
    instance.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            web_command(port, str(instance)),  # what `needs-tracker serve` runs
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                        break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "the server did not answer in 60 s"
                    time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Any, base: str, secret: str) -> None:
    page.goto(f"{base}/sign-in")
    page.fill("#token", secret)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base) + r"/(\?.*)?$"))


def screenshot(page: Any, name: str) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    page.screenshot(path=str(path), full_page=True)
    return path
