"""Through Debian's PgBouncer 1.18 in transaction pooling mode (docs/deploy/pgbouncer.md): hosts enqueue
(psycopg, SQLAlchemy, Django), `outbox migrate`, `outbox serve` and `outbox run` all go through it,
and a real receiver gets the events. Two servers for every client, so connections really are shared."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

import outbox
from outbox._sql import migrations
from tests.pgbouncer import PgBouncer, needs_pgbouncer, running, version
from tests.service.live import CONSUME, PUBLISH
from tests.service.live import running as serving
from tests.support import (
    Answer,
    Received,
    Receiver,
    WorkerFactory,
    deliveries,
    migrate_in_parallel,
    subscribe,
    wait_until,
    zaak_event,
)
from worker.runtime.pooler import through_pooler_sync

pytestmark = needs_pgbouncer

HOST_DIR = Path(__file__).resolve().parent.parent / "examples" / "django_host"
POOLER_LINE = "the database URL goes through a connection pooler (PgBouncer)"


@pytest.fixture(scope="module")
def bouncer(server_url: str) -> Iterator[PgBouncer]:
    with running(server_url, pool_size=2) as b:
        yield b


def _events_received(receiver: Receiver) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for r in list(receiver.received) if r.method == "POST" for e in [r.event]}


def _delivered(database_url: str) -> list[str]:
    return sorted(d["event_id"] for d in deliveries(database_url) if d["status"] == "delivered")


def _server_setting(url: str, name: str) -> list[str]:
    """`name` as every server connection of the pool shows it: more clients than servers, all at once."""
    results: list[str] = []
    barrier = threading.Barrier(4)

    def look() -> None:
        with psycopg.connect(url, prepare_threshold=None) as conn:
            barrier.wait(10)
            row = conn.execute(f"SHOW {name}").fetchone()  # in a transaction: holds a server until commit
            assert row is not None
            results.append(str(row[0]))
            time.sleep(0.2)

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


# -- what breaks ----------------------------------------------------------------------------------


def _six_times(conn: psycopg.Connection[Any]) -> None:
    for _ in range(6):  # psycopg prepares a statement on its fifth run (prepare_threshold 5)
        conn.execute("SELECT count(*) FROM outbox.events")


def test_psycopg_prepared_statements_collide_through_transaction_pooling(server_url: str, database_url: str) -> None:
    # One server for two clients: each prepares `_pg3_0` on it after five runs of the same statement.
    with running(server_url, pool_size=1) as single:
        url = single.url(database_url)
        with psycopg.connect(url, autocommit=True) as a, psycopg.connect(url, autocommit=True) as b:
            assert through_pooler_sync(a)
            _six_times(a)
            with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
                _six_times(b)
        # What docs/deploy/pgbouncer.md says hosts set: no prepared statements, and the same works.
        with (
            psycopg.connect(url, autocommit=True, prepare_threshold=None) as a,
            psycopg.connect(url, autocommit=True, prepare_threshold=None) as b,
        ):
            for _ in range(6):
                assert a.execute("SELECT count(*) FROM outbox.events").fetchone() == (0,)
                assert b.execute("SELECT count(*) FROM outbox.events").fetchone() == (0,)
    with psycopg.connect(database_url) as direct:
        assert not through_pooler_sync(direct)


def test_listen_through_transaction_pooling_hears_nothing(server_url: str) -> None:
    # The LISTEN stays on the server connection, which the next client gets with its notifications.
    with running(server_url, pool_size=1) as single:
        url = single.url(server_url)
        with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as other:
            assert through_pooler_sync(listener)  # what makes the worker poll (or use its direct URL)
            listener.execute("LISTEN outbox_pgbouncer_probe")
            other.execute("NOTIFY outbox_pgbouncer_probe, 'wake'")
            assert list(listener.notifies(timeout=1.0, stop_after=1)) == []
            assert [n.payload for n in other.notifies(timeout=1.0, stop_after=1)] == ["wake"]


def test_a_session_lock_outlives_its_client_through_transaction_pooling(bouncer: PgBouncer, database_url: str) -> None:
    # Why `outbox migrate` no longer takes pg_advisory_lock: the lock stays on the pooled server connection.
    with psycopg.connect(bouncer.url(database_url), autocommit=True) as client:
        client.execute("SELECT pg_advisory_lock(20)")
    with psycopg.connect(database_url) as direct:
        held = direct.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 20 AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
        assert held == (1,)  # the client is gone, its lock is not
        direct.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = 20")


def test_pgbouncer_refuses_a_search_path_in_the_startup_options(bouncer: PgBouncer, database_url: str) -> None:
    if version()[:2] != (1, 18):  # what Debian 12 ships; later versions learnt some start-up parameters
        pytest.skip(f"pins PgBouncer 1.18's behaviour, this is {'.'.join(map(str, version()))}")
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        psycopg.connect(bouncer.url(database_url), options="-c search_path=elsewhere")


# -- migrate ----------------------------------------------------------------------------------------


def test_migrate_through_pgbouncer_twice_in_parallel(bouncer: PgBouncer, empty_database_url: str) -> None:
    url = bouncer.url(empty_database_url)
    migrate_in_parallel(url, processes=2)
    with psycopg.connect(empty_database_url) as conn:
        recorded = conn.execute("SELECT version FROM outbox.schema_migrations ORDER BY version").fetchall()
        # No advisory lock outlived its transaction on a pooled server connection.
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    assert [v for (v,) in recorded] == [m.version for m in migrations()]
    assert locks == (0,)
    again = subprocess.run(
        [sys.executable, "-m", "worker", "--database-url", url, "migrate"], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and "is up to date" in again.stdout, again


# -- hosts → PgBouncer → worker → receiver -----------------------------------------------------------


def _enqueue_from_every_kind_of_host(url: str, per_host: int) -> dict[str, list[str]]:
    """psycopg sync and async, SQLAlchemy sync and async, at once, each event in its own transaction."""
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    ids: dict[str, list[str]] = {}

    def events(kind: str) -> list[outbox.CloudEvent]:
        made = [zaak_event(str(uuid.uuid4()), n, id=f"{kind}-{n}") for n in range(per_host)]
        ids[kind] = [e.id for e in made]
        return made

    def psycopg_sync() -> None:
        # The host's own connection with psycopg's defaults: enqueue itself never prepares.
        with psycopg.connect(url) as conn:
            for event in events("psycopg"):
                with conn.transaction():
                    outbox.enqueue(conn, event)

    async def psycopg_async() -> None:
        async with await psycopg.AsyncConnection.connect(url, prepare_threshold=None) as conn:
            for event in events("psycopg-async"):
                async with conn.transaction():
                    await outbox.enqueue_async(conn, event)

    def sqlalchemy_sync() -> None:
        engine = create_engine(sa_url, connect_args={"prepare_threshold": None})
        try:
            for event in events("sqlalchemy"):
                with Session(engine) as session, session.begin():
                    session.execute(text("SELECT 1"))  # the host's own work in the same transaction
                    outbox.enqueue(session, event)
        finally:
            engine.dispose()

    async def sqlalchemy_async() -> None:
        engine = create_async_engine(sa_url, connect_args={"prepare_threshold": None})
        try:
            for event in events("sqlalchemy-async"):
                async with engine.begin() as conn:
                    await outbox.enqueue_async(conn, event)
        finally:
            await engine.dispose()

    jobs = [
        psycopg_sync,
        lambda: asyncio.run(psycopg_async()),
        sqlalchemy_sync,
        lambda: asyncio.run(sqlalchemy_async()),
    ]
    errors: list[BaseException] = []

    def guarded(job: Any) -> None:
        try:
            job()
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return ids


def test_hosts_enqueue_through_pgbouncer_and_a_polling_worker_delivers(
    bouncer: PgBouncer, database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    url = bouncer.url(database_url)
    subscribe(database_url, receiver.url)
    worker = start_worker({"OUTBOX_DATABASE_URL": url, "OUTBOX_POLL_INTERVAL": "0.3"}, "--metrics-port", "0")
    line = worker.wait_logged(POOLER_LINE + ": no LISTEN, this worker polls every 0.3 s; set "
                              "OUTBOX_DIRECT_DATABASE_URL to a URL of PostgreSQL itself for prompt wake-ups")  # fmt: skip
    assert line["level"] == "warning"
    port = worker.wait_logged("metrics server started")["port"]
    # Polling by design is healthy (no "LISTEN connection down"), and ready once a pass went through.
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200, message="ready")
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok"
    ids = _enqueue_from_every_kind_of_host(url, per_host=8)
    expected = sorted(i for kind in ids.values() for i in kind)
    assert len(expected) == 32
    wait_until(lambda: sorted(_events_received(receiver)) == expected, timeout=60, message="all 32 delivered")
    wait_until(lambda: _delivered(database_url) == expected, timeout=30, message="recorded as delivered")
    with psycopg.connect(database_url) as conn:
        # A polling worker never registers as idle: enqueue sends no NOTIFY that nobody listens to.
        assert conn.execute("SELECT count(*) FROM outbox.idle_workers").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM outbox.events").fetchone() == (32,)
    # The worker's session settings (synchronous_commit off, jit off) never reached the pool's servers,
    # which the hosts share: their commits stay durable.
    assert set(_server_setting(url, "synchronous_commit")) == {"on"}
    assert set(_server_setting(url, "jit")) == {"on"}
    assert worker.terminate() == 0
    assert "prepared statement" not in bouncer.log()


def test_a_worker_with_a_direct_url_listens_and_wakes_at_once(
    bouncer: PgBouncer, database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    url = bouncer.url(database_url)
    subscribe(database_url, receiver.url)
    # A long poll interval: a prompt delivery can only come from the NOTIFY the host's commit sent.
    worker = start_worker({"OUTBOX_DATABASE_URL": url, "OUTBOX_POLL_INTERVAL": "60"},
                          "--direct-database-url", database_url)  # fmt: skip
    worker.wait_logged("worker started")

    def registered() -> Any:
        with psycopg.connect(database_url) as conn:
            return conn.execute(
                "SELECT w.listen_pid FROM outbox.idle_workers w JOIN pg_stat_activity a ON a.pid = w.listen_pid"
            ).fetchone()

    wait_until(registered, message="the worker idles on its direct LISTEN connection")
    time.sleep(0.5)  # past the start-up passes
    ids = _enqueue_from_every_kind_of_host(url, per_host=3)
    expected = sorted(i for kind in ids.values() for i in kind)
    started = time.monotonic()
    wait_until(lambda: sorted(_events_received(receiver)) == expected, timeout=20, message="all delivered")
    assert time.monotonic() - started < 20  # well within the 60 s poll interval
    wait_until(lambda: _delivered(database_url) == expected, timeout=20, message="recorded as delivered")
    assert not any(POOLER_LINE in str(line.get("event")) for line in worker.logs())
    assert worker.terminate() == 0


# -- outbox serve -------------------------------------------------------------------------------------


def _agreeing(number: int, received: Received) -> Answer:
    if received.method == "OPTIONS":  # the guideline's handshake at registration
        return 200, {"WebHook-Allowed-Origin": "*"}, 0.0
    return 204, {}, 0.0


def test_serve_through_pgbouncer_takes_an_abonnement_and_cloud_events(
    bouncer: PgBouncer, database_url: str, start_worker: WorkerFactory
) -> None:
    url = bouncer.url(database_url)
    with Receiver(_agreeing).running() as callback, serving(url) as service:
        consumer = service.add_client("zaakafhandelcomponent", CONSUME)
        producer = service.add_client("openklant", PUBLISH)
        created = consumer.post(
            "/api/v1/abonnement",
            json={"callbackUrl": callback.url, "auth": "Bearer abc", "kanalen": [{"naam": "zaken", "filters": {}}]},
        )
        assert created.status_code == 201, created.text
        zaak = str(uuid.uuid4())
        answers = []
        for n in range(12):  # more than psycopg's prepare threshold, over the service's pooled connections
            event = {
                "specversion": "1.0",
                "id": f"serve-{n}",
                "source": "urn:nld:oin:00000001823288444000:systeem:openklant",
                "type": "nl.overheid.zaken.zaak-gekoppeld",
                "subject": zaak,
                "datacontenttype": "application/json",
                "data": {"zaak": f"urn:uuid:{zaak}", "n": n},
            }
            answers.append(
                producer.post(
                    "/api/v1/cloudevents",
                    content=json.dumps(event),
                    headers={"Content-Type": "application/cloudevents+json"},
                ).status_code
            )
        assert answers == [201] * 12
        assert consumer.get("/api/v1/abonnement").status_code == 200
        worker = start_worker({"OUTBOX_DATABASE_URL": url})
        expected = [f"serve-{n}" for n in range(12)]
        wait_until(lambda: sorted(_events_received(callback)) == sorted(expected), message="delivered")
        posts = [r for r in callback.received if r.method == "POST"]
        assert [p.event["id"] for p in posts] == expected  # one subject: in order
        assert posts[0].headers["Authorization"] == "Bearer abc"
        wait_until(lambda: _delivered(database_url) == sorted(expected), message="recorded as delivered")
        assert worker.terminate() == 0
    assert set(_server_setting(url, "jit")) == {"on"}  # the service's SET jit stayed off the shared servers


# -- Django ---------------------------------------------------------------------------------------------


DJANGO_ENQUEUE = """
from django.db import connection, transaction
import outbox
from tests.support import zaak_event
for n in range(12):
    with transaction.atomic():
        outbox.enqueue(connection, zaak_event("django-zaak", n, id=f"django-{n}"))
"""


def _manage(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("OUTBOX_DATABASE_URL", "OUTBOX_SCHEMA")}
    environment.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="django_host.settings",
        PYTHONPATH=os.pathsep.join([str(HOST_DIR.parent.parent), str(HOST_DIR)]),
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=HOST_DIR, env=environment, capture_output=True, text=True, timeout=120
    )


def test_django_migrates_and_enqueues_through_pgbouncer(
    bouncer: PgBouncer, empty_database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    url = bouncer.url(empty_database_url)
    migrated = _manage(url, "migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr
    with psycopg.connect(empty_database_url) as conn:
        version = conn.execute("SELECT max(version) FROM outbox.schema_migrations").fetchone()
    assert version == (migrations()[-1].version,)
    subscribe(empty_database_url, receiver.url)
    enqueued = _manage(url, "shell", "-c", DJANGO_ENQUEUE)
    assert enqueued.returncode == 0, enqueued.stderr
    from tests.support import WorkerProcess

    worker = WorkerProcess(url, tmp_path / "worker.log")
    try:
        expected = sorted(f"django-{n}" for n in range(12))
        wait_until(lambda: sorted(_events_received(receiver)) == expected, message="Django's events delivered")
        wait_until(lambda: _delivered(empty_database_url) == expected, message="recorded as delivered")
        assert worker.terminate() == 0
    finally:
        worker.stop_quietly()
