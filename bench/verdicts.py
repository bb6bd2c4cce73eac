"""One line per target: what each benchmark measured next to its baseline, the ratio and
the target, as the one table `make bench` prints (bench/all.py). Every ratio reads the
same way: ours' speed over the baseline's, measured in the same run; at least the target
is a PASS."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import click


@dataclass(frozen=True)
class Verdict:
    scenario: str
    ours: str  # as measured, with its unit
    baseline: str
    ratio: float  # ours' speed / the baseline's
    target: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target


def save(path: Path | None, verdicts: list[Verdict]) -> None:
    """Add these to the file `--verdicts` names (bench/all.py collects it)."""
    if path is None:
        return
    kept = json.loads(path.read_text()) if path.exists() and path.read_text() else []
    path.write_text(json.dumps(kept + [asdict(v) for v in verdicts]))


def load(path: Path) -> list[Verdict]:
    return [Verdict(**row) for row in json.loads(path.read_text() or "[]")]


def table(verdicts: list[Verdict]) -> None:
    width = max([len(v.scenario) for v in verdicts] + [8]) + 2
    click.echo(f"{'scenario':<{width}}{'ours':<22}{'baseline':<22}{'ratio':<8}{'target':<8}verdict")
    for v in verdicts:
        line = (
            f"{v.scenario:<{width}}{v.ours:<22}{v.baseline:<22}{f'{v.ratio:.2f}x':<8}"
            f"{f'{v.target:.2f}x':<8}{'PASS' if v.passed else 'FAIL'}"
        )
        click.echo(line + (f"   ({v.note})" if v.note else ""))


VERDICTS_OPTION = click.option(
    "--verdicts",
    "verdicts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also add this run's verdicts to this JSON file (for `make bench`'s table).",
)
