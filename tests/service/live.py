"""The service (`outbox serve`'s application) on a real port in a thread, and clients that call it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import psycopg
import uvicorn

from worker.service.app import create_app
from worker.service.server import listen
from worker.service.settings import ServeSettings
from worker.store import clients as client_store

PUBLISH = "notificaties.publiceren"
CONSUME = "notificaties.consumeren"
ADMIN = "outbox.beheer"


def token(client_id: str, secret: str, *, iat: float | None = None, **claims: Any) -> str:
    """A ZGW JWT as gemma-zds-client and zgw-consumers make it."""
    payload = {
        "iss": client_id,
        "iat": int(time.time() if iat is None else iat),
        "client_id": client_id,
        "user_id": "",
        "user_representation": "",
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass
class Caller:
    """One API client: its id, secret and an httpx client that sends its JWT."""

    client_id: str
    secret: str
    base_url: str
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.client_id, self.secret)}", **extra}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


@dataclass
class LiveService:
    database_url: str
    base_url: str
    settings: ServeSettings
    anonymous: httpx.Client
    callers: list[Caller] = field(default_factory=list)

    def add_client(self, client_id: str, *scopes: str, secret: str | None = None) -> Caller:
        """Registers an API client (as `outbox clients add` does) and returns a caller for it."""
        chosen = secret or client_store.new_secret()
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            client = client_store.ApiClient(client_id, frozenset(scopes), chosen)
            client_store.add(conn, self.settings.db_schema, client, self.settings.box)
        caller = Caller(client_id, chosen, self.base_url)
        self.callers.append(caller)
        return caller

    def close(self) -> None:
        self.anonymous.close()
        for caller in self.callers:
            caller.http.close()


@contextlib.contextmanager
def running(database_url: str, **overrides: Any) -> Iterator[LiveService]:
    """The application under uvicorn on 127.0.0.1 (a free port), in a thread with its own loop."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "port": 0,
        "allow_insecure_callbacks": True,
        "allowed_networks": "127.0.0.0/8,::1/128",
        "rate_limit": 0,
        "client_cache_ttl": 0,
        "pool_size": 4,
        **overrides,
    }
    settings = ServeSettings.load(**values)
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, database_url), lifespan="on", access_log=False, log_config=None, loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    live = LiveService(database_url, base, settings, httpx.Client(base_url=base, timeout=10.0))
    try:
        yield live
    finally:
        live.close()
        server.should_exit = True
        thread.join(15)
        sock.close()
