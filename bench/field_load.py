"""The field app's weight and speed on a slow link: `python -m bench.field_load`.

It prints, for docs/field.md:

1. the shell's size: the HTML (each language), scripts, styles, manifest and service
   worker, raw and gzip-compressed (as a TLS proxy in front of gunicorn sends them);
2. the first load on Chromium's emulated slow 3G (CDP `Network.emulateNetworkConditions`,
   400 kbit/s both ways, 400 ms round trip): from opening the sign-in link to the groups
   of the coordinator's site drawn (signed in, `GET /me`, sites, groups, reports read);
3. the reopen with no network at all, served by the service worker, to the same point.

The service runs under gunicorn as `needs-tracker serve` runs it, on an embedded SQLite
database in a temporary folder, with 40 groups and a count each at one site. Chromium is
Debian's /usr/bin/chromium. The emulation applies to the page; the service worker's own
precache requests are not throttled by it (CDP emulates per target), so the precache's
bytes are printed too, to read its time at 400 kbit/s from them.
"""

from __future__ import annotations

import gzip
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

KBIT = 1000 / 8  # bytes per second in one kbit/s
SLOW_3G = {
    "offline": False,
    "latency": 400,
    "downloadThroughput": 400 * KBIT,
    "uploadThroughput": 400 * KBIT,
}


def _prepare(folder: Path) -> tuple[str, str]:
    """A migrated, seeded database with a coordinator and 40 counted groups; its URL and
    the coordinator's token."""
    from flask_migrate import upgrade

    from service import create_app
    from service.domain.callers import OPERATOR
    from service.domain.sites import seed_sites
    from service.domain.tokens import issue_token
    from service.extensions import db
    from service.models import Role, Site

    url = f"sqlite:///{folder / 'bench.db'}"
    app = create_app({"INSTANCE_PATH": str(folder), "DATABASE_URL": url, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        seed_sites(OPERATOR)
        db.session.commit()
        _, admin = issue_token(Role.admin, "bench admin")
        site = db.session.get(Site, "stepanakert-centre")
        _, secret = issue_token(Role.coordinator, "bench coordinator", [site])
        db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {admin}"}
    moment = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for number in range(40):
        group = client.post(
            "/api/v1/groups",
            json={"site_id": "stepanakert-centre", "label": f"Hangar {number} families"},
            headers=headers,
        ).get_json()
        client.post(
            "/api/v1/reports",
            json={"group_id": group["id"], "observed_at": moment, "total": 40 + number},
            headers=headers,
        )
    with app.app_context():
        db.engine.dispose()
    return url, secret


def sizes(base: str) -> list[tuple[str, int, int]]:
    """(path, raw bytes, gzip -9 bytes) of what the shell is made of, as served."""
    import json

    worker = _get(f"{base}/field/sw.js").decode()
    files = json.loads(worker.split("const FILES = ", 1)[1].split(";\n", 1)[0])
    paths = [
        "/field/?lang=en",
        "/field/?lang=hy",
        "/field/?lang=ru",
        "/field/manifest.webmanifest",
        "/field/sw.js",
        *files,
    ]
    rows = []
    for path in paths:
        body = _get(base + path)
        rows.append((path, len(body), len(gzip.compress(body, 9))))
    return rows


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


def _time_load(page, url: str) -> float:
    started = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=120_000)
    page.wait_for_function(
        "() => document.querySelectorAll('#group-list li.group').length >= 40", timeout=120_000
    )
    return time.perf_counter() - started


@click.command()
@click.option("--runs", default=3, show_default=True, help="Loads measured (the median is shown).")
def main(runs: int) -> None:
    from playwright.sync_api import sync_playwright

    from service.serve import web_command
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, free_port

    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        url, secret = _prepare(folder)
        port = free_port()
        env = dict(os.environ, DATABASE_URL=url, INSTANCE_PATH=str(folder), LOG_LEVEL="WARNING")
        log = (folder / "gunicorn.log").open("w")
        server = subprocess.Popen(
            web_command(port, str(folder)), env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    _get(f"{base}/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.2)
            rows = sizes(base)
            _print_sizes(rows)
            first, reopen = [], []
            with sync_playwright() as playwright:
                chromium = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                for _ in range(runs):
                    context = chromium.new_context(viewport={"width": 360, "height": 780})
                    page = context.new_page()
                    cdp = context.new_cdp_session(page)
                    cdp.send("Network.enable")
                    cdp.send("Network.emulateNetworkConditions", SLOW_3G)
                    first.append(_time_load(page, f"{base}/field/#token={secret}"))
                    page.wait_for_function(
                        "() => navigator.serviceWorker.controller !== null", timeout=120_000
                    )
                    page.close()
                    context.set_offline(True)
                    page = context.new_page()
                    reopen.append(_time_load(page, f"{base}/field/"))
                    context.close()
                chromium.close()
        finally:
            server.terminate()
            server.wait(timeout=15)
            log.close()
    click.echo(f"\nslow 3G (400 kbit/s, 400 ms RTT), 40 groups, median of {runs}:")
    click.echo(
        f"  first load, sign-in link to groups drawn: {statistics.median(first):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in first)})"
    )
    click.echo(
        f"  reopen offline, from the service worker:  {statistics.median(reopen):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in reopen)})"
    )


def _print_sizes(rows: list[tuple[str, int, int]]) -> None:
    click.echo(f"{'file':44} {'bytes':>8} {'gzip':>8}")
    for path, raw, packed in rows:
        click.echo(f"{path:44} {raw:>8,} {packed:>8,}")
    one_shell = [r for r in rows if not r[0].startswith("/field/?lang=") or r[0].endswith("=en")]
    images = (".png", ".svg")
    code = [r for r in one_shell if not r[0].endswith(images)]
    click.echo(
        f"{'shell (one language, no icons)':44} {sum(r[1] for r in code):>8,} "
        f"{sum(r[2] for r in code):>8,}"
    )
    click.echo(
        f"{'precached (three languages, icons)':44} {sum(r[1] for r in rows):>8,} "
        f"{sum(r[2] for r in rows):>8,}"
    )


if __name__ == "__main__":
    main()
