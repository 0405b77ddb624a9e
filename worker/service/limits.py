"""What a request may cost: its body's size and the time it takes to arrive, and (`ClientRate`) how many
requests a client may make per second over every `outbox serve` process.

Bodies: a declared Content-Length over the limit is refused at once, a streamed body as soon as it
passes the limit. Each part of a body must arrive within OUTBOX_REQUEST_TIMEOUT and the whole body
within OUTBOX_BODY_TIMEOUT, counted from the first read: a client that sends a byte a second never
trips the first and is cut off by the second (408, connection closed, nothing stored). The intake's
limit depends on its content mode, known from the Content-Type before the body is read: a batch may
be OUTBOX_MAX_BATCH_BYTES, one event (structured or binary) OUTBOX_MAX_EVENT_BYTES.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbox._sql import query
from worker.service.problems import ApiProblem
from worker.service.settings import ServeSettings

INTAKE_PATH = "/api/v1/cloudevents"
CONSOLE_PATH = "/console/"
CONSOLE_FORM_LIMIT = 64 * 1024  # the console's forms hold ids and a few words: a larger body is not ours
BATCHED = "application/cloudevents-batch+json"


def too_slow(seconds: float, setting: str) -> ApiProblem:
    what = "a part of the request body" if setting == "OUTBOX_REQUEST_TIMEOUT" else "the request body"
    return ApiProblem(
        408,
        "request_timeout",
        "Request timeout.",
        f"{what[0].upper()}{what[1:]} did not arrive within {seconds:g} s ({setting}); nothing was stored.",
        headers={"Connection": "close"},
    )


def too_large(limit: int, setting: str = "") -> ApiProblem:
    named = f" ({setting})" if setting else ""
    return ApiProblem(
        413,
        "too_large",
        "Request entity too large.",
        f"The request body is over this operation's limit of {limit} bytes{named}.",
    )


def intake_limit(content_type: str | None, settings: ServeSettings) -> tuple[int, str]:
    """The largest body POST /cloudevents takes in this content mode, and the setting that says so."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == BATCHED:
        return settings.max_batch_bytes, "OUTBOX_MAX_BATCH_BYTES"
    return settings.max_event_bytes, "OUTBOX_MAX_EVENT_BYTES"


class _Deadline:
    """Receives body parts, each within `part` seconds and all of them within `total` from the first."""

    def __init__(self, receive: Receive, part: float, total: float) -> None:
        self._receive = receive
        self._part = part
        self._total = total
        self._until: float | None = None

    async def __call__(self) -> Message:
        now = time.monotonic()
        if self._until is None:
            self._until = now + self._total
        left = self._until - now
        timeout, setting = (self._part, "OUTBOX_REQUEST_TIMEOUT")
        if left < self._part:
            timeout, setting = (max(0.0, left), "OUTBOX_BODY_TIMEOUT")
        try:
            async with asyncio.timeout(timeout):
                return await self._receive()
        except TimeoutError:
            seconds = self._part if setting == "OUTBOX_REQUEST_TIMEOUT" else self._total
            raise too_slow(seconds, setting) from None


async def read_body(receive: Receive, headers: Mapping[str, str], settings: ServeSettings) -> bytes:
    """The intake's body (header names in lowercase), within its content mode's limit and the deadlines."""
    limit, setting = intake_limit(headers.get("content-type"), settings)
    return await read_limited(receive, headers, limit, setting, settings)


async def read_limited(
    receive: Receive, headers: Mapping[str, str], limit: int, setting: str, settings: ServeSettings
) -> bytes:
    """A body within `limit` bytes (`setting` names it in the 413) and the deadlines."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, setting)
    timed = _Deadline(receive, settings.request_timeout, settings.body_timeout)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await timed()
        if message["type"] == "http.disconnect":
            raise ApiProblem(400, "disconnected", "Client disconnected.", "The request body did not arrive whole.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit, setting)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Refused(Exception):
    def __init__(self, problem: ApiProblem) -> None:
        self.problem = problem


class BodyLimit:
    """The body limits for every route of the application (POST /cloudevents normally never gets here:
    `IntakeFastPath` reads its body with `read_body`): 413 over the limit (the intake's by content mode,
    `other_limit` for everything else), 408 past the deadlines."""

    def __init__(self, app: ASGIApp, settings: ServeSettings, other_limit: int) -> None:
        self.app = app
        self.settings = settings
        self.other_limit = other_limit
        self.base = settings.public_url or ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.other_limit, ""
        if scope["path"] == INTAKE_PATH:
            content_type = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"content-type"), None)
            limit, setting = intake_limit(content_type, self.settings)
        elif scope["path"].startswith(CONSOLE_PATH):
            limit = CONSOLE_FORM_LIMIT
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await too_large(limit, setting).response(self.base)(scope, receive, send)
                    return
        received = 0
        started = False
        timed = _Deadline(receive, self.settings.request_timeout, self.settings.body_timeout)

        async def counting_receive() -> Message:
            nonlocal received
            try:
                message = await timed()
            except ApiProblem as problem:
                raise _Refused(problem) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _Refused(too_large(limit, setting))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _Refused as refused:
            if not started:
                await refused.problem.response(self.base)(scope, receive, send)


def retry_after(tokens: float, rate: float) -> int:
    """Whole seconds (at least 1) until a token bucket at `tokens` refilling at `rate` per second holds one."""
    return max(1, int((1 - tokens) / rate + 0.999))


class ClientRate:
    """Each client's request rate over every `outbox serve` process: a token bucket per client in
    PostgreSQL (`client_rates`, unlogged), one UPSERT per request (`take_client_request`). A count
    per process would let N processes allow N times the rate."""

    def __init__(self, pool: AsyncConnectionPool[Any], schema: str, rate: float, burst: int) -> None:
        self._pool = pool
        self._sql = query("take_client_request", schema)
        self.rate = rate
        self.burst = float(burst or max(1.0, rate))

    async def take(self, client_id: str) -> None:
        """One request of the client, or a 429 with Retry-After (whole seconds, at least 1)."""
        if self.rate <= 0:
            return
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._sql, {"client": client_id, "rate": self.rate, "burst": self.burst})
            row = await cursor.fetchone()
        assert row is not None  # INSERT … ON CONFLICT DO UPDATE … RETURNING always returns the row
        taken, tokens = row
        if taken:
            return
        wait = retry_after(float(tokens), self.rate)
        raise ApiProblem(
            429,
            "throttled",
            "Too many requests.",
            f"Over this client's request rate ({self.rate:g}/s over all processes); try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
