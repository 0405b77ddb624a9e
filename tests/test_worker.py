"""The worker daemon end to end: a real `outbox run` process, real PostgreSQL, a real HTTP receiver."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import psycopg
import pytest

import outbox
from outbox._sql import query
from tests.support import (
    Answer,
    Received,
    Receiver,
    WorkerFactory,
    attempts,
    count_delivered,
    deliveries,
    enqueue,
    subscribe,
    wait_until,
    zaak_event,
)


def scripted(answers: dict[int, Answer], default: Answer = (204, {}, 0.0)) -> Callable[[int, Received], Answer]:
    return lambda n, _: answers.get(n, default)


def test_committed_events_arrive_rolled_back_ones_do_not(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscribe(database_url, receiver.url, auth="Bearer s3cret-token-value")
    worker = start_worker()
    worker.wait_logged("worker started")
    kept = [zaak_event(str(uuid.uuid4()), n) for n in range(20)]
    with psycopg.connect(database_url) as conn:
        for n, event in enumerate(kept):
            outbox.enqueue(conn, event)
            conn.commit()
            outbox.enqueue(conn, zaak_event(f"rolled-back-{n}"))
            conn.rollback()
    wait_until(lambda: len(receiver.received) >= 20, message="20 deliveries")
    assert sorted(receiver.ids()) == sorted(e.id for e in kept)
    first = receiver.received[0]
    assert first.headers["Content-Type"] == "application/cloudevents+json"
    assert first.headers["Authorization"] == "Bearer s3cret-token-value"
    assert outbox.CloudEvent.from_dict(first.event) in kept  # the JSON event format, as stored
    wait_until(lambda: count_delivered(database_url) == 20, message="recorded as delivered")
    rows = deliveries(database_url)
    assert {r["status"] for r in rows} == {"delivered"}
    assert all(r["last_status_code"] == 204 and r["delivered_at"] and r["attempts"] == 1 for r in rows)
    tries = attempts(database_url)
    assert len(tries) == 20 and all(t["status_code"] == 204 and t["duration_ms"] >= 0 for t in tries)
    assert worker.terminate() == 0
    logged = worker.log_path.read_text()
    assert "s3cret-token-value" not in logged


def test_only_matching_active_subscriptions_get_deliveries(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    wanted = subscribe(database_url, receiver.url + "/zaken", types=["nl.overheid.zaken.*"])
    subscribe(database_url, receiver.url + "/besluiten", types=["nl.overheid.besluiten.*"])
    start_worker()
    enqueue(database_url, [zaak_event("z1"), zaak_event("z2")])
    wait_until(lambda: count_delivered(database_url) == 2, message="two deliveries")
    assert {r["subscription_id"] for r in deliveries(database_url)} == {uuid.UUID(wanted)}
    assert {r.path for r in receiver.received} == {"/hook/zaken"}


def test_500_is_retried_with_backoff_then_delivered(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = scripted({0: (500, {}, 0.0), 1: (503, {}, 0.0)})
    subscribe(database_url, receiver.url)
    start_worker()
    enqueue(database_url, [zaak_event("z1")])
    wait_until(lambda: count_delivered(database_url) == 1, message="delivered after retries")
    [row] = deliveries(database_url)
    assert row["attempts"] == 3
    assert [t["status_code"] for t in attempts(database_url)] == [500, 503, 204]
    assert len({r.event["id"] for r in receiver.received}) == 1


def test_retries_exhausted_fail_with_the_last_error(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = lambda n, r: (502, {}, 0.0)
    subscribe(database_url, receiver.url)
    worker = start_worker()
    enqueue(database_url, [zaak_event("z1")])
    wait_until(lambda: [r["status"] for r in deliveries(database_url)] == ["failed"], message="failed")
    [row] = deliveries(database_url)
    assert row["attempts"] == 4  # OUTBOX_RETRY_MAX_ATTEMPTS in tests
    assert row["last_status_code"] == 502
    assert "gave up after 4 attempts" in row["last_error"]
    assert len(receiver.received) == 4
    failed = worker.wait_logged("delivery failed")
    assert failed["delivery"] == row["id"]


def test_415_fails_at_once(database_url: str, receiver: Receiver, start_worker: WorkerFactory) -> None:
    receiver.answer = lambda n, r: (415, {}, 0.0)
    subscribe(database_url, receiver.url)
    start_worker()
    enqueue(database_url, [zaak_event("z1")])
    wait_until(lambda: [r["status"] for r in deliveries(database_url)] == ["failed"], message="failed")
    [row] = deliveries(database_url)
    assert row["attempts"] == 1
    assert "415" in row["last_error"]
    assert len(receiver.received) == 1


def test_410_pauses_the_subscription_and_its_deliveries_wait(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = lambda n, r: (410, {}, 0.0)
    sub = subscribe(database_url, receiver.url)
    # Nothing here waits on a lease or a timeout, so neither may decide the outcome: with FAST's 3 s
    # lease and 1 s timeout a starved machine turned a slow 410 into a timeout (retried: more than three
    # requests, or failed after four), or let a lease expire mid-flight; the claim takes nothing of a
    # paused subscription, so that row stayed "delivering" and `settled` never came.
    worker = start_worker({"OUTBOX_LEASE_SECONDS": "60", "OUTBOX_REQUEST_TIMEOUT": "20"})
    enqueue(database_url, [zaak_event("z1"), zaak_event("z2"), zaak_event("z3")])

    def paused() -> tuple[str, str] | None:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT status, paused_reason FROM outbox.subscriptions WHERE id = %s", (sub,)
            ).fetchone()
        return row if row is not None and row[0] == "paused" else None

    status = wait_until(paused, message="the subscription paused")
    assert "410" in status[1]
    assert worker.wait_logged("subscription paused: 410 Gone")["subscription"] == sub

    # The pause is logged when the first 410 is written; deliveries claimed before it may still be in
    # flight, or answered and not yet written: they are "delivering" until their 410 is recorded too.
    def settled() -> list[dict[str, Any]] | None:
        rows = deliveries(database_url)
        return rows if len(rows) == 3 and all(r["status"] != "delivering" for r in rows) else None

    rows = wait_until(settled, message="no delivery in flight")
    assert {r["status"] for r in rows} == {"pending"}, "nothing lost, nothing failed: they wait"
    sent = len(receiver.received)
    assert 1 <= sent <= 3
    # Resumed (and the receiver back), they go out.
    receiver.answer = lambda n, r: (204, {}, 0.0)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE outbox.subscriptions SET status = 'active', paused_reason = NULL WHERE id = %s", (sub,))
    wait_until(lambda: count_delivered(database_url) == 3, message="delivered after resume")


def test_a_claim_takes_nothing_of_a_subscription_paused_after_the_worker_listed_it(database_url: str) -> None:
    # The worker reads the active subscriptions, then claims for them in a later statement of the same
    # (read committed) transaction: a pause committed in between, such as a 410 recorded meanwhile with its
    # delivery back to pending, must hold for that claim, or the paused target gets a request.
    sub = uuid.UUID(subscribe(database_url, "https://hook.example.nl/x"))
    enqueue(database_url, [zaak_event("due"), zaak_event("lease-expired")])
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT position, enqueued_at FROM outbox.events ORDER BY position").fetchall()
        conn.execute(
            query("insert_deliveries", "outbox"),
            ([r[0] for r in rows], [r[1] for r in rows], [sub, sub], ["due", "lease-expired"]),
        )
        conn.execute(
            "UPDATE outbox.deliveries SET status = 'delivering', claim_token = gen_random_uuid(), "
            "leased_until = now() - interval '1 second' WHERE ordering_key = 'lease-expired'"
        )

        def claim() -> list[str]:
            params = {"subscriptions": [sub], "caps": [10], "units": [1], "rated": [False], "limit": 10,
                      "token": uuid.uuid4(), "lease": 60.0, "max_requests": [10], "adaptive": False,
                      "initial": 4.0}  # fmt: skip
            with conn.transaction(force_rollback=True):
                return sorted(row[4] for row in conn.execute(query("claim", "outbox"), params))

        conn.execute("UPDATE outbox.subscriptions SET status = 'paused', paused_reason = 'gone' WHERE id = %s", (sub,))
        assert claim() == []
        conn.execute("UPDATE outbox.subscriptions SET status = 'active', paused_reason = NULL WHERE id = %s", (sub,))
        assert claim() == ["due", "lease-expired"]


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_429_waits_for_retry_after(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory, form: str
) -> None:
    def answer(n: int, r: Received) -> Answer:
        if n > 0:
            return (204, {}, 0.0)
        when = "2" if form == "seconds" else format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
        return (429, {"Retry-After": when}, 0.0)

    receiver.answer = answer
    subscribe(database_url, receiver.url)
    start_worker()
    enqueue(database_url, [zaak_event("z1")])
    wait_until(lambda: count_delivered(database_url) == 1, timeout=15, message="delivered after Retry-After")
    first, second = receiver.received[0], receiver.received[1]
    waited = second.arrived - first.arrived
    assert waited >= 1.9, f"retried after {waited:.2f}s, before Retry-After"
    assert waited < 6
    assert [t["status_code"] for t in attempts(database_url)] == [429, 204]


def test_429_retry_after_is_capped(database_url: str, receiver: Receiver, start_worker: WorkerFactory) -> None:
    receiver.answer = scripted({0: (429, {"Retry-After": "86400"}, 0.0)})
    subscribe(database_url, receiver.url)
    start_worker({"OUTBOX_RETRY_AFTER_MAX": "1"})
    enqueue(database_url, [zaak_event("z1")])
    wait_until(lambda: count_delivered(database_url) == 1, timeout=10, message="delivered despite a day's Retry-After")


def test_timeouts_redirects_and_refused_connections_are_retried(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = scripted({0: (204, {}, 2.5), 1: (302, {"Location": "https://example.org/"}, 0.0)})
    subscribe(database_url, receiver.url)
    subscribe(database_url, "http://127.0.0.1:9/nobody-listens")
    start_worker({"OUTBOX_RETRY_MAX_ATTEMPTS": "3"})
    enqueue(database_url, [zaak_event("z1")])
    wait_until(lambda: {r["status"] for r in deliveries(database_url)} == {"delivered", "failed"}, message="outcomes")
    errors = [(t["status_code"], t["error"]) for t in attempts(database_url)]
    assert (None, "timeout") in errors
    assert (302, None) in errors
    assert any(code is None and error and error.startswith("ConnectError") for code, error in errors)
    assert all(r.path == "/hook" for r in receiver.received), "the redirect was not followed"


def test_per_key_order_holds_under_retries(database_url: str, receiver: Receiver, start_worker: WorkerFactory) -> None:
    # Every third request fails: retries must not let a later event of the same Zaak overtake.
    receiver.answer = lambda n, r: (500, {}, 0.0) if n % 3 == 0 else (204, {}, 0.0)
    subscribe(database_url, receiver.url)
    start_worker({"OUTBOX_RETRY_MAX_ATTEMPTS": "20"})
    zaken = [str(uuid.uuid4()) for _ in range(4)]
    events = [zaak_event(zaken[i % 4], n=i) for i in range(40)]
    enqueue(database_url, events)
    wait_until(lambda: count_delivered(database_url) == 40, timeout=30, message="all delivered")
    _assert_order_per_subject(receiver, events)


def _assert_order_per_subject(receiver: Receiver, events: list[outbox.CloudEvent]) -> None:
    """Per subject, every request is for the oldest event not yet answered 2xx: a later event is not
    even attempted while an earlier one is pending or retrying."""
    queues: dict[str, list[str]] = {}
    for event in events:
        assert event.subject is not None
        queues.setdefault(event.subject, []).append(event.id)
    for number, item in enumerate(receiver.received):
        subject, event_id = item.event["subject"], item.event["id"]
        queue = queues[subject]
        assert queue and queue[0] == event_id, f"request {number}: {event_id} overtook {queue[:1]} of {subject}"
        if receiver.answer(number, item)[0] == 204:
            queue.pop(0)
    assert all(not q for q in queues.values())


def test_two_workers_deliver_2000_events_exactly_once_in_order(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscribe(database_url, receiver.url)
    zaken = [str(uuid.uuid4()) for _ in range(50)]
    events = [zaak_event(zaken[i % 50], n=i) for i in range(2000)]
    enqueue(database_url, events)
    first, second = start_worker(), start_worker()
    wait_until(lambda: count_delivered(database_url) == 2000, timeout=60, message="2000 delivered")
    ids = receiver.ids()
    assert len(ids) == 2000
    assert sorted(ids) == sorted(e.id for e in events), "each event exactly once"
    rows = deliveries(database_url)
    assert len(rows) == 2000 and all(r["attempts"] == 1 for r in rows)
    position = {event_id: i for i, event_id in enumerate(ids)}
    for zaak in zaken:
        mine = [position[e.id] for e in events if e.subject == zaak]
        assert mine == sorted(mine), "per-key order across two workers"
    assert first.terminate() == 0
    assert second.terminate() == 0
    assert sum(w.logs()[-1].get("delivered", 0) for w in (first, second)) == 2000


def test_sigkill_mid_delivery_loses_nothing(database_url: str, receiver: Receiver, start_worker: WorkerFactory) -> None:
    # Slow answers so deliveries are in flight when the worker dies.
    receiver.answer = lambda n, r: (204, {}, 0.5)
    subscribe(database_url, receiver.url)
    events = [zaak_event(str(uuid.uuid4()), n) for n in range(30)]
    enqueue(database_url, events)
    doomed = start_worker()
    wait_until(lambda: len(receiver.received) >= 5, message="deliveries in flight")
    doomed.kill()
    in_flight = [r for r in deliveries(database_url) if r["status"] == "delivering"]
    assert in_flight, "the kill should leave claimed deliveries behind"
    receiver.answer = lambda n, r: (204, {}, 0.0)
    start_worker()  # takes over once the leases (3 s in tests) expire
    wait_until(lambda: count_delivered(database_url) == 30, timeout=30, message="all delivered after the kill")
    assert set(receiver.ids()) == {e.id for e in events}, "nothing lost (repeats allowed: at least once)"


def test_sigterm_exits_0_within_the_grace_period_and_releases_claims(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = lambda n, r: (204, {}, 0.8)
    subscribe(database_url, receiver.url)
    enqueue(database_url, [zaak_event(str(uuid.uuid4()), n) for n in range(200)])
    worker = start_worker({"OUTBOX_SHUTDOWN_GRACE": "2", "OUTBOX_REQUEST_TIMEOUT": "1"})
    wait_until(lambda: len(receiver.received) >= 10, message="deliveries in flight")
    began = time.monotonic()
    assert worker.terminate(timeout=10) == 0
    assert time.monotonic() - began < 5
    rows = deliveries(database_url)
    assert not [r for r in rows if r["status"] == "delivering"], "in-flight work finished or released"
    assert any(e.get("event") == "worker stopped" for e in worker.logs())


def test_bad_configuration_stops_at_start_with_one_line_per_fault(
    database_url: str, start_worker: WorkerFactory
) -> None:
    worker = start_worker({"OUTBOX_CONCURRENCY": "0", "OUTBOX_POLL_INTERVAL": "soon"})
    assert worker.wait(15) == 2
    lines = worker.log_path.read_text().strip().splitlines()
    assert lines == [
        "error: OUTBOX_CONCURRENCY: Input should be greater than or equal to 1 (got '0')",
        "error: OUTBOX_POLL_INTERVAL: Input should be a valid number, unable to parse string as a number (got 'soon')",
    ]


def test_flags_override_the_environment(database_url: str, start_worker: WorkerFactory) -> None:
    worker = start_worker({"OUTBOX_CONCURRENCY": "7"}, "--concurrency", "3", "--batch-size", "9")
    started = worker.wait_logged("worker started")
    assert (started["concurrency"], started["batch_size"]) == (3, 9)


def test_a_long_blocked_chain_does_not_hold_back_other_keys(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = lambda n, r: (500, {}, 0.0) if r.event["subject"] == "stuck" else (204, {}, 0.0)
    subscribe(database_url, receiver.url)
    stuck = [zaak_event("stuck", n) for n in range(300)]
    others = [zaak_event(str(uuid.uuid4()), n) for n in range(20)]
    enqueue(database_url, stuck + others)
    start_worker({"OUTBOX_RETRY_BASE_DELAY": "30", "OUTBOX_RETRY_MAX_DELAY": "60", "OUTBOX_RETRY_MAX_ATTEMPTS": "50"})
    wait_until(lambda: count_delivered(database_url) == 20, timeout=20, message="the other keys delivered")
    by_status: dict[str, int] = {}
    for row in deliveries(database_url):
        if row["subject"] == "stuck":
            by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    assert by_status == {"pending": 1, "blocked": 299}, "one head retrying, the rest waiting behind it"
    assert sum(1 for r in receiver.received if r.event["subject"] == "stuck") >= 1


def test_extension_named_self_from_the_sql_function_is_delivered(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscribe(database_url, receiver.url)
    start_worker()
    with psycopg.connect(database_url) as conn:
        conn.execute("""SELECT outbox.enqueue('{"type": "t", "source": "s", "self": "x", "subject": "z"}')""")
    wait_until(lambda: count_delivered(database_url) == 1, message="delivered")
    assert receiver.events()[0]["self"] == "x"
