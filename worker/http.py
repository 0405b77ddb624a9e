"""HTTP delivery: one shared httpx client per process, the content modes, one attempt → one result.

The client's transport is `worker.transport.WebhookTransport` (httpx's API, asyncio protocols and
httptools underneath): httpx's own transport is CPU-bound and slows down with many requests in
flight (encode/httpx#3215).
Deliveries are sent as `httpx.Request`s straight to that transport: the client layer above it
adds what webhook delivery must not have (one cookie jar shared by all receivers, redirect
handling, auth flows) and costs about a third of the throughput. Redirects are not followed, TLS
is verified, every request has a timeout.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import orjson

from worker.outcome import Outcome, from_error, from_status
from worker.settings import WorkerSettings
from worker.transport import WebhookTransport

USER_AGENT = "nlgov-outbox/0.1"
STRUCTURED = "application/cloudevents+json; charset=utf-8"
BATCHED = "application/cloudevents-batch+json; charset=utf-8"
MAX_BODY_KEPT = 4096


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds: what to send where, and the claim that fences its result."""

    id: int
    attempts: int
    subscription_id: UUID
    callback_url: str
    auth: str | None = field(repr=False)  # a secret: never in a repr or a traceback's locals
    content_mode: str
    event: str  # the JSON event format, as stored
    token: UUID
    key: str | None = None  # the ordering key
    rescued: bool = False  # claimed again after a lease expired


@dataclass(frozen=True)
class Result:
    claimed: Claimed
    outcome: Outcome
    attempted_at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = None  # error class when there was no answer
    body: str | None = None  # at most 4 KiB of the answer


class Sender:
    """The process's HTTP client and its transport; `deliver` makes one attempt."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.transport = WebhookTransport(max_idle_per_host=settings.concurrency, max_body=MAX_BODY_KEPT)
        self.client = httpx.AsyncClient(
            transport=self.transport,
            timeout=httpx.Timeout(settings.request_timeout),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._timeout = {"timeout": httpx.Timeout(settings.request_timeout).as_dict()}
        self._urls: dict[str, httpx.URL] = {}  # parsed once per callback URL

    def _url(self, callback_url: str) -> httpx.URL:
        url = self._urls.get(callback_url)
        if url is None:
            if len(self._urls) > 10_000:
                self._urls.clear()
            url = self._urls[callback_url] = httpx.URL(callback_url)
        return url

    async def aclose(self) -> None:
        await self.client.aclose()

    async def deliver(self, claimed: Claimed) -> Result:
        """One POST. Never raises: what the receiver, the network or the event does is the result."""
        attempted_at = datetime.now(UTC)
        start = time.perf_counter()
        try:
            headers, body = request_parts(claimed)
            headers["User-Agent"] = USER_AGENT
            request = httpx.Request(
                "POST", self._url(claimed.callback_url), headers=headers, content=body, extensions=self._timeout
            )
            response = await self.transport.handle_async_request(request)
            outcome = from_status(
                response.status_code, response.headers.get("Retry-After"), claimed.attempts, self.settings
            )
        except Exception as exc:  # every failure must become a recorded attempt
            duration = (time.perf_counter() - start) * 1000
            error = _error_class(exc)
            return Result(
                claimed, from_error(error, claimed.attempts, self.settings), attempted_at, duration, error=error
            )
        duration = (time.perf_counter() - start) * 1000
        return Result(
            claimed,
            outcome,
            attempted_at,
            duration,
            status_code=response.status_code,
            body=_clean_body(response.content),
        )


def _header_value(value: Any) -> str:
    """CloudEvents HTTP binding: attribute values as header values, percent-encoding what is unsafe."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return quote(str(value), safe=" !#$&'()*+,/:;=?@[]^_`{|}~-.")


def request_parts(claimed: Claimed) -> tuple[dict[str, str], bytes]:
    """Headers and body for the subscription's content mode."""
    headers: dict[str, str] = {}
    if claimed.auth:
        headers["Authorization"] = claimed.auth
    if claimed.content_mode == "binary":
        event = orjson.loads(claimed.event)
        data = event.pop("data", None)
        data_base64 = event.pop("data_base64", None)
        content_type = event.pop("datacontenttype", None)
        for name, value in event.items():
            headers[f"ce-{name}"] = _header_value(value)
        if data_base64 is not None:
            body = base64.b64decode(data_base64)
        elif data is None:
            body = b""
        elif isinstance(data, str) and content_type and "json" not in content_type:
            body = data.encode()
        else:
            body = orjson.dumps(data)
        headers["Content-Type"] = content_type or "application/json"
        return headers, body
    if claimed.content_mode == "batched":
        headers["Content-Type"] = BATCHED
        return headers, b"[" + claimed.event.encode() + b"]"
    headers["Content-Type"] = STRUCTURED
    return headers, claimed.event.encode()


def _clean_body(raw: bytes | bytearray) -> str | None:
    if not raw:
        return None
    text = raw[:MAX_BODY_KEPT].decode("utf-8", errors="replace").replace("\x00", "")
    while len(text.encode()) > MAX_BODY_KEPT:  # U+FFFD takes 3 bytes: trim to the byte limit
        text = text[:-1]
    return text


def _error_class(exc: BaseException) -> str:
    """A short, secret-free name for what went wrong (no URL query strings, no headers)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if not isinstance(exc, httpx.HTTPError | OSError):
        return f"internal error ({type(exc).__name__})"
    name = type(exc).__name__
    cause = exc.__cause__
    if cause is not None and type(cause).__name__ != name:
        return f"{name} ({type(cause).__name__})"
    return name
