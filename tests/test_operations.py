"""Operator commands against real deliveries: `outbox status`, `outbox retry`, `outbox purge`."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

import outbox
from outbox._operations import retry_failed
from outbox._sql import migrations, query
from tests.support import (
    Receiver,
    WorkerProcess,
    count_delivered,
    deliveries,
    enqueue,
    subscribe,
    wait_until,
    zaak_event,
)


@pytest.fixture
def failing_then_ok(database_url: str, tmp_path: Path) -> Any:
    """Two subscriptions: one receiver fails everything (→ failed), one accepts (→ delivered)."""
    with Receiver(answer=lambda n, r: (500, {}, 0.0)).running() as bad, Receiver().running() as good:
        bad_id = subscribe(database_url, bad.url)
        good_id = subscribe(database_url, good.url)
        enqueue(database_url, [zaak_event(str(uuid.uuid4()), n) for n in range(5)])
        worker = WorkerProcess(database_url, tmp_path / "worker.log", {"OUTBOX_RETRY_MAX_ATTEMPTS": "2"})
        try:
            wait_until(
                lambda: sorted(r["status"] for r in deliveries(database_url)) == ["delivered"] * 5 + ["failed"] * 5,
                message="5 delivered, 5 failed",
            )
        finally:
            assert worker.terminate() == 0
        yield {"bad": bad_id, "good": good_id, "bad_receiver": bad, "good_receiver": good}


def test_status_json_counts_everything(run_cli: Any, failing_then_ok: dict[str, Any]) -> None:
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["events"] == {"total": 5, "unrouted": 0}
    assert document["deliveries"] == {"pending": 0, "delivering": 0, "delivered": 5, "failed": 5, "blocked": 0}
    per = {s["id"]: s for s in document["subscriptions"]}
    assert (per[failing_then_ok["bad"]]["failed"], per[failing_then_ok["bad"]]["delivered"]) == (5, 0)
    assert (per[failing_then_ok["good"]]["delivered"], per[failing_then_ok["good"]]["pending"]) == (5, 0)
    assert document["oldestPendingSeconds"] is None


def test_retry_puts_failed_back_and_they_deliver(
    run_cli: Any, database_url: str, failing_then_ok: dict[str, Any], tmp_path: Path
) -> None:
    bad = failing_then_ok["bad"]
    one = next(r["id"] for r in deliveries(database_url) if r["status"] == "failed")
    result = run_cli("retry", "--delivery", str(one))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 failed delivery back to pending"
    result = run_cli("retry", "--subscription", bad, "--all-failed")
    assert result.stdout.strip() == "4 failed deliveries back to pending"
    rows = deliveries(database_url)
    assert sorted(r["status"] for r in rows) == ["delivered"] * 5 + ["pending"] * 5
    assert all(r["attempts"] == 0 for r in rows if r["status"] == "pending")
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["deliveries"]["pending"] == 5
    assert status["oldestPendingSeconds"] is not None
    # The receiver recovered: a worker now delivers them.
    failing_then_ok["bad_receiver"].answer = lambda n, r: (204, {}, 0.0)
    worker = WorkerProcess(database_url, tmp_path / "again.log")
    try:
        wait_until(lambda: count_delivered(database_url) == 10, message="all 10 delivered")
    finally:
        assert worker.terminate() == 0
    assert run_cli("retry", "--all-failed").stdout.strip() == "0 failed deliveries back to pending"


def test_retry_needs_a_choice(run_cli: Any) -> None:
    result = run_cli("retry")
    assert result.returncode == 2
    assert "--all-failed or --delivery" in result.stderr


def test_purge_deletes_old_delivered_history_only(
    run_cli: Any, database_url: str, failing_then_ok: dict[str, Any]
) -> None:
    # Moved 40 days back, outside every leaf: the DEFAULT leaves hold them, purge deletes them row by row.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE outbox.deliveries SET delivered_at = now() - interval '40 days', "
            "finished_at = now() - interval '40 days' WHERE status = 'delivered'"
        )
        conn.execute(
            "UPDATE outbox.deliveries d SET event_enqueued_at = now() - interval '40 days' "
            "FROM outbox.events e WHERE e.position = d.event_position"
        )
        conn.execute("UPDATE outbox.events SET enqueued_at = now() - interval '40 days'")
    nothing = (
        "deleted 0 delivered and 0 failed deliveries, 0 attempts, 0 events and 0 intake keys outside the dropped leaves"
    )
    assert run_cli("purge", "--older-than", "60d").stdout.strip() == nothing
    result = run_cli("purge", "--older-than", "30d", "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    # Events still have their failed deliveries: kept. The delivered deliveries: gone.
    assert result.stdout.strip() == nothing.replace("deleted 0 delivered", "deleted 5 delivered")
    with psycopg.connect(database_url) as conn:
        left = conn.execute("SELECT status, count(*) FROM outbox.deliveries GROUP BY status").fetchall()
        attempts = conn.execute(
            "SELECT count(*) FROM outbox.delivery_attempts a JOIN outbox.deliveries d ON d.id = a.delivery_id"
        ).fetchone()
        orphans = conn.execute(
            "SELECT count(*) FROM outbox.delivery_attempts a "
            "WHERE NOT EXISTS (SELECT 1 FROM outbox.deliveries d WHERE d.id = a.delivery_id)"
        ).fetchone()
        conn.execute("DELETE FROM outbox.deliveries WHERE status = 'failed'")
    assert left == [("failed", 5)]
    # Attempts are kept as long as the longest retention (failed deliveries'), whatever their delivery.
    assert attempts == (10,) and orphans == (5,)
    assert run_cli("purge", "--older-than", "30d").stdout.strip() == nothing.replace("0 events", "5 events")


@pytest.mark.parametrize("bad", ["30", "thirty days", "5y", "-1d"])
def test_purge_refuses_a_bad_duration(run_cli: Any, bad: str) -> None:
    result = run_cli("purge", "--older-than", bad)
    assert result.returncode == 2
    assert "is not a duration" in result.stderr


def test_demo_runs_the_whole_flow(run_cli: Any) -> None:
    result = run_cli("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "306/306 delivered" in out
    assert "0 pending, 0 delivering, 306 delivered, 0 failed" in out
    story = [line.split() for line in out.splitlines() if "nl.overheid.zaken.zaak-" in line]
    per_zaak: dict[str, list[str]] = {}
    for row in story:
        per_zaak.setdefault(row[2], []).append(row[1].rsplit(".", 1)[1])
    # Per Zaak, the order of commit: linked, then unlinked.
    assert per_zaak == {z: ["zaak-gekoppeld", "zaak-ontkoppeld"] for z in "ABC"}


def test_retry_of_an_earlier_failed_delivery_waits_behind_the_one_in_flight(database_url: str) -> None:
    sub = subscribe(database_url, "http://127.0.0.1:9/hook")
    with psycopg.connect(database_url) as conn:
        positions = outbox.enqueue_many(conn, [zaak_event("k", 1), zaak_event("k", 2)])
        conn.execute(
            "INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, ordering_key, "
            "status, attempts, claim_token, leased_until, finished_at) VALUES (%s, now(), %s, 'k', 'failed', 4, "
            "NULL, NULL, now()), (%s, now(), %s, 'k', 'delivering', 1, gen_random_uuid(), now() + interval '1 minute', "
            "NULL)",
            (positions[0], sub, positions[1], sub),
        )
        conn.execute("UPDATE outbox.events SET routed_at = now()")
        conn.commit()
        assert retry_failed(conn, "outbox", delivery_id=None, subscription_id=sub) == 1
        states = conn.execute("SELECT status FROM outbox.deliveries ORDER BY id").fetchall()
        assert states == [("blocked",), ("delivering",)], "never two of one key in flight"
        # The one in flight finishes, recorded as the worker's recorder records it: the retried one is next.
        row = conn.execute("SELECT id, claim_token FROM outbox.deliveries WHERE status = 'delivering'").fetchone()
        assert row is not None
        conn.execute(
            query("record_batch", "outbox"),
            ([row[0]], [row[1]], ["delivered"], [204], [None], [0.0], [datetime.now(UTC)], [1.0], [None], [None], None),
        )
        states = conn.execute("SELECT status FROM outbox.deliveries ORDER BY id").fetchall()
    assert states == [("pending",), ("delivered",)]


@pytest.mark.parametrize("metrics", [False, True], ids=["plain", "with-metrics-port"])
def test_a_worker_refuses_to_start_on_an_unmigrated_or_older_schema(
    run_cli: Any, empty_database_url: str, metrics: bool
) -> None:
    # With a metrics port, the snapshot's cancelled query used to swallow the cancellation: the worker
    # never exited (a container started beside its migrate Job stayed "starting" for good).
    args = ("--metrics-port", "0") if metrics else ()
    result = run_cli("run", *args, url=empty_database_url)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the outbox schema 'outbox' is not migrated: run `outbox migrate` first"
    )
    if metrics:
        return
    assert run_cli("migrate", url=empty_database_url).returncode == 0
    with psycopg.connect(empty_database_url) as conn:
        conn.execute(
            "DELETE FROM outbox.schema_migrations WHERE version = (SELECT max(version) FROM outbox.schema_migrations)"
        )
    result = run_cli("run", url=empty_database_url)
    assert result.returncode == 2
    newest = migrations()[-1].version
    assert (
        f"is at migration {newest - 1:03d}, this worker needs {newest:03d}: run `outbox migrate` first" in result.stderr
    )
