"""A load that streams what the field and the analysts send while a fault happens.

- coordinators: head counts one by one (`POST /reports`, Idempotency-Key) and in small
  batches (`POST /reports/batch`, a client_id per item), each resent with the same key
  after a timeout, a dropped connection, a 5xx, a 409 or a 429, as a phone on a bad
  network does; now and then a report already answered is resent on purpose;
- an analyst asking for summaries (`POST /summaries`);
- readers polling the latest summary with `If-None-Match`;
- an admin asking for the subscription's report to be sent now (`POST .../send`).

Everything answered is recorded for `reconcile()`: which key got which report, which
summaries and deliveries were accepted, every status seen and how long it took.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.faults.stack import Stack

# What a client treats as "try again with the same key".
AGAIN = {409, 429, 500, 502, 503, 504}
GIVE_UP_AFTER = 120  # seconds one send may keep resending


@dataclass
class Answered:
    report_id: int
    total: int
    token_id: int


@dataclass
class Figures:
    """What the clients saw."""

    statuses: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    dropped: int = 0  # connection refused or reset, no answer
    resends: int = 0  # a key sent again after no final answer
    replays_checked: int = 0  # an answered key resent on purpose, answered the same
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, what: str) -> None:
        with self.lock:
            self.statuses[what] += 1

    def count(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3) if ordered else 0

        return {
            "statuses": dict(sorted(self.statuses.items())),
            "timeouts": self.timeouts,
            "dropped": self.dropped,
            "resends": self.resends,
            "replays_checked": self.replays_checked,
            "requests": len(ordered),
            "p50_s": pct(0.5),
            "p99_s": pct(0.99),
            "max_s": round(ordered[-1], 3) if ordered else 0,
        }


class Load:
    def __init__(
        self,
        stack: Stack,
        *,
        coordinators: int | None = None,
        readers: int = 2,
        pause: float = 0.05,
        summary_every: float = 2.0,
        send_every: float | None = 5.0,
        timeout: float = 3.0,
        seed: int = 12,
    ) -> None:
        self.stack = stack
        self.pause = pause
        self.summary_every = summary_every
        self.send_every = send_every
        self.timeout = timeout
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.figures = Figures()
        self.lock = threading.Lock()
        # key -> what the server answered for it; keys sent but never answered.
        self.answered: dict[str, Answered] = {}
        self.sent: set[str] = set()
        self.unanswered: set[str] = set()
        self.refused: list[tuple[str, int, Any]] = []  # a final 4xx: a harness or app bug
        self.summaries: set[str] = set()  # ids of 202-answered summary requests
        self.deliveries: set[str] = set()  # ids of 202-answered "send now"
        self.seen_etags: dict[str, set[str]] = {}  # summary id -> ETags a reader got
        self.emails_before = len(stack.smtp.received)
        # What this load answers for begins now (a module's loads follow one another).
        self.began = datetime.now(UTC)
        tokens = stack.tokens
        assert tokens is not None
        chosen = tokens.coordinators[: coordinators or len(tokens.coordinators)]
        self.threads = [
            threading.Thread(target=self._coordinator, args=(c, i), daemon=True)
            for i, c in enumerate(chosen)
        ]
        self.threads += [
            threading.Thread(target=self._reader, args=(i,), daemon=True) for i in range(readers)
        ]
        self.threads.append(threading.Thread(target=self._analyst, daemon=True))
        if send_every and stack.subscription_id:
            self.threads.append(threading.Thread(target=self._admin, daemon=True))

    # -- running ------------------------------------------------------------------------

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout: float = GIVE_UP_AFTER) -> None:
        """Stop sending new work; wait for the sends in flight to get their answers."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=timeout)
        assert not any(t.is_alive() for t in self.threads), "a client is still waiting"

    def _web(self) -> str:
        return self.random.choice(list(self.stack.web_urls.values()))

    def _request(
        self, method: str, path: str, secret: str, body: Any = None, headers: dict | None = None
    ) -> tuple[int | None, Any, dict[str, str]]:
        """One HTTP exchange: (status, JSON body or None, headers); status None: no answer."""
        request = urllib.request.Request(
            self._web() + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {secret}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
            method=method,
        )
        began = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
                status, answer_headers = answer.status, dict(answer.headers)
        except urllib.error.HTTPError as refused:
            with refused:
                raw = refused.read()
                status, answer_headers = refused.code, dict(refused.headers)
        except TimeoutError:
            self.figures.count("timeouts")
            return None, None, {}
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
            timed_out = isinstance(getattr(exc, "reason", None), TimeoutError)
            self.figures.count("timeouts" if timed_out else "dropped")
            return None, None, {}
        finally:
            with self.figures.lock:
                self.figures.latencies.append(time.monotonic() - began)
        label = "/".join("…" if len(part) > 30 else part for part in path.split("/")[3:])
        self.figures.saw(f"{method} {label} {status}")
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            document = None
        return status, document, answer_headers

    def _until_final(
        self, method: str, path: str, secret: str, body: Any, headers: dict | None = None
    ) -> tuple[int | None, Any]:
        """Send, and resend the very same request until a final answer (or give up)."""
        deadline = time.monotonic() + GIVE_UP_AFTER
        while time.monotonic() < deadline:
            status, document, answer_headers = self._request(method, path, secret, body, headers)
            if status is not None and status not in AGAIN:
                return status, document
            self.figures.count("resends")
            wait = float(answer_headers.get("Retry-After", "0.5") or 0.5)
            time.sleep(min(wait, 5.0))
        return None, None

    # -- the clients --------------------------------------------------------------------

    def _coordinator(self, coordinator: tuple[int, str, str], index: int) -> None:
        token_id, secret, site_id = coordinator
        groups = self.stack.groups[site_id]
        chooser = random.Random(index)
        while not self.stopping.is_set():
            batch = chooser.random() < 0.25
            reports = [
                {
                    "group_id": chooser.choice(groups),
                    "observed_at": (
                        datetime.now(UTC) - timedelta(seconds=chooser.randint(5, 600))
                    ).isoformat(),
                    "total": chooser.randint(1, 900),
                    "client_id": str(uuid.uuid4()),
                }
                for _ in range(chooser.randint(2, 6) if batch else 1)
            ]
            with self.lock:
                self.sent.update(r["client_id"] for r in reports)
                self.stack.keys_sent.update(r["client_id"] for r in reports)
            if batch:
                self._send_batch(token_id, secret, reports)
            else:
                self._send_one(token_id, secret, reports[0])
            time.sleep(self.pause)

    def _send_one(self, token_id: int, secret: str, report: dict[str, Any]) -> None:
        key = report["client_id"]
        headers = {"Idempotency-Key": key}
        status, document = self._until_final("POST", "/api/v1/reports", secret, report, headers)
        if status in (200, 201):
            self._record(key, document, token_id)
            if int(key[-1], 16) < 2:  # one in eight: the phone resends an answered one
                again, replay = self._until_final(
                    "POST", "/api/v1/reports", secret, report, headers
                )
                with self.lock:
                    if again == 200 and replay["id"] == document["id"]:
                        self.figures.replays_checked += 1
                    else:
                        self.refused.append((key, again or 0, replay))
        elif status is None:
            with self.lock:
                self.unanswered.add(key)
        else:
            with self.lock:
                self.refused.append((key, status, document))

    def _send_batch(self, token_id: int, secret: str, reports: list[dict[str, Any]]) -> None:
        """Send the batch; resend the items answered 409 (their first send is still in
        flight) or 429 until each has a final answer, as an offline queue syncs."""
        deadline = time.monotonic() + GIVE_UP_AFTER
        while reports and time.monotonic() < deadline:
            status, document = self._until_final(
                "POST", "/api/v1/reports/batch", secret, {"reports": reports}
            )
            if status != 200:
                with self.lock:
                    if status is None:
                        self.unanswered.update(r["client_id"] for r in reports)
                    else:
                        self.refused.append((reports[0]["client_id"], status, document))
                return
            again = []
            for item, report in zip(document["results"], reports, strict=True):
                if item["status"] in (200, 201):
                    self._record(report["client_id"], item["report"], token_id)
                elif item["status"] in AGAIN:
                    again.append(report)
                else:
                    with self.lock:
                        self.refused.append((report["client_id"], item["status"], item))
            if again:
                self.figures.count("resends")
                time.sleep(0.5)
            reports = again
        with self.lock:
            self.unanswered.update(r["client_id"] for r in reports)

    def _record(self, key: str, report: dict[str, Any], token_id: int) -> None:
        with self.lock:
            self.answered[key] = Answered(report["id"], report["total"], token_id)

    def _analyst(self) -> None:
        secret = self.stack.tokens.admin  # type: ignore[union-attr]
        while not self.stopping.wait(self.summary_every):
            status, document = self._until_final("POST", "/api/v1/summaries", secret, {})
            if status == 202:
                with self.lock:
                    self.summaries.add(document["id"])

    def _admin(self) -> None:
        secret = self.stack.tokens.admin  # type: ignore[union-attr]
        path = f"/api/v1/subscriptions/{self.stack.subscription_id}/send"
        while not self.stopping.wait(self.send_every):
            status, document = self._until_final("POST", path, secret, {})
            if status == 202:
                with self.lock:
                    self.deliveries.add(document["id"])

    def _reader(self, index: int) -> None:
        secret = self.stack.tokens.reader  # type: ignore[union-attr]
        etag: str | None = None
        while not self.stopping.wait(0.2 + index * 0.1):
            headers = {"If-None-Match": etag} if etag else {}
            status, document, answer_headers = self._request(
                "GET", "/api/v1/summaries/latest", secret, headers=headers
            )
            if status == 200 and document:
                etag = answer_headers.get("ETag")
                with self.lock:
                    self.seen_etags.setdefault(document["id"], set()).add(etag or "")
