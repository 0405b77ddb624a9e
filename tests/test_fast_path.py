"""The idle fast path (worker/daemon/fast_path.py): a NOTIFY that carries the event is routed, claimed
and started in one round trip, and every wrong assumption falls back to the normal path.

The path taken is read from the counters the worker logs when it stops (`fast_paths`: served in one
round trip; `fast_path_fallbacks`: refused by the database). Workers that must not look for work by
themselves in between get a long poll interval, so only NOTIFYs wake them.
"""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

import psycopg

import outbox
from outbox._operations import set_subscription_status
from tests.support import (
    Receiver,
    WorkerFactory,
    WorkerProcess,
    attempts,
    count_delivered,
    deliveries,
    subscribe,
    wait_until,
    zaak_event,
)

QUIET = {"OUTBOX_POLL_INTERVAL": "60"}  # only NOTIFYs (and finishing deliveries) wake the worker


def idle_worker(database_url: str, start_worker: WorkerFactory, env: dict[str, str] | None = None) -> WorkerProcess:
    """A worker that has read the subscriptions and registered as idle (enqueue now notifies it)."""
    worker = start_worker(env)
    worker.wait_logged("worker started")

    def registered() -> bool:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM outbox.idle_workers").fetchone()
        return bool(row and row[0])

    wait_until(registered, message="the worker registered as idle")
    return worker


def enqueue_one(database_url: str, event: outbox.CloudEvent) -> None:
    """One event in its own host transaction, through `outbox.enqueue` (`insert_event`)."""
    with psycopg.connect(database_url) as conn:
        outbox.enqueue(conn, event)


def counters(worker: WorkerProcess) -> dict[str, Any]:
    assert worker.terminate() == 0
    stopped = [line for line in worker.logs() if line.get("event") == "worker stopped"]
    assert stopped, worker.log_path.read_text()
    return stopped[-1]


def test_an_idle_worker_delivers_and_records_one_event_by_the_fast_path(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscription = subscribe(database_url, receiver.url)
    worker = idle_worker(database_url, start_worker, QUIET)
    event = zaak_event(str(uuid.uuid4()))
    enqueue_one(database_url, event)
    wait_until(lambda: count_delivered(database_url) == 1, message="recorded delivered")

    assert [e["id"] for e in receiver.events()] == [event.id]
    assert receiver.events()[0] == event.to_dict()
    [row] = deliveries(database_url)
    assert (row["event_id"], str(row["subscription_id"])) == (event.id, subscription)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 204)
    assert row["claim_token"] is None and row["leased_until"] is None
    [attempt] = attempts(database_url)
    assert (attempt["delivery_id"], attempt["status_code"], attempt["error"]) == (row["id"], 204, None)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT routed_at IS NOT NULL FROM outbox.events").fetchall() == [(True,)]
    stopped = counters(worker)
    assert (stopped["fast_paths"], stopped["fast_path_fallbacks"], stopped["delivered"]) == (1, 0, 1)


def test_a_subscription_changed_just_before_falls_back_and_routes_by_the_new_version(
    database_url: str, start_worker: WorkerFactory
) -> None:
    with Receiver().running() as first, Receiver().running() as second:
        subscribe(database_url, first.url)
        worker = idle_worker(database_url, start_worker, QUIET)
        before = zaak_event(str(uuid.uuid4()))
        enqueue_one(database_url, before)
        wait_until(lambda: count_delivered(database_url) == 1, message="the first event recorded")
        # The worker's copy of the subscriptions is now stale: it has not looked since.
        subscribe(database_url, second.url)
        after = zaak_event(str(uuid.uuid4()))
        enqueue_one(database_url, after)
        wait_until(lambda: count_delivered(database_url) == 3, message="the second event recorded twice")

        assert [e["id"] for e in first.events()] == [before.id, after.id]
        assert [e["id"] for e in second.events()] == [after.id]
    assert sorted(r["event_id"] for r in deliveries(database_url)) == sorted([before.id, after.id, after.id])
    stopped = counters(worker)
    assert stopped["fast_path_fallbacks"] == 1
    assert stopped["fast_paths"] <= 1  # the first event's (unless it arrived during the worker's last look)


def test_a_paused_subscription_is_not_routed_to_by_a_stale_view(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscription = subscribe(database_url, receiver.url)
    worker = idle_worker(database_url, start_worker, QUIET)
    with psycopg.connect(database_url) as conn:
        assert set_subscription_status(conn, "outbox", subscription, "paused", "by the test")
    enqueue_one(database_url, zaak_event(str(uuid.uuid4())))

    def routed() -> bool:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM outbox.events WHERE routed_at IS NULL").fetchone()
        return row == (0,)

    wait_until(routed, message="the event routed")
    assert deliveries(database_url) == []  # paused before the event: no delivery for it
    assert receiver.events() == []
    stopped = counters(worker)
    assert (stopped["fast_paths"], stopped["fast_path_fallbacks"]) == (0, 1)


def test_an_event_too_big_for_the_notify_payload_goes_the_normal_path(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscribe(database_url, receiver.url)
    worker = idle_worker(database_url, start_worker, QUIET)
    small = zaak_event(str(uuid.uuid4()))
    enqueue_one(database_url, small)
    wait_until(lambda: count_delivered(database_url) == 1, message="the small event recorded")
    big = outbox.CloudEvent(
        type="nl.overheid.zaken.zaak-gekoppeld",
        source="urn:nld:oin:01823288444:openklant",
        subject=str(uuid.uuid4()),
        datacontenttype="application/json",
        data={"zaak": "urn:uuid:big", "note": "x" * 9000},
    )
    assert len(big.to_json().encode()) > 8000
    enqueue_one(database_url, big)
    wait_until(lambda: count_delivered(database_url) == 2, message="the big event recorded")

    assert [e["id"] for e in receiver.events()] == [small.id, big.id]
    assert receiver.events()[1] == big.to_dict()
    stopped = counters(worker)
    # The big event's NOTIFY had no event in it: no fast path tried, nothing refused.
    assert stopped["fast_path_fallbacks"] == 0
    assert stopped["fast_paths"] <= 1


def test_an_event_behind_an_older_unrouted_one_goes_in_order(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscribe(database_url, receiver.url)
    worker = idle_worker(database_url, start_worker, QUIET)
    key = str(uuid.uuid4())
    older, newer = zaak_event(key, 1), zaak_event(key, 2)
    # Committed without waking anyone (as when no worker was idle at its commit): still unrouted.
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO outbox.events (event) VALUES (%s::json)", (older.to_json(),))
    enqueue_one(database_url, newer)  # its NOTIFY carries only the newer event
    wait_until(lambda: count_delivered(database_url) == 2, message="both recorded")

    assert [e["id"] for e in receiver.events()] == [older.id, newer.id]
    assert [r["event_id"] for r in deliveries(database_url)] == [older.id, newer.id]  # ids in event order
    stopped = counters(worker)
    assert (stopped["fast_paths"], stopped["fast_path_fallbacks"]) == (0, 1)


def test_per_key_order_holds_with_concurrent_hosts_and_two_workers(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    """Hosts serialise the transactions of one key with a row lock (as a host's row of a Zaak does);
    each event carries its key's sequence number, which must arrive in order and exactly once."""
    subscribe(database_url, receiver.url)
    keys = [str(uuid.uuid4()) for _ in range(24)]
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE zaak (id text PRIMARY KEY, n int NOT NULL)")
        conn.cursor().executemany("INSERT INTO zaak VALUES (%s, 0)", [(k,) for k in keys])
    workers = [idle_worker(database_url, start_worker) for _ in range(2)]
    hosts, per_host = 4, 40
    errors: list[BaseException] = []

    def host(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(database_url) as conn:
                for _ in range(per_host):
                    key = rng.choice(keys)
                    row = conn.execute("UPDATE zaak SET n = n + 1 WHERE id = %s RETURNING n", (key,)).fetchone()
                    assert row is not None
                    outbox.enqueue(conn, zaak_event(key, row[0]))
                    conn.commit()
                    threading.Event().wait(rng.uniform(0, 0.006))  # some idle moments, some overlap
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=host, args=(seed,)) for seed in range(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    total = hosts * per_host
    wait_until(lambda: count_delivered(database_url) == total, timeout=60, message=f"{total} recorded")

    received = receiver.events()
    assert len(received) == total
    assert len({e["id"] for e in received}) == total, "each event exactly once"
    for key in keys:
        numbers = [e["data"]["n"] for e in received if e["subject"] == key]
        assert numbers == list(range(1, len(numbers) + 1)), f"order of key {key}"
    rows = deliveries(database_url)
    assert len(rows) == total and all(r["attempts"] == 1 for r in rows)
    stopped = [counters(w) for w in workers]
    assert sum(s["delivered"] for s in stopped) == total
    assert sum(s["fast_paths"] for s in stopped) > 0, stopped


def test_a_forged_notify_payload_is_never_delivered(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    """Any database user may NOTIFY on the channel: the fast path checks the payload against the
    stored event, and the normal path delivers what is stored."""
    subscribe(database_url, receiver.url)
    worker = idle_worker(database_url, start_worker, QUIET)
    genuine = zaak_event(str(uuid.uuid4()), 1)
    forged = zaak_event(genuine.subject or "", 666)
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO outbox.events (event) VALUES (%s::json)"
            " RETURNING position, (extract(epoch FROM enqueued_at) * 1000000)::bigint",
            (genuine.to_json(),),
        ).fetchone()
        assert row is not None
        conn.execute("SELECT pg_notify('outbox.events', %s)", (f"{row[0]} {row[1]} {forged.to_json()}",))
    wait_until(lambda: count_delivered(database_url) == 1, message="the stored event recorded")

    assert receiver.events() == [genuine.to_dict()]
    stopped = counters(worker)
    assert (stopped["fast_paths"], stopped["fast_path_fallbacks"]) == (0, 1)


def test_a_retry_falls_due_while_notifies_keep_the_worker_on_the_fast_path(
    database_url: str, start_worker: WorkerFactory
) -> None:
    """Fast paths alone never look for retries: a normal pass still comes when one falls due."""
    with Receiver(answer=lambda n, _: (500 if n == 0 else 204, {}, 0.0)).running() as receiver:
        subscribe(database_url, receiver.url)
        retry_within_a_second = {"OUTBOX_RETRY_BASE_DELAY": "1", "OUTBOX_RETRY_MAX_DELAY": "1"}
        worker = idle_worker(database_url, start_worker, {**QUIET, **retry_within_a_second})
        failing = zaak_event(str(uuid.uuid4()))
        enqueue_one(database_url, failing)  # answered 500: retried within a second
        stream = [zaak_event(str(uuid.uuid4()), n) for n in range(150)]
        with psycopg.connect(database_url) as conn:
            for event in stream:  # an event every ~20 ms (3 s or more): NOTIFYs keep waking the worker
                outbox.enqueue(conn, event)
                conn.commit()
                threading.Event().wait(0.02)
        wait_until(lambda: count_delivered(database_url) == 151, message="all recorded")

        ids = [e["id"] for e in receiver.events()]
    # The retry went out while the stream ran, not after it.
    first = ids.index(failing.id)
    assert ids.index(failing.id, first + 1) < ids.index(stream[-1].id)
    stopped = counters(worker)
    assert stopped["fast_paths"] > 0
