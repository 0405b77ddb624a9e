"""Delivery throughput and latency: `outbox run` against procrastinate, pgqueuer and a bare POST loop.

What the issue asks, measured the way /work/shared/PEERS.md says the peer figures were:

* drain: a backlog of `--events` events (default 20,000, ~600 bytes, each with its own subject:
  the outbox orders deliveries per subject) for one subscription on a local receiver that answers
  204; deliveries per second for 1 and 2 `outbox run` processes, from the moment the processes are
  spawned until the receiver has seen every event (startup included), and from first to last arrival;
* the same backlog through procrastinate 3.10 and pgqueuer 1.6, each job one POST of the same
  JSON document (httpx's default client; and again with the transport the outbox worker uses,
  `worker.transport.AiohttpTransport` under `httpx.AsyncClient`, so the comparison is fair);
* a bare asyncio loop that only POSTs the same bodies: the HTTP-client ceiling, with httpx's
  default client, httpx over AiohttpTransport, and AiohttpTransport called as the worker does;
* latency: commit-to-arrival of 500 single events, 10 ms apart, one idle worker in its own
  process (10 warm-up events excluded); p50 and p99, for the outbox and both peers.

The receiver (bench/receiver_asgi.py) runs under uvicorn in its own process (uvloop, httptools,
access log off) on 127.0.0.1 and a free port; it counts requests and keeps each event's arrival
time (`time.time_ns()`) by CloudEvent `id`, which the bench compares with the time right after
the enqueuing COMMIT returned.

Everything lives in the database `bench_throughput`, dropped and created anew at the start: the
outbox in schema `outbox`, procrastinate's and pgqueuer's tables in `public`. Before every timed
run all of them are truncated, the system under test is pre-loaded, then ANALYZE and CHECKPOINT.
Each figure is the median of `--runs` runs; the configurations are interleaved (the order rotates
from run to run). Every wait is bounded: a drain that takes longer than `--drain-timeout` or makes
no progress for `--stall-timeout` is aborted and reported, and the bench goes on.

    python bench/throughput.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/throughput.py --events 5000 --runs 1 --only outbox latency

Peers need the `bench` extra: procrastinate, pgqueuer, asyncpg, uvicorn, httptools, uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

import outbox
from outbox import CloudEvent, Subscription

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BENCH_DB = "bench_throughput"
OUTBOX_SCHEMA = "outbox"
TASK = "post_event"
STRUCTURED = "application/cloudevents+json; charset=utf-8"
HEADERS = {"Content-Type": STRUCTURED}
EVENT_TYPE = "nl.overheid.zaken.zaak-gekoppeld"
SOURCE = "urn:nld:oin:01823288444:openklant"
LINK_BASE = "https://openklant.example.nl/klantinteracties/api/v1/onderwerpobjecten/"
TARGET_EVENT_BYTES = 600
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_OUTBOX_ARGS = "--concurrency 100 --batch-size 100"
ENQUEUE_BATCH = 1000
WARMUP_EVENTS = 10
LATENCY_EVENTS = 500
LATENCY_SPACING = 0.010
HTTP_TIMEOUT = 10.0
LIBRARIES = (
    "nlgov-outbox",
    "httpx",
    "aiohttp",
    "psycopg",
    "psycopg-pool",
    "procrastinate",
    "pgqueuer",
    "asyncpg",
    "uvicorn",
    "httptools",
    "uvloop",
    "orjson",
)


class RunFailed(Exception):
    """One timed run could not be completed (stalled, timed out, a worker died): reported, not fatal."""


# -- the events ---------------------------------------------------------------------------------


def _data(zaak: str, link: str, label: str) -> dict[str, str]:
    return {"zaak": f"urn:uuid:{zaak}", "linkTo": link, "label": label, "linkObjectType": "Onderwerpobject"}


def _pad_label() -> str:
    """A label that makes the serialized event TARGET_EVENT_BYTES long (uuids and time are fixed-width)."""
    base = "Onderwerpobject voor zaak"
    zaak = str(uuid.uuid4())
    probe = CloudEvent(
        type=EVENT_TYPE,
        source=SOURCE,
        subject=zaak,
        datacontenttype="application/json",
        data=_data(zaak, LINK_BASE + str(uuid.uuid4()), base),
    )
    missing = TARGET_EVENT_BYTES - len(probe.serialize().encode())
    return base + (" " + "x" * (missing - 1) if missing > 1 else "")


LABEL = _pad_label()


def make_event() -> CloudEvent:
    """A zaak-gekoppeld event about a Zaak of its own (a distinct subject: no ordering between them)."""
    zaak = str(uuid.uuid4())
    return CloudEvent(
        type=EVENT_TYPE,
        source=SOURCE,
        subject=zaak,
        datacontenttype="application/json",
        data=_data(zaak, LINK_BASE + str(uuid.uuid4()), LABEL),
    )


def make_bodies(n: int) -> list[str]:
    """What the peers' jobs and the bare loop POST: the same JSON event format the outbox sends."""
    return [make_event().serialize() for _ in range(n)]


# -- child processes ------------------------------------------------------------------------------


class Children:
    """Every process the bench starts; all of them are stopped on the way out, whatever happens."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.live: list[subprocess.Popen[bytes]] = []
        self._seq = 0

    def spawn(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        self._seq += 1
        log_path = self.log_dir / f"{self._seq:03d}-{name}.log"
        with log_path.open("wb") as log_file:
            # Own session: a Ctrl-C in the terminal reaches the bench only, which then stops them in order.
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        self.live.append(proc)
        return proc, log_path

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 45.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (None: had to be killed)."""
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    return proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
                    return None
            return proc.returncode
        finally:
            if proc in self.live:
                self.live.remove(proc)

    def wait_exit(self, proc: subprocess.Popen[bytes], timeout: float) -> int | None:
        """Wait for a process that stops by itself; stop it if it does not. None: it did not stop by itself."""
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc, 10.0)
            return None
        if proc in self.live:
            self.live.remove(proc)
        return rc

    def stop_all(self) -> None:
        for proc in list(self.live):
            self.stop(proc, 15.0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the receiver ---------------------------------------------------------------------------------


class Receiver:
    """bench/receiver_asgi.py under uvicorn, and a client for its counters."""

    def __init__(self, children: Children) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.hook = f"{self.base}/hook"
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(BENCH_DIR),
            "receiver_asgi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ]
        self.proc, self.log = children.spawn("receiver", cmd)
        self.client = httpx.Client(base_url=self.base, timeout=10.0)
        deadline = time.monotonic() + 15.0
        while True:
            try:
                self.count()
                break
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the receiver did not start; see {self.log}") from None
                time.sleep(0.05)

    def reset(self) -> None:
        self.client.delete("/arrivals").raise_for_status()

    def count(self) -> dict[str, int]:
        response = self.client.get("/count")
        response.raise_for_status()
        counts: dict[str, int] = response.json()
        return counts

    def arrivals(self) -> dict[str, int]:
        response = self.client.get("/arrivals")
        response.raise_for_status()
        arrived: dict[str, int] = response.json()
        return arrived

    def wait_for(
        self, n: int, procs: Sequence[subprocess.Popen[bytes]], *, timeout: float, stall: float
    ) -> dict[str, int]:
        """Until `n` distinct events have arrived; RunFailed on time-out, on no progress, or if the senders exit."""
        start = time.monotonic()
        progress_at, seen = start, -1
        exited_at: float | None = None
        while True:
            counts = self.count()
            if counts["distinct"] >= n:
                return counts
            now = time.monotonic()
            if counts["distinct"] != seen:
                progress_at, seen = now, counts["distinct"]
            if now - start > timeout:
                raise RunFailed(f"timed out after {timeout:.0f} s with {seen:,} of {n:,} events arrived")
            if now - progress_at > stall:
                raise RunFailed(f"stalled: no new arrival for {stall:.0f} s, {seen:,} of {n:,} arrived")
            if procs and all(p.poll() is not None for p in procs):
                exited_at = exited_at or now
                if now - exited_at > 1.0:  # the last requests may still be in the receiver's hands
                    codes = ", ".join(str(p.returncode) for p in procs)
                    raise RunFailed(f"the sender(s) exited (exit {codes}) with {seen:,} of {n:,} events arrived")
            time.sleep(0.02)


# -- the database ---------------------------------------------------------------------------------


def bench_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SystemExit("--database-url must be a URL: postgresql://user@host:port/dbname")
    return urlunsplit(parts._replace(path=f"/{BENCH_DB}"))


def recreate_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")


async def _install_peers(url: str) -> None:
    import asyncpg
    import procrastinate
    from pgqueuer import AsyncpgDriver, Queries

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=2))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    conn = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()


def setup_database(url: str, hook: str, peers: bool) -> str:
    """Schemas of the outbox (and peers) and the one subscription; returns the subscription id."""
    from worker import subscription_store

    outbox.migrate(url, schema=OUTBOX_SCHEMA)
    subscription = Subscription.create(callback_url=hook, types=["*"], allow_insecure=True)
    with psycopg.connect(url) as conn:
        subscription_id = subscription_store.add(conn, subscription, OUTBOX_SCHEMA)
    if peers:
        asyncio.run(_install_peers(url))
    return subscription_id


def reset_database(url: str) -> None:
    """Every system's queue tables emptied (the outbox keeps its subscription)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"TRUNCATE {OUTBOX_SCHEMA}.events, {OUTBOX_SCHEMA}.deliveries, {OUTBOX_SCHEMA}.delivery_attempts, "
            f"{OUTBOX_SCHEMA}.idle_workers"
        )
        peers = [
            row[0]
            for row in conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
                "AND (tablename LIKE 'procrastinate%%' OR tablename LIKE 'pgqueuer%%')"
            ).fetchall()
        ]
        if peers:
            conn.execute(f"TRUNCATE {', '.join(peers)} CASCADE")


def analyze_checkpoint(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        conn.execute("CHECKPOINT")


def scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


def preload_outbox(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        for start in range(0, n, ENQUEUE_BATCH):
            outbox.enqueue_many(conn, [make_event() for _ in range(min(ENQUEUE_BATCH, n - start))], schema=OUTBOX_SCHEMA)
            conn.commit()


async def preload_procrastinate(url: str, bodies: list[str]) -> None:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=4))
    async with app.open_async():
        deferrer = app.configure_task(TASK)
        for start in range(0, len(bodies), ENQUEUE_BATCH):
            await deferrer.batch_defer_async(*({"body": b} for b in bodies[start : start + ENQUEUE_BATCH]))


async def preload_pgqueuer(url: str, bodies: list[str]) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        for start in range(0, len(bodies), ENQUEUE_BATCH):
            chunk = bodies[start : start + ENQUEUE_BATCH]
            await queries.enqueue([TASK] * len(chunk), [b.encode() for b in chunk], [0] * len(chunk))
    finally:
        await conn.close()


# -- HTTP clients (the peers' and the bare loop's) --------------------------------------------------


def make_client(kind: str, in_flight: int) -> httpx.AsyncClient:
    """httpx's default client, or httpx over the worker's transport; pool = max(in flight, 10), 10 s timeout."""
    pool = max(in_flight, 10)
    if kind == "httpx":
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        return httpx.AsyncClient(limits=limits, timeout=HTTP_TIMEOUT)
    from worker.transport import AiohttpTransport

    return httpx.AsyncClient(transport=AiohttpTransport(max_connections=pool), timeout=HTTP_TIMEOUT)


CLIENT_LABEL = {"httpx": "httpx", "fast": "httpx+AiohttpTransport"}


# -- configurations and results ---------------------------------------------------------------------


@dataclass
class Drain:
    events: int
    seconds: float  # from spawn (or, bare: first request) to the last arrival
    span: float  # first to last arrival
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def span_rate(self) -> float:
        return (self.events - 1) / self.span if self.span > 0 else math.nan


@dataclass
class Latency:
    p50: float
    p99: float
    mean: float
    max: float
    notes: list[str] = field(default_factory=list)


@dataclass
class Config:
    key: str
    group: str  # outbox | peer | bare
    label: str
    run: Callable[[Bench], Any]
    results: list[Any] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# -- the benchmark ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, children: Children, receiver: Receiver) -> None:
        self.args = args
        self.url = url
        self.children = children
        self.receiver = receiver
        self.n: int = args.events
        self.outbox_args = shlex.split(args.outbox_args)
        self.logs: dict[str, list[Path]] = {}

    # - helpers

    def _outbox_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OUTBOX_DATABASE_URL"] = self.url
        env["OUTBOX_SCHEMA"] = OUTBOX_SCHEMA
        return env

    def _spawn_outbox(self, tag: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "worker", "run", *self.outbox_args]
        proc, log = self.children.spawn(tag, cmd, self._outbox_env())
        self.logs.setdefault("outbox", []).append(log)
        return proc

    def _spawn_peer(self, system: str, client: str, concurrency: int, batch: int, mode: str) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_peer-worker",
            system,
            "--database-url",
            self.url,
            "--target",
            self.receiver.hook,
            "--client",
            client,
            "--concurrency",
            str(concurrency),
            "--batch-size",
            str(batch),
            "--mode",
            mode,
        ]
        proc, log = self.children.spawn(f"{system}-{mode}", cmd)
        self.logs.setdefault(system, []).append(log)
        return proc

    def _prepare(self, preload: Callable[[], None] | None) -> None:
        reset_database(self.url)
        if preload is not None:
            preload()
        analyze_checkpoint(self.url)
        self.receiver.reset()

    def _drain(self, procs_start: Callable[[], list[subprocess.Popen[bytes]]]) -> tuple[Drain, list[subprocess.Popen[bytes]]]:
        start_ns = time.time_ns()
        procs = procs_start()
        counts = self.receiver.wait_for(self.n, procs, timeout=self.args.drain_timeout, stall=self.args.stall_timeout)
        drain = Drain(
            events=self.n,
            seconds=(counts["last"] - start_ns) / 1e9,
            span=(counts["last"] - counts["first"]) / 1e9,
            duplicates=counts["duplicates"],
        )
        if counts["duplicates"]:
            drain.notes.append(f"{counts['duplicates']} duplicate deliveries")
        if counts["unidentified"]:
            drain.notes.append(f"{counts['unidentified']} requests without an event id")
        return drain, procs

    # - outbox

    def drain_outbox(self, processes: int) -> Drain:
        self._prepare(lambda: preload_outbox(self.url, self.n))
        procs: list[subprocess.Popen[bytes]] = []

        def start() -> list[subprocess.Popen[bytes]]:
            procs.extend(self._spawn_outbox(f"outbox-drain-{processes}p") for _ in range(processes))
            return procs

        try:
            drain, _ = self._drain(start)
            # The deliveries are recorded after they arrive: wait for the database to say so too.
            recorded_start = time.monotonic()
            delivered = 0
            while time.monotonic() - recorded_start < 60.0:
                delivered = scalar(
                    self.url, f"SELECT count(*) FROM {OUTBOX_SCHEMA}.deliveries WHERE status = 'delivered'"
                )
                if delivered >= self.n:
                    break
                time.sleep(0.05)
            if delivered < self.n:
                drain.notes.append(f"only {delivered:,} of {self.n:,} recorded delivered 60 s after the last arrival")
            attempts = scalar(self.url, f"SELECT count(*) FROM {OUTBOX_SCHEMA}.delivery_attempts")
            if attempts != self.n:
                drain.notes.append(f"{attempts:,} attempts recorded for {self.n:,} events")
        finally:
            codes = [self.children.stop(p) for p in procs]
        if any(code != 0 for code in codes):
            drain.notes.append(f"worker exit codes after SIGTERM: {codes}")
        return drain

    def latency_outbox(self) -> Latency:
        self._prepare(None)
        proc = self._spawn_outbox("outbox-idle")
        try:
            self._settle([proc])
            sent = self._send_outbox_singles()
            return self._latency(sent, [proc])
        finally:
            code = self.children.stop(proc)
            if code != 0:
                raise RunFailed(f"the idle outbox worker exited {code} after SIGTERM")

    def _send_outbox_singles(self) -> dict[str, int]:
        sent: dict[str, int] = {}
        with psycopg.connect(self.url) as conn:
            due = time.monotonic()
            for _ in range(WARMUP_EVENTS + LATENCY_EVENTS):
                event = make_event()
                outbox.enqueue(conn, event, schema=OUTBOX_SCHEMA)
                conn.commit()
                sent[event.id] = time.time_ns()
                due += LATENCY_SPACING
                time.sleep(max(0.0, due - time.monotonic()))
        return sent

    # - peers

    def drain_peer(self, system: str, client: str, concurrency: int, batch: int) -> Drain:
        bodies = make_bodies(self.n)
        preload = preload_procrastinate if system == "procrastinate" else preload_pgqueuer
        self._prepare(lambda: asyncio.run(preload(self.url, bodies)))
        procs: list[subprocess.Popen[bytes]] = []

        def start() -> list[subprocess.Popen[bytes]]:
            procs.append(self._spawn_peer(system, client, concurrency, batch, "drain"))
            return procs

        try:
            drain, _ = self._drain(start)
        finally:
            codes = [self.children.wait_exit(p, 60.0) for p in procs]
        if any(code != 0 for code in codes):
            drain.notes.append(f"worker exit codes (drain mode, expected 0): {codes}")
        if system == "procrastinate":
            done = scalar(self.url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
        else:
            left = scalar(self.url, "SELECT count(*) FROM pgqueuer")
            done = self.n - left
        if done != self.n:
            drain.notes.append(f"{done:,} of {self.n:,} jobs done according to the database")
        return drain

    def latency_peer(self, system: str, client: str, concurrency: int, batch: int) -> Latency:
        self._prepare(None)
        proc = self._spawn_peer(system, client, concurrency, batch, "idle")
        try:
            self._settle([proc])
            sender = _send_procrastinate_singles if system == "procrastinate" else _send_pgqueuer_singles
            sent = asyncio.run(sender(self.url))
            return self._latency(sent, [proc])
        finally:
            code = self.children.stop(proc)
            if code != 0:
                raise RunFailed(f"the idle {system} worker exited {code} after SIGTERM")

    # - bare loop

    def bare(self, client: str, in_flight: int) -> Drain:
        self._prepare(None)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_bare",
            "--target",
            self.receiver.hook,
            "--client",
            client,
            "--in-flight",
            str(in_flight),
            "--events",
            str(self.n),
        ]
        proc, log = self.children.spawn(f"bare-{client}-{in_flight}", cmd)
        self.logs.setdefault("bare", []).append(log)
        rc = self.children.wait_exit(proc, self.args.drain_timeout)
        if rc != 0:
            raise RunFailed(f"the bare loop exited {rc}; see {log}")
        report = json.loads(log.read_text().strip().splitlines()[-1])
        counts = self.receiver.count()
        drain = Drain(
            events=self.n,
            seconds=report["seconds"],
            span=(counts["last"] - counts["first"]) / 1e9,
            duplicates=counts["duplicates"],
        )
        if report["errors"]:
            drain.notes.append(f"{report['errors']} requests failed")
        if counts["distinct"] != self.n:
            drain.notes.append(f"the receiver saw {counts['distinct']:,} of {self.n:,}")
        return drain

    # - shared

    def _settle(self, procs: Sequence[subprocess.Popen[bytes]]) -> None:
        time.sleep(self.args.settle)
        for p in procs:
            if p.poll() is not None:
                raise RunFailed(f"the idle worker exited {p.returncode} while settling")

    def _latency(self, sent: dict[str, int], procs: Sequence[subprocess.Popen[bytes]]) -> Latency:
        self.receiver.wait_for(len(sent), procs, timeout=60.0, stall=30.0)
        arrived = self.receiver.arrivals()
        measured = list(sent.items())[WARMUP_EVENTS:]
        values = sorted((arrived[i] - t) / 1e6 for i, t in measured)
        latency = Latency(
            p50=percentile(values, 50),
            p99=percentile(values, 99),
            mean=statistics.fmean(values),
            max=values[-1],
        )
        negative = sum(1 for v in values if v < 0)
        if negative:
            latency.notes.append(f"{negative} arrivals before their commit returned")
        return latency


