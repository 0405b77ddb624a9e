"""Does the claim query's time grow with history? Claim 100 of 1,000 pending deliveries next to
1k and then 1M delivered ones, and print the timings (median of repeated EXPLAIN ANALYZE runs).

    python bench/claim.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Works in its own database (`bench_claim`, dropped and made anew).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import uuid
from typing import Any

import psycopg
from psycopg import conninfo, sql

import outbox
from outbox._sql import query

DATABASE = "bench_claim"


def _url(base: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(base)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def fill(conn: psycopg.Connection[Any], delivered: int, pending: int) -> None:
    """`delivered` old delivered deliveries and `pending` due ones, for one subscription."""
    conn.execute("TRUNCATE outbox.events, outbox.subscriptions CASCADE")
    sub = conn.execute(
        "INSERT INTO outbox.subscriptions (callback_url, types) VALUES ('https://example.org/hook', '{*}') RETURNING id"
    ).fetchone()
    assert sub is not None
    body = '{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"k","data":"' + "y" * 500 + '"}'
    total = delivered + pending
    conn.execute(
        "INSERT INTO outbox.events (event, routed_at) SELECT %s::json, now() FROM generate_series(1, %s)", (body, total)
    )
    conn.execute(
        """INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, ordering_key, status,
                                          attempts, delivered_at, finished_at, last_status_code, next_attempt_at)
           SELECT position, enqueued_at, %s, 'zaak-' || (position %% 500),
                  CASE WHEN position <= %s THEN 'delivered' ELSE 'pending' END,
                  CASE WHEN position <= %s THEN 1 ELSE 0 END,
                  CASE WHEN position <= %s THEN now() - interval '1 second' END,
                  CASE WHEN position <= %s THEN now() - interval '1 second' END,
                  CASE WHEN position <= %s THEN 204 END,
                  now() - interval '1 second'
             FROM outbox.events ORDER BY position""",
        (sub[0], delivered, delivered, delivered, delivered, delivered),
    )
    conn.commit()
    conn.autocommit = True
    # A partitioned parent is not analyzed by VACUUM ANALYZE of its leaves: both, explicitly.
    conn.execute("VACUUM ANALYZE outbox.deliveries")
    conn.execute("VACUUM ANALYZE outbox.events")
    conn.execute("ANALYZE outbox.deliveries")
    conn.execute("ANALYZE outbox.events")
    conn.autocommit = False


def time_claim(conn: psycopg.Connection[Any], repeats: int, rated: bool) -> tuple[float, str]:
    """The worker's claim of 100 for the one subscription; `rated`: through its token bucket."""
    statement = query("claim", "outbox").decode()
    sub = conn.execute("SELECT id FROM outbox.subscriptions").fetchone()
    assert sub is not None
    if rated:
        conn.execute(
            "INSERT INTO outbox.subscription_pace (subscription_id, tokens) VALUES (%s, 1000000) "
            "ON CONFLICT (subscription_id) DO UPDATE SET tokens = 1000000",
            (sub[0],),
        )
        conn.commit()
    times = []
    plan = ""
    for _ in range(repeats):
        params = {
            "subscriptions": [sub[0]], "caps": [100], "units": [1], "rated": [rated], "limit": 100,
            "token": uuid.uuid4(), "lease": 60.0, "max_requests": [100], "adaptive": False, "initial": 4.0,
        }  # fmt: skip
        rows = conn.execute(("EXPLAIN (ANALYZE, BUFFERS) " + statement).encode(), params).fetchall()
        conn.rollback()  # leave the pending rows pending for the next run
        plan = "\n".join(r[0] for r in rows)
        match = re.search(r"Execution Time: ([\d.]+) ms", plan)
        assert match
        times.append(float(match.group(1)))
    return statistics.median(times), plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("OUTBOX_DATABASE_URL"), required=False)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--show-plan", action="store_true")
    args = parser.parse_args()
    base = args.database_url or "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = _url(base, DATABASE)
    outbox.migrate(url)
    print("claim of 100 among 1,000 due deliveries, median of", args.repeats, "EXPLAIN ANALYZE runs")
    results = {}
    with psycopg.connect(url) as conn:
        conn.execute("SET jit = off")
        for delivered in (1_000, 1_000_000):
            fill(conn, delivered, 1_000)
            for rated in (False, True):
                median, plan = time_claim(conn, args.repeats, rated)
                results[delivered, rated] = median
                kind = "rate-limited" if rated else "unlimited"
                print(f"  {delivered:>9,} delivered rows, {kind:12}: {median:7.2f} ms")
                if args.show_plan:
                    print(plan)
    for rated in (False, True):
        ratio = results[1_000_000, rated] / results[1_000, rated]
        kind = "rate-limited" if rated else "unlimited"
        print(f"  ratio 1M / 1k, {kind}: {ratio:.2f} ({'does not grow' if ratio < 1.5 else 'GROWS'} with history)")
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


if __name__ == "__main__":
    main()
