"""An httpx transport for webhook POSTs: HTTP/1.1 keep-alive on asyncio protocols, parsed by httptools.

httpx's own transport is CPU-bound and slows down with many requests in flight (encode/httpx#3215);
aiohttp under httpx's API reached about 3,700 requests/s here, this about 8,000-9,500 (same
receiver, 50 in flight), and CPU per request is what bounds one worker process. It keeps httpx's
API: an `httpx.Request` in (timeouts in `request.extensions["timeout"]`), an `httpx.Response` out,
httpx's exceptions.

Deliberately narrow, for delivery: one request per connection at a time (no pipelining), no
redirects, no cookies, no proxies, no decompression, no Expect/100-continue, HTTP/1.1 only. At
most `max_body` bytes of an answer are kept; an answer body over 64 KiB, or with over 100 headers or
64 KiB of them, is cut off and its connection closed (the status is kept), and so is a connection
that sends bytes nobody asked for. A kept-alive connection the server closed meanwhile is retried
once on a fresh connection, but only when the server sent nothing back.

Outbound safety: the transport resolves the host itself, asks its `AddressPolicy` about every
address the name resolves to (one refused address refuses the request: `DestinationRefused`), and
connects to the address it checked, with the name for TLS (SNI and certificate check) and the Host
header, so a second DNS answer cannot swap in another address. A request may carry its own
`ssl.SSLContext` in `request.extensions["outbox.tls"]` (a subscription's CA bundle or client
certificate); connections are pooled per context, so one subscription's client certificate never
serves another's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from ipaddress import ip_address
from typing import Any

import certifi
import httptools
import httpx

from worker.delivery.safety import AddressPolicy, DestinationRefused

MAX_ANSWER = 64 * 1024  # answer body bytes read at most: a receiver's answer is a status, not a download
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024


TLS_EXTENSION = "outbox.tls"  # request.extensions key for a per-request ssl.SSLContext

# (host, port) -> the host's addresses, in the order to try them
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


def _is_ip_literal(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """Verification on, Mozilla's CA bundle (as httpx). Built once (loading the bundle takes ~13 ms)
    and shared: nothing changes a context after it is made."""
    return ssl.create_default_context(cafile=certifi.where())


async def system_resolver(host: str, port: int) -> list[str]:
    """The event loop's getaddrinfo: every IPv4/IPv6 address of `host`, once each, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


class Answer:
    """What a server answered, as read (no httpx objects: the delivery path is CPU-bound)."""

    __slots__ = ("body", "connect_ms", "headers", "keep_alive", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        # How long the TCP (and TLS) connect took, in ms; None on a kept-alive connection. A connect far
        # slower than usual means a SYN was dropped and retransmitted (>= 1 s later): the receiver's
        # listen backlog overflowed, the first sign of overload, long before any timeout.
        self.connect_ms: float | None = None

    def header(self, name: bytes) -> str | None:
        """The first value of header `name` (lowercase), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; `exchange` sends a request and waits for its answer."""

    def __init__(self, pool: _Pool, max_body: int) -> None:
        self.pool = pool
        self.max_body = max_body
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.body_seen = 0
        self.status = 0
        self.headers_done = False
        self.got_bytes = False
        self.closed = False
        self.idle_since = 0.0
        self.connect_ms = 0.0  # how long connecting took (all addresses tried), set by `_connect`
        self.header_bytes = 0
        self.gone: asyncio.Future[None] | None = None  # made by `aclose` when it waits for the close

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        self.pool.live.discard(self)
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            if self.headers_done:  # an answer delimited by the end of the connection
                self._answer(keep_alive=False)
            elif isinstance(exc, ssl.SSLError):
                # With TLS 1.3 a server refuses our client certificate (or its absence) only after
                # the handshake: the alert ends the exchange, and is the useful part of the story.
                self.waiter.set_exception(httpx.ConnectError(f"TLS refused by the server: {exc.reason or exc}"))
            else:
                self.waiter.set_exception(ConnectionResetError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            # Bytes nobody asked for (a second answer, or talk on an idle connection): never let
            # them pass for the answer to the next request.
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"not a valid HTTP answer: {exc}"))

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if len(self.headers) >= MAX_HEADERS or self.header_bytes > MAX_HEADER_BYTES:
            self._fail(httpx.RemoteProtocolError("the answer's headers are too many or too large"))
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        room = min(self.max_body, MAX_ANSWER) - len(self.body)
        if room > 0:
            self.body += body[:room]
        self.body_seen += len(body)
        if self.body_seen > MAX_ANSWER:
            self._answer(keep_alive=False)  # enough: the rest is dropped with the connection
            self.close()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (e.g. 103): the real one follows
            self.headers, self.headers_done, self.header_bytes = [], False, 0
            return
        self._answer(keep_alive=self.parser.should_keep_alive())

    def _answer(self, keep_alive: bool) -> None:
        """Resolve the exchange with what arrived, copied now: later bytes cannot change it."""
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(Answer(self.status, self.headers, bytes(self.body), keep_alive))

    # -- use -------------------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, raw: bytes, timeout: float | None, loop: asyncio.AbstractEventLoop) -> Answer:
        self.headers, self.body, self.body_seen, self.header_bytes = [], bytearray(), 0, 0
        self.status, self.headers_done, self.got_bytes = 0, False, False
        waiter: asyncio.Future[Answer] = loop.create_future()
        self.waiter = waiter
        self.transport.write(raw)
        timer = loop.call_later(timeout, _time_out, waiter) if timeout else None
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()


def _time_out(waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Pool:
    """Idle connections to one (scheme, host, port, TLS context)."""

    def __init__(self) -> None:
        self.idle: deque[_Connection] = deque()
        self.live: set[_Connection] = set()  # connected and not yet lost: what `aclose` waits for

    def forget(self, connection: _Connection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)


class WebhookTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_host: int = 100,
        keepalive_expiry: float = 15.0,
        max_body: int = 4096,
        policy: AddressPolicy | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """`policy` None allows every address (benchmarks, tests); the worker always passes one.

        `max_body` is what is kept of an answer, at most MAX_ANSWER.
        """
        self._ssl = ssl_context or default_ssl_context()
        self._max_idle = max_idle_per_host
        self._expiry = keepalive_expiry
        self._max_body = min(max_body, MAX_ANSWER)
        self._policy = policy
        self._resolve = resolver or system_resolver
        # The context is part of the key: a connection made with one client certificate must
        # never carry another subscription's request.
        self._pools: dict[tuple[bytes, bytes, int, ssl.SSLContext | None], _Pool] = {}

    def _idle_connection(self, pool: _Pool) -> _Connection | None:
        now = time.monotonic()
        while pool.idle:
            connection = pool.idle.pop()
            if not connection.closed and now - connection.idle_since < self._expiry:
                return connection
            connection.close()
        return None

    async def _addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        """The addresses to connect to, each one allowed by the policy (else DestinationRefused)."""
        if _is_ip_literal(host):
            addresses = [host]  # nothing to resolve
        else:
            try:
                addresses = list(await asyncio.wait_for(self._resolve(host, port), timeout))
            except TimeoutError:
                raise httpx.ConnectTimeout("resolving the host timed out") from None
            except OSError as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
            if not addresses:
                raise httpx.ConnectError(f"cannot resolve {host}: no addresses")
        if self._policy is not None:
            for address in addresses:  # any refused address refuses the host: DNS picks the one used
                kind = self._policy.refusal(address)
                if kind is not None:
                    raise DestinationRefused(host, address, kind)
        return addresses

    async def _connect(
        self, pool: _Pool, url: httpx.URL, timeout: float | None, context: ssl.SSLContext | None
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        secure = url.scheme == "https"
        port = url.port or (443 if secure else 80)
        host = url.raw_host.decode("ascii")  # IDNA-encoded, IPv6 without brackets
        deadline = None if timeout is None else loop.time() + timeout
        addresses = await self._addresses(host, port, timeout)
        began = time.perf_counter()  # after resolving: a slow DNS answer is no sign of the receiver's load
        failure: OSError | None = None
        for address in addresses:  # as create_connection would, but only through checked addresses
            connection = _Connection(pool, self._max_body)
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda: connection,  # noqa: B023 - used before the loop moves on
                        address,
                        port,
                        ssl=(context or self._ssl) if secure else None,
                        server_hostname=host if secure else None,
                    ),
                    remaining,
                )
            except TimeoutError:
                raise httpx.ConnectTimeout("connecting timed out") from None
            except ssl.SSLCertVerificationError as exc:
                raise httpx.ConnectError(f"TLS certificate not accepted: {exc.verify_message}") from None
            except ssl.SSLError as exc:
                raise httpx.ConnectError(f"TLS handshake failed: {exc.reason}") from None
            except OSError as exc:
                failure = exc  # unreachable address: try the next one
                continue
            pool.live.add(connection)
            connection.connect_ms = (time.perf_counter() - began) * 1000
            return connection
        assert failure is not None
        raise httpx.ConnectError(f"cannot connect: {failure.strerror or failure}") from None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's transport API (handshakes, token requests)."""
        context = request.extensions.get(TLS_EXTENSION)
        if context is not None and not isinstance(context, ssl.SSLContext):
            raise TypeError(f"request.extensions[{TLS_EXTENSION!r}] must be an ssl.SSLContext")
        try:
            answer = await self.send(
                request.url,
                request.method.encode(),
                request.headers.raw,
                request.content,
                request.extensions.get("timeout") or {},
                context,
            )
        except httpx.TransportError as exc:
            exc.request = request
            raise
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body, request=request)

    async def send(
        self,
        url: httpx.URL,
        method: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None],
        context: ssl.SSLContext | None = None,
    ) -> Answer:
        """One request, as given: `headers` must include Host (and Content-Length for a body).
        Raises httpx's transport exceptions (without a request attached)."""
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"{url.scheme!r} is not http or https")
        key = (url.raw_scheme, url.raw_host, url.port or 0, context)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool()
        parts = [method, b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in headers:
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
                raise httpx.LocalProtocolError(f"header {name!r} would break the request")
            parts += [name, b": ", value, b"\r\n"]
        parts.append(b"\r\n")
        raw = b"".join(parts) + body
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            connection = self._idle_connection(pool)
            reused = connection is not None
            connect_ms = None
            if connection is None:
                connection = await self._connect(pool, url, timeouts.get("connect"), context)
                connect_ms = connection.connect_ms
            try:
                answer = await connection.exchange(raw, timeouts.get("read"), loop)
            except ConnectionResetError:
                connection.close()
                if reused and not connection.got_bytes and attempt == 1:
                    continue  # the server had closed this kept-alive connection: once more, fresh
                raise httpx.RemoteProtocolError("the server closed the connection") from None
            except TimeoutError:
                connection.close()
                raise httpx.ReadTimeout("no answer in time") from None
            answer.connect_ms = connect_ms
            if answer.keep_alive and not connection.closed and len(pool.idle) < self._max_idle:
                connection.idle_since = time.monotonic()
                pool.idle.append(connection)
            else:
                connection.close()
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self, grace: float = 1.0) -> None:
        """Close the idle connections and wait (up to `grace` seconds, then abort) until every
        connection that is closing has closed: a loop that ends right after (asyncio.run, as in the
        handshake) would otherwise leave their sockets open, and TLS needs a close_notify exchange."""
        loop = asyncio.get_running_loop()
        closing: list[_Connection] = []
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.pop().close()
            closing += [connection for connection in pool.live if connection.closed]
        self._pools.clear()
        if not closing:
            return
        for connection in closing:
            connection.gone = loop.create_future()
        _, late = await asyncio.wait([c.gone for c in closing if c.gone is not None], timeout=grace)
        if late:
            for connection in closing:
                if connection in connection.pool.live:
                    connection.transport.abort()
            await asyncio.sleep(0)  # abort closes the socket in the loop's next round
