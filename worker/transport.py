"""An httpx transport on aiohttp, lean enough for thousands of webhook POSTs a second.

httpx's own transport is CPU-bound and slows down with many requests in flight (encode/httpx#3215).
This keeps httpx's API (httpx.Request in, httpx.Response out, httpx exceptions, httpx timeouts in
`request.extensions`) with aiohttp's HTTP/1.1 connection pool underneath. It is deliberately
narrow, for webhook delivery: no cookies, no redirects, no decompression, no proxies from the
environment, and at most `max_body` bytes of a response are read (the rest closes the connection).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import certifi
import httpx
import yarl


def default_ssl_context() -> ssl.SSLContext:
    """Verification on, Mozilla's CA bundle (as httpx)."""
    return ssl.create_default_context(cafile=certifi.where())


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None, max_body: int = 4096
    ) -> None:
        self._max_connections = max_connections
        self._ssl = ssl_context or default_ssl_context()
        self._max_body = max_body
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}  # parsed once per URL: webhooks repeat theirs

    def _yarl(self, url: httpx.URL) -> yarl.URL:
        text = str(url)
        parsed = self._urls.get(text)
        if parsed is None:
            if len(self._urls) > 10_000:
                self._urls.clear()
            parsed = self._urls[text] = yarl.URL(text, encoded=True)
        return parsed

    def _session_now(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl, keepalive_timeout=30.0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        return self._session

    def _timeout(self, extensions: dict[str, Any]) -> aiohttp.ClientTimeout:
        spec = extensions.get("timeout") or {}
        key = (spec.get("connect"), spec.get("read"), spec.get("write"), spec.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            total = sum(t for t in key if t is not None) or None  # a hard ceiling for a stuck request
            timeout = aiohttp.ClientTimeout(total=total, sock_connect=key[0], sock_read=key[1], connect=key[3])
            self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_now()
        try:
            async with session.request(
                request.method,
                self._yarl(request.url),
                headers=request.headers.multi_items(),
                data=request.content,
                allow_redirects=False,
                timeout=self._timeout(request.extensions),
            ) as response:
                body = await response.content.read(self._max_body)
                if not response.content.at_eof():
                    response.close()  # more than we keep: do not reuse this connection
                return httpx.Response(
                    response.status,
                    headers=response.raw_headers,
                    content=body,
                    request=request,
                )
        except TimeoutError as exc:
            raise httpx.TimeoutException("timed out", request=request) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise httpx.ConnectError(f"TLS certificate not accepted: {exc.certificate_error}", request=request) from exc
        except aiohttp.ClientSSLError as exc:
            raise httpx.ConnectError("TLS handshake failed", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(f"cannot connect: {exc.os_error.strerror or exc}", request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise httpx.RemoteProtocolError(f"bad or broken answer: {type(exc).__name__}", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
