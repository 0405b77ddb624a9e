"""What retention costs: `outbox purge` on days of history in partition leaves, and what finding the
events still needed costs with and without the final leaves' BRIN index on event_enqueued_at.

    python bench/retention.py --database-url postgresql://postgres@127.0.0.1:5432/postgres [--per-day 100000]

Fills DAYS days (from 40 days ago) of PER_DAY events, each delivered to one subscription with one
attempt; 1 % of them also failed to a second subscription; 100 events of the oldest day still pending
behind a paused third one. Then prints the timings of: the "still needed" scan of the oldest day (BRIN,
then without it), and `purge --older-than 30d` (leaves dropped, the events leaves retired). Works in its
own database (`bench_retention`, dropped and made anew). Figures on a busy machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import conninfo, sql

import outbox
from worker.daemon.maintenance import purge

DATABASE = "bench_retention"
BODY = '{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"k","data":"' + "y" * 400 + '"}'


def _url(base: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(base)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def fill(conn: psycopg.Connection[Any], days: int, per_day: int) -> None:
    subs = [
        conn.execute(
            "INSERT INTO outbox.subscriptions (callback_url, types, status, paused_reason) "
            "VALUES ('https://example.org/' || %s, '{*}', %s, %s) RETURNING id",
            (name, "paused" if name == "paused" else "active", "bench" if name == "paused" else None),
        ).fetchone()[0]  # type: ignore[index]
        for name in ("ok", "failing", "paused")
    ]
    first = conn.execute(
        "SELECT date_bin(interval '1 day', now() - make_interval(days => %s), timestamptz '2000-01-01+00')",
        (days + 30,),
    ).fetchone()[0]  # type: ignore[index]
    for n in range(days):
        for parent in ("events", "deliveries_delivered", "deliveries_failed", "delivery_attempts"):
            start = first + timedelta(days=n)
            conn.execute("SELECT outbox.create_partition(%s, %s, %s)", (parent, start, start + timedelta(days=1)))
    for n in range(days):
        day = first + timedelta(days=n)
        # Events spread over the day; each delivered within a minute; 1 in 100 also failed elsewhere.
        conn.execute(
            "INSERT INTO outbox.events (event, enqueued_at, routed_at) "
            "SELECT %s::json, t, t FROM generate_series(1, %s) g, "
            "LATERAL (SELECT %s::timestamptz + make_interval(secs => g * 86000.0 / %s) AS t) AS at",
            (BODY, per_day, day, per_day),
        )
        conn.execute(
            "INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, status, attempts, "
            "delivered_at, finished_at, last_status_code, created_at, updated_at) "
            "SELECT position, enqueued_at, %s, 'delivered', 1, enqueued_at + interval '1 minute', "
            "enqueued_at + interval '1 minute', 204, enqueued_at, enqueued_at + interval '1 minute' "
            "FROM outbox.events WHERE enqueued_at >= %s AND enqueued_at < %s ORDER BY position",
            (subs[0], day, day + timedelta(days=1)),
        )
        conn.execute(
            "INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, status, attempts, "
            "finished_at, last_status_code, created_at, updated_at) "
            "SELECT position, enqueued_at, %s, 'failed', 10, enqueued_at + interval '2 hours', 500, enqueued_at, "
            "enqueued_at + interval '2 hours' "
            "FROM outbox.events WHERE enqueued_at >= %s AND enqueued_at < %s AND position %% 100 = 0 ORDER BY position",
            (subs[1], day, day + timedelta(days=1)),
        )
        conn.execute(
            "INSERT INTO outbox.delivery_attempts (delivery_id, attempted_at, duration_ms, status_code) "
            "SELECT id, finished_at, 12.0, 204 FROM outbox.deliveries "
            "WHERE status = 'delivered' AND finished_at >= %s AND finished_at < %s",
            (day, day + timedelta(days=2)),
        )
        if n == 0:
            conn.execute(
                "INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, status) "
                "SELECT position, enqueued_at, %s, 'pending' FROM outbox.events "
                "WHERE enqueued_at >= %s AND enqueued_at < %s ORDER BY position LIMIT 100",
                (subs[2], day, day + timedelta(days=1)),
            )
        conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE outbox.events, outbox.deliveries, outbox.delivery_attempts")
    conn.autocommit = False


class HostProbe:
    """A host enqueueing one event per transaction in a thread: its commit latencies while purge runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url) as conn:
            while not self._stop.is_set():
                started = time.perf_counter()
                conn.execute("SELECT outbox.insert_event(%s::json)", (BODY,))
                conn.commit()
                self.latencies.append(time.perf_counter() - started)

    def __enter__(self) -> HostProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[int(len(ms) * 0.99)] if ms else 0.0
        return f"{len(ms)} enqueues, median {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.1f} ms"


def needed_scan(conn: psycopg.Connection[Any]) -> str:
    """EXPLAIN ANALYZE of retire_events_partition's "still needed" query for the oldest events leaf."""
    low, high = conn.execute(
        "SELECT lower_bound, upper_bound FROM outbox.partition_leaves('events') WHERE lower_bound IS NOT NULL "
        "ORDER BY lower_bound LIMIT 1"
    ).fetchone()  # type: ignore[misc]
    rows = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT event_position FROM outbox.deliveries "
        "WHERE event_enqueued_at >= %s AND event_enqueued_at < %s",
        (low, high),
    ).fetchall()
    conn.rollback()
    return "\n".join(r[0] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("OUTBOX_DATABASE_URL"))
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--per-day", type=int, default=100_000)
    parser.add_argument("--show-plan", action="store_true")
    args = parser.parse_args()
    base = args.database_url or "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = _url(base, DATABASE)
    outbox.migrate(url)
    with psycopg.connect(url) as conn:
        conn.execute("SET jit = off")
        started = time.perf_counter()
        fill(conn, args.days, args.per_day)
        print(f"filled {args.days} days x {args.per_day:,} events in {time.perf_counter() - started:.0f} s")
        for label in ("with BRIN", "without BRIN"):
            plan = needed_scan(conn)
            ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))  # type: ignore[union-attr]
            hits = re.search(r"Buffers: (.*)", plan)
            print(f"  still-needed scan of the oldest day, {label}: {ms:8.1f} ms  ({hits.group(1) if hits else ''})")
            if args.show_plan:
                print(plan)
            if label == "with BRIN":
                conn.execute("DROP INDEX outbox.deliveries_delivered_event_idx, outbox.deliveries_failed_event_idx")
                conn.commit()
        conn.execute("CREATE INDEX ON outbox.deliveries_delivered USING brin (event_enqueued_at)")
        conn.execute("CREATE INDEX ON outbox.deliveries_failed USING brin (event_enqueued_at)")
        conn.commit()
    with HostProbe(url) as idle:
        time.sleep(2.0)
    print(f"  a host enqueueing alone for 2 s: {idle.summary()}")
    with psycopg.connect(url, autocommit=True) as conn, HostProbe(url) as host:
        started = time.perf_counter()
        report = purge(conn, "outbox", timedelta(days=30))
        elapsed = time.perf_counter() - started
    print(f"  purge --older-than 30d: {elapsed * 1000:8.0f} ms")
    print(f"  the same host meanwhile: {host.summary()}")
    for line in report.lines():
        print("    " + line)
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


if __name__ == "__main__":
    main()
