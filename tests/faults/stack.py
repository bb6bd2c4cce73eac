"""The production shape on loopback, with the real parts, for a test to break.

    with running_stack(tmp_path) as stack:          # PostgreSQL, Redis, SMTP, web, worker, beat
        load = Load(stack).start()                  # tests/faults/load.py
        stack.kill_pool_child("worker-1")           # ... the fault ...
        load.stop()
        figures = reconcile(stack, load)            # tests/faults/reconcile.py

Each part is a subprocess started with the command `needs-tracker serve` (and compose)
runs: gunicorn (`web_command`), `celery worker` (`worker_command`), `celery beat`
(`beat_command`); Redis is a `redis-server` of the stack's own on a free port; SMTP is
tests/smtp.py's aiosmtpd. PostgreSQL is a fresh database on the shared server, or with
`own_postgres=True` a cluster of the stack's own (tests/pgcluster.py) that the test may
stall, stop or restart (`stack.postgres`). Nothing shared is ever stopped.

The small API for fault tests:
- `stack.start_web/start_worker/start_beat(name)`, `stack.stop(name, signal)`,
  `stack.kill_pool_child(name)`, `stack.kill_pool(name)`, `stack.kill_web_worker(name)`:
  the processes; `stack.revive()` starts again what died. `with stack.builds_held():`
  with `stack.build_waiting()` / `stack.request_waiting()`: a summary build or a web
  request caught mid-task (PostgreSQL), to kill or break something while it is in there.
- `stack.redis.restart()`, `stack.smtp.stop()/start()`, `stack.postgres` (own cluster).
- `stack.app`: a Flask app on the stack's database, for reading it in `stack.read()`.
- `stack.tokens`, `stack.groups`, `stack.subscription_id`: what the load uses.
- `stack.log(name)`: a part's output, for assertions and for failure messages.
- `stack.call(method, path, secret, body)`: one request, (status, JSON or raw body).
In a test, `make_stack(**options)` (tests/faults/conftest.py) starts one for the test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import select

from service import create_app
from service.domain import summaries
from service.domain.callers import OPERATOR
from service.domain.sites import seed_sites
from service.domain.tokens import issue_token
from service.extensions import db
from service.models import Group, Role, Site, Summary
from service.serve import beat_command, web_command, worker_command
from service.types import utcnow
from tests.backends import postgres_database
from tests.browser import free_port
from tests.helpers import AIRPORT, CENTRE
from tests.pgcluster import Cluster, private_postgres
from tests.smtp import SmtpServer

T = TypeVar("T")

# Short enough that a test sees periods, sweeps and retries within seconds.
FAST_SETTINGS = {
    "SUMMARY_INTERVAL_MINUTES": "1",
    "SCHEDULER_TICK_SECONDS": "2",
    # A build handed out this long ago and still pending is handed out again.
    "SUMMARY_BUILD_TIMEOUT_SECONDS": "15",
    # Redis gives an unacknowledged task back after this (a whole worker killed).
    "CELERY_VISIBILITY_TIMEOUT": "20",
    "DELIVERY_RETRY_SECONDS": "1",
    "SMTP_TIMEOUT_SECONDS": "5",
    "TOKEN_CACHE_SECONDS": "2",
    "LOG_LEVEL": "INFO",
}
SUBSCRIBER = "sitrep@ngo.example.org"


class PartFailed(AssertionError):
    """A part did not start or answer; the message ends with its log's tail."""


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.splitlines() if "needs_tracker.access" not in line]
    return "\n".join(kept[-lines:])


def children(pid: int) -> list[int]:
    """The direct children of a process (from /proc, as `pgrep -P` reads them)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def rss_kib(pid: int) -> int:
    """Resident memory of one process in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Part:
    """One process of the stack, in its own process group (so a kill takes its children)."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # on purpose, by `Stack.stop`

    def start(self) -> Part:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        if not self.alive():
            code = self.process.returncode if self.process else None
            raise PartFailed(f"{self.name} exited ({code}):\n{tail(self.log)}")

    def rss_kib(self) -> int:
        """The process and its children (pool processes, gunicorn workers)."""
        return rss_kib(self.pid) + sum(rss_kib(child) for child in children(self.pid))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if not self.alive():
            return
        assert self.process is not None
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()


class RedisServer:
    """redis-server of the stack's own on a free port. With `persistence`, the
    append-only file that docker-compose.yml sets, so queued tasks survive a restart."""

    def __init__(self, folder: Path, persistence: bool = False) -> None:
        self.folder = folder
        self.port = free_port()
        self.persistence = persistence
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert shutil.which("redis-server"), "redis-server is not installed"
        appendonly = ["--appendonly", "yes"] if self.persistence else ["--appendonly", "no"]
        with (self.folder / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.folder),
                    "--save",
                    "",
                    *appendonly,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, 20, "redis-server did not answer")
        return self

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: Redis's own shutdown (it writes its append-only file); SIGKILL: a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self, down_for: float = 0, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        time.sleep(down_for)
        self.start()


def wait_until(check: Callable[[], T], timeout: float, message: str, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (after {timeout:.0f} s)")
        time.sleep(every)


@dataclass
class Tokens:
    admin: str
    reader: str
    # One coordinator token per load thread: an idempotency key is scoped to a token.
    coordinators: list[tuple[int, str, str]] = field(default_factory=list)  # id, secret, site


@dataclass
class Stack:
    folder: Path
    database_url: str
    redis: RedisServer
    smtp: SmtpServer
    settings: dict[str, str]
    app: Flask
    postgres: Cluster | None = None
    parts: dict[str, Part] = field(default_factory=dict)
    web_urls: dict[str, str] = field(default_factory=dict)
    tokens: Tokens | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)  # site -> group ids
    subscription_id: str | None = None
    # Every idempotency key any load on this stack sent (loads follow one another).
    keys_sent: set[str] = field(default_factory=set)
    started_at: float = field(default_factory=time.time)
    stop_times: dict[str, float] = field(default_factory=dict)

    # -- processes ----------------------------------------------------------------------

    def env(self, name: str) -> dict[str, str]:
        instance = self.folder / name
        instance.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            **self.settings,
            "INSTANCE_PATH": str(instance),
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.redis.url,
            **{key: str(value) for key, value in self.smtp.settings.items()},
        }

    def _start(self, name: str, command: list[str]) -> Part:
        assert name not in self.parts or not self.parts[name].alive(), f"{name} is running"
        part = Part(name, command, self.env(name), self.folder / f"{name}.log").start()
        self.parts[name] = part
        return part

    def start_web(self, name: str = "web-1") -> str:
        port = free_port()
        part = self._start(name, web_command(port, str(self.folder / name)))
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            part.check()
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        wait_until(up, 60, f"{name} did not answer /healthz")
        self.web_urls[name] = base
        return base

    def start_worker(self, name: str = "worker-1", wait: bool = True) -> Part:
        # A node name per worker, as two machines would have.
        part = self._start(name, worker_command("--hostname", f"{name}@%h"))
        if wait:
            wait_until(lambda: part.check() or "ready." in part.log.read_text(), 60, name)
        return part

    def start_beat(self, name: str = "beat-1") -> Part:
        part = self._start(name, [*beat_command(), "--schedule", str(self.folder / name / "s")])
        wait_until(lambda: part.check() or "beat: Starting" in part.log.read_text(), 60, name)
        return part

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.parts[name].stop(sig)
        self.parts[name].stopped = True

    def kill_pool_child(self, name: str = "worker-1") -> int:
        """SIGKILL one pool process of a worker (the one busy, if a task is running)."""
        pool = children(self.parts[name].pid)
        assert pool, f"{name} has no pool processes"
        victim = pool[0]
        os.kill(victim, signal.SIGKILL)
        return victim

    def kill_web_worker(self, name: str = "web-1") -> int:
        """SIGKILL gunicorn's worker process (its master starts another)."""
        workers = children(self.parts[name].pid)
        assert workers, f"{name} has no worker process"
        os.kill(workers[0], signal.SIGKILL)
        return workers[0]

    def kill_pool(self, name: str = "worker-1") -> list[int]:
        """SIGKILL every pool process of a worker: the busy one among them."""
        pool = children(self.parts[name].pid)
        assert pool, f"{name} has no pool processes"
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        return pool

    @contextmanager
    def builds_held(self) -> Iterator[None]:
        """Summary builds wait mid-task until the block ends: their snapshot reads
        `groups`, locked here. (Report writes wait too: their foreign key needs it.)"""
        with psycopg.connect(self.database_url) as connection:
            connection.execute("LOCK TABLE groups IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                connection.rollback()

    def build_waiting(self) -> bool:
        """A worker is inside a summary build, waiting for `builds_held`'s lock."""
        return bool(self._lock_waiters("query LIKE 'INSERT INTO summary_state%%'"))

    def request_waiting(self) -> bool:
        """A web request is waiting for `builds_held`'s lock (anything but a build: a
        report's look-up of its group, its INSERT)."""
        return bool(self._lock_waiters("query NOT LIKE 'INSERT INTO summary_state%%'"))

    def _lock_waiters(self, condition: str) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            waiting = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                f" AND {condition}"  # one of the two literals above
            ).fetchone()
        return waiting[0] if waiting else 0

    def log(self, name: str) -> str:
        return self.parts[name].log.read_text(errors="replace")

    def revive(self) -> list[str]:
        """Start again every part that died (not stopped on purpose); returns their names.
        For a module's next test, after one whose fault killed a part it should not have."""
        dead = [n for n, p in self.parts.items() if not p.stopped and not p.alive()]
        for name in dead:
            starter = {"web": self.start_web, "worker": self.start_worker, "beat": self.start_beat}
            starter[name.split("-")[0]](name)
        return dead

    def check(self) -> None:
        """Every part not stopped on purpose is still running."""
        for part in self.parts.values():
            if not part.stopped:
                part.check()

    # -- the database -------------------------------------------------------------------

    def read(self, query: Callable[[], T]) -> T:
        """`query()` in a short transaction of its own on the stack's database."""
        with self.app.app_context():
            try:
                return query()
            finally:
                db.session.remove()

    # -- HTTP ---------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        secret: str,
        body: Any = None,
        web: str | None = None,
        timeout: float = 10,
    ) -> tuple[int, Any]:
        base = self.web_urls[web] if web else next(iter(self.web_urls.values()))
        request = urllib.request.Request(
            base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as refused:
            with refused:
                return refused.code, refused.read()


def _prepare(app: Flask, coordinators: int) -> tuple[Tokens, dict[str, list[str]]]:
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        seed_sites(OPERATOR)
        groups: dict[str, list[str]] = {}
        for site_id in (CENTRE, AIRPORT):
            rows = [Group(site_id=site_id, label=f"Fault group {i}") for i in range(6)]
            db.session.add_all(rows)
            db.session.flush()
            groups[site_id] = [str(g.id) for g in rows]
        _, admin = issue_token(Role.admin, "faults admin")
        _, reader = issue_token(Role.reader, "faults reader")
        tokens = Tokens(admin, reader)
        for i in range(coordinators):
            site_id = (CENTRE, AIRPORT)[i % 2]
            token, secret = issue_token(
                Role.coordinator, f"faults coordinator {i}", [db.session.get_one(Site, site_id)]
            )
            db.session.flush()
            tokens.coordinators.append((token.id, secret, site_id))
        db.session.commit()
        db.session.remove()
    return tokens, groups


@contextmanager
def running_stack(
    folder: Path,
    *,
    webs: int = 1,
    workers: int = 1,
    beats: int = 1,
    coordinators: int = 4,
    own_postgres: bool = False,
    redis_persistence: bool = False,
    subscription_cron: str | None = "* * * * *",
    settings: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """The whole service on loopback, as `needs-tracker serve` (or two machines) runs it."""
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        postgres = None
        if own_postgres:
            postgres = cleanup.enter_context(private_postgres())
            database_url = postgres.create_database("needs")
        else:
            database_url = cleanup.enter_context(postgres_database(prefix="nt_faults"))
        redis = RedisServer(folder / "redis", redis_persistence).start()
        cleanup.callback(redis.stop, signal.SIGKILL)
        smtp = SmtpServer().start()
        cleanup.callback(smtp.stop)
        fixed = {
            **FAST_SETTINGS,
            # One secret for every process, as one deployment has (sessions, unsubscribe links).
            "SECRET_KEY": secrets.token_urlsafe(32),
            "CELERY_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
            **(settings or {}),
        }
        app = create_app(
            {
                "DATABASE_URL": database_url,
                "INSTANCE_PATH": str(folder / "tests"),
                "CELERY_BROKER_URL": redis.url,
                "CELERY_QUEUE": fixed["CELERY_QUEUE"],
                "LOG_LEVEL": "WARNING",
                "SUMMARY_INTERVAL_MINUTES": int(fixed["SUMMARY_INTERVAL_MINUTES"]),
            }
        )
        tokens, groups = _prepare(app, coordinators)
        stack = Stack(folder, database_url, redis, smtp, fixed, app, postgres, tokens=tokens)
        stack.groups = groups

        def stop_everything() -> None:
            def stop(part: Part) -> None:
                began = time.monotonic()
                part.stop(signal.SIGTERM, timeout=15)
                stack.stop_times[part.name] = round(time.monotonic() - began, 1)

            with ThreadPoolExecutor(max(1, len(stack.parts))) as pool:
                list(pool.map(stop, stack.parts.values()))
            with app.app_context():
                db.session.remove()
                db.engine.dispose()

        cleanup.callback(stop_everything)
        # Every part starts at once (each takes seconds to import and connect).
        starts = [(stack.start_web, f"web-{i}") for i in range(1, webs + 1)]
        starts += [(stack.start_worker, f"worker-{i}") for i in range(1, workers + 1)]
        starts += [(stack.start_beat, f"beat-{i}") for i in range(1, beats + 1)]
        with ThreadPoolExecutor(len(starts)) as pool:
            for started in [pool.submit(start, name) for start, name in starts]:
                started.result()
        if subscription_cron:
            status, body = stack.call(
                "POST",
                "/api/v1/subscriptions",
                tokens.admin,
                {"email": SUBSCRIBER, "cron": subscription_cron, "timezone": "UTC"},
            )
            assert status == 201, body
            stack.subscription_id = body["id"]
        if beats:
            # From here on every period is the scheduler's to make: wait for its first tick.
            wait_until(lambda: stack.read(_period_made), 60, "the scheduler made no summary")
        stack.started_at = time.time()
        yield stack


def _period_made() -> bool:
    every = summaries.interval()
    now = summaries.period_start(utcnow(), every)
    return bool(db.session.execute(select(Summary.id).where(Summary.period == now)).first())
