"""`make bench`: every benchmark, then one table of every target.

Each benchmark runs as its own process (each makes and drops its own throw-away
database) and prints its own details; each adds its verdicts to a file, read back here
into one table: scenario, ours, baseline, ratio, target, PASS/FAIL. Verdicts are
printed, not enforced; the exit status is 1 only when a benchmark found something wrong
(a wrong number, a server that did not answer).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import click

from bench.verdicts import load, table

BENCHMARKS = (
    ("the HTTP API next to a bare Flask app", "bench.http"),
    ("the CSV import next to the database alone", "bench.imports"),
    ("the situation summary next to a hand-written query", "bench.summary"),
)


@click.command()
@click.option("--quick", is_flag=True, help="The HTTP and summary benchmarks' quick runs.")
def main(quick: bool) -> None:
    """Run every benchmark and print one table of their verdicts."""
    failed = []
    with tempfile.TemporaryDirectory(prefix="nt-bench-") as folder:
        collected = Path(folder) / "verdicts.json"
        for title, module in BENCHMARKS:
            click.echo(f"\n=== {title} (python -m {module}) ===\n")
            extra = ["--quick"] if quick and module != "bench.imports" else []
            command = [sys.executable, "-m", module, "--verdicts", str(collected), *extra]
            if subprocess.run(command).returncode != 0:
                failed.append(module)
        click.echo("\n=== every target, ours next to a baseline measured in the same run ===\n")
        table(load(collected) if collected.exists() else [])
    if failed:
        click.echo(f"\nsomething was wrong in: {', '.join(failed)} (see above)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
