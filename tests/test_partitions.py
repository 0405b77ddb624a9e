"""Partitioned tables (sql/009_partitions.sql): leaves made ahead, rows outside every leaf, the claim's
plan, retention by dropping leaves (`outbox purge`), and the conversion of an existing installation."""

from __future__ import annotations

import itertools
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import outbox
from outbox import CloudEvent
from outbox._operations import retry_failed, set_subscription_status
from outbox._sql import query
from tests.support import Receiver, WorkerProcess, subscribe, wait_until, zaak_event
from worker.daemon import partitions
from worker.daemon.maintenance import purge
from worker.daemon.settings import SettingsError, WorkerSettings

PARENTS = ("events", "deliveries_delivered", "deliveries_failed", "delivery_attempts")


def _leaves(conn: psycopg.Connection[Any], parent: str) -> list[tuple[str, datetime | None, datetime | None]]:
    return [tuple(row) for row in conn.execute(query("partition_leaves", "outbox"), (parent,)).fetchall()]  # type: ignore[misc]


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"outbox.{table}",)).fetchone()
    return bool(row and row[0])


def _leaf_of(conn: psycopg.Connection[Any], parent: str, at: datetime) -> str | None:
    for name, lower, upper in _leaves(conn, parent):
        if lower is not None and upper is not None and lower <= at < upper:
            return name
    return None


def _event(type_: str, subject: str, n: int) -> CloudEvent:
    return CloudEvent(type=type_, source="urn:nld:oin:01823288444:openklant", subject=subject, data={"n": n})


# ---- leaves made ahead ----------------------------------------------------------------------------


def test_the_migration_makes_todays_and_the_next_days_leaves_and_a_default_for_each(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        for parent in PARENTS:
            leaves = _leaves(conn, parent)
            assert leaves[0] == (f"{parent}_default", None, None)
            assert _leaf_of(conn, parent, now) is not None
            assert _leaf_of(conn, parent, now + timedelta(days=1)) is not None
        today = _leaf_of(conn, "events", now)
    assert today == "events_p" + now.astimezone(UTC).strftime("%Y%m%d") + "t0000"


def test_leaves_are_made_ahead_once_however_many_workers_ask_at_once(database_url: str) -> None:
    def ensure(_: int) -> list[str]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT * FROM outbox.ensure_partitions(interval '6 days', interval '6 hours')")
            return [row[0] for row in rows.fetchall()]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(ensure, range(4)))
    created = [line for lines in results for line in lines]
    assert created, "leaves up to six days ahead did not exist yet"
    assert len(created) == len(set(created)) and all(line.startswith("created ") for line in created)
    assert sum(1 for lines in results if lines) == 1  # the others found them made (advisory lock)
    with psycopg.connect(database_url, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        for parent in PARENTS:
            ranged = [(lower, upper) for _, lower, upper in _leaves(conn, parent) if lower is not None]
            # Contiguous: a changed step starts at the last bound, never overlapping, never leaving a gap.
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranged))
            assert ranged[-1][1] >= now + timedelta(days=6)
            assert ranged[-1][1] - ranged[-1][0] == timedelta(hours=6)
        assert partitions.ensure(conn, "outbox", timedelta(hours=6)) == []  # idempotent


def test_an_event_that_finds_no_leaf_goes_to_the_default_leaf_and_is_delivered(
    database_url: str, tmp_path: Path
) -> None:
    # As if no worker had run for days: no leaf of events covers now.
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name, lower, _ in _leaves(conn, "events"):
            if lower is not None:
                conn.execute(f"ALTER TABLE outbox.events DETACH PARTITION outbox.{name}")
                conn.execute(f"DROP TABLE outbox.{name}")
    with Receiver().running() as receiver:
        subscribe(database_url, receiver.url)
        with psycopg.connect(database_url) as conn:
            outbox.enqueue(conn, zaak_event("zaak-1"))
        worker = WorkerProcess(database_url, tmp_path / "worker.log")
        try:
            wait_until(lambda: len(receiver.received) == 1, message="the event delivered")
            # The worker makes the leaves again, but not today's: the DEFAULT leaf holds a row of it.
            skipped = worker.wait_logged("partition skipped")
            worker.wait_logged("partition created")
        finally:
            assert worker.terminate() == 0
    assert receiver.events()[0]["subject"] == "zaak-1"
    assert skipped["level"] == "warning" and skipped["detail"].startswith("skipped events from ")
    with psycopg.connect(database_url, autocommit=True) as conn:
        where = conn.execute("SELECT tableoid::regclass::text, routed_at IS NOT NULL FROM outbox.events").fetchall()
        assert where == [("outbox.events_default", True)]
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        assert _leaf_of(conn, "events", now) is None
        assert _leaf_of(conn, "events", now + timedelta(days=1)) is not None


# ---- the hot path ---------------------------------------------------------------------------------


def test_the_claim_reads_only_the_live_leaf(database_url: str) -> None:
    sub = subscribe(database_url, "http://127.0.0.1:9/hook")
    with psycopg.connect(database_url) as conn:
        positions = outbox.enqueue_many(conn, [zaak_event(f"k{n}") for n in range(3)])
        conn.execute(
            "INSERT INTO outbox.deliveries_live (event_position, event_enqueued_at, subscription_id, ordering_key) "
            "SELECT position, enqueued_at, %s, 'k' || position FROM outbox.events",
            (sub,),
        )
        conn.commit()
        params = {
            "subscriptions": [uuid.UUID(sub)], "caps": [10], "units": [1], "rated": [False], "limit": 10,
            "token": uuid.uuid4(), "lease": 60.0, "max_requests": [10], "adaptive": False, "initial": 4.0,
        }  # fmt: skip
        plan = "\n".join(
            row[0]
            for row in conn.execute(b"EXPLAIN (ANALYZE, COSTS OFF) " + query("claim", "outbox"), params).fetchall()
        )
        conn.rollback()  # EXPLAIN ANALYZE claimed them: put them back
        claimed = conn.execute(query("claim", "outbox"), params).fetchall()
    assert sorted(row[0] for row in claimed) and len(claimed) == len(positions)
    assert "deliveries_delivered" not in plan and "deliveries_failed" not in plan
    # (Whether the join to events reads one leaf depends on the statistics: bench/claim.py shows it.)


# ---- retention ------------------------------------------------------------------------------------


def _backdate(conn: psycopg.Connection[Any], days: int) -> datetime:
    """Everything written so far moved `days` back, into leaves made for that day (row movement)."""
    start = conn.execute(
        "SELECT date_bin(interval '1 day', now() - make_interval(days => %s), timestamptz '2000-01-01 00:00:00+00')",
        (days,),
    ).fetchone()[0]  # type: ignore[index]
    for parent in PARENTS:
        conn.execute("SELECT outbox.create_partition(%s, %s, %s)", (parent, start, start + timedelta(days=1)))
    at = start + timedelta(hours=1)
    conn.execute("UPDATE outbox.events SET enqueued_at = %s", (at,))
    conn.execute("UPDATE outbox.deliveries SET event_enqueued_at = %s", (at,))
    conn.execute(
        "UPDATE outbox.deliveries SET finished_at = %s, "
        "delivered_at = CASE WHEN status = 'delivered' THEN %s::timestamptz END WHERE status IN ('delivered', 'failed')",
        (at, at),
    )
    conn.execute("UPDATE outbox.delivery_attempts SET attempted_at = %s", (at,))
    return start


def _counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM outbox.deliveries GROUP BY status").fetchall()
    return dict(rows)


def test_purge_drops_whole_leaves_keeps_live_deliveries_and_the_events_they_need(
    database_url: str, tmp_path: Path
) -> None:
    with Receiver().running() as good, Receiver(answer=lambda n, r: (500, {}, 0.0)).running() as bad:
        subscribe(database_url, good.url, types=["nl.overheid.zaken.*"])
        subscribe(database_url, bad.url, types=["nl.overheid.zaken.zaak-gekoppeld"])
        # 4 events for both (delivered + failed), 2 only for the good one (delivered only).
        enqueue_events = [zaak_event(f"z{n}", n) for n in range(4)]
        enqueue_events += [_event("nl.overheid.zaken.zaak-ontkoppeld", f"o{n}", n) for n in range(2)]
        with psycopg.connect(database_url) as conn:
            outbox.enqueue_many(conn, enqueue_events)
        worker = WorkerProcess(database_url, tmp_path / "w1.log", {"OUTBOX_RETRY_MAX_ATTEMPTS": "1"})
        try:
            wait_until(lambda: _counts_of(database_url) == {"delivered": 6, "failed": 4}, message="6 + 4 final")
        finally:
            assert worker.terminate() == 0

    # A third subscription whose receiver is down: one delivery pending (retried), one blocked behind
    # it (same key); then it is paused. These must survive every purge, and so must their events.
    waiting = Receiver(answer=lambda n, r: (503, {}, 0.0))
    with waiting.running():
        third = subscribe(database_url, waiting.url, types=["nl.overheid.test.*"])
        with psycopg.connect(database_url) as conn:
            outbox.enqueue_many(conn, [_event("nl.overheid.test.step", "same-key", n) for n in range(2)])
        worker = WorkerProcess(database_url, tmp_path / "w2.log", {"OUTBOX_RETRY_MAX_ATTEMPTS": "1000"})
        try:
            wait_until(lambda: len(waiting.received) >= 2, message="the head retried")
            with psycopg.connect(database_url) as conn:
                set_subscription_status(conn, "outbox", third, "paused", "receiver down")
        finally:
            assert worker.terminate() == 0

        with psycopg.connect(database_url, autocommit=True) as conn:
            assert _counts(conn) == {"delivered": 6, "failed": 4, "pending": 1, "blocked": 1}
            old = _backdate(conn, 40)
            stamp = old.strftime("%Y%m%dt0000")
            attempts_before = conn.execute("SELECT count(*) FROM outbox.delivery_attempts").fetchone()[0]  # type: ignore[index]

            # Nothing is older than 60 days: nothing goes.
            report = purge(conn, "outbox", timedelta(days=60))
            assert report.dropped == [] and (report.delivered, report.events) == (0, 0)

            # 30 days: the delivered leaf goes whole; failed ones are kept (4 × 30 days by default) and
            # with them the attempts (the longest retention) and their events.
            report = purge(conn, "outbox", timedelta(days=30))
            assert report.dropped == [f"deliveries_delivered_p{stamp}", f"events_p{stamp}"]
            assert report.events_kept == 6  # 4 needed by failed deliveries, 2 by the live ones
            assert not _exists(conn, f"deliveries_delivered_p{stamp}") and not _exists(conn, f"events_p{stamp}")
            assert _exists(conn, f"deliveries_failed_p{stamp}") and _exists(conn, f"delivery_attempts_p{stamp}")
            assert _counts(conn) == {"failed": 4, "pending": 1, "blocked": 1}
            kept = conn.execute(
                "SELECT tableoid::regclass::text, event->>'subject' FROM outbox.events ORDER BY position"
            ).fetchall()
            assert kept == [("outbox.events_default", s) for s in ("z0", "z1", "z2", "z3", "same-key", "same-key")]
            assert conn.execute("SELECT count(*) FROM outbox.delivery_attempts").fetchone()[0] == attempts_before  # type: ignore[index]

            # Failed kept 35 days: now they go too, with the attempts' leaf; the events only they
            # needed are deleted from the DEFAULT leaf. The live deliveries and their events stay.
            report = purge(conn, "outbox", timedelta(days=30), timedelta(days=35), batch_size=1)
            assert report.dropped == [f"deliveries_failed_p{stamp}", f"delivery_attempts_p{stamp}"]
            assert report.events == 4
            assert _counts(conn) == {"pending": 1, "blocked": 1}
            assert conn.execute("SELECT count(*) FROM outbox.events").fetchone()[0] == 2  # type: ignore[index]

            # Even a purge of everything older than a second leaves the live ones alone.
            purge(conn, "outbox", timedelta(seconds=1), timedelta(seconds=1))
            assert _counts(conn) == {"pending": 1, "blocked": 1}
            conn.execute("UPDATE outbox.deliveries SET next_attempt_at = now() WHERE status = 'pending'")
            set_subscription_status(conn, "outbox", third, "active", None)

        # The receiver is back: both are delivered, in order, their events intact.
        waiting.received.clear()
        waiting.answer = lambda n, r: (204, {}, 0.0)
        worker = WorkerProcess(database_url, tmp_path / "w3.log")
        try:
            wait_until(lambda: len(waiting.received) == 2, message="both delivered")
        finally:
            assert worker.terminate() == 0
    assert [e["data"]["n"] for e in waiting.events()] == [0, 1]
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert _counts(conn) == {"delivered": 2}
        # Delivered now (today's leaf, kept): their 40-day-old events are still needed, so they stay.
        purge(conn, "outbox", timedelta(days=30))
        assert conn.execute("SELECT count(*) FROM outbox.events").fetchone()[0] == 2  # type: ignore[index]


def _counts_of(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return _counts(conn)


def test_purge_on_the_command_line_says_what_it_dropped(run_cli: Any, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        old = _backdate(conn, 100)
    result = run_cli("purge", "--older-than", "30d")
    assert result.returncode == 0, result.stderr
    stamp = old.strftime("%Y%m%dt0000")
    lines = result.stdout.strip().splitlines()
    # 100 days: older than delivered's 30 days, not than failed's 120 (so neither are attempts).
    assert lines == [
        f"dropped deliveries_delivered_p{stamp}",
        f"dropped events_p{stamp}",
        "deleted 0 delivered and 0 failed deliveries, 0 attempts, 0 events and 0 intake keys outside the dropped leaves",
    ]
    result = run_cli("purge", "--older-than", "30d", "--failed-older-than", "90d")
    assert result.stdout.splitlines()[:2] == [
        f"dropped deliveries_failed_p{stamp}",
        f"dropped delivery_attempts_p{stamp}",
    ]
    bad = run_cli("purge", "--older-than", "30d", "--failed-older-than", "soon")
    assert bad.returncode == 2 and "--failed-older-than" in bad.stderr and "is not a duration" in bad.stderr


def test_a_dropped_leaf_must_be_a_final_one(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in ("deliveries_live", "deliveries_delivered_default", "events_default", "subscriptions"):
            with pytest.raises(psycopg.errors.RaiseException, match="not a ranged leaf"):
                conn.execute("SELECT outbox.drop_partition(%s::regclass)", (f"outbox.{table}",))
            assert _exists(conn, table)


# ---- converting an existing installation ----------------------------------------------------------


def test_the_migration_converts_a_populated_installation_and_keeps_every_row(
    empty_database_url: str, tmp_path: Path
) -> None:
    url = empty_database_url
    outbox.migrate(url, up_to=8)
    with Receiver().running() as receiver:
        # The subscriptions as 008 stored them (today's store writes columns of later migrations).
        with psycopg.connect(url) as conn:
            sub, other = (
                conn.execute(
                    "INSERT INTO outbox.subscriptions (callback_url, types, allow_insecure) VALUES (%s, %s, true) "
                    "RETURNING id",
                    (receiver.url, types),
                ).fetchone()[0]  # type: ignore[index]
                for types in (["*"], ["nl.overheid.zaken.*"])
            )
        with psycopg.connect(url) as conn:
            positions = outbox.enqueue_many(conn, [zaak_event(f"z{n}", n) for n in range(6)])
            outbox.enqueue(conn, zaak_event("z-last", 99))
        positions.append(positions[-1] + 1)
        # 008's rows, as its worker wrote them: history months old, a failure, live ones of every state.
        with psycopg.connect(url) as conn:
            conn.execute(
                "UPDATE outbox.events SET enqueued_at = now() - make_interval(days => (7 - position)::int * 20), "
                "routed_at = now() WHERE position < %s",
                (positions[-1],),
            )
            states = ["delivered", "delivered", "failed", "pending", "blocked", "delivering"]
            for position, status in zip(positions, states, strict=False):
                conn.execute(
                    "INSERT INTO outbox.deliveries (event_position, subscription_id, status, ordering_key, attempts, "
                    "delivered_at, claim_token, leased_until, last_status_code, updated_at) "
                    "SELECT %s, s, %s, 'k' || %s, 1, CASE WHEN %s = 'delivered' THEN e.enqueued_at + interval '1 s' END, "
                    "CASE WHEN %s = 'delivering' THEN gen_random_uuid() END, "
                    "CASE WHEN %s = 'delivering' THEN now() - interval '1 minute' END, 204, e.enqueued_at "
                    "FROM outbox.events e, unnest(%s::uuid[]) AS s WHERE e.position = %s",
                    (position, status, position, status, status, status, [sub, other], position),
                )
            conn.execute(
                "INSERT INTO outbox.delivery_attempts (delivery_id, attempted_at, duration_ms, status_code) "
                "SELECT id, updated_at, 12.5, 204 FROM outbox.deliveries"
            )
            conn.execute(
                "INSERT INTO outbox.intake_ids (source, id, position, received_at) "
                "SELECT 'urn:test', event->>'id', position, enqueued_at FROM outbox.events"
            )
        before = _snapshot(url)
        with psycopg.connect(url) as conn:
            sequences = conn.execute(
                "SELECT (SELECT last_value FROM outbox.events_position_seq), "
                "(SELECT last_value FROM outbox.deliveries_id_seq)"
            ).fetchone()
        assert sequences is not None

        assert [m.version for m in outbox.migrate(url, up_to=9)] == [9]

        after = _snapshot(url)
        assert after["events"] == before["events"] and after["attempts"] == before["attempts"]
        assert after["intake_ids"] == before["intake_ids"]
        enqueued = {row[0]: row[2] for row in after["events"]}
        converted = {row[0]: row[1:] for row in _select(url, "SELECT id, event_enqueued_at, finished_at, status, "
                                                           "delivered_at, updated_at FROM outbox.deliveries")}  # fmt: skip
        assert after["deliveries"] == before["deliveries"]
        for row in before["deliveries"]:
            event_enqueued_at, finished_at, status, delivered_at, updated_at = converted[row[0]]
            assert event_enqueued_at == enqueued[row[1]]
            assert finished_at == {"delivered": delivered_at, "failed": updated_at}.get(status)
        # Rows are where their state and time say: final ones in month leaves of their time, live ones live.
        where = dict(_select(url, "SELECT status, array_agg(DISTINCT tableoid::regclass::text) FROM outbox.deliveries "
                                  "GROUP BY status"))  # fmt: skip
        assert {k: v for k, v in where.items() if k in ("pending", "blocked", "delivering")} == {
            "pending": ["outbox.deliveries_live"], "blocked": ["outbox.deliveries_live"],
            "delivering": ["outbox.deliveries_live"],
        }  # fmt: skip
        assert all(t.startswith("outbox.deliveries_delivered_p") for t in where["delivered"])
        assert all(t.startswith("outbox.deliveries_failed_p") for t in where["failed"])
        leaves = [name for name, _ in _select(url, "SELECT tableoid::regclass::text, 1 FROM outbox.events")]
        assert "outbox.events_default" not in leaves and len(set(leaves)) >= 4  # monthly history leaves

        # The sequences continue: new rows never reuse an id or a position.
        with psycopg.connect(url) as conn:
            new_position = outbox.enqueue(conn, zaak_event("z-new", 100))
        assert new_position == sequences[0] + 1
        # And the converted installation works (on the newest schema, as an upgrade leaves it): the
        # expired lease is taken again, pending ones go.
        outbox.migrate(url)
        worker = WorkerProcess(url, tmp_path / "worker.log")
        try:
            wait_until(
                lambda: _select(url, "SELECT count(*), 0 FROM outbox.deliveries WHERE status IN "
                                     "('pending', 'delivering')")[0][0] == 0
                and _select(url, "SELECT count(*), 0 FROM outbox.events WHERE routed_at IS NULL")[0][0] == 0,
                message="the backlog delivered",
            )  # fmt: skip
        finally:
            assert worker.terminate() == 0
        ids = _select(url, f"SELECT min(id), max(id) FROM outbox.deliveries WHERE event_position = {new_position}")
        assert ids[0][0] > sequences[1]
        assert "z-new" in [e["subject"] for e in receiver.events()]


def _select(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute(statement.encode()).fetchall()]


def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables 009 converts, in the columns 008 had (events as their exact text)."""
    with psycopg.connect(url) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        events = conn.execute(
            "SELECT position, event::text AS event, enqueued_at, routed_at FROM outbox.events ORDER BY position"
        ).fetchall()
        deliveries = conn.execute(
            "SELECT id, event_position, subscription_id, status, ordering_key, attempts, next_attempt_at, "
            "leased_until, claim_token, last_status_code, last_error, created_at, updated_at, delivered_at "
            "FROM outbox.deliveries ORDER BY id"
        ).fetchall()
        attempts = conn.execute("SELECT * FROM outbox.delivery_attempts ORDER BY id").fetchall()
        intake = conn.execute("SELECT * FROM outbox.intake_ids ORDER BY source, id").fetchall()
    return {
        "events": [tuple(r.values()) for r in events],
        "deliveries": [tuple(r.values()) for r in deliveries],
        "attempts": [tuple(r.values()) for r in attempts],
        "intake_ids": [tuple(json.dumps(v, default=str) for v in r.values()) for r in intake],
    }


def test_a_retry_that_waited_for_a_row_moved_meanwhile_looks_again(database_url: str) -> None:
    """Row movement: a transaction that waited for a failed row which another retry moved back to
    deliveries_live gets a serialization failure from PostgreSQL; retry_failed looks again (0 left)."""
    sub = subscribe(database_url, "http://127.0.0.1:9/hook")
    with psycopg.connect(database_url) as conn:
        outbox.enqueue(conn, zaak_event("k"))
        conn.execute(
            "INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, status, finished_at) "
            "SELECT position, enqueued_at, %s, 'failed', now() FROM outbox.events",
            (sub,),
        )
        conn.execute("UPDATE outbox.events SET routed_at = now()")
    with psycopg.connect(database_url) as first, psycopg.connect(database_url, autocommit=True) as second:
        first.execute("SELECT id FROM outbox.deliveries WHERE status = 'failed' FOR UPDATE")
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(retry_failed, second, "outbox", subscription_id=sub)
            wait_until(
                lambda: _select(database_url, "SELECT count(*), 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                              "AND datname = current_database()")[0][0] >= 1,
                message="the second retry waiting",
            )  # fmt: skip
            assert retry_failed(first, "outbox", subscription_id=sub) == 1
            first.commit()
            assert waiting.result(timeout=10) == 0
    assert _select(database_url, "SELECT status, tableoid::regclass::text FROM outbox.deliveries") == [
        ("pending", "outbox.deliveries_live")
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1d", timedelta(days=1)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(days=14)),
        ("4m", "OUTBOX_PARTITION_INTERVAL: must be from 5m up to 31d, e.g. 1d or 12h (got '4m')"),
        ("32d", "OUTBOX_PARTITION_INTERVAL: must be from 5m up to 31d, e.g. 1d or 12h (got '32d')"),
        ("daily", "OUTBOX_PARTITION_INTERVAL: 'daily' is not a duration"),
    ],
)
def test_the_partition_interval_setting(monkeypatch: pytest.MonkeyPatch, given: str, expected: Any) -> None:
    monkeypatch.setenv("OUTBOX_PARTITION_INTERVAL", given)
    if isinstance(expected, timedelta):
        assert WorkerSettings.load().partition_interval == expected
        return
    with pytest.raises(SettingsError) as raised:
        WorkerSettings.load()
    assert len(raised.value.lines) == 1 and raised.value.lines[0].startswith(expected)


def test_a_worker_with_a_new_interval_continues_from_the_last_bound(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        for name, lower, _ in _leaves(conn, "events"):  # only the leaf of today is left
            if lower is not None and lower > now:
                conn.execute(f"ALTER TABLE outbox.events DETACH PARTITION outbox.{name}")
                conn.execute(f"DROP TABLE outbox.{name}")
        last = _leaves(conn, "events")[-1][2]
    # 2 hours: leaves are then made a day ahead (partitions.ahead), which always reaches past the end of
    # today's day leaf, whatever the time of day the test runs at (with 1 hour, 12 hours ahead did not
    # before noon UTC). The bounds at fixed instants are tests/test_partition_clock.py's.
    worker = WorkerProcess(database_url, tmp_path / "worker.log", {"OUTBOX_PARTITION_INTERVAL": "2h"})
    try:
        created = worker.wait_logged("partition created")
    finally:
        assert worker.terminate() == 0
    assert created["detail"] == "created events_p" + last.astimezone(UTC).strftime("%Y%m%dt%H%M")
    with psycopg.connect(database_url, autocommit=True) as conn:
        ranged = [(lower, upper) for _, lower, upper in _leaves(conn, "events") if lower is not None]
    assert ranged[-1][1] - ranged[-1][0] == timedelta(hours=2)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranged))
