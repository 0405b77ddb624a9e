"""What the deliveries listing costs (`outbox deliveries list` and the console's /console/deliveries),
filtered and deep in the paging, on a small and on a large history.

    python bench/console.py --database-url postgresql://postgres@127.0.0.1:5432/postgres [--sizes 1000,1000000]

For each size N: a database of its own (`bench_console`, dropped and made anew) with N deliveries over
seven days of daily leaves to 10 subscriptions: 97 % delivered, 2 % failed, 1 % pending; three event
types (one of them rare: 0.5 %); subjects shared by 20 deliveries each. Then, per filter, the time of
the first page and of the 50th (following the cursors, 50 rows a page), median of REPEAT runs of each
page read (the read layer, worker/store/deliveries.py, the query the CLI and the console use), and of
the console's page over HTTP (a real `outbox serve` app on 127.0.0.1, signed in) where it is served.
Figures on a busy machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import psycopg
from psycopg import conninfo, sql

import outbox
from outbox._deliveries_filter import DeliveryFilter
from worker.store import deliveries as store

DATABASE = "bench_console"
PAGE = 50
DEEP = 50
TYPES = ("nl.overheid.zaken.zaak-gekoppeld", "nl.overheid.zaken.zaak-ontkoppeld", "nl.overheid.zaken.zaak-gesloten")


def _url(base: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(base)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def fill(conn: psycopg.Connection[Any], total: int) -> list[Any]:
    subs = [
        conn.execute(
            "INSERT INTO outbox.subscriptions (callback_url, types) VALUES (%s, '{*}') RETURNING id",
            (f"https://example.org/hook/{n}",),
        ).fetchone()[0]  # type: ignore[index]
        for n in range(10)
    ]
    days = 7
    first = conn.execute(
        "SELECT date_bin(interval '1 day', now() - interval '7 days', timestamptz '2000-01-01+00')"
    ).fetchone()[0]  # type: ignore[index]
    for n in range(days):  # today and ahead: migrate made them
        start = first + timedelta(days=n)
        for parent in ("events", "deliveries_delivered", "deliveries_failed", "delivery_attempts"):
            conn.execute("SELECT outbox.create_partition(%s, %s, %s)", (parent, start, start + timedelta(days=1)))
    span = (days * 86_400) - 3600
    # One event per delivery; g decides its type (0.5 % the rare one), subject (20 per subject),
    # subscription (g % 10) and state (g % 100: 0-1 failed, 2 pending, else delivered).
    conn.execute(
        "INSERT INTO outbox.events (event, enqueued_at, routed_at) "
        "SELECT json_build_object('specversion', '1.0', 'id', 'ev-' || g, 'source', 'urn:nld:oin:01823288444:openzaak',"
        " 'type', CASE WHEN g %% 200 = 7 THEN %(rare)s WHEN g %% 2 = 0 THEN %(t0)s ELSE %(t1)s END,"
        " 'subject', 'zaak-' || (g / 20), 'data', json_build_object('n', g)), t, t "
        "FROM generate_series(1, %(n)s) g, "
        "LATERAL (SELECT %(first)s::timestamptz + make_interval(secs => g * %(span)s::float8 / %(n)s)) AS at(t) ",
        {"rare": TYPES[2], "t0": TYPES[0], "t1": TYPES[1], "n": total, "first": first, "span": span},
    )
    conn.execute(
        "INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, status, attempts, "
        " delivered_at, finished_at, last_status_code, last_error, created_at, updated_at) "
        "SELECT e.position, e.enqueued_at, (%(subs)s::uuid[])[1 + (e.position %% 10)], st.status, st.attempts, "
        " CASE WHEN st.status = 'delivered' THEN e.enqueued_at + interval '1 second' END, "
        " CASE WHEN st.status <> 'pending' THEN e.enqueued_at + interval '1 second' END, "
        " st.code, NULL, e.enqueued_at, e.enqueued_at + interval '1 second' "
        "FROM outbox.events e, LATERAL (SELECT CASE WHEN e.position %% 100 < 2 THEN 'failed' "
        " WHEN e.position %% 100 = 2 THEN 'pending' ELSE 'delivered' END AS status) s, "
        "LATERAL (SELECT s.status, CASE s.status WHEN 'failed' THEN 10 WHEN 'pending' THEN 0 ELSE 1 END AS attempts, "
        " CASE s.status WHEN 'failed' THEN 500 WHEN 'pending' THEN NULL ELSE 204 END AS code) st "
        "ORDER BY e.position",
        {"subs": subs},
    )
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE outbox.events, outbox.deliveries")
    conn.autocommit = False
    return subs


def median_ms(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cursors(conn: psycopg.Connection[Any], where: DeliveryFilter, pages: int) -> list[int | None]:
    """The cursor of each page 1..pages (None for the first), by following `next`."""
    out: list[int | None] = [None]
    page = store.list_deliveries(conn, "outbox", where, limit=PAGE)
    while len(out) < pages and page.next:
        out.append(int(page.next))
        page = store.list_deliveries(conn, "outbox", where, limit=PAGE, after=int(page.next))
    return out


@contextmanager
def console(url: str) -> Iterator[httpx.Client | None]:
    """`outbox serve`'s app on a free port with an operator signed in; None if there is no deliveries page."""
    import uvicorn

    from worker.service.app import asgi_app
    from worker.service.settings import ServeSettings
    from worker.store import operators

    with psycopg.connect(url) as conn:
        operators.add(conn, "outbox", "bench", "viewer", "bench-password-1234")
        conn.commit()
    settings = ServeSettings(database_url=url)
    server = uvicorn.Server(uvicorn.Config(asgi_app(settings, url), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            form = client.get("/console/sign-in")
            token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0] if 'name="csrf"' in form.text else ""
            client.post(
                "/console/sign-in",
                data={"username": "bench", "password": "bench-password-1234", "csrf": token},
                headers={"Origin": base},
            )
            probe = client.get("/console/deliveries")
            yield client if probe.status_code == 200 else None
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_size(base: str, total: int, repeat: int) -> None:
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = _url(base, DATABASE)
    outbox.migrate(url)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        subs = fill(conn, total)
        print(f"\n{total:,} deliveries (filled in {time.perf_counter() - started:.0f} s); median of {repeat} reads, ms")
        filters = {
            "no filter": DeliveryFilter(),
            "state=failed": DeliveryFilter.parse(states="failed"),
            "subscription": DeliveryFilter.parse(subscription=str(subs[3])),
            "subscription+failed": DeliveryFilter.parse(subscription=str(subs[3]), states="failed"),
            "type (common)": DeliveryFilter.parse(type=TYPES[1]),
            "type (rare, 0.5 %)": DeliveryFilter.parse(type=TYPES[2]),
            "subject": DeliveryFilter.parse(subject=f"zaak-{total // 40}"),
            "since 1d": DeliveryFilter.parse(since="1d"),
        }
        found: dict[str, list[int | None]] = {}
        print(f"  {'filter':<22} {'page 1':>9} {'page 50':>9}   (page reached)")
        for label, where in filters.items():
            found[label] = cursors(conn, where, DEEP)
            first = median_ms(lambda w=where: store.list_deliveries(conn, "outbox", w, limit=PAGE), repeat)
            last_cursor = found[label][-1]
            deep = median_ms(
                lambda w=where, c=last_cursor: store.list_deliveries(conn, "outbox", w, limit=PAGE, after=c), repeat
            )
            print(f"  {label:<22} {first:9.2f} {deep:9.2f}   ({len(found[label])})")
        conn.rollback()
    with console(url) as client:
        if client is None:
            print("  (the console has no deliveries page here: HTTP figures skipped)")
        else:
            print(f"  {'console page, HTTP':<22} {'page 1':>9} {'page 50':>9}")
            for label, where in filters.items():
                args = where.query_args()
                last_cursor = found[label][-1]
                first = median_ms(lambda a=args: client.get("/console/deliveries", params=a), repeat)
                deep_args = {**args, **({"after": str(last_cursor)} if last_cursor else {})}
                deep = median_ms(lambda a=deep_args: client.get("/console/deliveries", params=a), repeat)
                print(f"  {label:<22} {first:9.2f} {deep:9.2f}")
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("OUTBOX_DATABASE_URL"))
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = args.database_url or "postgresql://postgres@127.0.0.1:5432/postgres"
    for size in (int(s) for s in args.sizes.split(",")):
        run_size(base, size, args.repeat)


if __name__ == "__main__":
    main()
