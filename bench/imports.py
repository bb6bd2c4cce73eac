"""`python -m bench.imports`: how fast the CSV import stores head counts on PostgreSQL.

Creates a throw-away database (dropped at the end, on errors and Ctrl-C too), migrates
it like production, registers groups, writes a CSV of ROWS head counts (a client_id on
half of them, a sex-and-age breakdown on half, needs on a third), and imports it through
the same function `needs-tracker import` runs. Prints rows per second for the import
and for a re-import (everything already there), next to baselines measured in the
same run on the same machine (absolute speeds differ by 2x between machines here):

- reading and checking alone (the Python side, no database);
- the database alone: the rows the import stored, inserted again by one
  INSERT ... SELECT per table into copies of the three tables with the same indexes,
  checks and foreign keys (no Python, no parsing): no import of these rows with these
  constraints can be faster on this machine;
- PostgreSQL's COPY of the same file into a scratch table of text columns (no checks
  at all; the fastest a row can go in).

    BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres  (the default)
    BENCH_IMPORT_ROWS=100000                                          (the default)
    BENCH_IMPORT_MIN_ROWS_PER_SECOND=20000  the issue's bar, printed as PASS/FAIL
"""

from __future__ import annotations

import csv
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import psycopg
from flask_migrate import upgrade
from psycopg import sql

from bench.data import throwaway_database
from bench.verdicts import VERDICTS_OPTION, Verdict, save, table
from service import create_app, importing
from service.domain.callers import OPERATOR, Caller
from service.domain.imports import (
    CHUNK_SIZE,
    COLUMNS,
    CsvSource,
    ImportResult,
    checked_chunks,
    jobs,
)
from service.domain.sites import seed_sites
from service.domain.tokens import system_caller
from service.extensions import db
from service.models import NEEDS_SECTORS, SADD_KEYS, Group

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "100000"))
MINIMUM = int(os.environ.get("BENCH_IMPORT_MIN_ROWS_PER_SECOND", "20000"))
# The import within 1/0.8 of the database's own time for the same rows.
TARGET_RATIO = 0.8
GROUPS = 1000
SITES = ("stepanakert-centre", "stepanakert-airport")


def write_rows(path: Path, group_ids: list[uuid.UUID]) -> None:
    rng = random.Random(5)
    start = datetime.now(UTC) - timedelta(days=10)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for n in range(ROWS):
            total = rng.randint(20, 900)
            sadd = [""] * len(SADD_KEYS)
            if n % 2:
                shares = [rng.random() + 0.1 for _ in SADD_KEYS]
                parts = [int(total * s / sum(shares)) for s in shares]
                parts[0] += total - sum(parts)
                sadd = parts
            needs = ""
            if n % 3 == 0:
                needs = f"{rng.choice(NEEDS_SECTORS)}:{rng.randint(1, 5)};water:3"
            writer.writerow(
                [
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)) if n % 2 else "",
                    "",
                    "",
                    str(group_ids[n % len(group_ids)]),
                    (start + timedelta(seconds=n * 7)).isoformat(),
                    total,
                    *sadd,
                    "",
                    rng.randint(0, 5),
                    "",
                    "",
                    "",
                    needs,
                    "counted at the gate" if n % 10 == 0 else "",
                ]
            )


def copy_baseline(url: str, path: Path) -> float:
    """COPY the same CSV into a scratch table of text columns: the floor for any import."""
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in COLUMNS)
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("CREATE TABLE bench_copy ({})").format(columns))
        started = time.perf_counter()
        with conn.cursor().copy("COPY bench_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
            with path.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    cp.write(chunk)
        conn.commit()
        return time.perf_counter() - started


# The tables an import writes, parents first.
STORED_TABLES = ("reports", "report_needs")


def database_alone(url: str) -> float:
    """Seconds the database needs to store the rows the import stored, with every index,
    check and foreign key the real tables have, and no Python: the same rows inserted
    again, set-based, into copies of the tables (the copies refer to each other)."""
    with psycopg.connect(url) as conn:
        for table in STORED_TABLES:
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    sql.Identifier(f"floor_{table}"), sql.Identifier(table)
                )
            )
            keys = conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'f'",
                (table,),
            ).fetchall()
            for (definition,) in keys:
                definition = definition.replace("REFERENCES reports(", "REFERENCES floor_reports(")
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD {}").format(
                        sql.Identifier(f"floor_{table}"), sql.SQL(definition)
                    )
                )
        conn.commit()
        started = time.perf_counter()
        for table in STORED_TABLES:
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {} ORDER BY id").format(
                    sql.Identifier(f"floor_{table}"), sql.Identifier(table)
                )
            )
        conn.commit()
        return time.perf_counter() - started


def import_file(caller: Caller, path: Path) -> tuple[ImportResult, float]:
    """The file imported as `needs-tracker import` imports it (the file checked whole
    first, then an import job run in this process), and the seconds the import took."""
    source = CsvSource.from_path(path).check()
    job = jobs.create_job(caller, path.name, None)
    db.session.commit()
    with importing.quick_switching():
        started = time.perf_counter()
        result = importing.run_import(job.id, source)
        seconds = time.perf_counter() - started
    assert result is not None
    return result, seconds


@click.command()
@VERDICTS_OPTION
def main(verdicts_file: Path | None) -> None:
    """Time the CSV import on PostgreSQL next to the database alone."""
    with throwaway_database() as url, tempfile.TemporaryDirectory() as folder:
        app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": folder, "LOG_LEVEL": "WARNING"})
        path = Path(folder) / "bench.csv"
        with app.app_context():
            upgrade(directory=app.extensions["migrate"].directory)
            seed_sites(OPERATOR)
            groups = [
                Group(id=uuid.uuid4(), site_id=SITES[i % 2], label=f"bench group {i}")
                for i in range(GROUPS)
            ]
            db.session.add_all(groups)
            db.session.commit()
            write_rows(path, [g.id for g in groups])
            # As `needs-tracker import` starts: a session holding no objects (each of the
            # import's commits would otherwise expire these 1,000 groups again).
            db.session.expunge_all()
            size = path.stat().st_size
            caller = system_caller("bench import")
            db.session.commit()

            # Reading and checking alone (Python, no database): the ceiling for the import.
            started = time.perf_counter()
            for _ in checked_chunks(CsvSource.from_path(path).check().rows(), CHUNK_SIZE):
                pass
            check_seconds = time.perf_counter() - started

            first, import_seconds = import_file(caller, path)
            again, reimport_seconds = import_file(caller, path)
            db.session.remove()
            db.engine.dispose()
        floor = database_alone(url)
        baseline = copy_baseline(url, path)

    # Wrong results are an error, whatever the speed (and `python -O` keeps this check).
    if (first.stored, first.failed) != (ROWS, 0) or (again.stored, again.already_imported) != (
        0,
        ROWS,
    ):
        print(f"WRONG RESULTS: import {first.counts()}, re-import {again.counts()}")
        sys.exit(1)
    rate = ROWS / import_seconds
    print(f"CSV import on PostgreSQL, {ROWS:,} rows ({GROUPS:,} groups), {size / 1e6:.1f} MB")
    print(f"  import      {import_seconds:7.2f} s  {rate:10,.0f} rows/s")
    print(
        f"  checking    {check_seconds:7.2f} s  {ROWS / check_seconds:10,.0f} rows/s"
        "  (reading and checking only, no database)"
    )
    print(
        f"  database    {floor:7.2f} s  {ROWS / floor:10,.0f} rows/s"
        "  (the same rows, constraints and all, without Python: the floor)"
    )
    print(f"  re-import   {reimport_seconds:7.2f} s  {ROWS / reimport_seconds:10,.0f} rows/s")
    print(f"  COPY (raw)  {baseline:7.2f} s  {ROWS / baseline:10,.0f} rows/s  (no checks at all)")
    print(
        f"The import takes {import_seconds / floor:.2f}x the database's own time and "
        f"{import_seconds / check_seconds:.2f}x the checking's; raw COPY is "
        f"{import_seconds / baseline:.0f}x faster."
    )
    # Verdicts, not an exit status: machines are noisy (wrong results exit 1 above).
    found = [
        Verdict(
            "import",
            f"{rate:,.0f} rows/s",
            f"{ROWS / floor:,.0f} rows/s",
            floor / import_seconds,
            TARGET_RATIO,
            "baseline: the database alone, the same rows with every constraint",
        )
    ]
    click.echo("")
    table(found)
    save(verdicts_file, found)
    verdict = "PASS" if rate >= MINIMUM else "FAIL"
    print(f"{verdict}  import at least {MINIMUM:,} rows/s: {rate:,.0f} rows/s")
    if rate < MINIMUM and ROWS / floor < MINIMUM:
        print(
            f"      (the database alone stores {ROWS / floor:,.0f} rows/s on this machine: "
            "no import can reach the bar here)"
        )


if __name__ == "__main__":
    main()
