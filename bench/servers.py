"""The two servers of `python -m bench.http`, both run by gunicorn as production runs ours.

The command line is docker-compose.yml's `web` command (read at run time, so a change
of `--workers` or `--threads` there is measured here too), bound to a free loopback
port, with the WSGI app swapped for the baseline's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The web service's `command: [...]` (a JSON-compatible flow list) in docker-compose.yml.
_WEB_COMMAND = re.compile(r"^  web:\n(?:(?:    .*)?\n)*?    command: (\[.*\])$", re.MULTILINE)


class ServerFailed(RuntimeError):
    """A server did not start or answer; the message ends with its log's tail."""


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    command: list[str]
    log: Path
    process: subprocess.Popen[bytes]

    def check(self) -> None:
        """Still running? (Without it, wrk would knock on a closed port until its -d.)"""
        if self.process.poll() is not None:
            raise ServerFailed(f"{self.name} exited ({self.process.returncode}):\n{tail(self.log)}")


def compose_web_command() -> list[str]:
    found = _WEB_COMMAND.search((ROOT / "docker-compose.yml").read_text())
    if found is None:
        raise ServerFailed("no `command: [...]` for the web service in docker-compose.yml")
    return json.loads(found.group(1))


def gunicorn_command(wsgi_app: str, port: int) -> list[str]:
    """The compose command, on 127.0.0.1:port, serving `wsgi_app`, with this venv's gunicorn."""
    command = compose_web_command()
    if command[0] != "gunicorn" or "--bind" not in command:
        raise ServerFailed(f"the web service is not run by gunicorn --bind ...: {command}")
    command[0] = str(Path(sys.executable).with_name("gunicorn"))
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    command[-1] = wsgi_app
    return command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    """The end of a server's log, without ours' access log (a line per request, which
    says nothing about a failure and would fill the tail)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.splitlines() if "needs_tracker.access" not in line]
    return "\n".join(kept[-lines:]) or "(nothing but the access log)"


@contextmanager
def running(name: str, wsgi_app: str, env: dict[str, str], folder: Path) -> Iterator[Server]:
    """gunicorn serving `wsgi_app` until the block ends (on errors and Ctrl-C too)."""
    port = free_port()
    command = gunicorn_command(wsgi_app, port)
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        # Its own session: a Ctrl-C reaches this process, which stops gunicorn in order.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, f"http://127.0.0.1:{port}", command, log, process)
    try:
        wait_until_up(server)
        yield server
    finally:
        stop(process)


def wait_until_up(server: Server, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.check()
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ServerFailed(
        f"{server.name} did not answer /healthz in {seconds:.0f} s:\n{tail(server.log)}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to gunicorn's master (a graceful stop of its workers), then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
