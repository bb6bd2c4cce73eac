"""`needs-tracker serve`: the whole service on one machine, under one command.

Each part runs as its own process, started with the same commands docker-compose
runs, so what a new user runs is what production runs. If any part stops, serve
stops the others and exits non-zero: nothing is restarted silently.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade


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


def worker_command(*extra: str) -> list[str]:
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
        "2",
        *extra,
    ]


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
    """Migrate, then run the web API (http://127.0.0.1:PORT), a worker and the scheduler
    until Ctrl-C."""
    port = port or current_app.config["PORT"]
    upgrade(directory=current_app.extensions["migrate"].directory)
    env = dict(os.environ, INSTANCE_PATH=current_app.config["INSTANCE_PATH"])
    parts = {
        "web": web_command(port, env["INSTANCE_PATH"]),
        "worker": worker_command(),
        "beat": beat_command(),
    }
    click.echo(f"needs-tracker on http://127.0.0.1:{port} (instance: {env['INSTANCE_PATH']})")
    click.echo(f"API docs: http://127.0.0.1:{port}/api/v1/docs — Ctrl-C stops everything.")
    sys.exit(supervise(parts, env))


def supervise(parts: dict[str, list[str]], env: dict[str, str]) -> int:
    processes = {name: subprocess.Popen(cmd, env=env) for name, cmd in parts.items()}
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            code = process.poll()
            if code is not None:
                click.echo(f"{name} stopped (exit {code}); stopping the rest.", err=True)
                exit_code = code or 1
                stopping = True
                break
        time.sleep(0.2)
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 15
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code
