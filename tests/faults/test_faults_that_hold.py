"""Faults the service already survives, each proven on the real parts while reports,
summary requests, polls and emails stream, then reconciled (tests/faults/reconcile.py).

One stack serves the module (its start is the slow part); each test breaks something,
puts it back, and reconciles what it sent. NT_FAULTS_LONG=1 runs each fault longer and
more often (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.extensions import db
from service.models import Delivery
from tests.backends import on_services
from tests.faults.load import Load
from tests.faults.reconcile import reconcile, server_errors
from tests.faults.stack import Stack, children, running_stack, wait_until

pytestmark = pytest.mark.skipif(
    not on_services(),
    reason="runs PostgreSQL + Redis + workers as production does; in the PostgreSQL + Redis pass",
)

LONG = os.environ.get("NT_FAULTS_LONG") == "1"
# How many times a fault is repeated, and how long the load runs around each.
REPEAT = 5 if LONG else 1
SPELL = 10.0 if LONG else 1.5
# Where each test's figures go, for docs/reliability.md.
FIGURES = Path(__file__).resolve().parents[2] / "test-output" / "faults"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Redis keeps its append-only file, as docker-compose.yml runs it.
    with running_stack(tmp_path_factory.mktemp("stack"), redis_persistence=True) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _revived(stack: Stack) -> Iterator[None]:
    """A test whose fault killed a part for good fails; the next one starts it again."""
    stack.revive()
    yield


def record(name: str, figures: dict) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))


def under_load(stack: Stack, fault, name: str) -> dict:
    """Stream the load, apply `fault()` in the middle of it, stop, reconcile."""
    load = Load(stack).start()
    time.sleep(SPELL)
    began = time.monotonic()
    fault(load)
    time.sleep(SPELL)
    load.stop()
    figures = reconcile(stack, load)
    # A fault that holds costs the users nothing but a resend: never a 5xx.
    assert not server_errors(load), server_errors(load)
    figures["fault_seconds"] = round(time.monotonic() - began, 1)
    record(name, figures)
    stack.check()
    return figures


def mid_build(stack: Stack, load: Load, kill) -> None:
    """Catch a summary build mid-task (held on a lock), then `kill()` its worker."""
    with stack.builds_held():
        status, body = stack.call("POST", "/api/v1/summaries", stack.tokens.admin, {})
        assert status == 202, body
        load.summaries.add(body["id"])
        wait_until(stack.build_waiting, 30, "no build reached the held lock")
        kill()


def test_pool_children_sigkilled_mid_task_lose_nothing(stack: Stack):
    def fault(load: Load) -> None:
        killed: list[int] = []
        for _ in range(REPEAT):
            mid_build(stack, load, lambda: killed.extend(stack.kill_pool("worker-1")))
            # The pool replaces its children; wait for that before the next kill.
            wait_until(
                lambda: len(set(children(stack.parts["worker-1"].pid)) - set(killed)) == 2,
                30,
                "the pool did not replace its children",
            )
            time.sleep(SPELL / 2)

    under_load(stack, fault, "pool_child_sigkill")
    log = stack.log("worker-1")
    assert "Process 'ForkPoolWorker" in log and "exited with 'signal 9 (SIGKILL)'" in log


def test_a_whole_worker_sigkilled_then_restarted_loses_nothing(stack: Stack):
    def fault(load: Load) -> None:
        for _ in range(REPEAT):
            mid_build(stack, load, lambda: stack.stop("worker-1", signal.SIGKILL))
            time.sleep(1)
            stack.start_worker("worker-1")
            time.sleep(SPELL / 2)

    figures = under_load(stack, fault, "worker_sigkill")
    assert figures["reports"]["answered_2xx"] > 0


KOMBU_DIES_ON_REDIS_RESTART = (
    "DEFECT seen (kombu 5.7.0, Redis transport): Redis went away while the worker held an "
    "unacknowledged task; closing the channel restores it through a connection already "
    "released (`_connparams`: 'NoneType' object has no attribute 'hostname'), and the worker "
    "logged 'Unrecoverable error' and exited. Restarted (as compose's restart policy does), "
    "nothing was lost: the reconciliation above passed. See docs/reliability.md."
)
KOMBU_TRACE = ("Unrecoverable error: AttributeError", "object has no attribute 'hostname'")


def test_redis_restarted_loses_nothing(stack: Stack):
    died = []

    def fault(load: Load) -> None:
        for i in range(REPEAT + 1):
            # Once with a build in the worker's hands (unacknowledged), once as it comes.
            if i % 2 == 0:
                mid_build(stack, load, lambda: stack.redis.restart(down_for=SPELL))
            else:
                stack.redis.restart(down_for=SPELL)
            time.sleep(SPELL)
            if not stack.parts["worker-1"].alive():
                # Only the known defect may take the worker down; anything else fails here.
                log = stack.log("worker-1")
                assert all(part in log for part in KOMBU_TRACE), log[-3000:]
                died.append(stack.revive())

    under_load(stack, fault, "redis_restart")
    if died:
        pytest.xfail(KOMBU_DIES_ON_REDIS_RESTART)


def test_smtp_down_then_back_sends_each_email_once(stack: Stack):
    def fault(load: Load) -> None:
        stack.smtp.stop()
        try:
            # An email asked for while SMTP is down: its first try fails, and it waits.
            path = f"/api/v1/subscriptions/{stack.subscription_id}/send"
            status, body = stack.call("POST", path, stack.tokens.admin, {})
            assert status == 202, body
            load.deliveries.add(body["id"])
            wait_until(lambda: delivery_state(stack, body["id"]) == "retrying", 30, "no retry")
            # Long form: 30 s, within the six tries' 62 s (DELIVERY_RETRY_SECONDS=1).
            time.sleep(30 if LONG else SPELL)
        finally:
            stack.smtp.start()

    figures = under_load(stack, fault, "smtp_down")
    assert figures["emails"]["manual_202"] > 0


def delivery_state(stack: Stack, delivery_id: str) -> str:
    return stack.read(lambda: db.session.get_one(Delivery, uuid.UUID(delivery_id)).status.value)


@pytest.mark.skipif(
    not LONG, reason="short form: bench/soak.py's two-machines run (two beats) in test_soak.py"
)
def test_two_schedulers_at_once_make_each_period_and_email_once(stack: Stack):
    def fault(_load: Load) -> None:
        stack.start_beat("beat-2")
        # Long enough for both to fire the tick many times and to cross minute
        # boundaries where both dispatch the subscription.
        time.sleep(90)
        stack.stop("beat-2")

    under_load(stack, fault, "two_schedulers")
    assert stack.log("beat-2").count("Sending due task summaries.tick") >= 2


def test_gunicorn_worker_sigkilled_mid_request_loses_nothing(stack: Stack):
    def fault(_load: Load) -> None:
        for _ in range(REPEAT):
            # Reports caught mid-request (waiting on a held lock), then the gunicorn
            # worker serving them killed.
            with stack.builds_held():
                wait_until(stack.request_waiting, 30, "no request waits")
                stack.kill_web_worker("web-1")
            time.sleep(SPELL)

    figures = under_load(stack, fault, "gunicorn_worker_sigkill")
    assert "was sent SIGKILL" in stack.log("web-1")
    # The clients saw their requests dropped, resent them, and each got its one report.
    assert figures["load"]["dropped"] >= 1 and figures["load"]["resends"] >= 1
    assert figures["reports"]["answered_2xx"] > 0
