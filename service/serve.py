"""`needs-tracker serve`: the whole service on one machine, under one command.

Each part runs as its own process, started with the same commands docker-compose
runs, so what a new user runs is what production runs. A part that stops once it has
run is started again, as compose's `restart: unless-stopped` would, never silently:
each stop and each start is said on stderr, and the restarts back off (1 s, doubling,
up to a minute) while it keeps stopping. A disk that was full, a database that was
away: once they are back, every part is running again without anyone's help. A part
that cannot start at all (it stops within its first seconds the first time: a port in
use, a bad setting) stops serve, with every other part, and a non-zero exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from service import handoff


def web_command(port: int, instance_path: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        # One process: SQLite has one writer anyway; threads serve concurrent requests.
        "--workers",
        "1",
        "--threads",
        "8",
        # The access log's settings, as docker-compose's web service has them.
        "--config",
        "python:service.gunicorn_conf",
        # gunicorn's control socket defaults to one per user; keep it per instance so
        # two instances on one machine do not take it from each other.
        "--control-socket",
        str(Path(instance_path) / "gunicorn.ctl"),
        "service.wsgi:app",
    ]


def worker_command(*extra: str, concurrency: int = 2) -> list[str]:
    """A Celery worker; without `-Q` it serves both queues (service/handoff.py)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.make_celery",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        *extra,
    ]


def queue_worker_commands(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """One worker for the schedule's queue (ticks, period summaries, emails) and one for
    the on-demand queue (summaries asked for, imports): however many summaries people ask
    for, the schedule's worker is free for the schedule."""
    return {
        "worker": worker_command(
            "--queues", handoff.scheduled_queue(config), "--hostname", "scheduled@%h"
        ),
        "on-demand worker": worker_command(
            "--queues", handoff.on_demand_queue(config), "--hostname", "on-demand@%h"
        ),
    }


def beat_command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.make_celery",
        "beat",
        "--loglevel",
        "INFO",
    ]


@click.command()
@click.option("--port", type=int, default=None, help="Default: $PORT or 8000.")
@with_appcontext
def serve(port: int | None) -> None:
    """Migrate, then run the web API (http://127.0.0.1:PORT), the workers (the schedule's
    and the on-demand one) and the scheduler until Ctrl-C."""
    port = port or current_app.config["PORT"]
    upgrade(directory=current_app.extensions["migrate"].directory)
    env = dict(os.environ, INSTANCE_PATH=current_app.config["INSTANCE_PATH"])
    parts = {
        "web": web_command(port, env["INSTANCE_PATH"]),
        **queue_worker_commands(current_app.config),
        "beat": beat_command(),
    }
    click.echo(f"needs-tracker on http://127.0.0.1:{port} (instance: {env['INSTANCE_PATH']})")
    click.echo(f"API docs: http://127.0.0.1:{port}/api/v1/docs — Ctrl-C stops everything.")
    sys.exit(supervise(parts, env))


# A part that stops within this many seconds of serve starting it the first time
# could not start (gunicorn gives up on a port in use after about 5 s): serve stops
# rather than retry what needs a person.
FIRST_START_SECONDS = 10.0
# A part that ran this long before it stopped is started again after the shortest pause.
STEADY_SECONDS = 60.0
RESTART_PAUSES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)


class Part:
    """One of serve's processes, started again when it stops."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name, self.command, self.env = name, command, env
        self.starts = 0
        self.quick_stops = 0
        self.restart_at: float | None = None
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        self.started_at = time.monotonic()
        return subprocess.Popen(self.command, env=self.env)

    def check(self) -> int | None:
        """None while all is well; the exit code when the part could not start at all.
        A part that stopped is given a moment, then started again."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                click.echo(
                    f"serve: starting {self.name} again (start {self.starts + 1}).", err=True
                )
                self.process = self._start()
            return None
        code = self.process.poll()
        if code is None:
            return None
        ran = now - self.started_at
        if self.starts == 1 and ran < FIRST_START_SECONDS:
            click.echo(f"serve: {self.name} could not start (exit {code}).", err=True)
            return code or 1
        self.quick_stops = 0 if ran >= STEADY_SECONDS else self.quick_stops + 1
        pause = RESTART_PAUSES[min(self.quick_stops, len(RESTART_PAUSES) - 1)]
        click.echo(
            f"serve: {self.name} stopped (exit {code}) after {ran:.0f} s; "
            f"starting it again in {pause:.0f} s.",
            err=True,
        )
        self.restart_at = now + pause
        return None

    def stop(self) -> None:
        if self.restart_at is None and self.process.poll() is None:
            self.process.terminate()

    def wait(self, deadline: float) -> None:
        try:
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()


def supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Run the parts until Ctrl-C (exit 0) or one cannot start (its exit code)."""
    parts = [Part(name, command, env) for name, command in commands.items()]
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for part in parts:
            code = part.check()
            if code is not None:
                click.echo("serve: stopping the rest.", err=True)
                exit_code = code
                stopping = True
                break
        time.sleep(0.2)
    for part in parts:
        part.stop()
    deadline = time.monotonic() + 15
    for part in parts:
        part.wait(deadline)
    return exit_code
