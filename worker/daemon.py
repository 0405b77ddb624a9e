"""`outbox run`: route, claim, deliver, record, retry, until told to stop.

One asyncio process:
  * the main loop routes new events, claims due deliveries (FOR UPDATE SKIP LOCKED, lease + claim
    token) as long as there are free slots, and starts one task per delivery;
  * delivery tasks POST outside any transaction and hand their result to the recorder;
  * the recorder writes results back in batches, fenced by the claim token, retrying until the
    database takes them (a result in memory is never dropped while the process lives);
  * the listener keeps a LISTEN connection and wakes the main loop; the poll interval is the backstop.
While idle, the worker registers in `idle_workers` so enqueue sends a NOTIFY; while busy it does not.

PostgreSQL unreachable or restarting: every step waits and retries with backoff (tenacity), one log
line per state change. SIGTERM/SIGINT: stop claiming, give in-flight HTTP up to the grace period,
release what is left, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from outbox._sql import query
from worker import router
from worker.http import Claimed, Result, Sender
from worker.logs import log, redact
from worker.outcome import Outcome
from worker.settings import WorkerSettings
from worker.subscription_store import from_row

DATABASE_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
BEGIN, COMMIT = query("begin", "outbox"), query("commit", "outbox")
T = TypeVar("T")


class Worker:
    def __init__(self, settings: WorkerSettings, database_url: str) -> None:
        self.settings = settings
        self.schema = settings.db_schema
        self._url = database_url
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: dict[int, tuple[Claimed, asyncio.Task[None]]] = {}
        self._per_subscription: Counter[uuid.UUID] = Counter()
        self._results: list[Result] = []
        self._results_ready = asyncio.Event()
        self._database_ok = True
        self._listen_pid: int | None = None
        self._idle = False
        self._next_due_in: float | None = None  # seconds until the next retry or lease expiry
        self._cycles = 0
        self.delivered = 0  # counters for progress lines and tests
        self.attempts = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; `run` then winds down and returns."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        self._pool = AsyncConnectionPool(
            self._url,
            min_size=2,
            max_size=4,
            open=False,
            timeout=5.0,
            configure=self._configure,
            # Autocommit, with BEGIN/COMMIT sent inside the pipelines where a transaction is needed:
            # psycopg would otherwise send the implicit BEGIN alone and wait for it.
            kwargs={"autocommit": True},
        )
        await self._pool.open(wait=False)
        self._sender = Sender(self.settings)
        log(logging.INFO, "worker started", worker=self.settings.worker_id, schema=self.schema,
            concurrency=self.settings.concurrency, batch_size=self.settings.batch_size)  # fmt: skip
        listener = asyncio.create_task(self._listen(), name="listener")
        self._recorder = asyncio.create_task(self._record_forever(), name="recorder")
        try:
            await self._main_loop()
        finally:
            self._stopping.set()  # also when the loop ended by an error: the recorder must finish
            await self._wind_down()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._sender.aclose()
            await self._pool.close(timeout=2.0)
            log(logging.INFO, "worker stopped", worker=self.settings.worker_id, delivered=self.delivered)

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(query("worker_session", self.schema))

    # -- database access with retries -------------------------------------------------------------

    async def _db(self, step: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], *, forever: bool = True) -> T:
        """Run `step` on a pooled connection; while the database is unreachable, wait and retry."""

        def stop_retrying(state: RetryCallState) -> bool:
            return not forever and self._stopping.is_set()

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DATABASE_ERRORS),
            wait=wait_random_exponential(multiplier=0.2, max=5.0),
            stop=stop_retrying,
            before_sleep=self._database_down,
            reraise=True,
        ):
            with attempt:
                async with self._pool.connection() as conn:
                    result = await step(conn)
                if not self._database_ok:
                    self._database_ok = True
                    log(logging.WARNING, "database reachable again", worker=self.settings.worker_id)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _database_down(self, state: RetryCallState) -> None:
        if self._database_ok:
            self._database_ok = False
            error = state.outcome.exception() if state.outcome else None
            log(logging.WARNING, "database unreachable, retrying", worker=self.settings.worker_id,
                error=type(error).__name__ if error else None)  # fmt: skip

    # -- the main loop --------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return self.settings.concurrency - len(self._in_flight)

    async def _main_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._pass()
            except DATABASE_ERRORS:
                if self._stopping.is_set():
                    break  # told to stop while the database is away: nothing to wait for
                raise
            except Exception as exc:  # never crash-loop: say what failed, look again later
                log(logging.ERROR, "worker pass failed, retrying", worker=self.settings.worker_id,
                    error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")  # fmt: skip
                await self._sleep(self.settings.poll_interval)

    async def _pass(self) -> None:
        """Route, claim and start deliveries; then decide whether to go on at once or sleep."""
        batch = self.settings.batch_size
        self._wake.clear()
        if self._recorder.done():  # the recorder must never be gone while deliveries finish
            self._recorder = asyncio.create_task(self._record_forever(), name="recorder")
        limit = min(batch, self._free_slots())
        routed, claimed = await self._route_claim_and_start(limit)
        busy = routed >= batch or (limit > 0 and claimed >= limit)
        if busy:
            await self._set_idle(False)
            if self._free_slots() > 0:
                return
        if self._stopping.is_set():
            return
        if not busy and not self._idle and self._listen_pid is not None:
            # Register as idle, then look once more: an event committed before the registration
            # was visible to its host did not notify us, but this look finds it.
            await self._set_idle(True)
            return
        # Sleep until the next retry is due, or the poll interval. Rows due now that this pass did
        # not claim are blocked (their subscription is saturated, or another worker holds them):
        # finishing deliveries wake us, so do not spin on them.
        due = self._next_due_in
        if busy or due is None or (due <= 0 and claimed == 0):
            due = self.settings.poll_interval
        await self._sleep(max(0.0, due))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(seconds, self.settings.poll_interval)))

    async def _set_idle(self, idle: bool) -> None:
        if idle == self._idle:
            return

        async def step(conn: psycopg.AsyncConnection[Any]) -> None:
            if idle:
                await conn.execute(query("mark_idle", self.schema), (self.settings.worker_id, self._listen_pid))
            else:
                await conn.execute(query("mark_busy", self.schema), (self.settings.worker_id,))

        await self._db(step, forever=not idle)
        self._idle = idle

    async def _route_claim_and_start(self, limit: int) -> tuple[int, int]:
        """Route new events and claim due deliveries in one transaction of two flights (pipelined),
        then start a task per claimed delivery. Returns (events routed, deliveries claimed)."""
        token = uuid.uuid4()
        schema, batch = self.schema, self.settings.batch_size
        key_lock = router.key_lock_prefix(schema)
        self._cycles += 1

        async def step(conn: psycopg.AsyncConnection[Any]) -> tuple[int, list[tuple[Any, ...]]]:
            # One transaction (the advisory locks last until its commit). Flight 1 reads; flight 2
            # writes the routes, claims, asks when next to look, and commits.
            async with conn.pipeline() as pipeline:
                await conn.execute(BEGIN)
                locked_cursor = await conn.execute(query("route_lock", schema), (router.lock_key(schema),))
                events_cursor = await conn.execute(query("unrouted_events", schema), (batch,))
                subscriptions_cursor = conn.cursor(row_factory=dict_row)
                await subscriptions_cursor.execute(query("list_subscriptions", schema))
                await pipeline.sync()
                locked = await locked_cursor.fetchone()
                events = await events_cursor.fetchall() if locked and locked[0] else []
                subscriptions = [from_row(r) for r in await subscriptions_cursor.fetchall()]
                if events:
                    routes = router.plan(events, subscriptions)
                    if routes.positions:
                        await conn.execute(query("lock_keys", schema), (key_lock, routes.subscription_ids, routes.keys))
                        await conn.execute(
                            query("insert_deliveries", schema), (routes.positions, routes.subscription_ids, routes.keys)
                        )
                    await conn.execute(query("mark_routed", schema), ([row[0] for row in events],))
                active = [uuid.UUID(str(s.id)) for s in subscriptions if s.status == "active"]
                claim_cursor = None
                if limit > 0 and active and not self._stopping.is_set():
                    # Start with a different subscription each pass, so none is always served last.
                    turn = self._cycles % len(active)
                    order = active[turn:] + active[:turn]
                    caps = [self.settings.subscription_concurrency - self._per_subscription[s] for s in order]
                    params = {
                        "subscriptions": [s for s, cap in zip(order, caps, strict=True) if cap > 0],
                        "caps": [min(cap, limit) for cap in caps if cap > 0],
                        "limit": limit,
                        "token": token,
                        "lease": self.settings.lease_seconds,
                    }
                    claim_cursor = await conn.execute(query("claim", schema), params)
                next_due_cursor = await conn.execute(query("next_due_in", schema), (active,))
                await conn.execute(COMMIT)
                await pipeline.sync()
                claimed = await claim_cursor.fetchall() if claim_cursor is not None else []
                next_due = await next_due_cursor.fetchone()
            self._next_due_in = float(next_due[0]) if next_due and next_due[0] is not None else None
            return len(events), claimed

        routed, rows = await self._db(step, forever=False)
        for delivery_id, attempts, subscription_id, url, auth, mode, event, key, rescued in rows:
            claimed = Claimed(delivery_id, attempts, subscription_id, url, auth, mode, event, token, key, rescued)
            self._per_subscription[subscription_id] += 1
            task = asyncio.create_task(self._deliver(claimed))
            self._in_flight[delivery_id] = (claimed, task)
        return routed, len(rows)

    async def _deliver(self, claimed: Claimed) -> None:
        try:
            if claimed.rescued and claimed.attempts > self.settings.retry_max_attempts:
                # Taken back from dead workers more often than it may be tried: stop here, visibly.
                reason = f"abandoned: claimed {claimed.attempts} times without a recorded result (lease expired)"
                result = Result(claimed, Outcome("failed", reason=reason), datetime.now(UTC), 0.0, error="abandoned")
            else:
                result = await self._sender.deliver(claimed)
        finally:
            self._in_flight.pop(claimed.id, None)
            self._per_subscription[claimed.subscription_id] -= 1
            if self._per_subscription[claimed.subscription_id] <= 0:
                del self._per_subscription[claimed.subscription_id]
            # Claim again once half a batch of slots is free: keeps the pipe full without tiny claims.
            if self._free_slots() * 2 >= min(self.settings.batch_size, self.settings.concurrency):
                self._wake.set()
        self.attempts += 1
        self._results.append(result)
        self._results_ready.set()

    # -- recording results ---------------------------------------------------------------------

    async def _record_forever(self) -> None:
        """Write results as they come; after `stop`, write what is left and return."""
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            if self._results:
                await asyncio.sleep(0.001)  # let results that finish together share one transaction
                try:
                    await self._flush()
                except Exception as exc:  # keep the results, say why, try again
                    log(logging.ERROR, "writing results failed, retrying", count=len(self._results),
                        error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")  # fmt: skip
                    await asyncio.sleep(self.settings.poll_interval)
                    self._results_ready.set()
                    continue
            if self._stopping.is_set() and not self._in_flight and not self._results:
                return

    async def _flush(self) -> None:
        """Write every result in hand; on failure they stay in hand for the next try."""
        batch = self._results
        self._results = []
        try:
            await self._db(lambda c: self._write_results(c, batch))
        except BaseException:
            self._results = batch + self._results
            raise

    async def _write_results(self, conn: psycopg.AsyncConnection[Any], batch: list[Result]) -> None:
        ids, tokens, states, codes, errors, delays = [], [], [], [], [], []
        retired: dict[uuid.UUID, str] = {}
        for r in batch:
            kind = r.outcome.kind
            ids.append(r.claimed.id)
            tokens.append(r.claimed.token)
            states.append({"delivered": "delivered", "failed": "failed"}.get(kind, "pending"))
            codes.append(r.status_code)
            errors.append(None if kind == "delivered" else r.outcome.reason)
            delays.append(r.outcome.delay)
            if kind == "retired":
                retired[r.claimed.subscription_id] = r.claimed.callback_url
        finished = [r.claimed for r in batch if r.outcome.kind in ("delivered", "failed") and r.claimed.key]
        finished_subscriptions = [c.subscription_id for c in finished]
        finished_keys = [c.key for c in finished]
        async with conn.pipeline() as pipeline:
            await conn.execute(BEGIN)
            if finished:
                await conn.execute(
                    query("lock_keys", self.schema),
                    (router.key_lock_prefix(self.schema), finished_subscriptions, finished_keys),
                )
            recorded_cursor = await conn.execute(
                query("record_results", self.schema), (ids, tokens, states, codes, errors, delays)
            )
            await conn.execute(
                query("insert_attempts", self.schema),
                (
                    ids,
                    [r.attempted_at for r in batch],
                    [r.duration_ms for r in batch],
                    codes,
                    [r.error for r in batch],
                    [r.body for r in batch],
                ),
            )
            promoted_cursor = None
            if finished:
                promoted_cursor = await conn.execute(
                    query("promote_next", self.schema), (finished_subscriptions, finished_keys)
                )
            retired_cursor = None
            if retired:
                retired_cursor = await conn.execute(
                    query("retire_subscriptions", self.schema),
                    ("the receiver answered 410 Gone: the target is retired", list(retired)),
                )
            await conn.execute(COMMIT)
            await pipeline.sync()
            recorded = await recorded_cursor.fetchall()
            promoted = len(await promoted_cursor.fetchall()) if promoted_cursor is not None else 0
            if retired_cursor is not None:
                for subscription_id, url in await retired_cursor.fetchall():
                    log(logging.WARNING, "subscription paused: 410 Gone", subscription=str(subscription_id),
                        callbackUrl=redact(url))  # fmt: skip
        # Look again at once only when this made work: a successor became pending, or a retry is
        # due before the main loop's next look. Otherwise a NOTIFY need not wait behind a pass.
        if promoted or any(r.outcome.kind in ("retry", "retired") for r in batch):
            self._wake.set()
        fenced = len(batch) - len(recorded)
        if fenced:
            log(logging.WARNING, "results refused: claim no longer ours (lease expired)", count=fenced)
        for r in batch:
            if r.outcome.kind == "delivered":
                self.delivered += 1
            elif r.outcome.kind == "failed":
                log(logging.WARNING, "delivery failed", delivery=r.claimed.id,
                    subscription=str(r.claimed.subscription_id), attempts=r.claimed.attempts,
                    reason=r.outcome.reason)  # fmt: skip

    # -- waking -----------------------------------------------------------------------------------

    async def _listen(self) -> None:
        lost = False
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(query("listen", self.schema))
                    await conn.execute(query("forget_dead_workers", self.schema))
                    self._listen_pid = conn.info.backend_pid
                    if lost:
                        log(logging.WARNING, "listen connection re-established", worker=self.settings.worker_id)
                        lost = False
                        self._idle = False  # re-register with the new pid on the next idle pass
                    self._wake.set()  # something may have been committed while we were not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except DATABASE_ERRORS as exc:
                self._listen_pid = None
                if not lost:
                    log(logging.WARNING, "listen connection lost, reconnecting", worker=self.settings.worker_id,
                        error=type(exc).__name__)  # fmt: skip
                    lost = True
                self._wake.set()
                await asyncio.sleep(1.0)

    # -- stopping -----------------------------------------------------------------------------

    async def _wind_down(self) -> None:
        """Within the grace period: let HTTP in flight finish, release the rest, write the results.
        What the database does not take in time is redone once the leases expire (at least once)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace

        def left() -> float:
            return max(0.5, deadline - loop.time())

        claims = {task: claimed for claimed, task in self._in_flight.values()}
        if claims:
            log(logging.INFO, "stopping: waiting for deliveries in flight", count=len(claims),
                grace_seconds=self.settings.shutdown_grace)  # fmt: skip
            _, pending = await asyncio.wait(claims, timeout=max(0.0, deadline - loop.time()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                await self._release([claims[task] for task in pending], left())
        self._results_ready.set()  # the recorder writes what is in hand, then returns
        try:
            await asyncio.wait_for(self._recorder, timeout=left())
        except (TimeoutError, *DATABASE_ERRORS):
            log(logging.WARNING, "results not written: their leases will expire and they will be redone",
                count=len(self._results))  # fmt: skip
        if self._database_ok:
            with contextlib.suppress(TimeoutError, *DATABASE_ERRORS):
                await asyncio.wait_for(self._set_idle(False), min(left(), 2.0))

    async def _release(self, claims: list[Claimed], timeout: float) -> None:
        async def step(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(
                query("release_claims", self.schema), ([c.id for c in claims], [c.token for c in claims])
            )

        try:
            await asyncio.wait_for(self._db(step, forever=False), timeout)
        except (TimeoutError, *DATABASE_ERRORS):
            log(logging.WARNING, "unfinished claims not released: their leases will expire", count=len(claims))
            return
        log(logging.INFO, "released unfinished claims", count=len(claims))


async def run_worker(settings: WorkerSettings, database_url: str) -> Worker:
    worker = Worker(settings, database_url)
    await worker.run()
    return worker
