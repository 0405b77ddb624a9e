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
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from outbox import Subscription
from outbox._operational import is_operational, operational_source
from outbox._operations import key_lock_prefix
from outbox._sql import migrations, query
from worker.daemon import auto_disable, fast_path, partitions, router
from worker.daemon.adaptive import adapt_parameters, maximum_requests, urgent
from worker.daemon.settings import WorkerSettings
from worker.delivery.http import Claimed, Result, Sender, Target
from worker.delivery.outcome import Outcome
from worker.runtime import pooler, tracing
from worker.runtime.logs import log, redact
from worker.runtime.writable import READ_ONLY, WritablePool, read_write
from worker.store.secret_box import SecretBox
from worker.store.subscriptions import from_row, seal_unsealed_async

if TYPE_CHECKING:
    from worker.daemon.metrics import Metrics

# A read-only server (a standby, or one that became read-only) is no database for the worker: its
# connection is closed by WritablePool and the retry looks for the primary again.
DATABASE_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, *READ_ONLY)
BEGIN, COMMIT = query("begin", "outbox"), query("commit", "outbox")
# What list_subscriptions reads from the shared pace row: not part of a subscription's version.
PACE_COLUMNS = ("pace", "held", "concurrency_limit", "failing_since")
# The recorder adapts the concurrency limits at most this often (seconds), unless a batch holds a
# congestion signal: writing the pace row in every flush made the recorder, which is serial, the
# bottleneck for slow receivers (their results come one or two per flush).
ADAPT_EVERY = 0.05
T = TypeVar("T")


class StartupError(Exception):
    """The worker cannot start as configured (one readable line)."""


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
        # The listener found its URL behind a pooler (PgBouncer) and no direct one: this worker only polls.
        self._polls_only = False
        self._idle = False
        self._next_due_in: float | None = None  # seconds until the next retry or lease expiry
        self._next_token_in: float | None = None  # seconds until a rate-limited subscription has a token
        self._saturated = False  # the last claim took all it was allowed (process slots or a subscription's share)
        self._cycles = 0
        self.delivered = 0  # counters for progress lines and tests
        self.attempts = 0
        self.fast_paths = 0  # notifications served by the fast path (one round trip)
        self.fast_path_fallbacks = 0  # fast paths the database refused (an assumption was wrong)
        self._notices = fast_path.Notices(settings.batch_size)
        self._fast_view: fast_path.View | None = None  # what the last normal pass read, for the fast path
        # Loop time by which a normal pass must look again (retries and expired leases fall due,
        # rate tokens come back): fast paths alone never see those.
        self._look_again_at = 0.0
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        self._box = SecretBox.from_setting(secret_key)
        # Per subscription, for its current version (its row): the parsed subscription (secrets
        # opened once, not every pass) and how to send to it (None: it cannot be sent to, see log).
        self._known: dict[uuid.UUID, tuple[Any, Subscription, Target | None]] = {}
        self._slowed: set[uuid.UUID] = set()  # subscriptions whose pace is below 1 (they recover on success)
        # Subscriptions with a failure streak, as last read or written: a 2xx for one of them ends it
        # (a 2xx for any other costs no statement). See worker/daemon/auto_disable.py.
        self._failing: set[uuid.UUID] = set()
        self._source = operational_source(self.schema, settings.operational_source)
        # Adaptive concurrency (worker/daemon/adaptive.py): each subscription's shared limit as last read,
        # which have a pace row, which had due work left at the last claim (finishing deliveries of these
        # wake the main loop), and the database's clock at each claim (by token), to judge cuts by.
        self._limits: dict[uuid.UUID, float | None] = {}
        self._paced: set[uuid.UUID] = set()
        self._limited: set[uuid.UUID] = set()
        self._freed: Counter[uuid.UUID] = Counter()
        self._claimed_at: dict[uuid.UUID, tuple[datetime, float]] = {}
        self._unadapted: list[Result] = []  # recorded, not yet judged by adapt_concurrency (see ADAPT_EVERY)
        self._adapted_at = 0.0
        self._ready = False  # a pass went through: connected, schema migrated
        self._metrics: Metrics | None = None

    # -- what /healthz and /readyz read (worker/metrics.py HealthSource) ----------------------

    @property
    def database_ok(self) -> bool:
        return self._database_ok

    @property
    def listener_connected(self) -> bool:
        # Polling by design (behind a pooler without OUTBOX_DIRECT_DATABASE_URL) is not a fault.
        return self._listen_pid is not None or self._polls_only

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

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
        # target_session_attrs=read-write unless the URL chooses (a multi-host URL: the primary is found)
        self._pool = WritablePool(
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
        if self.settings.metrics_port is not None:
            from worker.daemon.metrics import Metrics  # the web server and prometheus-client: only when asked for

            self._metrics = Metrics(self, self.schema)
            try:
                await self._metrics.start(self.settings.metrics_host, self.settings.metrics_port, self._pool.connection)
            except OSError as exc:
                await self._pool.close()
                where = f"{self.settings.metrics_host or '*'}:{self.settings.metrics_port}"
                raise StartupError(f"OUTBOX_METRICS_PORT: cannot listen on {where} ({exc.strerror or exc})") from None
        self._sender = Sender(self.settings)
        log(logging.INFO, "worker started", worker=self.settings.worker_id, schema=self.schema,
            concurrency=self.settings.concurrency, batch_size=self.settings.batch_size)  # fmt: skip
        if not self._box.encrypts:
            log(logging.WARNING, "subscription secrets are stored unencrypted: set OUTBOX_SECRET_KEY "
                "(make one with `outbox secrets new-key`, then run `outbox secrets rotate`)")  # fmt: skip
        try:
            await self._check_schema()
            await self._complete_subscriptions()
        except BaseException:
            await self._sender.aclose()
            if self._metrics is not None:
                await self._metrics.stop()
            await self._pool.close(timeout=2.0)
            if self._stopping.is_set():  # told to stop while waiting for the database
                return
            raise
        listener = asyncio.create_task(self._listen(), name="listener")
        keeper = asyncio.create_task(
            partitions.keep(self._pool.connection, self.schema, self.settings.partition_interval, self._stopping),
            name="partitions",
        )
        self._recorder = asyncio.create_task(self._record_forever(), name="recorder")
        background = [listener, keeper]
        if self.settings.disable_after:
            background.append(asyncio.create_task(
                auto_disable.keep(self._pool.connection, self.schema, self.settings.disable_after, self._source,
                                  self._stopping), name="auto-disable"))  # fmt: skip
        try:
            await self._main_loop()
        finally:
            self._stopping.set()  # also when the loop ended by an error: the recorder must finish
            await self._wind_down()
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._sender.aclose()
            if self._metrics is not None:
                await self._metrics.stop()
            await self._pool.close(timeout=2.0)
            log(logging.INFO, "worker stopped", worker=self.settings.worker_id, delivered=self.delivered,
                fast_paths=self.fast_paths, fast_path_fallbacks=self.fast_path_fallbacks)  # fmt: skip

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # Through PgBouncer: no prepared statements, and no session SETs, which would reach other clients
        # (docs/deploy/pgbouncer.md: give the worker's role those settings instead).
        await pooler.configure(conn, query("worker_session", self.schema))

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
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, psycopg.errors.TransactionRollback):  # a deadlock or serialization failure
            log(logging.INFO, "transaction rolled back by the database, retrying", error=type(error).__name__)
            return
        if self._database_ok:
            self._database_ok = False
            log(logging.WARNING, "database unreachable, retrying", worker=self.settings.worker_id,
                error=type(error).__name__ if error else None)  # fmt: skip

    # -- the main loop --------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return self.settings.concurrency - len(self._in_flight)

    async def _check_schema(self) -> None:
        """Refuse to start on a schema older than this code: one readable line, not a failing pass
        every poll interval. Waits for the database like every other step."""
        expected = migrations()[-1].version

        async def step(conn: psycopg.AsyncConnection[Any]) -> int | None:
            exists = await (await conn.execute(query("schema_migrated", self.schema), (self.schema,))).fetchone()
            if not exists or not exists[0]:
                return None
            row = await (await conn.execute(query("schema_version", self.schema))).fetchone()
            return int(row[0]) if row and row[0] is not None else None

        found = await self._db(step, forever=False)
        if found is None or found < expected:
            state = "not migrated" if found is None else f"at migration {found:03d}, this worker needs {expected:03d}"
            raise StartupError(f"the outbox schema {self.schema!r} is {state}: run `outbox migrate` first")
        if found > expected:  # a rolling upgrade migrated ahead of this worker: carry on, visibly
            log(logging.WARNING, "the schema is newer than this worker", schema_version=found, worker_needs=expected)

    async def _complete_subscriptions(self) -> None:
        """Seal the header values of rows from before migration 015, which SQL could not (it has no
        key): `outbox migrate` does it too; this covers `manage.py migrate` and a migrate without the key."""

        async def step(conn: psycopg.AsyncConnection[Any]) -> tuple[int, list[str]]:
            return await seal_unsealed_async(conn, self.schema, self._box)

        done, left = await self._db(step, forever=False)
        if done:
            log(logging.INFO, "sealed the header values of subscriptions from before migration 015", count=done)
        for owner in left:
            log(logging.ERROR, "subscription cannot be used: its secrets do not open, its header values stay "
                "unsealed until they do", subscription=owner)  # fmt: skip

    async def _main_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._pass()
                self._ready = True
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
        events, plain = self._notices.take()
        loop = asyncio.get_running_loop()
        if events and not plain and loop.time() < self._look_again_at and await self._fast_path(events):
            # Served: sleep until the next NOTIFY, a finishing delivery, or the normal pass's due time.
            await self._sleep(self._look_again_at - loop.time())
            return
        limit = min(batch, self._free_slots())
        routed, claimed = await self._route_claim_and_start(limit)
        self._look_again_at = loop.time() + self._next_look(claimed)
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
        await self._sleep(self._next_look(claimed, busy))

    def _next_look(self, claimed: int, busy: bool = False) -> float:
        """Seconds until a pass must look again: the next retry or lease expiry, a rate-limited
        subscription's next token, at most the poll interval. Rows due now that the pass did not
        claim are blocked (their subscription is saturated, held, or another worker holds them):
        finishing deliveries wake us, so do not spin on them."""
        due = self._next_due_in
        if busy or due is None or (due <= 0 and claimed == 0):
            due = self.settings.poll_interval
        if self._next_token_in is not None:  # a rate-limited subscription waits for its next token
            due = min(due, self._next_token_in)
        return max(0.0, due)

    def _want_pass(self) -> None:
        """Work the fast path does not see is waiting (a promoted successor, a retry, claims held
        back by slots or a share): the next pass is a normal one."""
        self._look_again_at = 0.0
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: no task of its own, so a NOTIFY wakes the loop a turn sooner.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, min(seconds, self.settings.poll_interval))):
                await self._wake.wait()

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
        started = tracing.now()  # 0 while tracing is off
        schema, batch = self.schema, self.settings.batch_size
        key_lock = key_lock_prefix(schema)
        self._cycles += 1

        caps_used: dict[uuid.UUID, int] = {}  # what the claim allowed each subscription (filled by step)

        async def step(conn: psycopg.AsyncConnection[Any]) -> tuple[int, list[tuple[Any, ...]]]:
            # One transaction (the advisory locks last until its commit). Flight 1 reads; flight 2
            # writes the routes, claims, asks when next to look, and commits.
            async with conn.pipeline() as pipeline:
                await conn.execute(BEGIN)
                locked_cursor = await conn.execute(query("route_lock", schema), (router.lock_key(schema),))
                events_cursor = await conn.execute(query("unrouted_events", schema), (batch,))
                version_cursor = await conn.execute(query("subscriptions_version", schema))
                subscriptions_cursor = conn.cursor(row_factory=dict_row)
                await subscriptions_cursor.execute(query("list_subscriptions", schema))
                await pipeline.sync()
                locked = await locked_cursor.fetchone()
                events = await events_cursor.fetchall() if locked and locked[0] else []
                version = await version_cursor.fetchone()
                rows = await subscriptions_cursor.fetchall()
                subscriptions = self._subscriptions(rows)
                self._keep_fast_view(version[0] if version else None, subscriptions, rows)
                if events:
                    routes = router.plan(events, subscriptions)
                    if routes.positions:
                        await conn.execute(query("lock_keys", schema), (key_lock, routes.subscription_ids, routes.keys))
                        await conn.execute(
                            query("insert_deliveries", schema),
                            (routes.positions, routes.enqueued_at, routes.subscription_ids, routes.keys),
                        )
                    enqueued = [row[2] for row in events]
                    await conn.execute(
                        query("mark_routed", schema), ([row[0] for row in events], min(enqueued), max(enqueued))
                    )
                active = [uuid.UUID(str(s.id)) for s in subscriptions if s.status == "active"]
                claim_cursor = token_cursor = left_cursor = None
                if limit > 0 and active and not self._stopping.is_set():
                    params = self._claim_parameters(active, rows, limit, token)
                    caps_used.clear()
                    caps_used.update(zip(params["subscriptions"], params["caps"], strict=True))
                    if params["subscriptions"]:
                        if params["fresh_ids"]:
                            await conn.execute(query("create_pace", schema), params)
                        await conn.execute(query("lock_concurrency", schema), params)
                        if params["rated_ids"]:
                            await conn.execute(query("refill_pace", schema), params)
                        claim_cursor = await conn.execute(query("claim", schema), params)
                        left_cursor = await conn.execute(query("claim_left", schema), params)
                        if params["rated_ids"]:
                            await conn.execute(query("spend_pace", schema), params)
                            token_cursor = await conn.execute(query("next_token_in", schema), params)
                next_due_cursor = await conn.execute(query("next_due_in", schema), (active,))
                await conn.execute(COMMIT)
                await pipeline.sync()
                claimed = await claim_cursor.fetchall() if claim_cursor is not None else []
                if left_cursor is not None:
                    self._claim_done(token, await left_cursor.fetchall())
                next_due = await next_due_cursor.fetchone()
                next_token = await token_cursor.fetchone() if token_cursor is not None else None
            self._next_due_in = float(next_due[0]) if next_due and next_due[0] is not None else None
            self._next_token_in = float(next_token[0]) if next_token and next_token[0] is not None else None
            return len(events), claimed

        routed, rows = await self._db(step, forever=False)
        claims = [Claimed(d_id, attempts, sub_id, event, token, key, rescued, enqueued_at)
                  for d_id, attempts, sub_id, event, key, rescued, enqueued_at in rows]  # fmt: skip
        taken = Counter(c.subscription_id for c in claims)
        self._saturated = len(claims) >= limit > 0 or any(taken[s] >= cap for s, cap in caps_used.items())
        self._start(claims, started)
        return routed, len(rows)

    def _start(self, claims: list[Claimed], started: int = 0, path: str = "normal") -> None:
        """A task per request (one claim, or a batch in batched mode); the claim's span when tracing."""
        if tracing.tracer is not None and claims:
            tracing.claimed(claims, started, path, self.settings.worker_id)
        for target, group in self._requests(claims):
            self._per_subscription[group[0].subscription_id] += len(group)
            task = asyncio.create_task(self._deliver(target, group))
            for claimed in group:
                self._in_flight[claimed.id] = (claimed, task)
        if self._metrics is not None:
            self._metrics.set_in_flight(len(self._in_flight))

    # -- the idle fast path (worker/daemon/fast_path.py) ----------------------------------------

    def _keep_fast_view(
        self, version: int | None, subscriptions: list[Subscription], rows: list[dict[str, Any]]
    ) -> None:
        """Keep what this pass read for the fast path: the subscriptions, the version read before
        them, and those it may claim for (active, a usable target, no rate limit, not held after a
        429 nor slowed down: those take the normal path's pace accounting)."""
        if version is None:  # cannot happen on a migrated schema; without it, no fast path
            self._fast_view = None
            return
        state = {row["id"]: row for row in rows}
        units: dict[uuid.UUID, int] = {}
        for subscription in subscriptions:
            sub_id = uuid.UUID(str(subscription.id))
            target = self._known[sub_id][2] if sub_id in self._known else None
            row = state.get(sub_id)
            if (
                subscription.status != "active"
                or target is None
                or subscription.rate_per_minute is not None
                or row is None
                or row["held"]
                or (row["pace"] is not None and row["pace"] < 1)
            ):
                continue
            units[sub_id] = target.batch_max
        self._fast_view = fast_path.View(int(version), subscriptions, units)

    async def _fast_path(self, events: list[tuple[int, str, datetime]]) -> bool:
        """Route, claim and start what the NOTIFYs carried in one round trip; False: not done (the
        worker is not idle, has not read the subscriptions yet, or the database refused an
        assumption), the normal path is to run."""
        current = self._fast_view
        if current is None or not self._idle or self._stopping.is_set() or self._free_slots() <= 0:
            return False
        events = sorted({e[0]: e for e in events}.values())  # a position twice (a repeated NOTIFY): once
        routes, claim = fast_path.plan(
            current, events, free_slots=self._free_slots(), share=self._limit_of,
            in_flight=self._per_subscription,
        )  # fmt: skip
        token = uuid.uuid4()
        started = tracing.now()
        params = fast_path.parameters(
            current, events, routes, claim, token=token, lease=self.settings.lease_seconds,
            adaptive=self.settings.adaptive_concurrency, initial=float(self._initial_limit),
            route_lock=router.lock_key(self.schema), key_lock=key_lock_prefix(self.schema),
        )  # fmt: skip
        # Straight from the pool, without _db's retries: when the database is away (or the flight
        # deadlocked), the normal path, which waits for it, takes over.
        try:
            async with self._pool.connection() as conn:
                made = await (await conn.execute(query("fast_path", self.schema), params)).fetchall()
        except DATABASE_ERRORS:
            return False
        except psycopg.DatabaseError as exc:  # a statement the database refused (assumptions are answered)
            log(logging.ERROR, "fast path failed, taking the normal path", error=type(exc).__name__)
            return False
        if made and made[0][0] is not None:
            self.fast_path_fallbacks += 1
            if self._metrics is not None:
                self._metrics.fast_path.labels(outcome="refused").inc()
            log(logging.DEBUG, "fast path refused, taking the normal path", refused=made[0][0])
            return False
        self.fast_paths += 1
        if self._metrics is not None:
            self._metrics.fast_path.labels(outcome="taken").inc()
        texts = {position: (text, enqueued_at) for position, text, enqueued_at in events}
        claims = [Claimed(d_id, attempts, sub_id, texts[position][0], token, key, enqueued_at=texts[position][1])
                  for _, d_id, position, sub_id, key, status, attempts in made if status == "delivering"]  # fmt: skip
        self._saturated = False
        self._start(claims, started, "fast")
        if any(row[5] == "pending" for row in made):
            self._want_pass()  # made pending but not claimed here (no slot, rate limit, 429 hold): a pass claims it
        return True

    def _subscriptions(self, rows: list[dict[str, Any]]) -> list[Subscription]:
        """The subscriptions of this pass; a version seen before is not parsed (nor decrypted) again."""
        known: dict[uuid.UUID, tuple[Any, Subscription, Target | None]] = {}
        self._slowed, self._limits, self._paced = set(), {}, set()
        self._failing = {row["id"] for row in rows if row["failing_since"] is not None}
        for row in rows:
            sub_id = row["id"]
            if row["pace"] is not None and row["pace"] < 1:
                self._slowed.add(sub_id)
            self._limits[sub_id] = row["concurrency_limit"]
            if row["pace"] is not None:
                self._paced.add(sub_id)
            version = tuple(value for name, value in row.items() if name not in PACE_COLUMNS)
            seen = self._known.get(sub_id)
            if seen is not None and seen[0] == version:
                known[sub_id] = seen
                continue
            try:
                subscription = from_row(row, self._box)
            except ValueError as exc:  # secrets that do not open: say so, deliver nothing to it
                log(logging.ERROR, "subscription cannot be used", subscription=str(sub_id), error=str(exc))
                # Stored filters that no longer compile: it cannot even be routed to.
                with contextlib.suppress(ValueError):
                    known[sub_id] = (version, from_row(row, None), None)
                continue
            try:
                target: Target | None = self._sender.target(subscription)
            except Exception as exc:  # e.g. a CA bundle that no longer loads: only this one is off
                log(logging.ERROR, "subscription cannot be used", subscription=str(sub_id), error=str(exc))
                target = None
            if subscription.preflight and not self.settings.webhook_origin:
                log(logging.ERROR, "pre-flight subscription, but OUTBOX_WEBHOOK_ORIGIN is not set: its deliveries "
                    "will fail until it is", subscription=str(sub_id))  # fmt: skip
            known[sub_id] = (version, subscription, target)
        if self._metrics is not None and known.keys() != self._known.keys():
            self._metrics.keep_only({str(sub_id) for sub_id in known})
        self._known = known
        if self._metrics is not None:
            self._metrics.set_limits({str(s): self._limit_of(s) for s, entry in known.items() if entry[2] is not None})
        return [entry[1] for entry in known.values()]

    def _claim_parameters(
        self, active: list[uuid.UUID], rows: list[dict[str, Any]], limit: int, token: uuid.UUID
    ) -> dict[str, Any]:
        """Per active subscription that is not held after a 429 and has a usable target: how many
        deliveries it may take (at most its maximum in this process; the claim also keeps to its
        shared limit), and the token buckets of the rate-limited ones."""
        held = {row["id"] for row in rows if row["held"]}
        pace = {row["id"]: row["pace"] for row in rows if row["pace"] is not None}
        # Start with a different subscription each pass, so none is always served last.
        turn = self._cycles % len(active)
        ids, caps, units, rated, max_requests = [], [], [], [], []
        rated_ids, per_second, bursts, rated_units = [], [], [], []
        for sub_id in active[turn:] + active[:turn]:
            target = self._known[sub_id][2]
            if sub_id in held or target is None:
                continue
            unit = target.batch_max
            most = maximum_requests(self.settings, target)
            cap = most * unit - self._per_subscription[sub_id]
            if cap <= 0:
                continue
            rate = target.subscription.rate_per_minute
            ids.append(sub_id)
            caps.append(min(cap, limit))
            units.append(unit)
            max_requests.append(most)
            rated.append(rate is not None)
            if rate is not None:
                rated_ids.append(sub_id)
                per_second.append(rate / 60.0)
                bursts.append(max(1.0, rate / 60.0))  # at most one second's worth at once
                rated_units.append(unit)
        # Buckets are locked in subscription-id order by every worker, so two never deadlock on them.
        order = sorted(range(len(rated_ids)), key=lambda i: rated_ids[i])
        rated_ids = [rated_ids[i] for i in order]
        per_second = [per_second[i] for i in order]
        bursts = [bursts[i] for i in order]
        rated_units = [rated_units[i] for i in order]
        fresh = [i for i, sub_id in enumerate(rated_ids) if sub_id not in pace]  # no bucket yet
        return {
            "subscriptions": ids, "caps": caps, "units": units, "rated": rated, "limit": limit, "token": token,
            "max_requests": max_requests, "adaptive": self.settings.adaptive_concurrency,
            "initial": float(self._initial_limit), "concurrency_lock": f"{key_lock_prefix(self.schema)}limit/",
            "lease": self.settings.lease_seconds, "rated_ids": rated_ids, "per_second": per_second,
            "bursts": bursts, "rated_units": rated_units,
            "fresh_ids": [rated_ids[i] for i in fresh], "fresh_bursts": [bursts[i] for i in fresh],
        }  # fmt: skip

    # -- adaptive concurrency (worker/daemon/adaptive.py) ------------------------------------------

    @property
    def _initial_limit(self) -> int:
        return min(self.settings.subscription_concurrency_initial, self.settings.subscription_concurrency)

    def _maximum(self, sub_id: uuid.UUID) -> int | None:
        """The ceiling of the subscription's limit; None: not known to this worker or no usable target."""
        known = self._known.get(sub_id)
        return maximum_requests(self.settings, known[2]) if known is not None and known[2] is not None else None

    def _limit_of(self, sub_id: uuid.UUID) -> float:
        """The subscription's limit as this worker last read it (its maximum when not adaptive)."""
        most = self._maximum(sub_id) or self.settings.subscription_concurrency
        limit = self._limits.get(sub_id)
        if not self.settings.adaptive_concurrency:
            return float(most)
        return float(min(most, limit if limit is not None else self._initial_limit))

    def _claim_done(self, token: uuid.UUID, left: list[tuple[Any, ...]]) -> None:
        """After a claim: which subscriptions still have due work (held back by their limit, rate or
        our slots: their finishing deliveries wake the main loop), and the claim's database time."""
        self._limited = {sub_id for sub_id, _ in left if sub_id is not None}
        self._freed.clear()
        now = asyncio.get_running_loop().time()
        if left:
            self._claimed_at[token] = (left[0][1], now)
        # A claim's results are written within its lease (or redone by another worker): older times
        # are no longer needed.
        horizon = now - 2 * self.settings.lease_seconds
        for old in [t for t, (_, at) in self._claimed_at.items() if at < horizon]:
            del self._claimed_at[old]

    def _claim_time(self, token: uuid.UUID) -> datetime | None:
        known = self._claimed_at.get(token)
        return known[0] if known is not None else None

    def _wake_for_freed(self, batch: list[Result]) -> None:
        """Recorded results free their subscription's slots in the database: if the last claim left
        due work behind for it, claim again once a quarter of its limit (at least one) is free."""
        for r in batch:
            sub_id = r.claimed.subscription_id
            if sub_id in self._limited:
                self._freed[sub_id] += 1
                if self._freed[sub_id] >= max(1, int(self._limit_of(sub_id)) // 4):
                    self._freed[sub_id] = 0
                    self._want_pass()

    def _requests(self, claims: list[Claimed]) -> list[tuple[Target, list[Claimed]]]:
        """One request per claim, except in batched mode: up to batch_max of one subscription per
        request, in delivery order (= event order; a key has only its head claimed, so a batch never
        holds two of one key)."""
        requests: list[tuple[Target, list[Claimed]]] = []
        batches: dict[uuid.UUID, list[Claimed]] = {}
        for claimed in sorted(claims, key=lambda c: c.id):
            target = self._known[claimed.subscription_id][2]
            assert target is not None  # only subscriptions with a target are claimed for
            if target.batch_max == 1:
                requests.append((target, [claimed]))
                continue
            batch = batches.setdefault(claimed.subscription_id, [])
            batch.append(claimed)
            if len(batch) == target.batch_max:
                requests.append((target, batch))
                batches[claimed.subscription_id] = []
        for sub_id, batch in batches.items():
            if batch:
                requests.append((self._known[sub_id][2], batch))  # type: ignore[arg-type]
        return requests

    async def _deliver(self, target: Target, claims: list[Claimed]) -> None:
        try:
            abandoned = [c for c in claims if c.rescued and c.attempts > self.settings.retry_max_attempts]
            results = [self._abandon(c) for c in abandoned]
            rest = [c for c in claims if c not in abandoned]
            if rest:
                results += await self._sender.deliver(target, rest)
        finally:
            subscription_id = claims[0].subscription_id
            for claimed in claims:
                self._in_flight.pop(claimed.id, None)
            self._per_subscription[subscription_id] -= len(claims)
            if self._per_subscription[subscription_id] <= 0:
                del self._per_subscription[subscription_id]
            # Claim again once half a batch of slots is free, if the last claim was held back by slots
            # or a subscription's share: keeps the pipe full without tiny claims, and an idle worker
            # does not spend a pass (a transaction) after every delivery.
            if self._saturated and self._free_slots() * 2 >= min(self.settings.batch_size, self.settings.concurrency):
                self._want_pass()
        if self._metrics is not None:
            self._metrics.set_in_flight(len(self._in_flight))
            for r in results:
                duration = None if r.error == "abandoned" else r.duration_ms / 1000
                self._metrics.observe(r.claimed.subscription_id, r.outcome.kind, duration, r.claimed.enqueued_at)
        self.attempts += len(results)
        self._results.extend(results)
        self._results_ready.set()

    def _adapt_due(self, judged: list[Result]) -> bool:
        if asyncio.get_running_loop().time() - self._adapted_at >= ADAPT_EVERY:
            return True
        return any(urgent(r) for r in judged)

    def _adapt_parameters(self, batch: list[Result]) -> dict[str, Any] | None:
        # One answer slower than a quarter of the request timeout is close to timing out: a cut of its own.
        patience = self.settings.request_timeout * 1000 / 4
        params = adapt_parameters(batch, self._claim_time, self._maximum, self._initial_limit, patience)
        if params is not None:
            params["fresh"] = [sub_id for sub_id in params["ids"] if sub_id not in self._paced]
        return params

    def _adapted(self, rows: list[tuple[Any, ...]]) -> None:
        """What adapt_concurrency changed: cuts are logged (one line each: they are rare by design)."""
        for sub_id, limit, reason, cut, recent, slowest, baseline in rows:
            self._limits[sub_id] = limit
            self._paced.add(sub_id)
            if cut:
                times = {"recent_ms": recent, "slowest_ms": slowest, "baseline_ms": baseline}
                log(logging.INFO, "concurrency limit cut", subscription=str(sub_id), limit=round(limit, 2),
                    reason=reason, **{k: round(v, 1) for k, v in times.items() if v is not None})  # fmt: skip
                if self._metrics is not None:
                    self._metrics.limit_cut(sub_id, reason)
        if rows and self._metrics is not None:
            self._metrics.set_limits({str(row[0]): self._limit_of(row[0]) for row in rows if row[0] in self._known})

    @staticmethod
    def _abandon(claimed: Claimed) -> Result:
        """Taken back from dead workers more often than it may be tried: stop here, visibly."""
        reason = f"abandoned: claimed {claimed.attempts} times without a recorded result (lease expired)"
        return Result(claimed, Outcome("failed", reason=reason), datetime.now(UTC), 0.0, error="abandoned")

    # -- recording results ---------------------------------------------------------------------

    async def _record_forever(self) -> None:
        """Write results as they come; after `stop`, write what is left and return. A batch that keeps
        failing (not the connection: the database refuses a statement) is written without its side
        effects (429 slow-downs, pre-flight records), so one poisoned result cannot stop recording."""
        failures = 0
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            if self._results:
                await asyncio.sleep(0.001)  # let results that finish together share one transaction
                try:
                    await self._flush(essentials_only=failures >= 2)
                    failures = 0
                except Exception as exc:  # keep the results, say why, try again
                    failures += 1
                    log(logging.ERROR, "writing results failed, retrying", count=len(self._results),
                        error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                        next_try="results only" if failures >= 2 else "in full")  # fmt: skip
                    await asyncio.sleep(self.settings.poll_interval)
                    self._results_ready.set()
                    continue
            if self._stopping.is_set() and not self._in_flight and not self._results:
                return

    async def _flush(self, essentials_only: bool = False) -> None:
        """Write every result in hand; on failure they stay in hand for the next try."""
        batch = self._results
        self._results = []
        try:
            await self._db(lambda c: self._write_results(c, batch, essentials_only))
        except BaseException:
            self._results = batch + self._results
            raise

    async def _write_results(
        self, conn: psycopg.AsyncConnection[Any], batch: list[Result], essentials_only: bool = False
    ) -> None:
        ids, tokens, states, codes, errors, delays = [], [], [], [], [], []
        retired: set[uuid.UUID] = set()
        slowed: dict[uuid.UUID, float] = {}  # 429: subscription -> how long to hold it
        recovered: set[uuid.UUID] = set()
        preflights: dict[uuid.UUID, str | None] = {}
        succeeded: set[uuid.UUID] = set()
        failing: set[uuid.UUID] = set()
        announce_retired: set[uuid.UUID] = set()  # a 410 that answered an event that is not operational
        for r in batch:
            kind = r.outcome.kind
            ids.append(r.claimed.id)
            tokens.append(r.claimed.token)
            states.append({"delivered": "delivered", "failed": "failed"}.get(kind, "pending"))
            codes.append(r.status_code)
            errors.append(None if kind == "delivered" else r.outcome.reason)
            delays.append(r.outcome.delay)
            sub_id = r.claimed.subscription_id
            if kind == "retired":
                retired.add(sub_id)
                if not _operational_event(r.claimed.event):
                    announce_retired.add(sub_id)
            if kind == "delivered":
                succeeded.add(sub_id)
            elif r.error != "abandoned":  # an abandoned claim is no answer of the receiver's
                failing.add(sub_id)
            if r.status_code == 429:
                slowed[sub_id] = max(slowed.get(sub_id, 0.0), r.outcome.delay)
            elif kind == "delivered" and sub_id in self._slowed:
                recovered.add(sub_id)
            if r.allowed_rate is not None:
                preflights[sub_id] = r.allowed_rate or None
        failing -= succeeded  # a 2xx in the batch: the streak has ended
        ended = sorted(succeeded & self._failing)
        # Without announcements when the batch keeps failing (essentials_only): they must not hold results back.
        source = None if essentials_only else self._source
        finished = [r.claimed for r in batch if r.outcome.kind in ("delivered", "failed") and r.claimed.key]
        finished_subscriptions = [c.subscription_id for c in finished]
        finished_keys = [c.key for c in finished]
        async with conn.pipeline() as pipeline:
            await conn.execute(BEGIN)
            if finished:
                await conn.execute(
                    query("lock_keys", self.schema),
                    (key_lock_prefix(self.schema), finished_subscriptions, finished_keys),
                )
            # Outcomes, attempts and promotions in one statement (record_batch).
            recorded_cursor = await conn.execute(
                query("record_batch", self.schema),
                (ids, tokens, states, codes, errors, delays, [r.attempted_at for r in batch],
                 [r.duration_ms for r in batch], [r.error for r in batch], [r.body for r in batch], source),
            )  # fmt: skip
            retired_cursor = None
            if retired:
                retired_cursor = await conn.execute(
                    query("retire_subscriptions", self.schema),
                    {"reason": "the receiver answered 410 Gone: the target is retired", "ids": list(retired),
                     "announce": list(announce_retired) if source else [], "source": source},
                )  # fmt: skip
            if failing:
                await conn.execute(query("mark_failing", self.schema), (sorted(failing),))
            if ended:
                await conn.execute(query("clear_failing", self.schema), (ended,))
            if essentials_only:
                slowed, recovered, preflights = {}, set(), {}
            if slowed:  # in subscription-id order, as every pace-row lock (no deadlocks between workers)
                ordered = sorted(slowed)
                await conn.execute(query("slow_down", self.schema), (ordered, [slowed[s] for s in ordered]))
            if recovered - slowed.keys():
                await conn.execute(query("speed_up", self.schema), (sorted(recovered - slowed.keys()),))
            for sub_id, allowed_rate in preflights.items():
                await conn.execute(query("record_preflight", self.schema), (allowed_rate, sub_id, allowed_rate))
            adapted_cursor = None
            judged = self._unadapted + batch
            adapt = None
            if not essentials_only and self.settings.adaptive_concurrency and self._adapt_due(judged):
                adapt = self._adapt_parameters(judged)
            if adapt is not None:
                if adapt["fresh"]:
                    await conn.execute(query("create_concurrency", self.schema), adapt)
                # A generic plan: PostgreSQL kept choosing a custom one, planned anew each time (~4 ms).
                await conn.execute(query("generic_plans", self.schema))
                adapted_cursor = await conn.execute(query("adapt_concurrency", self.schema), adapt)
            await conn.execute(COMMIT)
            await pipeline.sync()
            written = await recorded_cursor.fetchall()
            recorded = [row for row in written if row[0] == "recorded"]
            promoted = sum(1 for row in written if row[0] == "promoted")
            announced = sum(1 for row in written if row[0] == "announced" and row[1] is not None)
            adapted = await adapted_cursor.fetchall() if adapted_cursor is not None else []
            if retired_cursor is not None:
                for subscription_id, url, position in await retired_cursor.fetchall():
                    announced += position is not None
                    log(logging.WARNING, "subscription paused: 410 Gone", subscription=str(subscription_id),
                        callbackUrl=redact(url))  # fmt: skip
        self._failing = (self._failing | failing).difference(ended)
        # Look again at once only when this made work: a successor became pending, or a retry is
        # due before the main loop's next look. Otherwise a NOTIFY need not wait behind a pass.
        if slowed:
            log(
                logging.WARNING,
                "429 Too Many Requests: subscription slowed down",
                subscriptions=sorted(map(str, slowed)),
            )
        if promoted or announced or any(r.outcome.kind in ("retry", "retired") for r in batch):
            self._want_pass()
        self._wake_for_freed(batch)
        self._unadapted = [] if adapt is not None or essentials_only else judged
        if adapt is not None:
            self._adapted_at = asyncio.get_running_loop().time()
        self._adapted(adapted)
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
        url = self.settings.direct_database_url or self._url
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True, **read_write(url)) as conn:
                    if await pooler.through_pooler(conn):
                        # A transaction pooler hands the LISTEN's server to other clients and its pid is
                        # not the server's (idle_workers): without a direct URL, poll.
                        self._polls_only = True
                        which = "OUTBOX_DIRECT_DATABASE_URL" if url != self._url else "the database URL"
                        log(logging.WARNING, f"{which} goes through a connection pooler (PgBouncer): no LISTEN, "
                            f"this worker polls every {self.settings.poll_interval:g} s; set "
                            "OUTBOX_DIRECT_DATABASE_URL to a URL of PostgreSQL itself for prompt wake-ups",
                            worker=self.settings.worker_id)  # fmt: skip
                        return
                    await conn.execute(query("listen", self.schema))
                    await conn.execute(query("forget_dead_workers", self.schema))
                    self._listen_pid = conn.info.backend_pid
                    if lost:
                        log(logging.WARNING, "listen connection re-established", worker=self.settings.worker_id)
                        lost = False
                        self._idle = False  # re-register with the new pid on the next idle pass
                    self._wake.set()  # something may have been committed while we were not listening
                    async for notice in conn.notifies():
                        self._notices.add(notice.payload)
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

        claims: dict[asyncio.Task[None], list[Claimed]] = {}  # a batch is one task with several claims
        for claimed, task in self._in_flight.values():
            claims.setdefault(task, []).append(claimed)
        if claims:
            log(logging.INFO, "stopping: waiting for deliveries in flight", count=len(self._in_flight),
                grace_seconds=self.settings.shutdown_grace)  # fmt: skip
            _, pending = await asyncio.wait(claims, timeout=max(0.0, deadline - loop.time()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                await self._release([c for task in pending for c in claims[task]], left())
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


def _operational_event(event: str) -> bool:
    """Is this stored event (JSON text) an operational one? Its results announce nothing."""
    try:
        kind = orjson.loads(event).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(kind, str) and is_operational(kind)


async def run_worker(settings: WorkerSettings, database_url: str) -> Worker:
    worker = Worker(settings, database_url)
    await worker.run()
    return worker
