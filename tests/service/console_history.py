"""What the console's deliveries tests share: operators signed in through the real sign-in form, and a
history made by a real worker: one subscription whose receiver fails (500 with a body) until it is
told to recover, one whose receiver accepts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from outbox import CloudEvent
from tests.support import Receiver, WorkerProcess, deliveries, enqueue, subscribe, wait_until, zaak_event
from worker.store import operators

PASSWORD = "a long enough password 42"
EXCERPT = b"kapot: zaak onbekend bij ons"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def add_operator(database_url: str, name: str, role: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        operators.add(conn, "outbox", name, role, PASSWORD)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def signed_in(base_url: str, name: str) -> httpx.Client:
    """An httpx client with the session cookie of `name`, signed in through the sign-in form."""
    client = httpx.Client(base_url=base_url, timeout=15.0)
    form = client.get("/console/sign-in")
    assert form.status_code == 200
    answer = client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(form.text), "next": "/console/", "username": name, "password": PASSWORD},
    )
    assert answer.status_code == 303, answer.text
    return client


@dataclass
class History:
    database_url: str
    bad: str  # the failing subscription's id
    good: str
    subjects: list[str]
    events: list[CloudEvent]
    bad_receiver: Receiver
    recovered: dict[str, bool] = field(default_factory=lambda: {"yes": False})
    mark: int = 0  # how many requests the bad receiver had had when it recovered

    def recover(self) -> None:
        self.mark = len(self.bad_receiver.received)
        self.recovered["yes"] = True

    def received_since_recovery(self) -> set[str]:
        return {r.event["id"] for r in list(self.bad_receiver.received)[self.mark :] if r.body}

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        return [r for r in deliveries(self.database_url) if all(r[k] == v for k, v in where.items())]

    def failed_ids(self) -> list[int]:
        return [r["id"] for r in self.rows(status="failed")]


@contextmanager
def history(database_url: str, tmp_path: Path, count: int = 5) -> Iterator[History]:
    """`count` events to both subscriptions: the good one delivers them, the bad one fails them (2
    attempts each, each answered 500 with EXCERPT); a worker keeps running for the retries."""
    recovered = {"yes": False}

    def answer(n: int, received: Any) -> tuple[int, dict[str, str], float]:
        return (204 if recovered["yes"] else 500), {}, 0.0

    failing = Receiver(answer=answer, body_for=lambda r: b"" if recovered["yes"] else EXCERPT)
    with failing.running() as bad, Receiver().running() as good:
        bad_id = subscribe(database_url, bad.url, auth="Bearer geheim-token")
        good_id = subscribe(database_url, good.url)
        subjects = [str(uuid.uuid4()) for _ in range(count)]
        events = [zaak_event(s, n) for n, s in enumerate(subjects)]
        enqueue(database_url, events)
        worker = WorkerProcess(
            database_url, tmp_path / "worker.log", {"OUTBOX_RETRY_MAX_ATTEMPTS": "2", "OUTBOX_RETRY_BASE_DELAY": "0.05"}
        )
        try:
            wait_until(
                lambda: (
                    sorted(r["status"] for r in deliveries(database_url)) == ["delivered"] * count + ["failed"] * count
                ),
                message=f"{count} delivered, {count} failed",
            )
            yield History(database_url, bad_id, good_id, subjects, events, bad, recovered)
        finally:
            worker.stop_quietly()


def delivered_to_bad(h: History, event_ids: set[str]) -> bool:
    """The recovered receiver got each of these events, and the database says so."""
    got = h.received_since_recovery()
    rows = h.rows(subscription_id=uuid.UUID(h.bad))
    done = {r["event_id"] for r in rows if r["status"] == "delivered"}
    return event_ids <= got and event_ids <= done
