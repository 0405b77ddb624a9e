"""Failover for real: a primary and a synchronous streaming standby (tests/replication.py), hosts
enqueueing, two `outbox run` and one `outbox serve` under load, all on ONE multi-host URL
(target_session_attrs=read-write). The primary is killed (`pg_ctl stop -m immediate`), the standby
promoted: every process finds the new primary by itself, nothing a host saw committed is lost, the
backlog drains, per-key order holds. And the reverse: a standby that is not promoted is never picked,
and a connection that turns out read-only is left, not retried on forever.

Per-key order, exactly (what `assert_key_order` checks): for each ordering key, number the key's events
that exist in the new primary's `events` table in the order their host committed them (one host thread
per key, so that order is well defined), 0, 1, 2, ...; the receiver's arrivals for the key, in arrival
order, are a sequence a_0, a_1, ... of those numbers with
  * a_0 = 0 and a_{k+1} <= a_k + 1: nothing of a key is sent before everything committed before it in
    the key was sent at least once (first arrivals are in commit order). A step back (a_{k+1} <= a_k) is a
    redelivery: at-least-once redoes a delivery whose recorded result the failover lost (the worker
    commits with synchronous_commit = off), and what followed it in the key is sent again after it;
  * the last arrival is the key's last event: a receiver that keeps the latest event per key ends right.
Figures (printed with -s, and written to failover.json in the test's tmp_path): the primary's death to
the first delivery after the promotion, the promotion to each process being ready again, redeliveries.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import outbox
from tests.replication import Cluster, ReplicatedPostgres
from tests.service.live import token
from tests.support import Receiver, WorkerProcess, free_port, subscribe, wait_until, zaak_event
from worker.runtime.writable import read_write
from worker.store import clients as client_store
from worker.store.secret_box import SecretBox

CONNECT_TIMEOUT = 2
PRODUCER = "producer"
SOURCE = "urn:nld:oin:01823288444:producer"


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[ReplicatedPostgres]:
    pg = ReplicatedPostgres(tmp_path / "pg")
    try:
        pg.start()
        outbox.migrate(pg.primary.url)
        yield pg
    finally:
        pg.close()


def _url(pg: ReplicatedPostgres) -> str:
    return pg.url(target_session_attrs="read-write", connect_timeout=CONNECT_TIMEOUT)


def readyz(port: int) -> tuple[int, str]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    except httpx.TransportError as exc:
        return 0, type(exc).__name__
    return response.status_code, response.text


class Serve:
    """`outbox serve` as a real process on a free port."""

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        environment = {
            **os.environ,
            "OUTBOX_DATABASE_URL": database_url,
            "OUTBOX_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        }
        environment.pop("OUTBOX_SCHEMA", None)
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", "serve", "--port", str(self.port)],
            env=environment,
            stdout=self._log,
            stderr=self._log,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


@dataclass
class Ledger:
    """What the hosts and producers did: per key, the ids they tried in order; the ids they saw committed."""

    attempted: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    committed: set[str] = field(default_factory=set)
    errors: list[tuple[float, str, str]] = field(default_factory=list)  # (time, who, error)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tried(self, key: str, event_id: str) -> None:
        with self.lock:
            self.attempted[key].append(event_id)

    def saw_committed(self, event_id: str) -> None:
        with self.lock:
            self.committed.add(event_id)

    def failed(self, who: str, error: BaseException) -> None:
        with self.lock:
            self.errors.append((time.time(), who, f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"))


class Load:
    """Host threads (outbox.enqueue on their own connections, committing) and a producer thread that
    POSTs /cloudevents to `outbox serve`; each key belongs to one thread."""

    def __init__(self, url: str, serve_port: int, secret: str, ledger: Ledger, hosts: int = 2) -> None:
        self.url, self.serve_port, self.secret, self.ledger = url, serve_port, secret, ledger
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._host, args=(h,), daemon=True) for h in range(hosts)]
        self._threads.append(threading.Thread(target=self._producer, daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _host(self, number: int) -> None:
        conn: psycopg.Connection[Any] | None = None
        n = 0
        while not self._stop.is_set():
            key = f"host{number}-key{n % 4}"
            try:
                if conn is None:
                    conn = psycopg.connect(self.url)
                event = zaak_event(key, n)
                self.ledger.tried(key, event.id)
                outbox.enqueue(conn, event)
                conn.commit()
                self.ledger.saw_committed(event.id)
            except psycopg.OperationalError as exc:
                self.ledger.failed(f"host{number}", exc)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.1)
            n += 1
            time.sleep(0.02)
        if conn is not None:
            conn.close()

    def _producer(self) -> None:
        n = 0
        with httpx.Client(timeout=15) as http:
            while not self._stop.is_set():
                key = f"{PRODUCER}-key{n % 2}"
                event = zaak_event(key, n).to_dict()
                event["source"] = SOURCE
                self.ledger.tried(key, event["id"])
                try:
                    answer = post_event(http, self.serve_port, self.secret, event)
                except httpx.TransportError as exc:
                    self.ledger.failed(PRODUCER, exc)
                else:
                    if answer.status_code == 201:
                        self.ledger.saw_committed(event["id"])
                    else:
                        self.ledger.failed(PRODUCER, RuntimeError(f"{answer.status_code} {answer.text[:80]}"))
                        time.sleep(0.1)
                n += 1
                time.sleep(0.03)


def post_event(http: httpx.Client | None, port: int, secret: str, event: dict[str, Any]) -> httpx.Response:
    """POST one structured CloudEvent of the producer's source to `outbox serve`, as the producer's client."""
    request = {
        "url": f"http://127.0.0.1:{port}/api/v1/cloudevents",
        "content": json.dumps({**event, "source": SOURCE}),
        "headers": {
            "Content-Type": "application/cloudevents+json",
            "Authorization": f"Bearer {token(PRODUCER, secret)}",
        },
    }
    return http.post(**request) if http is not None else httpx.post(**request, timeout=30)


def add_producer(url: str) -> str:
    secret = client_store.new_secret()
    with psycopg.connect(url, autocommit=True) as conn:
        client = client_store.ApiClient(PRODUCER, frozenset({"notificaties.publiceren"}), secret)
        client_store.add(conn, "outbox", client, SecretBox())
    return secret


def assert_key_order(expected: dict[str, list[str]], arrivals: dict[str, list[str]]) -> None:
    """The per-key order (module docstring)."""
    for key, ids in expected.items():
        index = {event_id: i for i, event_id in enumerate(ids)}
        got = [index[event_id] for event_id in arrivals.get(key, []) if event_id in index]
        assert got, f"nothing of {key} arrived"
        assert got[0] == 0, f"{key}: first arrival is event #{got[0]}"
        for before, after in itertools.pairwise(got):
            assert after <= before + 1, f"{key}: event #{after} arrived while #{before + 1} had not yet: {got}"
        assert got[-1] == len(ids) - 1, f"{key}: the last arrival is #{got[-1]}, not the last event: {got}"


def worker_events(worker: WorkerProcess) -> list[str]:
    return [str(line.get("event")) for line in worker.logs()]


def test_failover_to_a_promoted_standby_loses_nothing_and_keeps_order(
    postgres: ReplicatedPostgres, tmp_path: Path
) -> None:
    url = _url(postgres)
    figures: dict[str, Any] = {}
    ledger = Ledger()
    with Receiver(answer=lambda n, r: (204, {}, 0.01)).running() as receiver:
        subscribe(url, receiver.url)
        secret = add_producer(url)
        ports = [free_port(), free_port()]
        workers = [
            WorkerProcess(url, tmp_path / f"worker-{i}.log", {"OUTBOX_METRICS_PORT": str(port)})
            for i, port in enumerate(ports)
        ]
        serve = Serve(url, tmp_path / "serve.log")
        load = Load(url, serve.port, secret, ledger)
        try:
            for port in [*ports, serve.port]:
                wait_until(lambda p=port: readyz(p)[0] == 200, timeout=30, message=f"ready on {port}")  # type: ignore[misc]
            load.start()
            wait_until(lambda: len(receiver.received) >= 60, timeout=30, message="deliveries under way")

            killed = time.time()
            postgres.primary.kill()
            figures["kill_seconds"] = round(time.time() - killed, 3)
            # A host: a clear error at once, never a hang past its connect_timeout.
            began = time.monotonic()
            with pytest.raises(psycopg.OperationalError), psycopg.connect(url) as conn:
                outbox.enqueue(conn, zaak_event("outage"))
            figures["host_error_seconds"] = round(time.monotonic() - began, 3)
            assert figures["host_error_seconds"] < CONNECT_TIMEOUT + 1
            # Every process says not ready, and why.
            for port in ports:
                _, text = wait_until(
                    lambda p=port: (answer := readyz(p))[0] == 503 and answer,  # type: ignore[misc]
                    timeout=20,
                    message="worker not ready",
                )
                assert "database unreachable" in text
            wait_until(lambda: readyz(serve.port)[0] == 503, timeout=20, message="serve not ready")
            assert "database unreachable" in readyz(serve.port)[1]
            # A POST to serve: a 503 problem, quickly.
            began = time.monotonic()
            answer = post_event(None, serve.port, secret, zaak_event("outage-post").to_dict())
            figures["serve_post_503_seconds"] = round(time.monotonic() - began, 3)
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            time.sleep(max(0.0, killed + 3 - time.time()))  # an outage of a few seconds

            promoted = time.time()
            postgres.standby.promote()
            figures["death_to_promotion_seconds"] = round(promoted - killed, 3)  # the test's checks take their time
            ready_after: dict[str, float] = {}
            pending = {f"worker-{i}": port for i, port in enumerate(ports)} | {"serve": serve.port}
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                for name, port in list(pending.items()):
                    if readyz(port)[0] == 200:
                        ready_after[name] = round(time.time() - promoted, 3)
                        del pending[name]
                time.sleep(0.05)
            assert not pending, f"not ready again after the promotion: {pending}"
            figures["ready_after_promotion_seconds"] = ready_after
            first = wait_until(
                lambda: next((r.arrived for r in list(receiver.received) if r.arrived > promoted), None),
                timeout=30,
                message="a delivery after the promotion",
            )
            figures["death_to_first_delivery_seconds"] = round(first - killed, 3)
            figures["promotion_to_first_delivery_seconds"] = round(first - promoted, 3)
            time.sleep(2)  # load on the new primary
        finally:
            load.stop()

        try:
            new_primary = postgres.standby
            with new_primary.connect() as conn:
                rows = conn.execute("SELECT event->>'id' FROM outbox.events").fetchall()
            stored = {row[0] for row in rows}
            lost = ledger.committed - stored
            assert not lost, f"{len(lost)} events a host saw committed are gone"
            expected = {key: [i for i in ids if i in stored] for key, ids in ledger.attempted.items()}
            everything = {i for ids in expected.values() for i in ids}

            def drained() -> bool:
                with new_primary.connect() as conn:
                    row = conn.execute(
                        "SELECT count(*) FILTER (WHERE status <> 'delivered'), count(*) FROM outbox.deliveries"
                    ).fetchone()
                return row is not None and row[0] == 0 and row[1] == len(everything)

            wait_until(drained, timeout=60, message="the backlog drained")
            wait_until(lambda: everything <= set(receiver.ids()), timeout=10, message="every event received")
        finally:
            for worker in workers:
                if worker.process.poll() is None:
                    worker.terminate()
                worker.stop_quietly()
            serve.stop()

    arrivals: dict[str, list[str]] = defaultdict(list)
    for event in receiver.events():
        arrivals[event["subject"]].append(event["id"])
    assert_key_order(expected, arrivals)
    counts = Counter(receiver.ids())
    figures.update(
        {
            "events_committed_seen_by_hosts": len(ledger.committed),
            "events_stored": len(everything),
            "ambiguous_commits_that_survived": len(everything - ledger.committed),
            "requests_received": len(receiver.received),
            "redelivered_events": sum(1 for n in counts.values() if n > 1),
            "redeliveries": sum(n - 1 for n in counts.values() if n > 1),
            "host_errors": len(ledger.errors),
            # results the recorder kept through the outage but the new primary refused (the claim was lost
            # with the worker's unflushed commits, or its lease expired): those deliveries were redone
            "results_refused_after_failover": sum(
                int(line.get("count", 0))
                for worker in workers
                for line in worker.logs()
                if str(line.get("event", "")).startswith("results refused")
            ),
        }
    )
    for worker in workers:  # one line per state change, not one per attempt
        events = worker_events(worker)
        assert events.count("database unreachable, retrying") == 1, worker.log_path.read_text()[-3000:]
        assert events.count("database reachable again") == 1, worker.log_path.read_text()[-3000:]
    (tmp_path / "failover.json").write_text(json.dumps(figures, indent=2))
    print("\nfailover figures:", json.dumps(figures, indent=2))


def statements_on(cluster: Cluster) -> list[tuple[Any, ...]]:
    """Sessions of other clients on `cluster` that ran a statement (a libpq read-write check runs none)."""
    with cluster.connect() as conn:
        return conn.execute(
            "SELECT pid, application_name, state, query FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND query <> ''"
        ).fetchall()


def test_a_standby_that_is_not_promoted_is_never_picked(postgres: ReplicatedPostgres, tmp_path: Path) -> None:
    url = _url(postgres)
    with Receiver().running() as receiver:
        subscribe(url, receiver.url)
        secret = add_producer(url)
        port = free_port()
        worker = WorkerProcess(url, tmp_path / "worker.log", {"OUTBOX_METRICS_PORT": str(port)})
        serve = Serve(url, tmp_path / "serve.log")
        try:
            for p in (port, serve.port):
                wait_until(lambda p=p: readyz(p)[0] == 200, timeout=30, message=f"ready on {p}")  # type: ignore[misc]
            with psycopg.connect(url) as conn:
                outbox.enqueue(conn, zaak_event("before"))
            wait_until(lambda: len(receiver.received) == 1, message="the first delivery")
            postgres.primary.kill()
            wait_until(lambda: readyz(port)[0] == 503, timeout=20, message="the worker not ready")
            wait_until(lambda: readyz(serve.port)[0] == 503, timeout=20, message="serve not ready")
            for _ in range(20):  # some seconds with only the standby up: nobody works on it
                assert statements_on(postgres.standby) == []
                time.sleep(0.15)
            began = time.monotonic()
            with pytest.raises(psycopg.OperationalError, match="read-only"), psycopg.connect(url) as conn:
                outbox.enqueue(conn, zaak_event("outage"))
            assert time.monotonic() - began < CONNECT_TIMEOUT + 1
            answer = post_event(None, serve.port, secret, zaak_event("outage-post").to_dict())
            assert answer.status_code == 503
            assert postgres.standby.in_recovery()
            assert readyz(port) == (503, json.dumps({"status": "unavailable", "reason": "database unreachable"}) + "\n")
            assert worker.process.poll() is None and serve.process.poll() is None
        finally:
            worker.stop_quietly()
            serve.stop()
    events = worker_events(worker)
    assert events.count("database unreachable, retrying") == 1
    assert "database reachable again" not in events


def read_only_errors(cluster: Cluster) -> Counter[str]:
    """Per server process (pid), how many statements the server refused as writes in read-only mode."""
    counts: Counter[str] = Counter()
    for line in cluster.log.read_text().splitlines():
        if "ERROR:" in line and "read-only transaction" in line:
            counts[line.split("[", 1)[1].split("]", 1)[0]] += 1
    return counts


def test_a_connection_that_turns_read_only_is_left_and_another_host_tried(
    postgres: ReplicatedPostgres, tmp_path: Path
) -> None:
    # No target_session_attrs, and the standby named first: the outbox adds read-write itself, so libpq
    # passes the standby by and takes the primary.
    primary, standby = postgres.primary, postgres.standby
    url = f"host=127.0.0.1,127.0.0.1 port={standby.port},{primary.port} user=postgres dbname=postgres connect_timeout=2"
    with Receiver().running() as receiver:
        subscribe(primary.url, receiver.url)
        secret = add_producer(primary.url)
        port = free_port()
        worker = WorkerProcess(url, tmp_path / "worker.log", {"OUTBOX_METRICS_PORT": str(port)})
        serve = Serve(url, tmp_path / "serve.log")
        try:
            for p in (port, serve.port):
                wait_until(lambda p=p: readyz(p)[0] == 200, timeout=30, message=f"ready on {p}")  # type: ignore[misc]
            with psycopg.connect(primary.url) as conn:
                outbox.enqueue(conn, zaak_event("before"))
            wait_until(lambda: len(receiver.received) == 1, message="the first delivery")
            assert statements_on(standby) == []
            status = subprocess.run(  # the operator's commands take the same URL (read-write added too)
                [sys.executable, "-m", "worker", "status", "--json"],
                env={**os.environ, "OUTBOX_DATABASE_URL": url},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert status.returncode == 0, status.stderr

            # The primary turns read-only under the open connections (as a demoted server would be).
            with primary.connect() as conn:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                conn.execute("SELECT pg_reload_conf()")
            wait_until(lambda: readyz(port)[0] == 503, timeout=20, message="the worker not ready")
            wait_until(lambda: readyz(serve.port)[0] == 503, timeout=20, message="serve not ready")
            answer = post_event(None, serve.port, secret, zaak_event("read-only-post").to_dict())
            assert answer.status_code == 503, answer.text
            time.sleep(3)  # the worker keeps trying: on new connections, which libpq refuses (read-only)
            with primary.connect() as conn:
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
                conn.execute("SELECT pg_reload_conf()")
            for p in (port, serve.port):
                wait_until(lambda p=p: readyz(p)[0] == 200, timeout=20, message=f"ready again on {p}")  # type: ignore[misc]
            with psycopg.connect(primary.url) as conn:
                outbox.enqueue(conn, zaak_event("after"))
            wait_until(lambda: len(receiver.received) == 2, message="a delivery after")
            assert statements_on(standby) == []
        finally:
            worker.stop_quietly()
            serve.stop()
    refused = read_only_errors(primary)
    assert refused, "the read-only server refused nothing: the test did not test"
    # Each connection that met the refusal was left at once: never a second refused statement on it.
    assert max(refused.values()) == 1, refused
    events = worker_events(worker)
    assert events.count("database unreachable, retrying") == 1
    assert events.count("database reachable again") == 1
    line = next(line for line in worker.logs() if line.get("event") == "database unreachable, retrying")
    assert line["error"] == "ReadOnlySqlTransaction"


def test_the_outbox_asks_for_a_read_write_server_unless_the_url_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGTARGETSESSIONATTRS", raising=False)
    assert read_write("postgresql://u@db1:5432,db2:5432/app") == {"target_session_attrs": "read-write"}
    assert read_write("host=db1,db2 dbname=app") == {"target_session_attrs": "read-write"}
    assert read_write("postgresql://u@db1,db2/app?target_session_attrs=any") == {}
    assert read_write("host=db1 target_session_attrs=primary") == {}
    monkeypatch.setenv("PGTARGETSESSIONATTRS", "any")
    assert read_write("postgresql://u@db1/app") == {}
