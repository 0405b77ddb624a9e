"""HTTP delivery: one transport per process, a Target per subscription, the content modes,
one attempt (one request, of one event or a batch) → one result per delivery in it.

The client's transport is `worker.transport.WebhookTransport` (httpx's API, asyncio protocols and
httptools underneath): httpx's own transport is CPU-bound and slows down with many requests in
flight (encode/httpx#3215).
Deliveries are sent as `httpx.Request`s straight to that transport: httpx's client layer adds
what webhook delivery must not have (one cookie jar shared by all receivers, redirect handling,
auth flows) and costs about a third of the throughput. Redirects are not followed, TLS is
verified (a subscription may bring its own CA bundle and client certificate), every request has
a timeout, and the transport checks each address it connects to (worker/safety.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import orjson

from outbox import Subscription
from worker.daemon.settings import WorkerSettings
from worker.delivery.credentials import USER_AGENT, CredentialsError, OAuth2ClientCredentials, WebhookSigner, ZgwJwt
from worker.delivery.outcome import Outcome, from_error, from_status
from worker.delivery.safety import AddressPolicy, DestinationRefused
from worker.delivery.tls import tls_context
from worker.delivery.transport import MAX_ANSWER, TLS_EXTENSION, Answer, WebhookTransport
from worker.runtime import tracing

_USER_AGENT = USER_AGENT.encode()
# The bare media types: JSON is UTF-8 by definition (RFC 8259 §8.1), and receivers built with the
# CloudEvents SDKs (Open Zaak's /events among them) compare the Content-Type exactly, answering 415
# to '; charset=utf-8'. A subscription's contentType sends any other form a receiver wants.
STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
MAX_BODY_KEPT = 4096


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds: which event for which subscription, and the claim that fences its result."""

    id: int
    attempts: int
    subscription_id: UUID
    event: str  # the JSON event format, as stored
    token: UUID
    key: str | None = None  # the ordering key
    rescued: bool = False  # claimed again after a lease expired
    enqueued_at: datetime | None = None  # the event's, by the database's clock: the commit → delivery histogram


@dataclass(frozen=True)
class Result:
    claimed: Claimed
    outcome: Outcome
    attempted_at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = None  # error class when there was no answer
    body: str | None = None  # at most 4 KiB of the answer
    allowed_rate: str | None = None  # what a pre-flight handshake before this attempt agreed ("" = none)
    # The request's new connection: how long connecting took and the target's fastest connect before
    # it, in ms (None: a kept-alive connection, or no answer). See adaptive.congestion_signal.
    connect_ms: float | None = None
    usual_connect_ms: float | None = None


# The share of the gap by which the fastest connect moves up towards each slower one: a path that
# became slower for good (another route) stops looking like dropped SYNs after a few thousand
# connects, while a burst of a hundred dropped SYNs (1 s each) moves it by ~100 ms.
_CONNECT_DRIFT = 0.001


class Target:
    """How to send to one subscription (one version of it): URL, TLS, credentials, signer.

    Built once per subscription version, so a delivery only formats its request. Build it with
    `Sender.target`, which lends its transports and keeps OAuth2 tokens across versions."""

    def __init__(
        self,
        subscription: Subscription,
        settings: WorkerSettings,
        token_transport: WebhookTransport | None = None,
        oauth2: OAuth2ClientCredentials | None = None,
    ) -> None:
        self.subscription = subscription
        self.url = httpx.URL(subscription.callback_url)
        self.timeouts: dict[str, float | None] = httpx.Timeout(settings.request_timeout).as_dict()
        self.tls: ssl.SSLContext | None = None
        if subscription.ca_bundle or subscription.client_cert:
            self.tls = tls_context(subscription.ca_bundle, subscription.client_cert, subscription.client_key)
        self.host = self.url.netloc  # the Host header, as httpx.Request would send it
        # The subscription's own headers (Subscriptions API protocolsettings.headers; reserved names refused).
        self.headers = dict(subscription.headers)
        # A traceparent/tracestate of its own gives way to the delivery span's while the worker traces.
        self.trace_headers = any(name.lower() in ("traceparent", "tracestate") for name in self.headers)
        # Without the sender's, a transport that refuses every non-public address.
        self.token_transport = token_transport or WebhookTransport(
            max_idle_per_host=1, max_body=MAX_ANSWER, policy=AddressPolicy()
        )
        self.oauth2 = oauth2
        if subscription.oauth2 is not None and oauth2 is None:
            o = subscription.oauth2
            self.oauth2 = OAuth2ClientCredentials(
                o.token_url, o.client_id, o.client_secret, o.scope, timeout=settings.request_timeout
            )
        self.zgw = ZgwJwt(subscription.zgw.client_id, subscription.zgw.secret) if subscription.zgw else None
        self.signer = WebhookSigner(subscription.signing_secrets) if subscription.signing_secrets else None
        self.batch_max = subscription.batch_max if subscription.content_mode == "batched" else 1
        # The token endpoint gets the target's TLS options only when it is on the target's host: a
        # public identity provider must not be checked against a private CA, nor see our client cert.
        same_host = subscription.oauth2 is not None and httpx.URL(subscription.oauth2.token_url).host == self.url.host
        self._token_tls = self.tls if same_host else None
        # The fastest connect to the target so far (ms): what a connect slowed by a dropped SYN is
        # measured against (see `connected`).
        self.fastest_connect_ms: float | None = None
        # Pre-flight agreements are for this URL and these TLS options only (a new version starts over).
        self.preflight_key = (subscription.id, subscription.callback_url, subscription.ca_bundle,
                              subscription.client_cert)  # fmt: skip

    def connected(self, connect_ms: float) -> None:
        """A new connection to the target took `connect_ms`: the fastest connect follows it down at
        once, and up only slowly."""
        fastest = self.fastest_connect_ms
        if fastest is None or connect_ms < fastest:
            self.fastest_connect_ms = connect_ms
        else:
            self.fastest_connect_ms = fastest + (connect_ms - fastest) * _CONNECT_DRIFT

    async def token_sender(self, request: httpx.Request) -> httpx.Response:
        if self._token_tls is not None:
            request.extensions[TLS_EXTENSION] = self._token_tls
        return await self.token_transport.handle_async_request(request)

    def __repr__(self) -> str:
        return f"Target({self.subscription!r})"


PREFLIGHT_FAILURE_KEPT = 5.0  # seconds a refused pre-flight answers for the deliveries waiting on it


class Sender:
    """The process's HTTP transport; `deliver` makes one attempt (one request) for one or more claims."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.policy = AddressPolicy(settings.allowed_networks)
        self.transport = WebhookTransport(
            max_idle_per_host=settings.concurrency, max_body=MAX_BODY_KEPT, policy=self.policy
        )
        # Token endpoints answer more than a webhook's 4 KiB we keep (large JWTs): their own transport,
        # with the same address checks.
        self.token_transport = WebhookTransport(max_idle_per_host=4, max_body=MAX_ANSWER, policy=self.policy)
        # pre-flight key -> (when, allowed rate, refusal): an agreement, or a refusal kept briefly
        self._preflights: dict[tuple[Any, ...], tuple[float, str | None, str | None]] = {}
        self._preflight_locks: dict[tuple[Any, ...], asyncio.Lock] = {}
        self._credentials: dict[tuple[str, ...], OAuth2ClientCredentials] = {}
        # A delivery (pre-flight, token, POST, token again, POST again) must end well inside its lease,
        # or another worker would take it while it is still going.
        self.deadline = settings.lease_seconds * 0.8

    async def aclose(self) -> None:
        await self.transport.aclose()
        await self.token_transport.aclose()

    def target(self, subscription: Subscription) -> Target:
        """How to send to `subscription` with this sender's transports; its OAuth2 token outlives the
        version (raises ValueError for TLS options that do not load)."""
        oauth2 = None
        if subscription.oauth2 is not None:
            o = subscription.oauth2
            key = (o.token_url, o.client_id, hashlib.sha256(o.client_secret.encode()).hexdigest(), o.scope or "")
            oauth2 = self._credentials.get(key)
            if oauth2 is None:
                oauth2 = self._credentials[key] = OAuth2ClientCredentials(
                    o.token_url, o.client_id, o.client_secret, o.scope, timeout=self.settings.request_timeout
                )
        return Target(subscription, self.settings, self.token_transport, oauth2)

    async def deliver(self, target: Target, claims: list[Claimed]) -> list[Result]:
        """One request for `claims` (one, or a batch for one subscription). Never raises: what the
        receiver, the network or the event does is the result. The answer is the same for every
        claim in it; what it means (retry or give up) depends on each claim's own attempts."""
        attempted_at = datetime.now(UTC)
        start = time.perf_counter()
        allowed_rate = None
        traced = None if tracing.tracer is None else tracing.delivering(target, claims)  # off: this one check
        try:
            async with asyncio.timeout(self.deadline):
                if target.subscription.preflight:
                    allowed_rate = await self._preflight(target)
                response = await self._request(target, claims, traced)
        except Exception as exc:  # every failure must become a recorded attempt
            duration = (time.perf_counter() - start) * 1000
            error = _error_class(exc)
            failed = [
                Result(c, from_error(error, c.attempts, self.settings), attempted_at, duration, error=error,
                       allowed_rate=allowed_rate)
                for c in claims
            ]  # fmt: skip
            if traced is not None:
                tracing.delivered(traced, failed)
            return failed
        duration = (time.perf_counter() - start) * 1000
        body_kept = _clean_body(response.body)
        retry_after = response.header(b"retry-after")
        usual = target.fastest_connect_ms
        if response.connect_ms is not None:
            target.connected(response.connect_ms)
        sent = request_parts(target.subscription, claims)[0]["Content-Type"] if response.status == 415 else None
        results = [
            Result(c, from_status(response.status, retry_after, c.attempts, self.settings, sent, body_kept),
                   attempted_at, duration, status_code=response.status, body=body_kept,
                   allowed_rate=allowed_rate, connect_ms=response.connect_ms, usual_connect_ms=usual)
            for c in claims
        ]  # fmt: skip
        if traced is not None:
            tracing.delivered(traced, results)
        return results

    async def post(self, target: Target, claims: list[Claimed]) -> Answer:
        """One request as a delivery makes it (credentials, headers, signature), without its
        bookkeeping: the callback verification probe (worker/delivery/verification.py). Raises."""
        async with asyncio.timeout(self.deadline):
            return await self._request(target, claims)

    async def _request(self, target: Target, claims: list[Claimed], traced: tracing.Delivery | None = None) -> Answer:
        headers, body = request_parts(target.subscription, claims)
        if target.headers:
            headers = {**target.headers, **headers}
        await self._authenticate(target, headers)
        if self.settings.webhook_origin:
            headers["WebHook-Request-Origin"] = self.settings.webhook_origin
        if target.signer is not None:
            message_id = f"outbox-{claims[0].id}" + (f"-{claims[-1].id}" if len(claims) > 1 else "")
            headers.update(target.signer.headers(message_id, int(time.time()), body))
        response = await self._send(target, headers, body, traced)
        if response.status == 401 and target.oauth2 is not None:
            # The token may have been revoked before it expired: one fresh token, one more try.
            target.oauth2.invalidate(headers["Authorization"])
            await self._authenticate(target, headers)
            response = await self._send(target, headers, body, traced)
        return response

    async def _send(
        self, target: Target, headers: dict[str, str], body: bytes, traced: tracing.Delivery | None = None
    ) -> Answer:
        # Straight to the transport, without httpx.Request/Response objects: building them was a
        # quarter of the worker's CPU per delivery (py-spy), and the worker is CPU-bound.
        raw = [(b"Host", target.host), (b"Content-Length", str(len(body)).encode()), (b"User-Agent", _USER_AGENT)]
        raw += [(name.encode(), value.encode()) for name, value in headers.items()]
        if traced is not None:  # W3C Trace Context: the receiver's spans join the delivery's trace
            if target.trace_headers:
                raw = [h for h in raw if h[0].lower() not in (b"traceparent", b"tracestate")]
            raw += traced.headers
        return await self.transport.send(target.url, b"POST", raw, body, target.timeouts, target.tls)

    async def _authenticate(self, target: Target, headers: dict[str, str]) -> None:
        if target.oauth2 is not None:
            headers["Authorization"] = await target.oauth2.authorization(target.token_sender)
        elif target.zgw is not None:
            headers["Authorization"] = target.zgw.authorization()
        elif target.subscription.auth:
            headers["Authorization"] = target.subscription.auth

    async def _preflight(self, target: Target) -> str | None:
        """The handshake immediately preceding deliveries (the guideline's MAY), repeated once it is
        older than OUTBOX_PREFLIGHT_MAX_AGE; one at a time per subscription, and a refusal answers
        the deliveries that waited for it. Returns the allowed rate ("" when the target gave none)
        when this call ran it, else None. Refusal raises."""
        from worker.delivery.handshake import HandshakeRefused, handshake_async  # it imports this module

        origin = self.settings.webhook_origin
        if not origin:
            raise PreflightRefused("pre-flight handshake: set OUTBOX_WEBHOOK_ORIGIN (our WebHook-Request-Origin)")
        key = target.preflight_key
        lock = self._preflight_locks.setdefault(key, asyncio.Lock())
        async with lock:
            done = self._preflights.get(key)
            if done is not None:
                age = time.monotonic() - done[0]
                if done[2] is not None and age < PREFLIGHT_FAILURE_KEPT:
                    raise PreflightRefused(done[2])
                if done[2] is None and self.settings.preflight_max_age > 0 and age < self.settings.preflight_max_age:
                    return None
            try:
                agreement = await handshake_async(
                    target.subscription.callback_url,
                    origin,
                    target.subscription.requested_rate,
                    self.settings.request_timeout,
                    tls=target.tls,
                    transport=self.transport,
                )
            except HandshakeRefused as exc:
                message = f"pre-flight handshake refused: {exc}"
                self._preflights[key] = (time.monotonic(), None, message)
                raise PreflightRefused(message) from None
            self._preflights[key] = (time.monotonic(), agreement.allowed_rate, None)
            return agreement.allowed_rate or ""


class PreflightRefused(Exception):
    """The target did not agree in the pre-flight handshake (the message says what it answered)."""


def _header_value(value: Any) -> str:
    """CloudEvents HTTP binding (1.0.2 §3.1.3.2): attribute values as header values, with space,
    double quote, percent and everything outside printable ASCII percent-encoded (UTF-8)."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return quote(str(value), safe="!#$&'()*+,/:;=?@[]^_`{|}~-.<>\\")


def request_parts(subscription: Subscription, claims: list[Claimed]) -> tuple[dict[str, str], bytes]:
    """Headers and body for the subscription's content mode (a batch: several claims, one array)."""
    headers: dict[str, str] = {}
    mode = subscription.content_mode
    if mode == "batched":
        headers["Content-Type"] = subscription.content_type or BATCHED
        return headers, b"[" + b",".join(c.event.encode() for c in claims) + b"]"
    (claimed,) = claims
    if mode == "binary":
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
        headers["Content-Type"] = content_type or "application/json"  # datacontenttype, as the binding says
        return headers, body
    headers["Content-Type"] = subscription.content_type or STRUCTURED
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
    if isinstance(exc, PreflightRefused | CredentialsError):  # secret-free by construction
        return str(exc)
    if isinstance(exc, DestinationRefused):  # names host, address and kind: what the operator must see
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, TimeoutError):  # the whole delivery ran into its deadline (see Sender.deadline)
        return "timeout (the delivery took too long for its lease)"
    if not isinstance(exc, httpx.HTTPError | OSError):
        return f"internal error ({type(exc).__name__})"
    name = type(exc).__name__
    if isinstance(exc, httpx.TransportError) and str(exc):
        # Our transport words these itself (TLS verdicts, refused connections): no URL, no header.
        return f"{name}: {str(exc).splitlines()[0][:300]}"
    cause = exc.__cause__
    if cause is not None and type(cause).__name__ != name:
        return f"{name} ({type(cause).__name__})"
    return name
