"""Benchmark: a situation summary against a hand-written SQL query, as the reports grow.

Issue: "build a summary over 1 million reports for 10,000 groups at 50 sites on
PostgreSQL, and print the time next to a hand-written SQL query that computes the same
per-site totals on the same data in the same run, and the ratio. Target: the summary
within 1.5x that query, and its time flat (within 1.5x) when the reports grow from 100k
to 1M for the same groups."

Every figure is a ratio against a time measured in the same run. The verdicts are
printed, not enforced: the exit status is 1 only when the summary's numbers disagree
with the hand-written query's (a wrong summary is a bug; a slow one is a finding).
"""

from __future__ import annotations

import math
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg
from flask import Flask
from sqlalchemy import text

from bench import data
from bench.verdicts import VERDICTS_OPTION, Verdict, save
from service.domain import aggregation, summaries
from service.extensions import db

TARGET_RATIO = 1.5  # the summary within 1.5x the hand-written query
TARGET_FLAT = 1.5  # and within 1.5x of itself when the reports grow 10x

# The per-site totals, the way one would write them by hand: per waiting group, its
# latest report observed at or before T (ties: latest received), summed per site.
# (In the benchmark's data no move or status change is later than T, so a group's
# site and status at T are its current ones.)
BASELINE_LATERAL = text(
    """
    SELECT g.site_id, count(*) AS groups, coalesce(sum(r.total), 0) AS people
    FROM groups g
    LEFT JOIN LATERAL (
        SELECT total FROM reports r
        WHERE r.group_id = g.id AND r.observed_at <= :as_of
        ORDER BY r.observed_at DESC, r.id DESC
        LIMIT 1
    ) r ON true
    WHERE g.status = 'waiting'
    GROUP BY g.site_id
    """
)
BASELINE_DISTINCT_ON = text(
    """
    SELECT g.site_id, count(*) AS groups, coalesce(sum(r.total), 0) AS people
    FROM groups g
    LEFT JOIN (
        SELECT DISTINCT ON (group_id) group_id, total FROM reports
        WHERE observed_at <= :as_of
        ORDER BY group_id, observed_at DESC, id DESC
    ) r ON r.group_id = g.id
    WHERE g.status = 'waiting'
    GROUP BY g.site_id
    """
)

Totals = dict[str, tuple[int, int]]  # site -> (groups, people)


@dataclass
class Size:
    reports: int
    lateral_ms: float
    distinct_ms: float
    figures_ms: float
    summary_ms: float
    # The other aggregation steps of the summary, each timed alone (ms).
    parts: dict[str, float]

    @property
    def baseline_ms(self) -> float:
        """The faster of the two hand-written queries: the one to beat."""
        return min(self.lateral_ms, self.distinct_ms)

    @property
    def ratio(self) -> float:
        return self.summary_ms / self.baseline_ms


def best_of_each(
    repeat: int, runs: dict[str, Callable[[], Any]]
) -> tuple[dict[str, float], dict[str, Any]]:
    """The best wall time in ms of each run over `repeat` rounds after a warm-up round, and
    each run's last result. The runs take turns within a round, so a busy spell on a noisy
    machine slows them alike instead of skewing one ratio."""
    results: dict[str, Any] = {}
    best = dict.fromkeys(runs, math.inf)
    for round_ in range(repeat + 1):
        for name, run in runs.items():
            started = time.perf_counter()
            results[name] = run()
            elapsed = time.perf_counter() - started
            db.session.rollback()
            if round_:
                best[name] = min(best[name], elapsed)
    return {name: seconds * 1000 for name, seconds in best.items()}, results


def baseline(query: Any, as_of: datetime) -> Totals:
    rows = db.session.execute(query, {"as_of": as_of})
    return {site: (int(groups), int(people)) for site, groups, people in rows}


def from_document(document: dict[str, Any]) -> Totals:
    return {s["site_id"]: (s["groups"], s["people"]) for s in document["sites"] if s["groups"]}


def from_figures(figures: dict[str, aggregation.SiteFigures]) -> Totals:
    return {site: (f.groups, f.people) for site, f in figures.items()}


def disagreements(expected: Totals, **others: Totals) -> list[str]:
    problems = []
    for name, got in others.items():
        for site in sorted(expected.keys() | got.keys()):
            if expected.get(site) != got.get(site):
                problems.append(
                    f"{name}: site {site}: (groups, people) {got.get(site)}, "
                    f"hand-written query {expected.get(site)}"
                )
    return problems


def figures_alone(as_of: datetime, stale_after: timedelta) -> dict[str, aggregation.SiteFigures]:
    """The per-site totals as the summary computes them: the snapshot, then site_figures."""
    with aggregation.snapshot(as_of) as now:
        return aggregation.site_figures(now, stale_after)


def timed_steps(as_of: datetime, previous: datetime, stale_after: timedelta) -> dict[str, float]:
    """Each step of a summary timed alone, in ms, in the order compose runs them."""
    times: dict[str, float] = {}

    def timed(name: str, run: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = run()
        times[name] = (time.perf_counter() - started) * 1000
        return result

    started = time.perf_counter()
    with aggregation.snapshot(as_of) as now:
        times["snapshot"] = (time.perf_counter() - started) * 1000
        timed("site_figures", lambda: aggregation.site_figures(now, stale_after))
        timed("departures", lambda: aggregation.departures(now, since=previous))
        timed("conflicting_groups", lambda: aggregation.conflicting_groups(now))
        timed("jumping_groups", lambda: aggregation.jumping_groups(now))
    db.session.rollback()
    started = time.perf_counter()
    with aggregation.snapshot(previous, "previous_state", with_previous_report=False) as then:
        # As compose: the previous moment's people figures (what readers' view of it hid).
        aggregation.site_counts(then)
        aggregation.departures(then, since=summaries.previous_as_of(previous, summaries.interval()))
    times["previous_period"] = (time.perf_counter() - started) * 1000
    db.session.rollback()
    return times


def measure(app: Flask, as_of: datetime, reports: int, repeat: int) -> tuple[Size, list[str]]:
    stale_after = timedelta(hours=app.config["STALE_AFTER_HOURS"])
    with app.app_context():
        previous = summaries.previous_as_of(as_of, summaries.interval())
        ms, results = best_of_each(
            repeat,
            {
                "lateral": lambda: baseline(BASELINE_LATERAL, as_of),
                "distinct": lambda: baseline(BASELINE_DISTINCT_ON, as_of),
                "figures": lambda: figures_alone(as_of, stale_after),
                "summary": lambda: summaries.compose(uuid.uuid4(), as_of),
            },
        )
        rounds = [timed_steps(as_of, previous, stale_after) for _ in range(repeat)]
        parts = {name: min(r[name] for r in rounds) for name in rounds[0]}
    lateral, distinct, document = results["lateral"], results["distinct"], results["summary"]
    figures = results["figures"]
    problems = disagreements(
        lateral,
        **{
            "DISTINCT ON query": distinct,
            "site_figures": from_figures(figures),
            "summary document": from_document(document),
        },
    )
    if not lateral or not sum(people for _, people in lateral.values()):
        problems.append("the hand-written query found no people: the data did not load")
    size = Size(reports, ms["lateral"], ms["distinct"], ms["figures"], ms["summary"], parts)
    flags = len(document["flags"])
    people = document["totals"]["people"]
    click.echo(
        f"  measured {reports:,} reports: {people:,} people in {len(lateral)} sites, "
        f"{flags:,} flags; best of {repeat} rounds after a warm-up round"
    )
    return size, problems


def load_phase(
    conn: psycopg.Connection, now: datetime, groups: int, per_group: int, start: int
) -> None:
    """Add reports up to `per_group` per group, in batches of at most 10 per group."""
    batches = []
    have = start
    while have < per_group:
        step = min(10, per_group - have)
        batches.append((step, have == 0))
        have += step
    started = time.perf_counter()
    loaded = needs = 0
    with click.progressbar(
        length=groups * (per_group - start),
        label=f"  reports {groups * start:,} -> {groups * per_group:,}",
        show_pos=True,
        file=sys.stderr,
    ) as bar:
        for step, first in batches:
            added, added_needs = data.load_reports(conn, now, step, first)
            loaded += added
            needs += added_needs
            bar.update(added)
    data.analyze(conn)
    click.echo(
        f"  loaded {loaded:,} reports and {needs:,} needs, vacuumed and analyzed "
        f"in {time.perf_counter() - started:.1f} s"
    )


def print_table(sizes: list[Size]) -> None:
    click.echo("")
    header = (
        f"{'reports':>10} {'lateral ms':>11} {'distinct ms':>12} {'baseline ms':>12} "
        f"{'figures ms':>11} {'summary ms':>11} {'summary/baseline':>17} {'figures/baseline':>17}"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for s in sizes:
        click.echo(
            f"{s.reports:>10,} {s.lateral_ms:>11.1f} {s.distinct_ms:>12.1f} "
            f"{s.baseline_ms:>12.1f} {s.figures_ms:>11.1f} {s.summary_ms:>11.1f} "
            f"{s.ratio:>16.2f}x {s.figures_ms / s.baseline_ms:>16.2f}x"
        )
    click.echo("")
    click.echo(
        "baseline = the faster hand-written query (LATERAL latest-per-group, or DISTINCT ON);"
    )
    click.echo("figures = aggregation.site_figures alone; summary = summaries.compose, all of it")
    click.echo("")
    names = list(sizes[0].parts)
    header = f"{'reports':>10} {'site_figures':>13} " + " ".join(f"{n:>19}" for n in names)
    click.echo("where the summary's time goes: each aggregation step timed alone, ms")
    click.echo(header)
    click.echo("-" * len(header))
    for s in sizes:
        cells = " ".join(f"{s.parts[n]:>19.1f}" for n in names)
        click.echo(f"{s.reports:>10,} {s.figures_ms:>13.1f} {cells}")


def verdicts_of(sizes: list[Size]) -> list[Verdict]:
    """For the one table: the summary's speed next to the hand-written query's at each
    size (within 1.5x its time is a speed ratio of at least 1/1.5), and its flatness."""
    found = [
        Verdict(
            f"summary, {s.reports:,} reports",
            f"{s.summary_ms:,.0f} ms",
            f"{s.baseline_ms:,.0f} ms",
            s.baseline_ms / s.summary_ms,
            1 / TARGET_RATIO,
            "baseline: a hand-written per-site totals query",
        )
        for s in sizes
    ]
    if len(sizes) >= 2:
        first, last = sizes[0], sizes[-1]
        found.append(
            Verdict(
                "summary, flat",
                f"{last.summary_ms:,.0f} ms",
                f"{first.summary_ms:,.0f} ms",
                first.summary_ms / last.summary_ms,
                1 / TARGET_FLAT,
                f"its own time at {first.reports:,} reports as the baseline",
            )
        )
    return found


def verdicts(sizes: list[Size]) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    click.echo("")
    for s in sizes:
        click.echo(
            f"{verdict(s.ratio <= TARGET_RATIO)}  summary within {TARGET_RATIO}x the "
            f"hand-written query at {s.reports:,} reports: {s.ratio:.2f}x"
        )
    if len(sizes) < 2:
        return
    first, last = sizes[0], sizes[-1]
    flat = last.summary_ms / first.summary_ms
    figures_flat = last.figures_ms / first.figures_ms
    baseline_flat = last.baseline_ms / first.baseline_ms
    growth = f"{first.reports:,} -> {last.reports:,} reports"
    click.echo(
        f"{verdict(flat <= TARGET_FLAT)}  summary flat within {TARGET_FLAT}x for {growth}: "
        f"{flat:.2f}x (site_figures {figures_flat:.2f}x, baseline {baseline_flat:.2f}x)"
    )


def _interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the throw-away database is dropped either way."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@click.command()
@click.option("--quick", is_flag=True, help="1,000 groups, 10k -> 100k reports: a fast check.")
@click.option("--groups", type=click.IntRange(min=1), help="Groups (default 10,000).")
@click.option(
    "--reports",
    type=click.IntRange(min=1),
    multiple=True,
    help="Report counts to measure at, growing; repeat the option (default 100k and 1M). "
    "Rounded to whole reports per group.",
)
@click.option("--sites", type=click.IntRange(min=1, max=999), default=50, show_default=True)
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True)
@VERDICTS_OPTION
@click.option(
    "--setup-sql",
    multiple=True,
    metavar="SQL",
    help="Run on the benchmark database after the migrations, before loading, to try a "
    "change (an index, a planner setting); `{database}` names the database, e.g. "
    "'ALTER DATABASE {database} SET random_page_cost = 1.1'. Repeatable.",
)
def main(
    quick: bool,
    groups: int | None,
    reports: tuple[int, ...],
    sites: int,
    repeat: int,
    verdicts_file: Path | None,
    setup_sql: tuple[str, ...],
) -> None:
    """Time a situation summary against a hand-written SQL query on PostgreSQL."""
    groups = groups or (1_000 if quick else 10_000)
    reports = reports or ((10_000, 100_000) if quick else (100_000, 1_000_000))
    per_group = sorted({max(1, round(r / groups)) for r in reports})
    _interrupt_on_sigterm()
    now = datetime.now(UTC).replace(microsecond=0)
    click.echo(
        f"needs-tracker summary benchmark: {groups:,} groups at {sites} sites, "
        f"{' -> '.join(f'{groups * n:,}' for n in per_group)} reports, as of {now.isoformat()}"
    )
    sizes: list[Size] = []
    problems: list[str] = []
    try:
        with data.throwaway_database() as url, data.migrated_app(url) as app:
            click.echo(f"  database {url.rpartition('/')[2]} created and migrated")
            with psycopg.connect(url, autocommit=True) as conn:
                if setup_sql:
                    data.run_setup(app, conn, url, setup_sql)
                data.load_fixed(conn, now, sites, groups)
                click.echo(f"  loaded {sites} sites, {groups:,} groups, their moves and departures")
                have = 0
                for n in per_group:
                    load_phase(conn, now, groups, n, have)
                    have = n
                    size, found = measure(app, now, groups * n, repeat)
                    sizes.append(size)
                    problems += found
    except KeyboardInterrupt:
        click.echo("\ninterrupted; the throw-away database was dropped", err=True)
        sys.exit(130)
    print_table(sizes)
    verdicts(sizes)
    save(verdicts_file, verdicts_of(sizes))
    if problems:
        click.echo("\nFAIL  the summary's numbers disagree with the hand-written query:", err=True)
        for line in problems:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    click.echo("\nOK  per-site groups and people agree with the hand-written query at every size")


if __name__ == "__main__":
    main()
