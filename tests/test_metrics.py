"""`outbox run --metrics-port`: gauges from a real database, served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from worker.daemon import partitions
from worker.daemon.metrics import Connect, Metrics


@dataclass
class Health:
    """The worker's side of the health endpoints, set by hand."""

    database_ok: bool = True
    listener_connected: bool = True
    ready: bool = True
    stopping: bool = False


@pytest.fixture
async def metrics() -> AsyncIterator[Metrics]:
    """Metrics serving on a free port of 127.0.0.1; always stopped afterwards."""
    served = Metrics(Health(), refresh_interval=0.05, refresh_timeout=0.5)
    await served.start("127.0.0.1", 0)
    try:
        yield served
    finally:
        await served.stop()


def connector(url: Callable[[], str]) -> Connect:
    """A fresh autocommit connection per refresh, to whatever database `url()` names then."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with await psycopg.AsyncConnection.connect(url(), autocommit=True, connect_timeout=2) as conn:
            yield conn

    return connect


async def scrape(metrics: Metrics) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{metrics.port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def value(body: str, series: str) -> float:
    """The value of one exact series (name and labels as exposed) in a Prometheus text body."""
    values = [float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.rsplit(" ", 1)[0] == series]
    assert len(values) == 1, f"{series} appears {len(values)} times in:\n{body}"
    return values[0]


async def refresh(metrics: Metrics, database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await metrics.refresh(conn)


# -- fixtures in the database: plain rows, as the router and recorder leave them --------------------


def add_subscription(conn: psycopg.Connection[Any], url: str = "https://receiver.example/hook") -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO outbox.subscriptions (callback_url, types) VALUES (%s, '{*}') RETURNING id", (url,)
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def add_event(conn: psycopg.Connection[Any], *, routed: bool = True, age_seconds: float = 0.0) -> int:
    row = conn.execute(
        "INSERT INTO outbox.events (event, enqueued_at, routed_at) "
        "VALUES ('{}', now() - make_interval(secs => %s), CASE WHEN %s THEN now() END) RETURNING position",
        (age_seconds, routed),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_delivery(conn: psycopg.Connection[Any], subscription: uuid.UUID, status: str, age_seconds: float = 0.0) -> int:
    """One delivery in `status`, created `age_seconds` ago, satisfying the table's checks for that state."""
    row = conn.execute(
        """INSERT INTO outbox.deliveries
               (event_position, event_enqueued_at, subscription_id, status, ordering_key, created_at, delivered_at,
                finished_at, claim_token, leased_until)
           SELECT %(event)s, e.enqueued_at, %(subscription)s, %(status)s,
                  CASE WHEN %(status)s = 'blocked' THEN 'zaak-1' END,
                  now() - make_interval(secs => %(age)s), CASE WHEN %(status)s = 'delivered' THEN now() END,
                  CASE WHEN %(status)s IN ('delivered', 'failed') THEN now() END,
                  CASE WHEN %(status)s = 'delivering' THEN gen_random_uuid() END,
                  CASE WHEN %(status)s = 'delivering' THEN now() + interval '30 seconds' END
             FROM outbox.events e WHERE e.position = %(event)s
           RETURNING id""",
        {"event": add_event(conn), "subscription": subscription, "status": status, "age": age_seconds},
    ).fetchone()
    assert row is not None
    return int(row[0])


def pause(conn: psycopg.Connection[Any], subscription: uuid.UUID) -> None:
    conn.execute(
        "UPDATE outbox.subscriptions SET status = 'paused', paused_reason = 'operator' WHERE id = %s", (subscription,)
    )


# -- the snapshot --------------------------------------------------------------------------------------


async def test_backlog_gauges_count_each_state_from_the_database(metrics: Metrics, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        active = add_subscription(conn, "https://user:hunter2@receiver.example/hook?token=s3cret")
        paused = add_subscription(conn)
        pause(conn, paused)
        third = add_subscription(conn)
        pause(conn, third)
        add_delivery(conn, active, "pending", age_seconds=3600)
        for _ in range(2):
            add_delivery(conn, active, "pending")
        add_delivery(conn, paused, "pending")
        for _ in range(2):
            add_delivery(conn, active, "blocked")
        add_delivery(conn, active, "delivering")
        for _ in range(4):
            add_delivery(conn, active, "delivered", age_seconds=7200)  # finished: neither counted nor oldest
        add_delivery(conn, active, "failed", age_seconds=7200)
        for _ in range(2):
            add_event(conn, routed=False, age_seconds=60)
    await refresh(metrics, database_url)
    body = await scrape(metrics)
    lines = body.splitlines()
    assert 'outbox_backlog{state="pending"} 4.0' in lines
    assert 'outbox_backlog{state="blocked"} 2.0' in lines
    assert 'outbox_backlog{state="delivering"} 1.0' in lines
    assert "outbox_unrouted_events 2.0" in lines
    assert "outbox_paused_subscriptions 2.0" in lines
    assert 3600 <= value(body, "outbox_oldest_pending_age_seconds") < 3660
    assert 0 < time.time() - value(body, "outbox_metrics_snapshot_timestamp_seconds") < 60
    assert "hunter2" not in body and "s3cret" not in body and "receiver.example" not in body


@pytest.mark.parametrize("state", ["pending", "blocked", "delivering"])
async def test_oldest_age_is_the_oldest_unfinished_delivery_whatever_its_state(
    metrics: Metrics, database_url: str, state: str
) -> None:
    with psycopg.connect(database_url) as conn:
        subscription = add_subscription(conn)
        add_delivery(conn, subscription, "delivered", age_seconds=9000)
        add_delivery(conn, subscription, state, age_seconds=1800)
        for other in ("pending", "blocked", "delivering"):
            add_delivery(conn, subscription, other, age_seconds=5)
    await refresh(metrics, database_url)
    assert 1800 <= value(await scrape(metrics), "outbox_oldest_pending_age_seconds") < 1860


async def test_an_unrouted_event_older_than_every_delivery_sets_the_oldest_age(
    metrics: Metrics, database_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        subscription = add_subscription(conn)
        add_delivery(conn, subscription, "pending", age_seconds=60)
        add_event(conn, routed=False, age_seconds=600)
        add_event(conn, routed=True, age_seconds=9000)  # routed: no longer waiting
    await refresh(metrics, database_url)
    assert 600 <= value(await scrape(metrics), "outbox_oldest_pending_age_seconds") < 660


async def test_an_empty_outbox_reports_zeros(metrics: Metrics, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        add_delivery(conn, add_subscription(conn), "delivered", age_seconds=600)
    await refresh(metrics, database_url)
    lines = (await scrape(metrics)).splitlines()
    for line in (
        'outbox_backlog{state="pending"} 0.0',
        'outbox_backlog{state="blocked"} 0.0',
        'outbox_backlog{state="delivering"} 0.0',
        "outbox_unrouted_events 0.0",
        "outbox_paused_subscriptions 0.0",
        "outbox_oldest_pending_age_seconds 0.0",
    ):
        assert line in lines


PARTITIONED = ("deliveries_delivered", "deliveries_failed", "delivery_attempts", "events")


async def test_partitions_ahead_says_how_far_the_leaves_reach_past_now(metrics: Metrics, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        partitions.ensure(conn, "outbox", timedelta(days=1))
    await refresh(metrics, database_url)
    body = await scrape(metrics)
    assert "# TYPE outbox_partitions_ahead_seconds gauge" in body.splitlines()
    for table in PARTITIONED:
        # ensure_partitions makes leaves up to at least now + 2 days, in whole days: less than 3 days ahead.
        assert 2 * 86400 - 60 <= value(body, f'outbox_partitions_ahead_seconds{{table="{table}"}}') < 3 * 86400


async def test_partitions_ahead_goes_negative_when_nobody_made_leaves(metrics: Metrics, database_url: str) -> None:
    """Leaves last made five days ago (workers down since): the gauge says how far behind, below zero;
    a table without any ranged leaf says 0."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in PARTITIONED:
            for (leaf,) in conn.execute(
                "SELECT leaf::text FROM outbox.partition_leaves(%s) WHERE upper_bound IS NOT NULL", (table,)
            ).fetchall():
                conn.execute(f"DROP TABLE {leaf}")
        await refresh(metrics, database_url)
        assert value(await scrape(metrics), 'outbox_partitions_ahead_seconds{table="events"}') == 0.0
        partitions.ensure(conn, "outbox", timedelta(days=1), at=datetime.now(UTC) - timedelta(days=5))
    await refresh(metrics, database_url)
    body = await scrape(metrics)
    for table in PARTITIONED:
        # Made up to (five days ago + 2 days), in whole days.
        assert -3 * 86400 - 60 <= value(body, f'outbox_partitions_ahead_seconds{{table="{table}"}}') <= -2 * 86400 + 60


# -- what the daemon reports ------------------------------------------------------------------------


async def test_observe_counts_outcomes_and_durations_per_subscription(metrics: Metrics) -> None:
    a, b = str(uuid.uuid4()), uuid.uuid4()
    metrics.observe(a, "delivered", 0.2)
    metrics.observe(a, "delivered", 0.2)
    metrics.observe(a, "retry", 0.02)
    metrics.observe(a, "failed", None)  # no HTTP request: counted, not timed
    metrics.observe(b, "retired", 31.0)
    metrics.set_in_flight(7)
    body = await scrape(metrics)
    lines = body.splitlines()
    assert f'outbox_deliveries_total{{outcome="delivered",subscription="{a}"}} 2.0' in lines
    assert f'outbox_deliveries_total{{outcome="retry",subscription="{a}"}} 1.0' in lines
    assert f'outbox_deliveries_total{{outcome="failed",subscription="{a}"}} 1.0' in lines
    # Outcomes not seen yet start at zero, so a first failure shows in increase().
    assert f'outbox_deliveries_total{{outcome="retired",subscription="{a}"}} 0.0' in lines
    assert f'outbox_deliveries_total{{outcome="retired",subscription="{b}"}} 1.0' in lines
    assert f'outbox_attempt_duration_seconds_count{{subscription="{a}"}} 3.0' in lines
    assert f'outbox_attempt_duration_seconds_bucket{{le="0.005",subscription="{a}"}} 0.0' in lines
    assert f'outbox_attempt_duration_seconds_bucket{{le="0.025",subscription="{a}"}} 1.0' in lines
    assert f'outbox_attempt_duration_seconds_bucket{{le="0.25",subscription="{a}"}} 3.0' in lines
    assert value(body, f'outbox_attempt_duration_seconds_sum{{subscription="{a}"}}') == pytest.approx(0.42)
    assert f'outbox_attempt_duration_seconds_bucket{{le="30.0",subscription="{b}"}} 0.0' in lines
    assert f'outbox_attempt_duration_seconds_bucket{{le="+Inf",subscription="{b}"}} 1.0' in lines
    assert "outbox_deliveries_in_flight 7.0" in lines
    metrics.set_in_flight(0)
    assert "outbox_deliveries_in_flight 0.0" in (await scrape(metrics)).splitlines()


async def test_delivery_latency_runs_from_the_events_enqueued_at_to_its_2xx(metrics: Metrics) -> None:
    sub = str(uuid.uuid4())
    now = datetime.now(UTC)
    metrics.observe(sub, "delivered", 0.01, now - timedelta(seconds=2))
    metrics.observe(sub, "delivered", 0.01, now - timedelta(minutes=20))  # waited through retries
    metrics.observe(sub, "retry", 0.01, now - timedelta(seconds=2))  # not delivered: not a latency
    metrics.observe(sub, "delivered", 0.01, now + timedelta(seconds=5))  # the database's clock ahead: 0, not < 0
    body = await scrape(metrics)
    lines = body.splitlines()
    assert f'outbox_delivery_latency_seconds_count{{subscription="{sub}"}} 3.0' in lines
    assert f'outbox_delivery_latency_seconds_bucket{{le="0.005",subscription="{sub}"}} 1.0' in lines
    assert f'outbox_delivery_latency_seconds_bucket{{le="1.0",subscription="{sub}"}} 1.0' in lines
    assert f'outbox_delivery_latency_seconds_bucket{{le="2.5",subscription="{sub}"}} 2.0' in lines
    assert f'outbox_delivery_latency_seconds_bucket{{le="900.0",subscription="{sub}"}} 2.0' in lines
    assert f'outbox_delivery_latency_seconds_bucket{{le="3600.0",subscription="{sub}"}} 3.0' in lines
    metrics.keep_only(set())
    assert "outbox_delivery_latency_seconds_count" not in await scrape(metrics)


async def test_a_removed_subscription_leaves_the_metrics(metrics: Metrics) -> None:
    kept, removed = str(uuid.uuid4()), str(uuid.uuid4())
    metrics.observe(kept, "delivered", 0.1)
    metrics.observe(removed, "delivered", 0.1)
    metrics.keep_only({kept})
    body = await scrape(metrics)
    assert removed not in body
    assert f'outbox_deliveries_total{{outcome="delivered",subscription="{kept}"}} 1.0' in body.splitlines()
    metrics.observe(removed, "retry", 0.1)  # seen again (it was not removed after all): counted afresh
    assert f'outbox_deliveries_total{{outcome="retry",subscription="{removed}"}} 1.0' in (await scrape(metrics))


def test_observe_refuses_an_unknown_outcome() -> None:
    metrics = Metrics(Health())
    with pytest.raises(ValueError, match="outcome must be one of"):
        metrics.observe(str(uuid.uuid4()), "exploded", 0.1)
    assert "outbox_deliveries_total{" not in metrics.render()[0].decode()


async def test_each_metrics_object_has_its_own_registry(metrics: Metrics) -> None:
    other = Metrics(Health())
    other.observe("s", "delivered", 0.1)
    assert 'outbox_deliveries_total{outcome="delivered",subscription="s"} 1.0' in other.render()[0].decode()
    assert 'subscription="s"' not in await scrape(metrics)


async def test_openmetrics_is_served_when_the_scraper_asks_for_it(metrics: Metrics) -> None:
    metrics.observe("s", "delivered", 0.1)
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            f"http://127.0.0.1:{metrics.port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert 'outbox_deliveries_total{outcome="delivered",subscription="s"} 1.0' in response.text.splitlines()
    assert response.text.endswith("# EOF\n")


# -- health --------------------------------------------------------------------------------------------


async def get(metrics: Metrics, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(f"http://127.0.0.1:{metrics.port}{path}")


async def test_healthz_and_readyz_answer_ok_for_a_healthy_running_worker(metrics: Metrics) -> None:
    for path in ("/healthz", "/readyz"):
        response = await get(metrics, path)
        assert (response.status_code, response.text) == (200, "ok")
    lines = (await scrape(metrics)).splitlines()
    assert "outbox_database_up 1.0" in lines
    assert "outbox_listener_connected 1.0" in lines


@pytest.mark.parametrize(
    ("change", "reason", "gauge"),
    [
        ({"database_ok": False}, "database unreachable", "outbox_database_up 0.0"),
        ({"listener_connected": False}, "LISTEN connection down", "outbox_listener_connected 0.0"),
    ],
)
async def test_healthz_is_503_with_the_reason_when_the_database_or_listener_is_down(
    metrics: Metrics, change: dict[str, bool], reason: str, gauge: str
) -> None:
    assert isinstance(metrics.health, Health)
    for name, flag in change.items():
        setattr(metrics.health, name, flag)
    response = await get(metrics, "/healthz")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert response.text.count("\n") == 1 and response.text.endswith("\n")
    assert json.loads(response.text) == {"status": "unavailable", "reason": reason}
    assert gauge in (await scrape(metrics)).splitlines()
    ready = await get(metrics, "/readyz")  # not ready without a database (e.g. failing over); the link is not readiness
    if change.get("database_ok") is False:
        assert (ready.status_code, json.loads(ready.text)) == (503, {"status": "unavailable", "reason": reason})
    else:
        assert ready.status_code == 200
    metrics.health.database_ok = metrics.health.listener_connected = True
    assert (await get(metrics, "/healthz")).status_code == 200


async def test_healthz_names_every_problem(metrics: Metrics) -> None:
    metrics.health = Health(database_ok=False, listener_connected=False)
    response = await get(metrics, "/healthz")
    assert response.status_code == 503
    assert json.loads(response.text)["reason"] == "database unreachable; LISTEN connection down"


@pytest.mark.parametrize(
    ("health", "reason"),
    [
        (Health(ready=False), "starting: no successful pass yet"),
        (Health(stopping=True), "stopping"),
        (Health(ready=True, stopping=True), "stopping"),
    ],
)
async def test_readyz_is_503_until_the_first_pass_and_once_stopping(
    metrics: Metrics, health: Health, reason: str
) -> None:
    metrics.health = health
    response = await get(metrics, "/readyz")
    assert response.status_code == 503
    assert json.loads(response.text) == {"status": "unavailable", "reason": reason}
    assert (await get(metrics, "/healthz")).status_code == 200  # alive all the same


async def test_unknown_paths_are_404(metrics: Metrics) -> None:
    assert (await get(metrics, "/")).status_code == 404


# -- the background refresh --------------------------------------------------------------------------


async def wait_for_value(metrics: Metrics, series: str, expected: float, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        body = await scrape(metrics)
        if value(body, series) == expected:
            return body
        assert time.monotonic() < deadline, f"{series} never became {expected}:\n{body}"
        await asyncio.sleep(0.05)


async def test_background_refresh_follows_the_database(database_url: str) -> None:
    metrics = Metrics(Health(), refresh_interval=0.05)
    await metrics.start("127.0.0.1", 0, connector(lambda: database_url))
    try:
        await wait_for_value(metrics, 'outbox_backlog{state="pending"}', 0.0)
        with psycopg.connect(database_url) as conn:
            subscription = add_subscription(conn)
            for _ in range(3):
                add_delivery(conn, subscription, "pending")
        await wait_for_value(metrics, 'outbox_backlog{state="pending"}', 3.0)
    finally:
        await metrics.stop()


async def test_a_failing_refresh_keeps_the_last_snapshot_and_counts_the_error(database_url: str) -> None:
    target = {"url": database_url}
    with psycopg.connect(database_url) as conn:
        add_delivery(conn, add_subscription(conn), "pending")
    metrics = Metrics(Health(), refresh_interval=0.05)
    await metrics.start("127.0.0.1", 0, connector(lambda: target["url"]))
    try:
        await wait_for_value(metrics, 'outbox_backlog{state="pending"}', 1.0)
        target["url"] = psycopg.conninfo.make_conninfo(database_url, dbname=f"outbox_gone_{uuid.uuid4().hex[:8]}")
        deadline = time.monotonic() + 10
        while value(body := await scrape(metrics), "outbox_metrics_refresh_errors_total") < 2:
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)
        assert 'outbox_backlog{state="pending"} 1.0' in body.splitlines()
        target["url"] = database_url  # the database is back: so are fresh numbers
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE outbox.deliveries SET status = 'failed', finished_at = now()")
        await wait_for_value(metrics, 'outbox_backlog{state="pending"}', 0.0)
    finally:
        await metrics.stop()


async def test_a_slow_database_never_holds_up_a_scrape(database_url: str) -> None:
    """A snapshot stuck behind a lock times out and is cancelled in the server, so the connection it
    borrowed (one shared connection here, like the worker's pool) stays usable; scrapes stay fast."""
    with psycopg.connect(database_url) as conn:
        add_delivery(conn, add_subscription(conn), "pending")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as shared:

        @contextlib.asynccontextmanager
        async def lend() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
            yield shared

        metrics = Metrics(Health(), refresh_interval=0.05, refresh_timeout=0.3)
        await metrics.start("127.0.0.1", 0, lend)
        try:
            await wait_for_value(metrics, 'outbox_backlog{state="pending"}', 1.0)
            with psycopg.connect(database_url) as locker:
                locker.execute("LOCK TABLE outbox.deliveries IN ACCESS EXCLUSIVE MODE")
                errors = value(await scrape(metrics), "outbox_metrics_refresh_errors_total")
                deadline = time.monotonic() + 10
                while value(body := await scrape(metrics), "outbox_metrics_refresh_errors_total") < errors + 2:
                    assert time.monotonic() < deadline, body
                    started = time.monotonic()
                    await scrape(metrics)
                    assert time.monotonic() - started < 0.2
                    await asyncio.sleep(0.05)
                assert 'outbox_backlog{state="pending"} 1.0' in body.splitlines()
                locker.execute("UPDATE outbox.deliveries SET status = 'failed', finished_at = now()")
            await wait_for_value(metrics, 'outbox_backlog{state="pending"}', 0.0)
            assert not shared.closed
        finally:
            await metrics.stop()


# -- lifecycle -------------------------------------------------------------------------------------------


async def test_stop_closes_the_port_and_can_be_called_twice() -> None:
    metrics = Metrics(Health())
    await metrics.start("127.0.0.1", 0)
    port = metrics.port
    assert port
    assert (await get(metrics, "/healthz")).status_code == 200
    await metrics.stop()
    await metrics.stop()
    assert metrics.port is None
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(f"http://127.0.0.1:{port}/healthz")


async def test_a_port_in_use_fails_start_and_leaves_nothing_running(metrics: Metrics) -> None:
    taken = metrics.port
    assert taken
    other = Metrics(Health())
    with pytest.raises(OSError, match="(?i)address already in use"):
        await other.start("127.0.0.1", taken)
    assert other.port is None
    await other.stop()
    # The port is free again once the first server stops.
    await metrics.stop()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", taken))


# -- what `outbox run` exposes by default ---------------------------------------------------------------


def _listening(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on `port` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_outbox_run_serves_metrics_on_loopback_only_by_default(start_worker: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    worker = start_worker({}, "--metrics-port", str(port))  # no --metrics-host, no OUTBOX_METRICS_HOST
    started = worker.wait_logged("metrics server started")
    assert started["host"] == "127.0.0.1"
    assert _listening(port) == {"0100007F"}  # 127.0.0.1, and no IPv6 or wildcard socket
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code in (200, 503)
    assert worker.terminate() == 0


async def test_no_created_series_are_exported(metrics: Metrics) -> None:
    metrics.observe("s", "delivered", 0.1)
    metrics.limit_cut("s", "timeout")
    text = await scrape(metrics)
    assert "outbox_deliveries_total" in text and "outbox_attempt_duration_seconds_count" in text
    assert "_created" not in text


async def test_stop_ends_a_refresh_whose_cancellation_turned_into_another_error() -> None:
    """psycopg, cancelled mid-query, may raise the query's own error instead (seen: UndefinedTable while the
    schema was being migrated). `stop` must still end the refresh: it once waited forever, and so did the
    worker's exit with it."""
    entered = asyncio.Event()

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise psycopg.errors.UndefinedTable("relation does not exist") from None
        yield  # type: ignore[misc]  # never reached

    served = Metrics(Health(), refresh_interval=0.05, refresh_timeout=60)
    await served.start("127.0.0.1", 0, connect)
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(served.stop(), 5)
    assert served.port is None
