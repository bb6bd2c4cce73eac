"""A bounded soak: the whole service under a steady field load, then reconciled.

    python -m bench.soak                     # 10 minutes, one machine
    python -m bench.soak --machines 2        # two gunicorns, two workers, two beats
    python -m bench.soak --duration 60 --json soak.json

The production shape runs on loopback (tests/faults/stack.py: gunicorn, celery worker
and beat as `needs-tracker serve` starts them, a Redis and an SMTP server of its own, a
fresh database on the PostgreSQL at TEST_POSTGRES_URL, by default 127.0.0.1:5432).
Coordinators submit head counts one by one and in batches, resending after timeouts
and now and then on purpose; readers poll the latest summary with If-None-Match; an
analyst asks for a summary every minute, and the schedule makes one a minute
(SUMMARY_INTERVAL_MINUTES=1); a subscription gets an email every two minutes and an
admin asks for one now and then. The resident memory of every gunicorn, worker and beat
(children included) is sampled throughout.

At the end, the reconciliation of the fault tests (tests/faults/reconcile.py): every
report answered 2xx stored once, every period built once, every email sent once. Memory
is "flat" when each part's median RSS over the last third of the run is within
`--rss-growth` (default 20%) of its median over the second third (the first is warm-up).
Exit status 1 when either fails, or when a client was answered a 5xx.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.faults.load import Load
from tests.faults.reconcile import reconcile, server_errors
from tests.faults.stack import Stack, running_stack


def sample_memory(
    stack: Stack, stop: threading.Event, every: float
) -> tuple[dict[str, list[int]], threading.Thread]:
    """RSS (KiB) of each part, every `every` seconds, until `stop` is set."""
    samples: dict[str, list[int]] = {}

    def run() -> None:
        while True:
            for name, part in list(stack.parts.items()):
                if part.alive():
                    samples.setdefault(name, []).append(part.rss_kib())
            if stop.wait(every):
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return samples, thread


def memory_verdict(samples: dict[str, list[int]], allowed: float) -> dict[str, Any]:
    """Per part: MiB at start, middle and end (medians of each third), growth, flat?"""
    parts = {}
    for name, series in samples.items():
        if len(series) < 6:
            continue
        third = len(series) // 3
        middle = statistics.median(series[third : 2 * third])
        end = statistics.median(series[2 * third :])
        growth = (end - middle) / middle if middle else 0.0
        parts[name] = {
            "start_mib": round(series[0] / 1024, 1),
            "middle_mib": round(middle / 1024, 1),
            "end_mib": round(end / 1024, 1),
            "max_mib": round(max(series) / 1024, 1),
            "growth": round(growth, 3),
            "flat": growth <= allowed,
            "samples": len(series),
        }
    return parts


def soak(
    duration: float,
    folder: Path,
    *,
    machines: int = 1,
    coordinators: int = 4,
    summary_every: float = 60.0,
    send_every: float = 150.0,
    sample_every: float = 5.0,
    rss_growth: float = 0.20,
) -> dict[str, Any]:
    """Run the soak; returns the figures (raises AssertionError if reconciliation fails)."""
    timings: dict[str, float] = {}
    clock = time.monotonic()
    with running_stack(
        folder,
        webs=machines,
        workers=machines,
        beats=machines,
        coordinators=coordinators,
        redis_persistence=True,
        subscription_cron="*/2 * * * *",
    ) as stack:
        timings["start_s"] = round(time.monotonic() - clock, 1)
        stop = threading.Event()
        samples, sampler = sample_memory(stack, stop, sample_every)
        load = Load(
            stack,
            readers=2 * machines,
            pause=0.2,
            summary_every=summary_every,
            send_every=send_every,
        ).start()
        began = time.monotonic()
        while time.monotonic() - began < duration:
            stack.check()
            time.sleep(min(1.0, duration))
        load.stop()
        stop.set()
        sampler.join()
        clock = time.monotonic()
        figures = reconcile(stack, load, timeout=120)
        figures["server_errors"] = server_errors(load)
        timings["reconcile_s"] = round(time.monotonic() - clock, 1)
        stack.check()
        clock = time.monotonic()
    timings["stop_s"] = round(time.monotonic() - clock, 1)
    timings["stop_each_s"] = stack.stop_times  # type: ignore[assignment]
    figures["timings"] = timings
    figures["duration_s"] = duration
    figures["machines"] = machines
    figures["memory"] = memory_verdict(samples, rss_growth)
    figures["memory_flat"] = all(p["flat"] for p in figures["memory"].values())
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds (default 600)")
    parser.add_argument("--machines", type=int, default=1, choices=(1, 2))
    parser.add_argument("--coordinators", type=int, default=4)
    parser.add_argument("--rss-growth", type=float, default=0.20)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nt-soak-") as folder:
        try:
            figures = soak(
                args.duration,
                Path(folder),
                machines=args.machines,
                coordinators=args.coordinators,
                rss_growth=args.rss_growth,
            )
        except AssertionError as failed:
            print(f"RECONCILIATION FAILED: {failed}", file=sys.stderr)
            return 1
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    if figures["server_errors"]:
        print(f"SERVER ERRORS answered: {figures['server_errors']}", file=sys.stderr)
        return 1
    if not figures["memory_flat"]:
        print("MEMORY GREW beyond --rss-growth; see 'memory'.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
