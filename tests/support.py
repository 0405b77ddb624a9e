"""Real parts for worker tests: an HTTP receiver on 127.0.0.1 and `outbox run` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

import outbox
from outbox import CloudEvent, Subscription
from worker.runtime.asgi import AsgiServer
from worker.store import subscriptions as subscription_store
from worker.store.secret_box import SecretBox

# A worker tuned for tests: quick polls and retries, short leases and timeouts.
FAST = {
    "OUTBOX_POLL_INTERVAL": "0.2",
    "OUTBOX_RETRY_BASE_DELAY": "0.05",
    "OUTBOX_RETRY_MAX_DELAY": "0.2",
    "OUTBOX_RETRY_MAX_ATTEMPTS": "4",
    "OUTBOX_LEASE_SECONDS": "3",
    "OUTBOX_REQUEST_TIMEOUT": "1",
    "OUTBOX_SHUTDOWN_GRACE": "5",
    "OUTBOX_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
}


@dataclass
class Received:
    arrived: float
    path: str
    headers: Mapping[str, str]  # names in any case (as ASGI gives them: lower case)
    body: bytes
    method: str = "POST"

    @property
    def event(self) -> dict[str, Any]:
        document = json.loads(self.body)
        assert isinstance(document, dict)
        return document


Answer = tuple[int, dict[str, str], float]  # status, headers, delay in seconds before answering


@dataclass
class Receiver:
    """A real HTTP server in a thread. `answer(request_number, received) -> (status, headers, delay)`."""

    answer: Callable[[int, Received], Answer] = lambda n, r: (204, {}, 0.0)
    body_for: Callable[[Received], bytes] = lambda r: b""  # the answer's body
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [r.event for r in list(self.received)]

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events()]

    @contextlib.contextmanager
    def running(self) -> Iterator[Receiver]:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        server_box: list[AsgiServer] = []

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            body = await request.body()
            item = Received(time.time(), scope["path"], Headers(scope=scope), body, request.method)
            number = len(self.received)
            self.received.append(item)
            status, headers, delay = self.answer(number, item)
            if delay:
                await asyncio.sleep(delay)
            await Response(self.body_for(item), status_code=status, headers=headers)(scope, receive, send)

        async def start() -> None:
            server = AsgiServer(handle)
            await server.start("127.0.0.1", self.port)
            self.port = server.port or 0
            server_box.append(server)
            started.set()

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        started.wait(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(server_box[0].stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"


@dataclass
class SdkReceiver(Receiver):
    """A receiver like Open Zaak's `/events` (and those written with the CloudEvents SDKs): the
    Content-Type compared exactly with the bare media types (else 415), a Bearer token checked
    (else 401), 202 Accepted, and no OPTIONS abuse-protection handshake (OPTIONS → 405)."""

    token: str = "zaak-token"
    accept_batch: bool = False

    def __post_init__(self) -> None:
        self.answer = self._answer
        self.body_for = self._body

    def _refusal(self, r: Received) -> tuple[int, str] | None:
        if r.method == "OPTIONS":
            return 405, "method not allowed"
        if r.headers.get("authorization") != f"Bearer {self.token}":
            return 401, "authentication credentials were not provided"
        media = r.headers.get("content-type")
        if media != STRUCTURED and not (self.accept_batch and media == BATCHED):
            return 415, f"unsupported media type {media!r} in request"
        return None

    def _answer(self, n: int, r: Received) -> Answer:
        refusal = self._refusal(r)
        return (refusal[0] if refusal else 202), {"Content-Type": "application/json"}, 0.0

    def _body(self, r: Received) -> bytes:
        refusal = self._refusal(r)
        return json.dumps({"detail": refusal[1]} if refusal else {}).encode()

    def accepted(self) -> list[dict[str, Any]]:
        """The events (one per structured request, each of a batch) the receiver took with 202."""
        taken: list[dict[str, Any]] = []
        for r in list(self.received):
            if r.method == "POST" and self._refusal(r) is None:
                document = json.loads(r.body)
                taken.extend(document if isinstance(document, list) else [document])
        return taken


@contextlib.contextmanager
def conformance_receiver(config: Any, ssl_context: Any = None) -> Iterator[str]:
    """The reference receiver (`outbox receiver`, worker/receiver.py) in a thread; yields its base URL."""
    from worker.receiver.server import make_app

    loop = asyncio.new_event_loop()
    server = AsgiServer(make_app(config), ssl_context=ssl_context)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", 0), loop).result(10)
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class WorkerProcess:
    """`python -m worker run` (or `command`) against a database, with its JSON log lines kept in a file."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        *args: str,
        command: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.log_path = log_path
        environment = {**os.environ, **FAST, "OUTBOX_DATABASE_URL": database_url, **(env or {})}
        environment.pop("OUTBOX_SCHEMA", None)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [*(command or [sys.executable, "-m", "worker"]), "run", *args],
            env=environment,
            stdout=self._log,
            stderr=self._log,
            cwd=cwd,
        )

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def wait_logged(self, event: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.logs():
                if line.get("event") == event:
                    return line
            assert self.process.poll() is None, f"worker exited early: {self.log_path.read_text()}"
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} in the worker's log: {self.log_path.read_text()}")

    def terminate(self, timeout: float = 15) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def stop_quietly(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


WorkerFactory = Callable[..., WorkerProcess]  # start_worker(env=None, *args) -> a running `outbox run`


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (for a server started by a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 20, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.05)


def subscribe(database_url: str, callback_url: str, **fields: Any) -> str:
    fields.setdefault("types", ["*"])
    subscription = Subscription.create(callback_url=callback_url, allow_insecure=True, **fields)
    with psycopg.connect(database_url) as conn:
        return subscription_store.add(conn, subscription, "outbox", SecretBox())


def zaak_event(subject: str, n: int = 0, **extra: Any) -> CloudEvent:
    return CloudEvent(
        type="nl.overheid.zaken.zaak-gekoppeld",
        source="urn:nld:oin:01823288444:openklant",
        subject=subject,
        datacontenttype="application/json",
        data={"zaak": f"urn:uuid:{subject}", "n": n},
        **extra,
    )


def enqueue(database_url: str, events: list[CloudEvent]) -> None:
    with psycopg.connect(database_url) as conn:
        outbox.enqueue_many(conn, events)


def deliveries(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT d.*, e.event->>'id' AS event_id, e.event->>'subject' AS subject FROM outbox.deliveries d "
            "JOIN outbox.events e ON e.position = d.event_position ORDER BY d.id"
        ).fetchall()


def attempts(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM outbox.delivery_attempts ORDER BY id").fetchall()


def count_delivered(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox.deliveries WHERE status = 'delivered'").fetchone()
    return int(row[0]) if row else 0


def migrate_in_parallel(database_url: str, processes: int, timeout: float = 120) -> None:
    """`outbox migrate` in several processes at once: all exit 0 and each file is applied by exactly one."""
    from outbox._sql import migrations

    command = [sys.executable, "-m", "worker", "--database-url", database_url, "migrate"]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    outputs = [p.communicate(timeout=timeout) for p in procs]
    assert [p.returncode for p in procs] == [0] * processes, outputs
    stdout = "".join(out for out, _ in outputs)
    for m in migrations():  # each file once, whichever run applied it
        assert stdout.count(f"applied {m.version:03d}_{m.name}\n") == 1, stdout
