"""The bounded soak of bench/soak.py, run for seconds, in its two-machines form: two
gunicorns, two workers and two schedulers on one PostgreSQL and one Redis, reconciled.
Its full form (10 minutes, memory flat) is in docs/reliability.md; NT_FAULTS_LONG=1
runs it here for two minutes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.soak import soak
from tests.backends import on_services

pytestmark = pytest.mark.skipif(
    not on_services(),
    reason="runs PostgreSQL + Redis + workers as production does; in the PostgreSQL + Redis pass",
)

LONG = os.environ.get("NT_FAULTS_LONG") == "1"
FIGURES = Path(__file__).resolve().parents[2] / "test-output" / "faults"


@pytest.mark.timeout(400 if LONG else 120)
def test_two_machines_soak_reconciles(tmp_path: Path):
    figures = soak(
        120 if LONG else 12,
        tmp_path,
        machines=2,
        summary_every=5,
        send_every=4,
        sample_every=1,
    )
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / "soak_two_machines.json").write_text(json.dumps(figures, indent=2, default=str))
    assert not figures["server_errors"], figures["server_errors"]
    assert figures["reports"]["answered_2xx"] > 0
    assert figures["summaries"]["requested_202"] > 0
    assert figures["emails"]["manual_202"] > 0
    # Both machines served: each gunicorn, worker and beat was sampled alive throughout.
    assert {"web-1", "web-2", "worker-1", "worker-2", "beat-1", "beat-2"} <= set(figures["memory"])
    if LONG:
        assert figures["memory_flat"], figures["memory"]
