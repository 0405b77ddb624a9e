"""POST /hooks/{endpoint}: a consumer's inbound webhook, verified, mapped and taken in (issue 22).

The steps, each answered as a problem document when it refuses, nothing stored before the last:

1. the consumer by its endpoint (cached per process for OUTBOX_CONSUMER_CACHE_TTL): none, or disabled → 404;
2. its rate (`rateLimit`/`rateBurst`, a token bucket shared by every process) → 429 with Retry-After;
3. the body within its `maxBodyBytes` and the request deadlines → 413 / 408;
4. verification (worker/consumers/verification.py) → 401, counted per consumer and reason code;
5. the mapping and the target's checks (worker/consumers/intake.py) → 422, or 503 when the target is gone:
   the request is kept as a failure for the operator (body and the mapping's chosen headers only);
6. the event stored by `ConsumerWriter` (many requests per statement, one commit), the catalogue's schema
   applied there → 202 `{"id", "source", "status": "accepted" | "duplicate"}` once committed. A replayed webhook
   id or a known (`source`, `id`) is a duplicate: a success, nothing stored again.

Like the intake, the route is answered in front of FastAPI (`HooksFastPath`): a consumer's own body limit must
apply instead of the application's, and FastAPI's routing costs more than the rest of the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final

import orjson
import psycopg
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Receive, Scope, Send

from outbox._sql import query
from worker.consumers import intake, model
from worker.consumers.verification import MAX_TOLERANCE, Inbound, VerificationFailed, Verifier, verifier_for
from worker.runtime import tracing
from worker.runtime.logs import log
from worker.service.limits import read_limited, retry_after
from worker.service.metrics import ServeMetrics
from worker.service.problems import DATABASE_DOWN, ApiProblem, InvalidParam, responses, unavailable
from worker.store import consumers as store
from worker.store.consumers import Consumer
from worker.store.secret_box import SecretKeyError

if TYPE_CHECKING:
    from worker.service.app import Service

PREFIX: Final = "/hooks/"
_WRITE_MAX: Final = 500  # requests one writer stores in one statement
RECEIPT_SWEEP_SECONDS: Final = 60.0
_SWEEP_BATCH: Final = 5000
_UNKNOWN_KEPT: Final = 1024  # endpoints remembered as unknown (a scan must not grow this without bound)
_CHALLENGES: Final = {"bearer": 'Bearer realm="outbox"', "basic": 'Basic realm="outbox", charset="UTF-8"'}


@dataclass
class _Entry:
    consumer: Consumer
    verifier: Verifier
    target: intake.Target
    loaded_at: float


class HookCache:
    """Consumers by endpoint, with their opened verifier and target, read again after `ttl` seconds
    (a change made through another process shows within that time; through this one at once: `forget`)."""

    def __init__(self, pool: AsyncConnectionPool[Any], schema: str, box: Any, ttl: float) -> None:
        self._pool = pool
        self._schema = schema
        self._box = box
        self._ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._unknown: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self, endpoint: str | None = None) -> None:
        if endpoint is None:
            self._entries.clear()
            self._unknown.clear()
        else:
            self._entries.pop(endpoint, None)
            self._unknown.pop(endpoint, None)

    async def get(self, endpoint: str) -> _Entry | None:
        now = time.monotonic()
        entry = self._entries.get(endpoint)
        if entry is not None and now - entry.loaded_at < self._ttl:
            return entry
        unknown_at = self._unknown.get(endpoint)
        if unknown_at is not None and now - unknown_at < self._ttl:
            return None
        lock = self._locks.setdefault(endpoint, asyncio.Lock())
        async with lock:  # one read per endpoint at a time, however many requests wait for it
            entry = self._entries.get(endpoint)
            if entry is not None and time.monotonic() - entry.loaded_at < self._ttl:
                return entry
            loaded = await self._load(endpoint)
        self._locks.pop(endpoint, None)
        return loaded

    async def _load(self, endpoint: str) -> _Entry | None:
        async with self._pool.connection() as conn:
            consumer = await store.hook_consumer_async(conn, self._schema, endpoint)
            if consumer is None:
                if len(self._unknown) >= _UNKNOWN_KEPT:
                    self._unknown.clear()
                self._unknown[endpoint] = time.monotonic()
                self._entries.pop(endpoint, None)
                return None
            target = await intake.target_async(conn, self._schema, consumer)
        entry = _Entry(consumer, verifier_for(consumer.verification(self._box)), target, time.monotonic())
        self._entries[endpoint] = entry
        self._unknown.pop(endpoint, None)
        return entry


@dataclass
class _Pending:
    item: intake.Taken
    target: intake.Target
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ConsumerWriter:
    """Stores consumer requests' events: whatever requests wait, in one `consumer_events` statement (group
    commit: under load many requests share a commit and its WAL flush; each answers once its own is durable).
    The catalogue is applied per request first: a request it refuses fails alone."""

    def __init__(self, pool: AsyncConnectionPool[Any], schema: str, writers: int) -> None:
        self._pool = pool
        self._schema = schema
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._sequence: str | None = None
        self._tasks = [asyncio.create_task(self._write_forever(), name=f"hooks-writer-{i}") for i in range(writers)]

    async def store(self, item: intake.Taken, target: intake.Target) -> None:
        """Stores the event (or finds it a duplicate: `item.stored` says which); raises `intake.Refused`."""
        pending = _Pending(item, target)
        self._queue.put_nowait(pending)
        await pending.done

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            _settle(self._queue.get_nowait(), unavailable())

    async def _write_forever(self) -> None:
        while True:
            group = [await self._queue.get()]
            while len(group) < _WRITE_MAX and not self._queue.empty():
                group.append(self._queue.get_nowait())
            try:
                await self._write(group)
            except BaseException as exc:
                for pending in group:
                    _settle(pending, exc if isinstance(exc, Exception) else asyncio.CancelledError())
                if not isinstance(exc, Exception):
                    raise

    async def _write(self, group: list[_Pending]) -> None:
        async with self._pool.connection() as conn:
            admitted = []
            for pending in group:
                try:
                    await intake.admit_one_async(conn, self._schema, pending.item.event, pending.target)
                except intake.Refused as refused:
                    _settle(pending, refused)
                    continue
                admitted.append(pending)
            if not admitted:
                return
            if self._sequence is None:
                self._sequence = await intake.position_sequence_async(conn, self._schema)
            await intake.store_events_async(conn, self._schema, self._sequence, [p.item for p in admitted])
        for pending in admitted:
            _settle(pending)


def _settle(pending: _Pending, error: BaseException | None = None) -> None:
    if pending.done.done():  # its request is gone (cancelled): the others of the group still get their answers
        return
    if error is None:
        pending.done.set_result(None)
    else:
        pending.done.set_exception(error)


# -- answers ----------------------------------------------------------------------------------------------


def _not_found(endpoint: str) -> ApiProblem:
    return ApiProblem(404, "not_found", "Not found.", f"No enabled consumer has the endpoint {endpoint!r}.")


def _unauthorized(consumer: Consumer, failed: VerificationFailed) -> ApiProblem:
    challenge = _CHALLENGES.get(consumer.method)
    return ApiProblem(
        401,
        "webhook_unverified",
        "The webhook request is not verified.",
        f"{failed.reason} ({failed.code}); nothing was stored.",
        headers={"WWW-Authenticate": challenge} if challenge else None,
    )


def _refused(refused: intake.Refused, kept: int | None) -> ApiProblem:
    where = f" It is kept as failure {kept} for the operator." if kept is not None else ""
    params = [InvalidParam(name=p["name"], code=p["code"], reason=p["reason"]) for p in refused.problems]
    if refused.status == 503:
        return ApiProblem(
            503, intake.TARGET_MISSING, "The consumer's target is gone.",
            "The consumer's target does not exist (any more); nothing was stored. Try again later: the operator "
            f"must fix the consumer.{where}", params, headers={"Retry-After": "60"},
        )  # fmt: skip
    return ApiProblem(
        422, "unprocessable", "The payload cannot be turned into an event.",
        f"The payload fails the consumer's mapping or its target's rules ({refused.code}); nothing was stored."
        f"{where}", params,
    )  # fmt: skip


def _throttled(consumer: Consumer, wait: int) -> ApiProblem:
    return ApiProblem(
        429, "throttled", "Too many requests.",
        f"Over this consumer's request rate ({consumer.rate_limit:g}/s over all processes); try again in {wait} s.",
        headers={"Retry-After": str(wait)},
    )  # fmt: skip


def _accepted(item: intake.Taken) -> bytes:
    return orjson.dumps(
        {"id": item.event_id, "source": item.event_source, "status": "accepted" if item.stored else "duplicate"}
    )


class Hooks:
    """The /hooks/{endpoint} pipeline of one `outbox serve` process."""

    def __init__(self, service: Service, metrics: ServeMetrics) -> None:
        settings = service.settings
        self.service = service
        self.metrics = metrics
        self.cache = HookCache(service.pool, service.schema, service.box, settings.consumer_cache_ttl)
        self.writer = ConsumerWriter(service.pool, service.schema, writers=max(1, settings.pool_size // 4))
        self._rate_sql = query("take_consumer_request", service.schema)
        self._sweeper = asyncio.create_task(self._sweep_receipts(), name="hooks-receipts")

    async def aclose(self) -> None:
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        await self.writer.aclose()

    async def _sweep_receipts(self) -> None:
        """Every minute, the webhook ids past twice the longest tolerance (beyond it a replay's timestamp is
        refused anyway), in small batches: a table that grows by one row per request stays small between
        `outbox purge` runs. Every serve process does it; deleting the same rows twice is harmless."""
        sql = query("purge_consumer_receipts_batch", self.service.schema)
        while True:
            await asyncio.sleep(RECEIPT_SWEEP_SECONDS)
            try:
                cutoff = datetime.now(UTC) - timedelta(seconds=2 * MAX_TOLERANCE)
                while True:
                    async with self.service.pool.connection() as conn:
                        deleted = (await conn.execute(sql, (cutoff, _SWEEP_BATCH))).rowcount
                    if deleted < _SWEEP_BATCH:
                        break
            except DATABASE_DOWN:
                continue  # the next minute
            except psycopg.Error as exc:  # e.g. a schema not migrated yet: said, and tried again later
                log(logging.WARNING, "consumer receipts not swept", reason=str(exc).splitlines()[0])

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answers the request (a POST under PREFIX); returns the status sent."""
        try:
            body, status = await self.take(scope, receive)
        except ApiProblem as problem:
            await problem.response(self.service.settings.public_url or "")(scope, receive, send)
            return int(problem.status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return status

    async def take(self, scope: Scope, receive: Receive) -> tuple[bytes, int]:
        """The answer's body and status, or the `ApiProblem` to answer; timed per consumer."""
        started = time.perf_counter()
        try:
            return await self._take(scope, receive, scope["path"][len(PREFIX) :])
        finally:
            consumer = scope.get("outbox.consumer")
            if consumer is not None:
                self.metrics.consumer_seconds.labels(consumer.endpoint).observe(time.perf_counter() - started)

    def _count(self, consumer: Consumer, outcome: str) -> None:
        self.metrics.consumer_requests.labels(consumer.endpoint, outcome).inc()

    async def _take(self, scope: Scope, receive: Receive, endpoint: str) -> tuple[bytes, int]:
        if not model.SLUG.match(endpoint) or len(endpoint) > 100:
            raise _not_found(endpoint)
        try:
            entry = await self.cache.get(endpoint)
        except DATABASE_DOWN:
            raise unavailable() from None
        except SecretKeyError as exc:
            raise ApiProblem(500, "secret_key", "Stored secrets cannot be opened.", str(exc)) from None
        if entry is None:
            raise _not_found(endpoint)
        consumer = entry.consumer
        scope["outbox.consumer"] = consumer
        if not consumer.is_enabled:
            self._count(consumer, "disabled")
            raise _not_found(endpoint)
        try:
            await self._pace(consumer)
            body = await self._body(scope, receive, consumer)
        except ApiProblem as problem:
            outcome = {429: "rate_limited", 413: "too_large"}.get(problem.status, "bad_request")
            self._count(consumer, "unavailable" if problem.status == 503 else outcome)
            raise
        request = Inbound.from_scope(scope, body)
        try:
            verified = entry.verifier.verify(request)
        except VerificationFailed as failed:
            self._count(consumer, "unauthorized")
            self.metrics.consumer_refusals.labels(consumer.endpoint, failed.code).inc()
            log(logging.INFO, "webhook refused", consumer=consumer.endpoint, code=failed.code, reason=failed.reason)
            raise _unauthorized(consumer, failed) from None
        try:
            event = intake.make_event(consumer, entry.target, body, request.headers)
            if tracing.tracer is not None or "traceparent" in request.headers:
                event = _traced(event, request.headers)
            item = intake.taken(consumer, entry.target, event, verified.webhook_id)
            await self.writer.store(item, entry.target)
        except intake.Refused as refused:
            kept = await self._keep(consumer, refused, body, request.headers, verified.webhook_id)
            self._count(consumer, "unavailable" if refused.status == 503 else "unprocessable")
            if refused.status == 503:
                self.cache.forget(endpoint)  # the target may be back soon: look again
            raise _refused(refused, kept) from None
        except DATABASE_DOWN:
            self._count(consumer, "unavailable")
            raise unavailable() from None
        self._count(consumer, "accepted" if item.stored else "duplicate")
        return _accepted(item), 202

    async def _pace(self, consumer: Consumer) -> None:
        if consumer.rate_limit is None or consumer.rate_burst is None:
            return
        try:
            async with self.service.pool.connection() as conn:
                cursor = await conn.execute(
                    self._rate_sql, {"consumer": consumer.id, "rate": consumer.rate_limit, "burst": consumer.rate_burst}
                )
                row = await cursor.fetchone()
        except DATABASE_DOWN:
            raise unavailable() from None
        except psycopg.errors.ForeignKeyViolation:  # removed meanwhile
            self.cache.forget(consumer.endpoint)
            raise _not_found(consumer.endpoint) from None
        assert row is not None
        taken, tokens = row
        if not taken:
            raise _throttled(consumer, retry_after(float(tokens), consumer.rate_limit))

    async def _body(self, scope: Scope, receive: Receive, consumer: Consumer) -> bytes:
        # Only Content-Length is read here; Inbound.from_scope decodes the headers once for the rest.
        declared = next((v.decode("latin-1") for n, v in scope["headers"] if n.lower() == b"content-length"), None)
        headers = {} if declared is None else {"content-length": declared}
        return await read_limited(receive, headers, consumer.max_body_bytes, "maxBodyBytes", self.service.settings)

    async def _keep(
        self,
        consumer: Consumer,
        refused: intake.Refused,
        body: bytes,
        headers: Mapping[str, tuple[str, ...]],
        webhook_id: str | None,
    ) -> int | None:
        """Keeps the request for the operator: the body and only the headers its mapping reads."""
        chosen = consumer.mapping.headers if consumer.mapping is not None else ()
        kept_headers = {name: ", ".join(headers[name]) for name in chosen if name in headers}
        try:
            async with self.service.pool.connection() as conn:
                return await store.keep_failure_async(
                    conn, self.service.schema, consumer, refused.code, refused.problems, body, kept_headers, webhook_id
                )
        except DATABASE_DOWN:
            return None
        except psycopg.errors.ForeignKeyViolation:  # the consumer was removed meanwhile
            return None


def _traced(event: Any, headers: Mapping[str, tuple[str, ...]]) -> Any:
    """The event with the request's trace context (the Distributed Tracing extension), unless it has its own."""
    if event.get("traceparent") is not None:
        return event
    trace = tracing.stamp({name: values[0] for name, values in headers.items() if values})
    if not trace:
        return event
    from outbox import CloudEvent

    return CloudEvent.from_dict({**event.to_dict(), **trace})


class HooksFastPath:
    """POST /hooks/{endpoint} in front of the application (its own body limit per consumer; see the module)."""

    def __init__(self, app: ASGIApp, state_of: Any) -> None:
        self.app = app
        self.state_of = state_of  # the FastAPI application, whose state holds the Hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        hooks: Hooks = self.state_of.state.hooks
        await hooks.answer(scope, receive, send)


# -- the OpenAPI document ---------------------------------------------------------------------------------

router = APIRouter(tags=["consumers"])

_KINDS = """One operation serves every consumer; what a request must carry depends on the consumer's
verification method (OpenAPI allows one POST per path, so the kinds are described here):

| method | the request carries |
|---|---|
| `standard-webhooks` | `webhook-id`, `webhook-timestamp` (Unix seconds, within the tolerance), `webhook-signature` \
(`v1,<base64 HMAC-SHA256 of id.timestamp.body>`); a recorded `webhook-id` is a replay: 202 `duplicate` |
| `hmac` | the configured header with the HMAC of the raw body (hex or base64, optional prefix such as \
`sha256=`, e.g. GitHub's `X-Hub-Signature-256`), optionally a timestamp header |
| `bearer` | `Authorization: Bearer <token>` |
| `basic` | `Authorization: Basic <base64 user:password>` |
| `api-key` | the configured header (default `X-API-Key`) with the key |
| `mtls` | a client certificate (TLS terminated by `outbox serve`) whose subject or SAN is configured |
| `none` | nothing (only when the operator chose it) |

The body is the external system's own JSON payload; the consumer's mapping turns it into a CloudEvent
(without a mapping it must be a CloudEvent in the JSON event format)."""


@router.post(
    "/hooks/{endpoint}",
    status_code=202,
    summary="An external system's webhook to a consumer",
    description=_KINDS,
    response_class=Response,
    responses={
        202: {
            "description": "Verified, mapped and stored (`accepted`), or stored before (`duplicate`: a retry).",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["id", "source", "status"],
                        "properties": {
                            "id": {"type": "string"},
                            "source": {"type": "string"},
                            "status": {"type": "string", "enum": ["accepted", "duplicate"]},
                        },
                    }
                }
            },
        },
        **responses(400, 404, 408, 413, 429, 503),
        401: {
            "description": "Not verified (the detail says which header or rule); nothing stored.",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
        422: {
            "description": "The payload fails the mapping, the NL GOV profile or the catalogue's schema; kept as "
            "a failure for the operator, `invalidParams` names each fault.",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
    openapi_extra={
        "parameters": [
            {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": text}
            for name, text in (
                ("webhook-id", "standard-webhooks: the message id"),
                ("webhook-timestamp", "standard-webhooks: Unix seconds"),
                ("webhook-signature", "standard-webhooks: v1,<base64 signature> entries"),
                ("X-Hub-Signature-256", "hmac (GitHub style; the header name is the consumer's): sha256=<hex>"),
                ("X-API-Key", "api-key (the header name is the consumer's)"),
            )
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object", "description": "the external system's payload"}}
            },
        },
    },
)
async def post_hook(
    request: Request,
    endpoint: Annotated[str, Path(pattern=model.SLUG.pattern, max_length=100, description="the consumer's endpoint")],
) -> Response:
    """Normally answered by `HooksFastPath` in front of FastAPI (`asgi_app`); the same pipeline here."""
    hooks: Hooks = request.app.state.hooks
    body, status = await hooks.take(request.scope, request.receive)
    return Response(body, status, media_type="application/json")
