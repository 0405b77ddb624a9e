"""Runs the service under uvicorn: our own listening socket (a taken port is one line, exit 2), and
uvicorn's graceful shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight requests, exit 0)."""

from __future__ import annotations

import socket
import ssl
from types import FrameType

import uvicorn

from worker.runtime.asgi import HttpProtocol
from worker.service.app import asgi_app
from worker.service.settings import ServeSettings


class StartupError(RuntimeError):
    """The service cannot start; the message is one line for the operator."""


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once drained, so the process would die by it; the contract of
        # our daemons is exit 0 after a clean SIGTERM/SIGINT shutdown.
        self._captured_signals.clear()


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"OUTBOX_PORT: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: ServeSettings, url: str) -> None:
    sock = listen(settings.host, settings.port)
    if settings.tls_certificate is not None:
        try:  # a certificate that does not load is one line at start, not a failure per connection
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(settings.tls_certificate), str(settings.tls_key))
            if settings.tls_client_ca is not None:
                context.load_verify_locations(str(settings.tls_client_ca))
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise StartupError(f"OUTBOX_TLS_CERTIFICATE/OUTBOX_TLS_KEY: cannot be loaded ({exc})") from None
    try:
        import uvloop  # noqa: F401 (libuv's loop: less CPU per request)

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    tls: dict[str, object] = {}
    if settings.tls_certificate is not None:
        tls = {"ssl_certfile": str(settings.tls_certificate), "ssl_keyfile": str(settings.tls_key)}
        if settings.tls_client_ca is not None:
            # Asked for, not required: only consumers with mTLS verification need one (and refuse without).
            tls |= {"ssl_ca_certs": str(settings.tls_client_ca), "ssl_cert_reqs": ssl.CERT_OPTIONAL}
    config = uvicorn.Config(
        asgi_app(settings, url),
        loop=loop,
        # httptools, plus the ASGI TLS extension (the client certificate) that mTLS consumers verify.
        http=HttpProtocol,
        **tls,  # type: ignore[arg-type]
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=True,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
        limit_concurrency=None,
        proxy_headers=False,  # `url` fields come from OUTBOX_PUBLIC_URL behind a proxy, not from headers
    )
    _Server(config).run(sockets=[sock])
