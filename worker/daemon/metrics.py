"""`outbox run --metrics-port`: Prometheus metrics and health endpoints, served from the worker's loop.

GET /metrics   the registry below, in the format the scraper asks for (Prometheus text or OpenMetrics).
GET /healthz   200 "ok" while the database answered the worker's last attempt and its LISTEN connection
               is up; else 503 with a one-line JSON reason. Mind that as a Kubernetes liveness probe it
               restarts every worker during a database outage, which helps nothing: alert on it instead.
GET /readyz    200 once the worker made a successful pass (the schema is migrated) and until it stops,
               except while the database is unreachable (503 "database unreachable": no primary, e.g.
               during a failover; ready again with the first statement the new primary answers).

Counters and the in-flight gauge describe this process. The backlog gauges describe the whole schema
and every worker reports the same numbers: aggregate them with max(), not sum(). They come from two
cheap queries (`metrics_snapshot`, `metrics_partitions`) run in the background every few seconds, so a
scrape never waits on the database; when a refresh fails the last snapshot stays, and its age shows in
`outbox_metrics_snapshot_timestamp_seconds`. Labels carry subscription ids only, never URLs or secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from outbox._sql import DEFAULT_SCHEMA, query
from worker.runtime.asgi import AsgiServer
from worker.runtime.logs import log

# No `*_created` series (a counter's or histogram's creation time): nobody graphs them, and they doubled
# the lines of every scrape. Process-wide in prometheus-client, as it must be set before metrics exist.
disable_created_metrics()  # type: ignore[no-untyped-call]

OUTCOMES: Final = ("delivered", "retry", "failed", "retired")
BACKLOG_STATES: Final = ("pending", "blocked", "delivering")
# Webhook receivers answer in milliseconds to tens of seconds (the request timeout caps it).
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Commit → delivery spans milliseconds (an idle worker) to hours (a receiver that was down): retries included.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                          900.0, 3600.0, 14400.0, 86400.0)  # fmt: skip

Connect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]
"""Lends a connection for one refresh, e.g. the worker pool's `connection` method."""


class HealthSource(Protocol):
    """What the worker tells the health endpoints; read on every request."""

    @property
    def database_ok(self) -> bool:
        """The database answered the worker's last attempt."""
        ...

    @property
    def listener_connected(self) -> bool:
        """The LISTEN connection is up (without it the worker only polls)."""
        ...

    @property
    def ready(self) -> bool:
        """The worker completed a pass: started, connected, schema migrated."""
        ...

    @property
    def stopping(self) -> bool:
        """SIGTERM/SIGINT received: no new claims."""
        ...


class Metrics:
    """The worker's metrics in a registry of its own, so several workers (or tests) share a process.

    The daemon calls `observe` per attempt and `set_in_flight` when its in-flight set changes;
    `start`/`stop` run the HTTP server and the background refresh inside the daemon's event loop.
    """

    def __init__(
        self,
        health: HealthSource,
        schema: str = DEFAULT_SCHEMA,
        *,
        refresh_interval: float = 5.0,
        refresh_timeout: float = 3.0,
    ) -> None:
        self.health = health
        self.schema = schema
        self.refresh_interval = refresh_interval
        self.refresh_timeout = refresh_timeout
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter(
            "outbox_deliveries",
            "Delivery attempts by this process, by subscription and outcome (delivered, retry, failed, retired).",
            ["subscription", "outcome"],
            registry=r,
        )
        self.attempt_duration = Histogram(
            "outbox_attempt_duration_seconds",
            "Duration of the HTTP attempts of this process, by subscription.",
            ["subscription"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "outbox_delivery_latency_seconds",
            "From an event's enqueued_at (its transaction's now(), by the database's clock) to the 2xx answer that "
            "delivered it, by subscription: the wait, every retry and the last request.",
            ["subscription"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.backlog = Gauge(
            "outbox_backlog",
            "Unfinished deliveries in the schema by state; the states do not overlap (blocked: waiting "
            "behind an earlier delivery of its ordering key). Same value on every worker.",
            ["state"],
            registry=r,
        )
        self.unrouted = Gauge(
            "outbox_unrouted_events", "Committed events the router has not turned into deliveries yet.", registry=r
        )
        self.oldest_pending_age = Gauge(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest event still waiting: unrouted, or with an unfinished delivery (0 when none).",
            registry=r,
        )
        self.paused = Gauge(
            "outbox_paused_subscriptions", "Subscriptions paused (by an operator or a 410).", registry=r
        )
        self.in_flight = Gauge("outbox_deliveries_in_flight", "HTTP deliveries this process has under way.", registry=r)
        self.concurrency_limit = Gauge(
            "outbox_subscription_concurrency_limit",
            "Requests that may be in flight to the subscription over all workers: its adaptive limit as this "
            "worker last read it (shared: aggregate with max(), not sum()).",
            ["subscription"],
            registry=r,
        )
        self.limit_cuts = Counter(
            "outbox_subscription_concurrency_cuts",
            "Cuts of a subscription's concurrency limit by this process, by reason (timeout, connection error, "
            "503, 429, slow connect, latency).",
            ["subscription", "reason"],
            registry=r,
        )
        self.database_up = Gauge(
            "outbox_database_up", "1 when the database answered this worker's last attempt.", registry=r
        )
        self.listener_connected = Gauge(
            "outbox_listener_connected", "1 when this worker's LISTEN connection is up.", registry=r
        )
        self.partitions_ahead = Gauge(
            "outbox_partitions_ahead_seconds",
            "How far past now the last ranged partition leaf of each time-partitioned table reaches (the "
            "leaves every worker makes ahead; negative: new rows go to its DEFAULT leaf). Same on every worker.",
            ["table"],
            registry=r,
        )
        self.snapshot_timestamp = Gauge(
            "outbox_metrics_snapshot_timestamp_seconds",
            "Unix time of the last successful backlog snapshot (0: none yet); stale means the gauges are.",
            registry=r,
        )
        self.fast_path = Counter(
            "outbox_fast_path",
            "Wake-ups served by the idle fast path (taken: routed, claimed and started in one round trip) "
            "or sent back to the normal path by the database (refused: the worker's view was stale).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("taken", "refused"):
            self.fast_path.labels(outcome=outcome)
        self.refresh_errors = Counter(
            "outbox_metrics_refresh_errors", "Backlog snapshots that failed or timed out.", registry=r
        )
        # Read at scrape time, so they are never staler than the worker's own view.
        self.database_up.set_function(lambda: float(self.health.database_ok))
        self.listener_connected.set_function(lambda: float(self.health.listener_connected))
        for state in BACKLOG_STATES:
            self.backlog.labels(state=state)
        self._known_subscriptions: set[str] = set()
        self._limited: dict[str, set[str]] = {}  # subscriptions with a limit gauge -> reasons with a cut counter
        self._server: AsgiServer | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._refresh_failing = False

    # -- what the daemon reports ---------------------------------------------------------------

    def observe(
        self,
        subscription_id: str | uuid.UUID,
        outcome: str,
        duration_seconds: float | None,
        enqueued_at: datetime | None = None,
    ) -> None:
        """One finished attempt. `duration_seconds` None: no HTTP request was made (e.g. abandoned).
        `enqueued_at`: the event's, for the commit → delivery histogram when it was delivered."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
        subscription = str(subscription_id)
        if subscription not in self._known_subscriptions:
            # Every outcome from zero, so rate()/increase() see the first failure of a subscription.
            self._known_subscriptions.add(subscription)
            for kind in OUTCOMES:
                self.deliveries.labels(subscription=subscription, outcome=kind)
        self.deliveries.labels(subscription=subscription, outcome=outcome).inc()
        if duration_seconds is not None:
            self.attempt_duration.labels(subscription=subscription).observe(max(0.0, duration_seconds))
        if outcome == "delivered" and enqueued_at is not None:
            # Clocks of two machines: a skew shows as a shift, never as a negative wait.
            latency = (datetime.now(UTC) - enqueued_at).total_seconds()
            self.delivery_latency.labels(subscription=subscription).observe(max(0.0, latency))

    def keep_only(self, subscription_ids: set[str]) -> None:
        """Drop the series of subscriptions that no longer exist (removed), so they do not stay
        exported, frozen, until the process restarts."""
        for subscription in self._known_subscriptions - subscription_ids:
            for kind in OUTCOMES:
                with contextlib.suppress(KeyError):
                    self.deliveries.remove(subscription, kind)
            with contextlib.suppress(KeyError):
                self.attempt_duration.remove(subscription)
            with contextlib.suppress(KeyError):
                self.delivery_latency.remove(subscription)
        self._known_subscriptions &= subscription_ids
        for subscription in set(self._limited) - subscription_ids:
            with contextlib.suppress(KeyError):
                self.concurrency_limit.remove(subscription)
            for reason in self._limited.pop(subscription):
                with contextlib.suppress(KeyError):
                    self.limit_cuts.remove(subscription, reason)

    def set_limits(self, limits: dict[str, float]) -> None:
        """The concurrency limits of the subscriptions this worker delivers to, by id."""
        for subscription, limit in limits.items():
            self.concurrency_limit.labels(subscription=subscription).set(limit)
            self._limited.setdefault(subscription, set())

    def limit_cut(self, subscription_id: str | uuid.UUID, reason: str) -> None:
        subscription = str(subscription_id)
        self.limit_cuts.labels(subscription=subscription, reason=reason).inc()
        self._limited.setdefault(subscription, set()).add(reason)

    def set_in_flight(self, n: int) -> None:
        self.in_flight.set(n)

    async def refresh(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Run `metrics_snapshot` on `conn` (autocommit, like the worker pool's) and set the backlog gauges;
        a failure raises and leaves them as they were."""
        cursor = await conn.execute(query("metrics_snapshot", self.schema))
        row = await cursor.fetchone()
        if row is None:  # pragma: no cover - an aggregate always returns a row
            raise RuntimeError("metrics_snapshot returned no row")
        pending, blocked, delivering, unrouted, paused, oldest_age = row
        self.backlog.labels(state="pending").set(int(pending))
        self.backlog.labels(state="blocked").set(int(blocked))
        self.backlog.labels(state="delivering").set(int(delivering))
        self.unrouted.set(int(unrouted))
        self.paused.set(int(paused))
        # Clamped: a row routed in the instant between our now() and our snapshot can be "younger than now".
        self.oldest_pending_age.set(max(0.0, float(oldest_age)) if oldest_age is not None else 0.0)
        cursor = await conn.execute(query("metrics_partitions", self.schema))
        for table, ahead in await cursor.fetchall():
            self.partitions_ahead.labels(table=table).set(float(ahead))
        self.snapshot_timestamp.set(time.time())

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for a scraper's Accept header: (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    # -- HTTP server and background refresh ------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with port 0), or None when not serving."""
        return self._server.port if self._server is not None else None

    async def start(self, host: str | None, port: int, connect: Connect | None = None) -> None:
        """Serve on host:port; with `connect`, also refresh the backlog gauges every `refresh_interval`.

        `outbox run` passes OUTBOX_METRICS_HOST, 127.0.0.1 unless told otherwise (as `outbox serve`):
        the health endpoints and backlog figures are nobody else's business by default. host None or ""
        binds every interface, IPv4 and IPv6 (a scraper outside the container). A port that cannot be
        bound raises OSError here, so `outbox run` fails at startup rather than run blind.
        """
        if self._server is not None:
            raise RuntimeError("the metrics server is already running")
        app = Starlette(
            routes=[
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/readyz", self._readyz, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _http_error},
        )
        app.router.redirect_slashes = False  # /healthz/ is a 404, not a redirect
        # No access log (a line per scrape), and a short shutdown: a scrape in progress is not worth waiting for.
        server = AsgiServer(app, shutdown_timeout=1)
        await server.start(host, port)
        self._server = server
        if connect is not None:
            self._refresher = asyncio.create_task(self._refresh_forever(connect), name="metrics-refresh")
        log(logging.INFO, "metrics server started", host=host or "*", port=self.port)

    async def stop(self) -> None:
        """Stop the refresh and the server; safe to call twice or without `start`."""
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def _refresh_forever(self, connect: Connect) -> None:
        while True:
            try:
                # Bounded: psycopg cancels the query in the server when the timeout cancels the task.
                async with asyncio.timeout(self.refresh_timeout), connect() as conn:
                    await self.refresh(conn)
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # `stop` cancelled us inside the pool's wait, which ended in another error: without this the
                    # cancellation is lost, the loop sleeps on, and `stop` (and the worker's exit) waits forever.
                    raise asyncio.CancelledError from exc
                self.refresh_errors.inc()
                if not self._refresh_failing:  # one line per state change, like the worker's own
                    self._refresh_failing = True
                    log(logging.WARNING, "metrics snapshot failed, serving the last one", error=type(exc).__name__)
            else:
                if self._refresh_failing:
                    self._refresh_failing = False
                    log(logging.INFO, "metrics snapshot works again")
            await asyncio.sleep(self.refresh_interval)

    # -- handlers ---------------------------------------------------------------------------------

    async def _metrics(self, request: Request) -> Response:
        body, content_type = self.render(request.headers.get("Accept", ""))
        # As a header, exactly as chosen: media_type would add a charset to a text/ type without one.
        return Response(body, headers={"Content-Type": content_type})

    async def _healthz(self, request: Request) -> Response:
        problems = []
        if not self.health.database_ok:
            problems.append("database unreachable")
        if not self.health.listener_connected:
            problems.append("LISTEN connection down")
        if problems:
            return _unavailable("; ".join(problems))
        return PlainTextResponse("ok")

    async def _readyz(self, request: Request) -> Response:
        if self.health.stopping:
            return _unavailable("stopping")
        if not self.health.ready:
            return _unavailable("starting: no successful pass yet")
        if not self.health.database_ok:  # e.g. during a failover: the worker waits for a primary
            return _unavailable("database unreachable")
        return PlainTextResponse("ok")


def _http_error(request: Request, exc: Exception) -> Response:
    """404 and 405 as they always were: "404: Not Found", and every endpoint is GET (and HEAD)."""
    assert isinstance(exc, HTTPException)
    headers = {"Allow": "GET,HEAD"} if exc.status_code == 405 else exc.headers
    return PlainTextResponse(f"{exc.status_code}: {exc.detail}", status_code=exc.status_code, headers=headers)


def _unavailable(reason: str) -> Response:
    body = json.dumps({"status": "unavailable", "reason": reason}) + "\n"
    return Response(body, status_code=503, media_type="application/json; charset=utf-8")
