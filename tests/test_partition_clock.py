"""Partition bounds and retention at fixed instants: which leaves exist ahead and which are dropped
depends on the time of day, so both take the instant as an input (`ensure(at=…)`, `purge(now=…)`)
and are checked here at the instants where a day, a month, a year or the Dutch clock changes.
Bounds are UTC whatever the session's TimeZone."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from outbox._sql import query
from worker.daemon import partitions
from worker.daemon.maintenance import purge

PARENTS = ("events", "deliveries_delivered", "deliveries_failed", "delivery_attempts")
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


INSTANTS = [
    _at("2026-12-06T00:00:30"),
    _at("2026-12-06T11:59:00"),
    _at("2026-12-06T12:00:00"),
    _at("2026-12-06T23:59:30"),
    _at("2027-02-28T23:59:30"),  # the last day of a month (February, not a leap year)
    _at("2026-12-31T23:59:30"),  # the last day of a year
    _at("2027-03-28T00:59:30"),  # Europe/Amsterdam: 02:00 CET becomes 03:00 CEST at 01:00 UTC
    _at("2027-03-28T01:00:30"),
    _at("2026-10-25T00:59:30"),  # Europe/Amsterdam: 03:00 CEST becomes 02:00 CET at 01:00 UTC
    _at("2026-10-25T01:00:30"),
]
STEPS = [timedelta(days=1), timedelta(hours=1), timedelta(minutes=15)]


@pytest.fixture
def bare(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A migrated database without any ranged leaf (the migration made today's: dropped, they are empty),
    its session in Amsterdam time, so that nothing below depends on the zone of the session."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET TimeZone TO 'Europe/Amsterdam'")
        for parent in PARENTS:
            for name, lower, _ in _leaves(conn, parent):
                if lower is not None:
                    conn.execute(f"DROP TABLE outbox.{name}")
        yield conn


def _leaves(conn: psycopg.Connection[Any], parent: str) -> list[tuple[str, datetime | None, datetime | None]]:
    return [tuple(row) for row in conn.execute(query("partition_leaves", "outbox"), (parent,)).fetchall()]  # type: ignore[misc]


def _ranged(conn: psycopg.Connection[Any], parent: str) -> list[tuple[str, datetime, datetime]]:
    # In UTC: psycopg gives the session's zone, and Python subtracts two datetimes of one zone as wall
    # clock times (a 24-hour leaf across a DST change would come out 23 hours).
    return [
        (n, lo.astimezone(UTC), hi.astimezone(UTC))
        for n, lo, hi in _leaves(conn, parent)
        if lo is not None and hi is not None
    ]


def _expected(at: datetime, step: timedelta) -> list[tuple[str, datetime, datetime]]:
    """What the leaves should be, computed here independently of the SQL: from the step's UTC bin that
    holds `at`, every leaf that starts before `at` + ahead."""
    start = ORIGIN + ((at - ORIGIN) // step) * step
    out = []
    while start < at + partitions.ahead(step):
        out.append((start.strftime("events_p%Y%m%dt%H%M"), start, start + step))
        start += step
    return out


def _leaf_holding(conn: psycopg.Connection[Any], at: datetime) -> str:
    """Where PostgreSQL routes an event enqueued at `at` (the DEFAULT leaf when no ranged leaf holds it)."""
    with conn.transaction(force_rollback=True):
        row = conn.execute(
            "INSERT INTO outbox.events (event, enqueued_at) VALUES ('{}', %s) RETURNING tableoid::regclass::text",
            (at,),
        ).fetchone()
    assert row is not None
    return str(row[0]).removeprefix("outbox.")


@pytest.mark.parametrize("at", INSTANTS, ids=lambda at: at.strftime("%Y-%m-%dT%H:%M:%S"))
def test_the_leaves_made_ahead_at_an_instant(bare: psycopg.Connection[Any], at: datetime) -> None:
    for step in STEPS:
        for parent in PARENTS:
            for name, _, _ in _ranged(bare, parent):
                bare.execute(f"DROP TABLE outbox.{name}")
        lines = partitions.ensure(bare, "outbox", step, at=at)
        expected = _expected(at, step)
        got = _ranged(bare, "events")
        assert got == expected, step
        assert len(lines) == 4 * len(expected)
        for parent in PARENTS[1:]:
            assert [(lo, hi) for _, lo, hi in _ranged(bare, parent)] == [(lo, hi) for _, lo, hi in expected]
        # Each leaf is `step` wide in UTC (a day leaf across a DST change is 24 hours, not 23 or 25).
        assert all(hi - lo == step for _, lo, hi in got)
        # An event enqueued at the instant, or just before the horizon, finds a ranged leaf.
        assert _leaf_holding(bare, at).startswith("events_p")
        assert _leaf_holding(bare, at + partitions.ahead(step) - timedelta(seconds=1)).startswith("events_p")
        # The same instant again makes nothing; later, the leaves continue from the last bound.
        assert partitions.ensure(bare, "outbox", step, at=at) == []
        later = at + step * 3 + timedelta(seconds=7)
        partitions.ensure(bare, "outbox", step, at=later)
        after = _ranged(bare, "events")
        assert after[: len(got)] == got
        assert all(a[2] == b[1] for a, b in itertools.pairwise(after))
        assert after[-1][2] >= later + partitions.ahead(step)


def test_leaf_names_and_bounds_are_utc_across_both_dst_changes(bare: psycopg.Connection[Any]) -> None:
    # A day leaf made on 2027-03-27 runs over the night the clocks go forward; one made on 2026-10-24
    # over the night they go back. Their bounds are UTC midnights, 24 hours apart.
    for at in (_at("2027-03-27T12:00:00"), _at("2026-10-24T12:00:00")):
        for name, _, _ in _ranged(bare, "events"):
            bare.execute(f"DROP TABLE outbox.{name}")
        partitions.ensure(bare, "outbox", timedelta(days=1), at=at)
        day = at.replace(hour=0)
        assert _ranged(bare, "events") == [
            (f"events_p{(day + timedelta(days=n)):%Y%m%d}t0000", day + timedelta(days=n), day + timedelta(days=n + 1))
            for n in range(3)
        ]
        shown = bare.execute(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = %s", (f"events_p{day:%Y%m%d}t0000",)
        ).fetchone()
        # printed in the session's Amsterdam time: the same UTC midnight
        local = day.astimezone(ZoneInfo("Europe/Amsterdam"))
        assert (
            shown is not None
            and f"FROM ('{local:%Y-%m-%d %H:%M:%S}+{local.utcoffset() // timedelta(hours=1):02d}')" in shown[0]
        )


def test_a_naive_instant_is_refused(bare: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValueError, match="needs a time zone"):
        partitions.ensure(bare, "outbox", timedelta(days=1), at=datetime(2026, 12, 6, 12))
    with pytest.raises(ValueError, match="needs a time zone"):
        purge(bare, "outbox", timedelta(days=30), now=datetime(2026, 12, 6, 12))


def _history(conn: psycopg.Connection[Any], until: datetime, days: int) -> None:
    """Day leaves for the `days` days before `until`, as workers running all that time made them."""
    for n in range(days, -1, -1):
        partitions.ensure(conn, "outbox", timedelta(days=1), at=until - timedelta(days=n))


@pytest.mark.parametrize("now", INSTANTS, ids=lambda at: at.strftime("%Y-%m-%dT%H:%M:%S"))
def test_retention_drops_exactly_the_leaves_that_ended_before_the_cutoff(
    bare: psycopg.Connection[Any], now: datetime
) -> None:
    _history(bare, now, 40)
    before = {parent: _ranged(bare, parent) for parent in PARENTS}
    report = purge(bare, "outbox", timedelta(days=10), timedelta(days=20), now=now)
    cutoffs = {
        "deliveries_delivered": now - timedelta(days=10),
        "events": now - timedelta(days=10),
        "deliveries_failed": now - timedelta(days=20),
        "delivery_attempts": now - timedelta(days=20),  # the longer of the two
    }
    for parent, cutoff in cutoffs.items():
        gone = [name for name, _, hi in before[parent] if hi <= cutoff]
        kept = [name for name, _, hi in before[parent] if hi > cutoff]
        assert gone and kept
        assert [name for name, _, _ in _ranged(bare, parent)] == kept, parent
        assert set(gone) <= set(report.dropped)
        # the leaf holding the cutoff itself stays: it still has rows younger than the cutoff
        assert any(lo <= cutoff < hi for _, lo, hi in _ranged(bare, parent))
    assert len(report.dropped) == sum(1 for p in PARENTS for _, _, hi in before[p] if hi <= cutoffs[p])


def test_retention_at_a_cutoff_on_a_bound_drops_the_leaf_that_ends_there(bare: psycopg.Connection[Any]) -> None:
    now = _at("2027-01-01T00:00:00")  # 30 days back is the bound 2026-12-02T00:00 exactly
    _history(bare, now, 35)
    purge(bare, "outbox", timedelta(days=30), timedelta(days=30), now=now - timedelta(microseconds=1))
    assert _ranged(bare, "deliveries_delivered")[0][1:] == (_at("2026-12-01T00:00:00"), _at("2026-12-02T00:00:00"))
    purge(bare, "outbox", timedelta(days=30), timedelta(days=30), now=now)
    assert _ranged(bare, "deliveries_delivered")[0][1] == _at("2026-12-02T00:00:00")
