"""An ASGI application served by uvicorn inside the running event loop: how the product serves HTTP
(`outbox run --metrics-port`, `outbox receiver`).

`Server.serve()` runs as a task of the caller's loop. The sockets are bound here, so a port that cannot
be bound raises OSError to the caller (uvicorn itself would log it and call sys.exit), and uvicorn
installs no signal handlers: SIGINT and SIGTERM belong to the process (the worker's own handlers, or
`run` below). No access log, no lifespan, no X-Forwarded-* trust: a peer is who connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def subject_name(peercert: dict[str, Any] | None) -> str | None:
    """A certificate's subject (`SSLSocket.getpeercert()`) as RFC 4514-ish text, e.g. "CN=outbox,O=Gemeente"."""
    if not peercert:
        return None
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    parts = [f"{short.get(k, k)}={v}" for rdn in peercert.get("subject", ()) for k, v in rdn]
    return ",".join(reversed(parts)) or None


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the ASGI TLS extension (the client certificate) on TLS connections:
    uvicorn does not offer it, and the receiver records who connected with mTLS."""

    _tls: dict[object, object] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            self._tls = {
                "server_cert": None,
                "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                "client_cert_name": subject_name(ssl_object.getpeercert()),
                "client_cert_error": None,
                "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
                "cipher_suite": None,
            }

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}


HttpProtocol = _Protocol  # for `outbox serve`, which runs uvicorn itself


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn would take SIGINT/SIGTERM over for the whole process, and raise them again when done.
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's, without its fixed 0.1 s pause and 0.1 s polls: an idle connection is gone at once, and a
        # closed listener refuses connections, so the sooner `stop` returns the better.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                while self.server_state.connections or self.server_state.tasks:
                    await asyncio.sleep(0.005)
                for server in self.servers:
                    await server.wait_closed()
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        await self.lifespan.shutdown()

    async def main_loop(self) -> None:
        # uvicorn's looks at should_exit every 0.1 s; this one wakes at once. A tick each second keeps
        # the Date header current (on_tick(0) renews it).
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.exit.wait()


def bind(host: str | None, port: int) -> list[socket.socket]:
    """Sockets bound as asyncio's create_server binds them: one per address of `host` (None or "": every
    interface, IPv4 and IPv6), an unavailable address family skipped. With port 0 all take the first's port."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this host does not have
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:  # the family is not enabled (as asyncio, bpo-30945)
                    sockets.pop().close()
                    continue
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(exc.errno, f"error while attempting to bind on address {address!r}: {reason}") from None
            sock.setblocking(False)
        if not sockets:
            raise OSError(errno.EADDRNOTAVAIL, f"no address to bind for {host!r}")
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class AsgiServer:
    """`app` on uvicorn in the running loop: `await start(host, port)`, then `await stop()`."""

    def __init__(self, app: ASGIApp, *, ssl_context: ssl.SSLContext | None = None, shutdown_timeout: int = 1) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.shutdown_timeout = shutdown_timeout
        self.sockets: list[socket.socket] = []
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int | None:
        """The port bound (useful with port 0), or None when not serving."""
        return int(self.sockets[0].getsockname()[1]) if self._task is not None and self.sockets else None

    async def start(self, host: str | None, port: int) -> None:
        """Bind (OSError here when that fails) and serve until `stop`."""
        if self._task is not None:
            raise RuntimeError("the server is already running")
        config = uvicorn.Config(
            self.app,
            interface="asgi3",  # "auto" takes a bound method for ASGI 2
            http=_Protocol,
            ws="none",  # an Upgrade request is an ordinary request to the app
            lifespan="off",
            access_log=False,
            log_config=None,  # the process configures logging, not uvicorn
            proxy_headers=False,
            # A request still running at shutdown is not worth waiting for longer than this.
            timeout_graceful_shutdown=self.shutdown_timeout,
        )
        config.load()
        config.ssl = self.ssl_context  # load() makes one from certificate files only; this one may ask for mTLS
        sockets = bind(host, port)
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=sockets), name="asgi-server")
        try:
            while not server.started and not task.done():
                await asyncio.sleep(0.005)
        except BaseException:  # cancelled while starting: leave no server behind
            server.should_exit = True
            server.exit.set()
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)
            for sock in sockets:
                sock.close()
            raise
        if task.done():
            for sock in sockets:
                sock.close()
            task.result()
            raise RuntimeError("the server stopped while starting")
        self.sockets, self._server, self._task = sockets, server, task

    async def stop(self) -> None:
        """Stop accepting, close idle connections, let running requests finish (up to the timeout);
        safe to call twice or without `start`."""
        server, task, self._server, self._task = self._server, self._task, None, None
        if server is None or task is None:
            return
        server.should_exit = True
        server.exit.set()
        await task  # uvicorn closes the sockets


def run(
    app: ASGIApp, host: str, port: int, ssl_context: ssl.SSLContext | None = None, shutdown_timeout: int = 60
) -> None:
    """Serve `app` in a new event loop until SIGINT or SIGTERM, then return."""

    async def main() -> None:
        server = AsgiServer(app, ssl_context=ssl_context, shutdown_timeout=shutdown_timeout)
        await server.start(host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(main())
