"""Operator maintenance: retention (`outbox purge`); `outbox retry` is `outbox._operations.retry_failed`.

Retention drops whole leaves of the partitioned tables (sql/009_partitions.sql): a leaf of delivered
or failed deliveries holds only final rows, so once its range has ended before the cutoff of its
kind it is dropped as a table: no DELETE, no dead tuples, no vacuum on the hot tables. Only the few
rows outside any ranged leaf (the DEFAULT leaves) are deleted, in small batches, each its own
transaction. Each DDL step waits at most a short lock_timeout for its lock and is tried again a few
times: a lock request queued behind a long host transaction would stall every writer behind it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from outbox._sql import query
from worker.consumers.verification import MAX_TOLERANCE
from worker.runtime.clock import as_utc, utcnow

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Failed deliveries are kept this many times as long as delivered ones unless told otherwise: they
# are what an operator still has to look at (and `outbox retry`).
FAILED_RETENTION_FACTOR = 4
# Consumers' webhook ids are kept twice the longest tolerance window: past it the timestamp check refuses a
# replay by itself (sql/020), whatever retention the operator chose for events.
RECEIPT_RETENTION = timedelta(seconds=2 * MAX_TOLERANCE)
_LOCK_TRIES = 3


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '12h', '30d', '2w'."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, e.g. 90s, 15m, 12h, 30d, 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass
class PurgeReport:
    """What one purge did."""

    dropped: list[str] = field(default_factory=list)  # leaves dropped whole
    busy: list[str] = field(default_factory=list)  # leaves left for the next purge: their lock was not granted
    delivered: int = 0  # leftover rows deleted one by one (DEFAULT leaves) ...
    failed: int = 0
    attempts: int = 0
    events: int = 0
    intake_ids: int = 0
    events_kept: int = 0  # events of dropped leaves still needed: moved to events_default
    receipts: int = 0  # consumers' webhook ids older than RECEIPT_RETENTION
    replayed: int = 0  # consumers' kept requests replayed before the failed deliveries' cutoff

    def lines(self) -> list[str]:
        out = [f"dropped {name}" for name in self.dropped]
        out += [f"not dropped (busy, try again): {name}" for name in self.busy]
        out.append(
            f"deleted {self.delivered} delivered and {self.failed} failed deliveries, {self.attempts} attempts, "
            f"{self.events} events and {self.intake_ids} intake keys outside the dropped leaves"
        )
        if self.events_kept:
            out.append(f"kept {self.events_kept} events still needed by deliveries (moved to events_default)")
        if self.receipts:
            hours = RECEIPT_RETENTION.total_seconds() / 3600
            out.append(f"deleted {self.receipts} consumer receipts (webhook ids older than {hours:g} h)")
        if self.replayed:
            out.append(f"deleted {self.replayed} replayed consumer failures")
        return out


def purge(
    conn: psycopg.Connection[Any],
    schema: str,
    older_than: timedelta,
    failed_older_than: timedelta | None = None,
    batch_size: int = 1000,
    now: datetime | None = None,
) -> PurgeReport:
    """Remove delivered deliveries and events older than `older_than`, failed deliveries older than
    `failed_older_than` (default FAILED_RETENTION_FACTOR × `older_than`), attempts older than the
    longer of the two, the intake keys of events gone, consumers' webhook ids older than
    RECEIPT_RETENTION and their kept requests replayed before the failed cutoff. A blocked, pending or
    delivering delivery is never removed, nor the event it (or any kept delivery) needs. Every step is its
    own transaction (`conn` must not be inside one). Ages count back from `now` (default: the clock now), in UTC."""
    if failed_older_than is None:
        failed_older_than = older_than * FAILED_RETENTION_FACTOR
    now = utcnow() if now is None else as_utc(now)
    delivered_cutoff, failed_cutoff = now - older_than, now - failed_older_than
    report = PurgeReport()
    # 1. Final deliveries: whole leaves, then the DEFAULT leaves' stragglers.
    for parent, cutoff in (("deliveries_delivered", delivered_cutoff), ("deliveries_failed", failed_cutoff)):
        for leaf in _leaves_before(conn, schema, parent, cutoff):
            _ddl(conn, schema, report, leaf, "drop_partition")
    report.delivered = _batches(conn, schema, "purge_delivered_leftovers", delivered_cutoff, batch_size)
    report.failed = _batches(conn, schema, "purge_failed_leftovers", failed_cutoff, batch_size)
    # 2. Attempts: kept for the longest retention, so a kept delivery keeps its history.
    attempts_cutoff = min(delivered_cutoff, failed_cutoff)
    for leaf in _leaves_before(conn, schema, "delivery_attempts", attempts_cutoff):
        _ddl(conn, schema, report, leaf, "drop_partition")
    report.attempts = _batches(conn, schema, "purge_attempt_leftovers", attempts_cutoff, batch_size)
    # 3. Events: after the deliveries, so only kept deliveries still hold on to theirs.
    for leaf in _leaves_before(conn, schema, "events", delivered_cutoff):
        _ddl(conn, schema, report, leaf, "retire_events_partition")
    report.events = _batches(conn, schema, "purge_event_leftovers", delivered_cutoff, batch_size)
    report.intake_ids = _batches(conn, schema, "purge_intake_ids", delivered_cutoff, batch_size)
    # 4. Consumer receipts: a fixed age, not the operator's; `outbox serve` deletes them every minute too.
    with conn.transaction():
        report.receipts = conn.execute(query("purge_consumer_receipts", schema), (now - RECEIPT_RETENTION,)).rowcount
    # 5. Consumers' kept requests that were replayed, at the failed deliveries' retention.
    with conn.transaction():
        report.replayed = conn.execute(query("purge_replayed_consumer_failures", schema), (failed_cutoff,)).rowcount
    return report


def _leaves_before(conn: psycopg.Connection[Any], schema: str, parent: str, cutoff: datetime) -> list[str]:
    """The ranged leaves of `parent` whose whole range ended at or before `cutoff`."""
    with conn.transaction():
        rows = conn.execute(query("partition_leaves", schema), (parent,)).fetchall()
    return [leaf for leaf, _, upper in rows if upper is not None and upper <= cutoff]


def _ddl(conn: psycopg.Connection[Any], schema: str, report: PurgeReport, leaf: str, name: str) -> None:
    """Drop (or retire) one leaf in its own short transaction; a lock not granted in time is tried
    again, then left for the next purge."""
    for attempt in range(_LOCK_TRIES):
        try:
            with conn.transaction():
                conn.execute(query("partition_lock_timeout", schema))
                row = conn.execute(query(name, schema), (f"{schema}.{leaf}",)).fetchone()
        except psycopg.errors.LockNotAvailable:
            time.sleep(0.5 * (attempt + 1))
            continue
        report.dropped.append(leaf)
        if name == "retire_events_partition" and row is not None:
            report.events_kept += int(row[0])
        return
    report.busy.append(leaf)


def _batches(conn: psycopg.Connection[Any], schema: str, name: str, cutoff: datetime, batch_size: int) -> int:
    """Run the DELETE `name` in batches of `batch_size`, each its own transaction, until it runs dry."""
    total = 0
    while True:
        with conn.transaction():
            deleted = conn.execute(query(name, schema), (cutoff, batch_size)).rowcount
        total += deleted
        if deleted < batch_size:
            return total
