"""`python -m bench.http`: the API under gunicorn next to a bare Flask app, in one run.

Both are served by gunicorn as docker-compose.yml's `web` service runs ours, on the same
throw-away PostgreSQL database, and driven by wrk with the scripts in bench/lua/. The
baseline (bench/bare.py) does the plain version of the same work. In each round ours and
the baseline take turns (who goes first alternates), each for `--duration` seconds after
a warm-up, so a busy spell on a noisy machine slows both; a scenario's ratio is ours'
median throughput over the baseline's.

The verdicts are printed, not enforced: the exit status is 1 only when something is
wrong (a server did not start, an answer other than the expected one, or a server that
stored a different number of reports than it answered 201 for).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg
import redis

from bench import data, http_data, servers, wrk
from bench.verdicts import VERDICTS_OPTION, Verdict, save, table

BROKER_URL = "redis://127.0.0.1:6379/0"
P99_TARGET_MS = 100.0  # ours' p99 in `single`


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str  # bench/lua/<script>.lua
    connections: int
    target: float  # ours/baseline throughput at least this
    unit: str = "req/s"
    items: int = 1  # reports per request (the rate is shown per report)
    writes: bool = False
    conditional: bool = False  # sends If-None-Match with ours' ETag


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("single", "single", 16, 0.6, writes=True),
        Scenario("batch", "batch", 4, 0.6, unit="reports/s", items=500, writes=True),
        Scenario("latest", "latest", 16, 0.7),
        Scenario("latest-304", "latest", 16, 0.7, conditional=True),
    )
}


@dataclass
class Side:
    """One server's runs of one scenario."""

    rates: list[float] = field(default_factory=list)  # per round, in the scenario's unit
    p99s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def p99(self) -> float:
        return statistics.median(self.p99s)


@dataclass
class Bench:
    """Everything a wrk run needs, fixed for the whole run."""

    fixture: http_data.Fixture
    latest: http_data.Latest
    url: str  # the database, to count stored reports
    folder: Path
    warmup: float
    duration: float
    problems: list[str] = field(default_factory=list)
    # Reports stored and answered 201 for, equal, per (scenario, server).
    stored: dict[tuple[str, str], int] = field(default_factory=dict)

    def settings(self, scenario: Scenario, server: str, seconds: float) -> dict[str, Any]:
        # Moments in the last hour, drawn again for every run so they stay in it.
        now = datetime.now(UTC).replace(microsecond=0)
        observed = [
            (now - timedelta(seconds=random.randint(60, 3540))).isoformat() for _ in range(60)
        ]
        return {
            "seconds": seconds,
            # Part of every idempotency key and client_id: never the same in two runs.
            "nonce": secrets.randbits(31),
            "token": self.fixture.coordinators[server] if scenario.writes else self.fixture.reader,
            "groups": self.fixture.groups,
            "observed": observed,
            "batch": scenario.items,
            "etag": f'"{self.latest.etag}"' if scenario.conditional else None,
            "length": len(self.latest.body),
        }

    def stored_reports(self) -> int:
        with psycopg.connect(self.url) as conn:
            query = "SELECT count(*) FROM reports WHERE client_id IS NOT NULL"
            return conn.execute(query).fetchone()[0]

    def run(self, scenario: Scenario, server: servers.Server, side: Side) -> wrk.Result:
        """A warm-up, then the measured run; checks the answers and the stored reports."""
        before = self.stored_reports()
        config = self.folder / f"{scenario.name}-{server.name}.lua"
        results = []
        for seconds in (self.warmup, self.duration):
            server.check()
            settings = self.settings(scenario, server.name, seconds)
            results.append(
                wrk.run(scenario.script, scenario.connections, server.url, settings, config)
            )
        stored = self.stored_reports() - before
        measured = results[-1]
        side.rates.append(measured.rate * scenario.items)
        side.p99s.append(measured.p99_ms)
        where = f"{scenario.name}, {server.name}"
        for result in results:
            self.problems += [f"{where}: {problem}" for problem in result.problems]
        unexpected = sum(r.unexpected for r in results)
        if unexpected:
            statuses: dict[int, int] = {}
            for result in results:
                for status, n in result.statuses.items():
                    statuses[status] = statuses.get(status, 0) + n
            counts = ", ".join(f"{status}: {n:,}" for status, n in sorted(statuses.items()))
            sample = next(r.sample for r in results if r.sample)
            self.problems.append(
                f"{where}: {unexpected:,} answers not the one expected (all answers by "
                f"status: {counts}); one of them: {sample[:400]}"
            )
        answered = sum(r.stored for r in results)
        if scenario.writes and stored != answered:
            self.problems.append(
                f"{where}: stored {stored:,} reports but answered 201 for {answered:,}"
            )
        elif scenario.writes:
            key = (scenario.name, server.name)
            self.stored[key] = self.stored.get(key, 0) + stored
        return measured


def rounds(bench: Bench, scenario: Scenario, pair: list[servers.Server], count: int) -> list[Side]:
    sides = [Side() for _ in pair]
    click.echo(
        f"\n{scenario.name}: "
        + " ".join(wrk.command(scenario.script, scenario.connections, bench.duration, "URL"))
    )
    for n in range(count):
        order = [0, 1] if n % 2 == 0 else [1, 0]
        for i in order:
            bench.run(scenario, pair[i], sides[i])
        cells = [
            f"{pair[i].name} {side.rates[-1]:>10,.1f} {scenario.unit} p99 {side.p99s[-1]:7.1f} ms"
            for i, side in enumerate(sides)
        ]
        click.echo(f"  round {n + 1}  " + "   ".join(cells))
    return sides


def verdicts_of(results: list[tuple[Scenario, Side, Side]]) -> list[Verdict]:
    found = []
    for scenario, ours, baseline in results:
        ratio = ours.rate / baseline.rate if baseline.rate else 0.0
        found.append(
            Verdict(
                scenario.name,
                f"{ours.rate:,.0f} {scenario.unit}",
                f"{baseline.rate:,.0f} {scenario.unit}",
                ratio,
                scenario.target,
            )
        )
        if scenario.name == "single":
            found.append(
                Verdict(
                    "single p99",
                    f"{ours.p99:.0f} ms",
                    f"{baseline.p99:.0f} ms",
                    P99_TARGET_MS / ours.p99 if ours.p99 else 0.0,
                    1.0,
                    f"ours' p99 under {P99_TARGET_MS:.0f} ms at {scenario.connections} clients",
                )
            )
    return found


def delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(BROKER_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def _interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so servers, database and keys are cleaned up either way."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@click.command()
@click.option("--rounds", "count", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=10,
    show_default=True,
    help="Seconds measured per server per round.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0.5),
    default=2,
    show_default=True,
    help="Seconds of load before each measured run.",
)
@click.option("--quick", is_flag=True, help="1 round of 3 s: a smoke run.")
@VERDICTS_OPTION
@click.option(
    "--only",
    default=",".join(SCENARIOS),
    show_default=True,
    help="Scenarios to run, comma-separated.",
)
def main(
    count: int,
    duration: float,
    warmup: float,
    quick: bool,
    verdicts_file: Path | None,
    only: str,
) -> None:
    """Measure the API under gunicorn next to a bare Flask app doing the same work."""
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {', '.join(SCENARIOS)}", param_hint="--only")
    if quick:
        count, duration, warmup = 1, 3, 1
    _interrupt_on_sigterm()
    started = time.monotonic()
    prefix = f"bench-{secrets.token_hex(4)}:"
    measured: list[tuple[Scenario, Side, Side]] = []
    try:
        with ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nt-bench-")))
            url = stack.enter_context(data.throwaway_database())
            stack.callback(delete_keys, prefix)
            fixture = http_data.prepare(url, ("ours", "baseline"))
            click.echo(
                f"database {url.rpartition('/')[2]}: {len(fixture.groups)} groups at "
                f"{http_data.SITE}, a few hundred reports, one ready summary"
            )
            ours_env = {
                "DATABASE_URL": url,
                "CELERY_BROKER_URL": BROKER_URL,
                "CELERY_KEY_PREFIX": prefix,
                "SECRET_KEY": secrets.token_urlsafe(48),
                "INSTANCE_PATH": str(folder / "instance"),
                "LOG_LEVEL": "INFO",
                # wrk sends thousands of writes a second with one token: limits far out
                # of its reach, so their cost (a Redis round trip) is measured, not 429s.
                "RATELIMIT_WRITES": "100000000 per minute",
                "RATELIMIT_ON_DEMAND_SUMMARIES": "100000000 per minute",
            }
            ours = stack.enter_context(
                servers.running("ours", "service.wsgi:app", ours_env, folder)
            )
            latest = http_data.fetch_latest(ours.url, fixture.reader)
            (folder / "latest.json").write_bytes(latest.body)
            bare_env = {
                "DATABASE_URL": url,
                "BARE_LATEST_BODY": str(folder / "latest.json"),
                "BARE_LATEST_ETAG": latest.etag,
            }
            baseline = stack.enter_context(
                servers.running("baseline", "bench.bare:app", bare_env, folder)
            )
            for server in (ours, baseline):
                click.echo(f"{server.name}: {' '.join(server.command)}")
            bench = Bench(fixture, latest, url, folder, warmup, duration)
            click.echo(
                f"{count} round(s) of {duration:g} s per server after {warmup:g} s of warm-up; "
                f"ours and the baseline take turns; load average {os.getloadavg()[0]:.1f}"
            )
            for name in chosen:
                scenario = SCENARIOS[name]
                ours_side, bare_side = rounds(bench, scenario, [ours, baseline], count)
                measured.append((scenario, ours_side, bare_side))
            if bench.problems:
                click.echo(f"\nours' log, its end:\n{servers.tail(ours.log)}", err=True)
                kept = Path(tempfile.mkdtemp(prefix="nt-bench-http-logs-"))
                for path in [*folder.glob("*.log"), *folder.glob("*.wrk.txt")]:
                    shutil.copy(path, kept)
                click.echo(f"the servers' logs and wrk's output are kept in {kept}", err=True)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; servers stopped, database dropped, keys deleted", err=True)
        sys.exit(130)
    except servers.ServerFailed as exc:
        click.echo(f"\nFAIL  {exc}", err=True)
        sys.exit(1)
    found = verdicts_of(measured)
    click.echo("")
    table(found)
    save(verdicts_file, found)
    for (name, server), stored in bench.stored.items():
        click.echo(f"{name}, {server}: stored exactly the {stored:,} reports answered 201 for")
    # Anything else busy on the machine (load beyond this run's own) slows both sides.
    click.echo(
        f"\n{time.monotonic() - started:.0f} s in all; load average at the end "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if bench.problems:
        click.echo("\nSomething is wrong:", err=True)
        for problem in bench.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
