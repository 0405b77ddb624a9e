"""HTTP delivery: one shared httpx client per process, the content modes, one attempt → one result.

The client keeps httpx's API with aiohttp underneath (`httpx-aiohttp`): httpx's own transport is
CPU-bound and slows down with many requests in flight (encode/httpx#3215). Redirects are not
followed, TLS is verified, every request has a timeout.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from worker.outcome import Outcome, from_error, from_status
from worker.settings import WorkerSettings

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
    auth: str | None
    content_mode: str
    event: str  # the JSON event format, as stored
    token: UUID


@dataclass(frozen=True)
class Result:
    claimed: Claimed
    outcome: Outcome
    attempted_at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = None  # error class when there was no answer
    body: str | None = None  # at most 4 KiB of the answer


def make_client(settings: WorkerSettings) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=settings.concurrency,
        max_keepalive_connections=settings.concurrency,
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(verify=True, limits=limits, trust_env=False),
        timeout=httpx.Timeout(settings.request_timeout),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
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


async def deliver(client: httpx.AsyncClient, claimed: Claimed, settings: WorkerSettings) -> Result:
    """One POST. Never raises for what the receiver or the network does: that is the result."""
    headers, body = request_parts(claimed)
    attempted_at = datetime.now(UTC)
    start = time.perf_counter()
    try:
        async with client.stream("POST", claimed.callback_url, content=body, headers=headers) as response:
            kept = bytearray()
            async for chunk in response.aiter_bytes():
                kept += chunk
                if len(kept) >= MAX_BODY_KEPT:
                    break
        duration = (time.perf_counter() - start) * 1000
        outcome = from_status(response.status_code, response.headers.get("Retry-After"), claimed.attempts, settings)
        return Result(
            claimed, outcome, attempted_at, duration, status_code=response.status_code, body=_clean_body(kept)
        )
    except (httpx.HTTPError, OSError, ValueError) as exc:
        duration = (time.perf_counter() - start) * 1000
        error = _error_class(exc)
        return Result(claimed, from_error(error, claimed.attempts, settings), attempted_at, duration, error=error)


def _error_class(exc: BaseException) -> str:
    """A short, secret-free name for what went wrong (no URL query strings, no headers)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    name = type(exc).__name__
    cause = exc.__cause__
    if cause is not None and type(cause).__name__ != name:
        return f"{name} ({type(cause).__name__})"
    return name
