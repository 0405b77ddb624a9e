"""Delivery throughput and latency: `outbox run` against procrastinate, pgqueuer and a bare POST loop.

What the issue asks, measured the way ../shared/PEERS.md says the peer figures were:

* drain: a backlog of `--events` events (default 20,000, ~600 bytes, each with its own subject:
  the outbox orders deliveries per subject) for one subscription on a local receiver that answers
  204; deliveries per second for 1 and 2 `outbox run` processes, from the moment the processes are
  spawned until the receiver has seen every event (startup included), and from first to last arrival;
* the same backlog through procrastinate 3.10 and pgqueuer 1.6, each job one POST of the same
  JSON document (httpx's default client on asyncio's loop, as in PEERS.md; and again with the
  outbox worker's own client, `worker.http.Sender(...).client`: httpx over the worker's transport,
  on uvloop as `outbox run`, so the comparison is fair);
* a bare loop that only POSTs the same bodies: the HTTP-client ceiling, with httpx's default
  client, the worker's client (client.post), and the worker's transport called as the worker does
  (`transport.handle_async_request(httpx.Request(...))`), at 10 and 50 requests in flight;
* latency: commit-to-arrival of 500 single events, 10 ms apart, one idle worker in its own
  process (10 warm-up events excluded); p50 and p99, for the outbox and both peers.

Besides the rates, every timed run says where the CPU went (the machine has few CPUs, and the
worker, PostgreSQL and the receiver share them): the worker process(es), PostgreSQL's processes
that work for the bench database (read from /proc, so only when the server runs on this machine),
the receiver, and what else kept the machine busy meanwhile; and the database transactions per
delivery (pg_stat_database).

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
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
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
RECEIVER_NETWORK = "127.0.0.0/8"  # the bench's receiver: the one private network the worker may reach
BATCH_MAX = 100  # events per POST in the batched-mode drain
TASK = "post_event"
STRUCTURED = "application/cloudevents+json; charset=utf-8"
HEADERS = {"Content-Type": STRUCTURED}
EVENT_TYPE = "nl.overheid.zaken.zaak-gekoppeld"
SOURCE = "urn:nld:oin:01823288444:openklant"
LINK_BASE = "https://openklant.example.nl/klantinteracties/api/v1/onderwerpobjecten/"
TARGET_EVENT_BYTES = 600
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_OUTBOX_ARGS = ""  # the worker's own defaults (OUTBOX_CONCURRENCY, OUTBOX_BATCH_SIZE, ...)
ENQUEUE_BATCH = 1000
WARMUP_EVENTS = 10
LATENCY_EVENTS = 500
LATENCY_SPACING = 0.010
HTTP_TIMEOUT = 10.0
LIBRARIES = (
    "nlgov-outbox",
    "httpx",
    "starlette",
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

    def spawn(
        self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
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

    def stop_all(self, keep: subprocess.Popen[bytes] | None = None) -> None:
        for proc in list(self.live):
            if proc is not keep:
                self.stop(proc, 15.0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- CPU accounting ----------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (0.0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs)."""
    with contextlib.suppress(OSError, ValueError):
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
        return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    return 0.0


PG_KINDS = ("backends", "autovacuum", "server")
_BACKEND_TITLE = re.compile(r"(\S+) (\S+) (\[local\]|\S+\(\d+\))")


def _kind(title: str) -> str | None:
    """What a PostgreSQL process does for the bench: "backends" (of its database), "autovacuum", or
    "server" (WAL writer, checkpointer, ...); None for a backend of another database (other people's
    tests). A backend's title is "postgres: [cluster: ]user database host(port) state"."""
    backend = _BACKEND_TITLE.search(title)
    if backend is not None:
        return "backends" if backend.group(2) == BENCH_DB else None
    return "autovacuum" if "autovacuum" in title else "server"


class PostgresCpu:
    """CPU of the local PostgreSQL's processes that work for the bench, sampled in the background (a
    backend that exits keeps the last value seen). Off when the server is not on this machine."""

    def __init__(self, url: str) -> None:
        self.uid: int | None = None
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            with contextlib.suppress(OSError):
                self.uid = os.stat(f"/proc/{row[0]}").st_uid
        self._seen: dict[int, float] = {}
        self._kinds: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _scan(self) -> None:
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if entry.name.isdigit() and int(entry.name) not in self._kinds:
                    with contextlib.suppress(OSError):
                        if entry.stat().st_uid != self.uid:
                            continue
                        title = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                        kind = _kind(title.strip())
                        if kind is not None:
                            self._kinds[int(entry.name)] = kind

    def _sample(self) -> None:
        for pid in list(self._kinds):
            cpu = process_cpu(pid)
            if cpu:
                self._seen[pid] = cpu

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.2):
            ticks += 1
            if ticks % 5 == 0:
                self._scan()
            self._sample()

    def start(self) -> dict[int, float]:
        """Begin sampling; returns the CPU of every PostgreSQL process now."""
        if self._thread is not None:  # a run that failed half-way left it running
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.uid is None:
            return {}
        self._kinds = {}
        self._scan()
        self._seen = {}
        self._sample()
        baseline = dict(self._seen)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return baseline

    def stop(self, baseline: dict[int, float]) -> dict[str, float] | None:
        """CPU seconds PostgreSQL used since `start`, by kind of process (None: not measurable here)."""
        if self.uid is None or self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._scan()
        self._sample()
        used = dict.fromkeys(PG_KINDS, 0.0)
        for pid, cpu in self._seen.items():
            used[self._kinds[pid]] += cpu - baseline.get(pid, 0.0)
        return used


@dataclass
class CpuUse:
    """CPU seconds during one timed run, by whom; `wall` in seconds."""

    wall: float
    worker: float
    postgres_kinds: dict[str, float] | None  # backends, autovacuum, server
    receiver: float
    harness: float
    machine: float
    unshown: float = 0.0  # our own CPU not in `worker` (the bare loop's startup): not counted as other

    @property
    def postgres(self) -> float | None:
        return None if self.postgres_kinds is None else sum(self.postgres_kinds.values())

    @property
    def other(self) -> float:
        """What else ran on the machine meanwhile (other people's work, the kernel), in CPU seconds."""
        ours = self.worker + (self.postgres or 0.0) + self.receiver + self.harness + self.unshown
        return max(0.0, self.machine - ours)


class Meter:
    """Measures a timed run's CPU: started before the workers are spawned, read before they are stopped."""

    def __init__(self, postgres: PostgresCpu, receiver_pid: int) -> None:
        self.postgres = postgres
        self.receiver_pid = receiver_pid

    def start(self) -> None:
        self._baseline = self.postgres.start()
        self._receiver = process_cpu(self.receiver_pid)
        self._machine = machine_busy()
        self._harness = time.process_time()
        self._wall = time.monotonic()

    def stop(self, worker_cpu: float) -> CpuUse:
        return CpuUse(
            wall=time.monotonic() - self._wall,
            worker=worker_cpu,
            postgres_kinds=self.postgres.stop(self._baseline),
            receiver=process_cpu(self.receiver_pid) - self._receiver,
            harness=time.process_time() - self._harness,
            machine=machine_busy() - self._machine,
        )


def reported_cpu(log: Path) -> float:
    """The CPU seconds a peer worker or bare loop printed as its last line ({"cpu": ...})."""
    with contextlib.suppress(OSError, ValueError, IndexError, KeyError, TypeError):
        return float(json.loads(log.read_text().strip().splitlines()[-1])["cpu"])
    return math.nan


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


def bench_url(url: str, database: str = BENCH_DB) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SystemExit("--database-url must be a URL: postgresql://user@host:port/dbname")
    return urlunsplit(parts._replace(path=f"/{database}"))


def recreate_database(admin_url: str, database: str = BENCH_DB) -> None:
    """`database` dropped (whoever is connected) and created anew; a fixed name of ours, not input."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")


def _procrastinate_app(url: str, min_size: int, max_size: int) -> Any:
    """A procrastinate App on a psycopg pool; the tasks are defined in this script, which is __main__
    in the peer worker process: procrastinate's warning about that is beside the point here."""
    import logging

    import procrastinate

    def not_main_module_warning(record: logging.LogRecord) -> bool:
        return getattr(record, "action", None) != "app_defined_in___main__"

    logging.getLogger("procrastinate.blueprints").addFilter(not_main_module_warning)
    return procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url, min_size=min_size, max_size=max_size)
    )


async def _install_peers(url: str) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    app = _procrastinate_app(url, 1, 2)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    conn = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()


def setup_database(url: str, hook: str, peers: bool) -> str:
    """Schemas of the outbox (and peers) and the one subscription; returns the subscription id."""
    from worker.store import subscriptions as subscription_store
    from worker.store.secret_box import SecretBox

    outbox.migrate(url, schema=OUTBOX_SCHEMA)
    subscription = Subscription.create(callback_url=hook, types=["*"], allow_insecure=True)
    with psycopg.connect(url) as conn:
        subscription_id = subscription_store.add(conn, subscription, OUTBOX_SCHEMA, SecretBox())
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


def db_transactions(url: str) -> int:
    """Transactions committed or rolled back in the bench database so far (a backend reports its own when
    it ends, or at most a second after its last one)."""
    count: int = scalar(
        url,
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    return count


def scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


def preload_outbox(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        for start in range(0, n, ENQUEUE_BATCH):
            outbox.enqueue_many(
                conn, [make_event() for _ in range(min(ENQUEUE_BATCH, n - start))], schema=OUTBOX_SCHEMA
            )
            conn.commit()


async def preload_procrastinate(url: str, bodies: list[str]) -> None:

    app = _procrastinate_app(url, 1, 4)
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


def worker_sender(in_flight: int) -> Any:
    """The worker's own HTTP side (`worker.http.Sender`: its httpx client over its transport), built as
    `outbox run --concurrency max(in_flight, 10) --request-timeout 10` builds it, whatever transport that is."""
    from worker.daemon.settings import WorkerSettings
    from worker.delivery.http import Sender

    settings = WorkerSettings.load(
        concurrency=max(in_flight, 10), request_timeout=HTTP_TIMEOUT, allowed_networks=RECEIVER_NETWORK
    )
    return Sender(settings)


def worker_transport_name() -> str:
    sender = worker_sender(10)
    transport = type(sender.transport)
    return f"{transport.__module__}.{transport.__qualname__}"


def make_client(kind: str, in_flight: int) -> httpx.AsyncClient:
    """httpx's default client, or the worker's client (httpx over the worker's transport); pool = max(in
    flight, 10), 10 s timeout."""
    if kind == "httpx":
        pool = max(in_flight, 10)
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        return httpx.AsyncClient(limits=limits, timeout=HTTP_TIMEOUT)
    return httpx.AsyncClient(transport=worker_sender(in_flight).transport, timeout=HTTP_TIMEOUT, follow_redirects=False)


CLIENT_LABEL = {"httpx": "httpx", "fast": "httpx+worker transport"}


def loop_for(client: str, fast_loop: str) -> str:
    """httpx's default client runs as PEERS.md says (asyncio's loop); the worker's transport on the worker's loop."""
    return "asyncio" if client == "httpx" else fast_loop


def run_on(loop: str, coro: Any) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# -- configurations and results ---------------------------------------------------------------------


@dataclass
class Drain:
    events: int
    seconds: float  # from spawn (or, bare: first request) to the last arrival
    span: float  # first to last arrival
    duplicates: int = 0
    startup: float = math.nan  # spawn to first arrival
    cpu: CpuUse | None = None
    transactions: float = math.nan  # database transactions per delivery
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
    cpu: CpuUse | None = None
    transactions: float = math.nan  # database transactions per event besides the enqueuing one
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
        self.meter = Meter(PostgresCpu(url), receiver.proc.pid)
        self.digests: set[str] = set()
        self._migrated = code_digest()

    # - helpers

    def _outbox_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OUTBOX_DATABASE_URL"] = self.url
        env["OUTBOX_SCHEMA"] = OUTBOX_SCHEMA
        env["OUTBOX_ALLOWED_NETWORKS"] = RECEIVER_NETWORK  # the receiver runs on this machine
        return env

    def _migrate_outbox(self) -> None:
        """The code changed since the schema was made (it is being worked on): migrate with the new code."""
        digest = code_digest()
        self.digests.add(digest)
        if digest == self._migrated:
            return
        cmd = [sys.executable, "-m", "worker", "migrate"]
        done = subprocess.run(cmd, env=self._outbox_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RunFailed(f"outbox migrate (after a code change) failed: {done.stderr.strip()[-300:]}")
        self._migrated = digest

    def _spawn_outbox(self, tag: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "worker", "run", *self.outbox_args]
        proc, log = self.children.spawn(tag, cmd, self._outbox_env())
        self.logs.setdefault("outbox", []).append(log)
        return proc

    def _spawn_peer(
        self, system: str, client: str, concurrency: int, batch: int, mode: str
    ) -> tuple[subprocess.Popen[bytes], Path]:
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
            "--loop",
            loop_for(client, self.args.fast_loop),
        ]
        proc, log = self.children.spawn(f"{system}-{mode}", cmd)
        self.logs.setdefault(system, []).append(log)
        return proc, log

    def _prepare(self, preload: Callable[[], None] | None) -> None:
        reset_database(self.url)
        if preload is not None:
            preload()
        analyze_checkpoint(self.url)
        self.receiver.reset()

    def _drain(
        self, procs_start: Callable[[], list[subprocess.Popen[bytes]]]
    ) -> tuple[Drain, list[subprocess.Popen[bytes]]]:
        self._tx_before = db_transactions(self.url)
        self.meter.start()
        start_ns = time.time_ns()
        procs = procs_start()
        counts = self.receiver.wait_for(self.n, procs, timeout=self.args.drain_timeout, stall=self.args.stall_timeout)
        drain = Drain(
            events=self.n,
            seconds=(counts["last"] - start_ns) / 1e9,
            span=(counts["last"] - counts["first"]) / 1e9,
            duplicates=counts["duplicates"],
            startup=(counts["first"] - start_ns) / 1e9,
        )
        if counts["duplicates"]:
            drain.notes.append(f"{counts['duplicates']} duplicate deliveries")
        if counts["unidentified"]:
            drain.notes.append(f"{counts['unidentified']} requests without an event id")
        return drain, procs

    # - outbox

    def drain_outbox(self, processes: int, mode: str = "structured") -> Drain:
        self._migrate_outbox()
        self._prepare(lambda: preload_outbox(self.url, self.n))
        with psycopg.connect(self.url) as conn:  # the one subscription: this run's content mode
            conn.execute(
                f"UPDATE {OUTBOX_SCHEMA}.subscriptions SET content_mode = %s, batch_max = %s", (mode, BATCH_MAX)
            )
        procs: list[subprocess.Popen[bytes]] = []

        def start() -> list[subprocess.Popen[bytes]]:
            procs.extend(self._spawn_outbox(f"outbox-drain-{processes}p") for _ in range(processes))
            return procs

        try:
            drain, _ = self._drain(start)
            # Read before they stop: the whole life of the workers so far, startup included.
            drain.cpu = self.meter.stop(sum(process_cpu(p.pid) for p in procs))
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
        drain.transactions = self._transactions_since()
        if any(code != 0 for code in codes):
            drain.notes.append(f"worker exit codes after SIGTERM: {codes}")
        return drain

    def _transactions_since(self) -> float:
        time.sleep(1.1)  # backends report their counts at most a second late
        return (db_transactions(self.url) - self._tx_before) / self.n

    def latency_outbox(self) -> Latency:
        self._migrate_outbox()
        self._prepare(None)
        proc = self._spawn_outbox("outbox-idle")
        latency = self._latency_run("outbox", proc, self._send_outbox_singles)
        # Which path the wake-ups took: the worker says so when it stops.
        for line in reversed(self.logs["outbox"][-1].read_text().splitlines()):
            with contextlib.suppress(ValueError):
                stopped = json.loads(line)
                if stopped.get("event") == "worker stopped" and "fast_paths" in stopped:
                    latency.notes.append(
                        f"fast path: {stopped['fast_paths']} wake-ups served in one round trip, "
                        f"{stopped['fast_path_fallbacks']} refused (normal path)"
                    )
                    break
        return latency

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
        logs: list[Path] = []

        def start() -> list[subprocess.Popen[bytes]]:
            proc, log = self._spawn_peer(system, client, concurrency, batch, "drain")
            procs.append(proc)
            logs.append(log)
            return procs

        try:
            drain, _ = self._drain(start)
            meter_stop = self.meter.stop
        finally:
            codes = [self.children.wait_exit(p, 60.0) for p in procs]
        # A drain-mode peer exits by itself: it prints its own CPU time on the way out.
        drain.cpu = meter_stop(sum(reported_cpu(log) for log in logs))
        drain.transactions = self._transactions_since()
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
        proc, _ = self._spawn_peer(system, client, concurrency, batch, "idle")
        sender = _send_procrastinate_singles if system == "procrastinate" else _send_pgqueuer_singles
        return self._latency_run(system, proc, lambda: asyncio.run(sender(self.url)))

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
            "--loop",
            loop_for(client, self.args.fast_loop),
        ]
        self.meter.start()
        proc, log = self.children.spawn(f"bare-{client}-{in_flight}", cmd)
        self.logs.setdefault("bare", []).append(log)
        rc = self.children.wait_exit(proc, self.args.drain_timeout)
        if rc != 0:
            raise RunFailed(f"the bare loop exited {rc}; see {log}")
        report = json.loads(log.read_text().strip().splitlines()[-1])
        cpu = self.meter.stop(float(report["cpu"]))
        cpu.unshown = max(0.0, float(report["process_cpu"]) - cpu.worker)
        counts = self.receiver.count()
        drain = Drain(
            events=self.n,
            seconds=report["seconds"],
            span=(counts["last"] - counts["first"]) / 1e9,
            duplicates=counts["duplicates"],
            cpu=cpu,
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

    def _latency_run(self, system: str, proc: subprocess.Popen[bytes], send: Callable[[], dict[str, int]]) -> Latency:
        """An idle worker gets `--settle` seconds, then the events go out one by one; the worker is stopped."""
        try:
            self._settle([proc])
            self._tx_before = db_transactions(self.url)
            self.meter.start()
            cpu_before = process_cpu(proc.pid)
            sent = send()
            latency = self._latency(sent, proc, cpu_before)
        finally:
            code = self.children.stop(proc)
        if code != 0:
            raise RunFailed(f"the idle {system} worker exited {code} after SIGTERM")
        time.sleep(1.1)  # backends report their counts at most a second late
        latency.transactions = (db_transactions(self.url) - self._tx_before - len(sent)) / len(sent)
        return latency

    def _latency(self, sent: dict[str, int], proc: subprocess.Popen[bytes], cpu_before: float) -> Latency:
        self.receiver.wait_for(len(sent), [proc], timeout=60.0, stall=30.0)
        cpu = self.meter.stop(process_cpu(proc.pid) - cpu_before)
        arrived = self.receiver.arrivals()
        measured = list(sent.items())[WARMUP_EVENTS:]
        values = sorted((arrived[i] - t) / 1e6 for i, t in measured)
        latency = Latency(
            p50=percentile(values, 50),
            p99=percentile(values, 99),
            mean=statistics.fmean(values),
            max=values[-1],
            cpu=cpu,
        )
        negative = sum(1 for v in values if v < 0)
        if negative:
            latency.notes.append(f"{negative} arrived before the enqueuing commit returned (negative latency, kept)")
        return latency


async def _send_procrastinate_singles(url: str) -> dict[str, int]:
    """Each event one `defer_async` (its own transaction, committed when the call returns), 10 ms apart."""

    sent: dict[str, int] = {}
    app = _procrastinate_app(url, 4, 4)
    async with app.open_async():
        deferrer = app.configure_task(TASK)
        loop = asyncio.get_running_loop()
        due = loop.time()
        for _ in range(WARMUP_EVENTS + LATENCY_EVENTS):
            event = make_event()
            await deferrer.defer_async(body=event.serialize())
            sent[event.id] = time.time_ns()
            due += LATENCY_SPACING
            await asyncio.sleep(max(0.0, due - loop.time()))
    return sent


async def _send_pgqueuer_singles(url: str) -> dict[str, int]:
    """Each event one `Queries.enqueue` on an autocommit asyncpg connection, 10 ms apart."""
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    sent: dict[str, int] = {}
    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        loop = asyncio.get_running_loop()
        due = loop.time()
        for _ in range(WARMUP_EVENTS + LATENCY_EVENTS):
            event = make_event()
            await queries.enqueue(TASK, event.serialize().encode(), 0)
            sent[event.id] = time.time_ns()
            due += LATENCY_SPACING
            await asyncio.sleep(max(0.0, due - loop.time()))
    finally:
        await conn.close()
    return sent


# -- child process entry points: a peer worker, the bare loop ------------------------------------------


async def _run_procrastinate(args: argparse.Namespace, client: httpx.AsyncClient) -> None:

    app = _procrastinate_app(args.database_url, 4, 4)
    target: str = args.target

    @app.task(name=TASK)
    async def post_event(body: str) -> None:
        response = await client.post(target, content=body, headers=HEADERS)
        response.raise_for_status()

    async with app.open_async():
        # drain: wait=False stops once the queue is caught up; idle: runs until SIGTERM.
        await app.run_worker_async(concurrency=args.concurrency, wait=args.mode == "idle")


async def _run_pgqueuer(args: argparse.Namespace, client: httpx.AsyncClient) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.models import Job
    from pgqueuer.types import QueueExecutionMode

    conn = await asyncpg.connect(args.database_url)
    manager = QueueManager(Queries(AsyncpgDriver(conn)))
    target: str = args.target

    @manager.entrypoint(TASK)
    async def post_event(job: Job) -> None:
        response = await client.post(target, content=job.payload, headers=HEADERS)
        response.raise_for_status()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, manager.shutdown.set)
    mode = QueueExecutionMode.drain if args.mode == "drain" else QueueExecutionMode.continuous
    try:
        await manager.run(batch_size=args.batch_size, max_concurrent_tasks=args.concurrency, mode=mode)
    finally:
        if not conn.is_closed():
            await conn.close()


async def _peer_worker(args: argparse.Namespace) -> None:
    client = make_client(args.client, args.concurrency)
    try:
        if args.system == "procrastinate":
            await _run_procrastinate(args, client)
        else:
            await _run_pgqueuer(args, client)
    finally:
        await client.aclose()


def peer_worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="throughput.py _peer-worker", description="(internal) one peer worker")
    parser.add_argument("system", choices=("procrastinate", "pgqueuer"))
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--client", choices=("httpx", "fast"), default="httpx")
    parser.add_argument("--concurrency", type=int, default=10, help="procrastinate: C; pgqueuer: max_concurrent_tasks")
    parser.add_argument("--batch-size", type=int, default=5, help="pgqueuer batch_size")
    parser.add_argument("--mode", choices=("drain", "idle"), default="drain")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    try:
        run_on(args.loop, _peer_worker(args))
    finally:
        print(json.dumps({"cpu": time.process_time()}), flush=True)
    return 0


async def _bare(args: argparse.Namespace) -> dict[str, float]:
    bodies = [body.encode() for body in make_bodies(args.events)]
    target: str = args.target
    in_flight: int = args.in_flight
    post: Callable[[bytes], Any]
    if args.client == "transport":
        # As worker.http.Sender.deliver: an httpx.Request handed straight to the worker's transport.
        sender = worker_sender(in_flight)
        transport = sender.transport
        extensions = {"timeout": httpx.Timeout(HTTP_TIMEOUT).as_dict()}

        def post(body: bytes) -> Any:
            request = httpx.Request("POST", target, headers=HEADERS, content=body, extensions=extensions)
            return transport.handle_async_request(request)

        close = sender.aclose
    else:
        client = make_client(args.client, in_flight)

        def post(body: bytes) -> Any:
            return client.post(target, content=body, headers=HEADERS)

        close = client.aclose
    pending = iter(bodies)
    errors = 0

    async def lane() -> None:
        nonlocal errors
        for body in pending:
            try:
                response = await post(body)
                if response.status_code != 204:
                    errors += 1
            except httpx.HTTPError:
                errors += 1

    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    await close()
    return {"seconds": seconds, "errors": errors, "cpu": cpu, "process_cpu": time.process_time()}


def bare_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="throughput.py _bare", description="(internal) the bare POST loop")
    parser.add_argument("--target", required=True)
    parser.add_argument("--client", choices=("httpx", "fast", "transport"), required=True)
    parser.add_argument("--in-flight", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    print(json.dumps(run_on(args.loop, _bare(args))), flush=True)
    return 0


# -- what to run --------------------------------------------------------------------------------------

BARE_LABEL = {
    "httpx": "httpx default client, client.post",
    "fast": "httpx + worker transport, client.post",
    "transport": "worker transport.handle_async_request",
}


def build_configs(args: argparse.Namespace) -> tuple[list[Config], list[Config]]:
    wanted = set(args.only or ("outbox", "peers", "bare", "latency"))
    peers = not args.skip_peers
    drains: list[Config] = []
    latencies: list[Config] = []
    if "outbox" in wanted:
        for k in args.processes:
            drains.append(Config(f"outbox-{k}", "outbox", f"outbox run ×{k}", lambda b, k=k: b.drain_outbox(k)))
            drains.append(
                Config(
                    f"outbox-batched-{k}",
                    "outbox",
                    f"outbox run ×{k}, batched mode ({BATCH_MAX} per POST)",
                    lambda b, k=k: b.drain_outbox(k, "batched"),
                )
            )
    if "peers" in wanted and peers:
        for client in ("httpx", "fast"):
            for c in (10, 50):
                drains.append(
                    Config(
                        f"procrastinate-{client}-{c}",
                        "peer",
                        f"procrastinate C={c}, {CLIENT_LABEL[client]}, {loop_for(client, args.fast_loop)}",
                        lambda b, client=client, c=c: b.drain_peer("procrastinate", client, c, 0),
                    )
                )
        for client, batch, m in (("httpx", 5, 10), ("fast", 25, 50)):
            drains.append(
                Config(
                    f"pgqueuer-{client}",
                    "peer",
                    f"pgqueuer B={batch}/M={m}, {CLIENT_LABEL[client]}, {loop_for(client, args.fast_loop)}",
                    lambda b, client=client, batch=batch, m=m: b.drain_peer("pgqueuer", client, m, batch),
                )
            )
    if "bare" in wanted:
        for client in ("httpx", "fast", "transport"):
            for k in args.bare_in_flight:
                drains.append(
                    Config(
                        f"bare-{client}-{k}",
                        "bare",
                        f"bare, {BARE_LABEL[client]}, {loop_for(client, args.fast_loop)}, {k} in flight",
                        lambda b, client=client, k=k: b.bare(client, k),
                    )
                )
    if "latency" in wanted:
        latencies.append(Config("outbox", "outbox", "outbox run ×1, idle", lambda b: b.latency_outbox()))
        if peers:
            for client in ("httpx", "fast"):
                latencies.append(
                    Config(
                        f"procrastinate-{client}",
                        "peer",
                        f"procrastinate C=10, {CLIENT_LABEL[client]}, {loop_for(client, args.fast_loop)}",
                        lambda b, client=client: b.latency_peer("procrastinate", client, 10, 0),
                    )
                )
            for client, batch, m in (("httpx", 5, 10), ("fast", 25, 50)):
                latencies.append(
                    Config(
                        f"pgqueuer-{client}",
                        "peer",
                        f"pgqueuer B={batch}/M={m}, {CLIENT_LABEL[client]}, {loop_for(client, args.fast_loop)}",
                        lambda b, client=client, batch=batch, m=m: b.latency_peer("pgqueuer", client, m, batch),
                    )
                )
    return drains, latencies


def run_all(bench: Bench, drains: list[Config], latencies: list[Config], runs: int) -> None:
    for r in range(runs):
        for group in (drains, latencies):
            if not group:
                continue
            shift = r % len(group)
            for config in group[shift:] + group[:shift]:
                print(f"[run {r + 1}/{runs}] {config.label} ...", file=sys.stderr, flush=True)
                started = time.monotonic()
                try:
                    result = config.run(bench)
                except RunFailed as exc:
                    config.failures.append(str(exc))
                    print(f"    FAILED: {exc}", file=sys.stderr, flush=True)
                    continue
                except (psycopg.Error, httpx.HTTPError, OSError, ValueError, KeyError) as exc:
                    # One broken configuration does not cost the others' figures: reported as failed.
                    config.failures.append(f"{type(exc).__name__}: {exc}")
                    print(f"    FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    bench.children.stop_all(keep=bench.receiver.proc)
                    continue
                config.results.append(result)
                took = time.monotonic() - started
                if isinstance(result, Drain):
                    summary = f"{result.rate:,.0f}/s (first→last {result.span_rate:,.0f}/s)"
                else:
                    summary = f"p50 {result.p50:.2f} ms, p99 {result.p99:.2f} ms"
                notes = f"; {'; '.join(result.notes)}" if result.notes else ""
                print(f"    {summary}{notes}  [{took:.0f} s]", file=sys.stderr, flush=True)


# -- reporting ----------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def drain_median(config: Config) -> float:
    return _median([d.rate for d in config.results])


def _versions() -> str:
    found = []
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "? GiB"


def code_digest() -> str:
    """A digest of the worker's and library's code and SQL: tells whether they changed during the run."""
    digest = hashlib.sha256()
    for folder, pattern in (("outbox", "*.py"), ("worker", "*.py"), ("sql", "*.sql")):
        for path in sorted((REPO / folder).glob(pattern)):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "outbox", "worker", "sql"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "git: unknown"
    return f"git {head}" + (" + uncommitted changes in outbox/ worker/ sql/" if dirty else "")


def print_header(args: argparse.Namespace, url: str, receiver: Receiver, digest: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
            "current_setting('fsync'), current_setting('shared_buffers'), current_setting('max_connections'), "
            "current_setting('wal_sync_method')"
        ).fetchone()
    assert row is not None
    version, sync_commit, fsync, shared_buffers, max_conn, wal_sync = row
    size = len(make_event().serialize().encode())
    print("Delivery throughput: outbox run vs procrastinate, pgqueuer and a bare POST loop")
    print(f"machine: {platform.platform()}, {_cpu_model()}, {os.cpu_count()} CPUs, {_memory()}")
    print(
        f"PostgreSQL {version} (database {BENCH_DB}): synchronous_commit={sync_commit} fsync={fsync} "
        f"wal_sync_method={wal_sync} shared_buffers={shared_buffers} max_connections={max_conn}"
    )
    print(f"Python {platform.python_version()}; {_versions()}")
    print(f"code: {_git()}; outbox/worker/sql digest {digest}")
    print(
        f"events: {args.events:,} × {size} B ({EVENT_TYPE}, each its own subject); runs: {args.runs} "
        f"(median, interleaved); outbox run {' '.join(shlex.quote(a) for a in shlex.split(args.outbox_args))}"
    )
    print(f"receiver: uvicorn (1 process, uvloop, httptools, no access log) on {receiver.base}, answers 204")
    print(
        f"worker transport: {worker_transport_name()}; peers and bare loops with it run on {args.fast_loop}, "
        "with httpx's default client on asyncio"
    )


def _per_run(values: Sequence[float], fmt: str) -> str:
    return " ".join(format(v, fmt) for v in values)


def report_drains(drains: list[Config], n: int) -> None:
    if not drains:
        return
    print(f"\nDeliveries per second: a backlog of {n:,} events, one subscription, receiver answers 204")
    print("  outbox and peers: from spawning the worker process(es) to the last arrival (startup included);")
    print("  bare loop: in-process, first request to last response. first→last: between the receiver's")
    print("  first and last arrival. Median of the runs; per run: the main figure.")
    width = max(len(c.label) for c in drains) + 2
    print(f"  {'configuration':<{width}}{'median/s':>10}{'first→last/s':>14}{'startup s':>11}   per run (/s)")
    last_group = None
    for config in drains:
        if last_group is not None and config.group != last_group:
            print()
        last_group = config.group
        rates = [d.rate for d in config.results]
        spans = [d.span_rate for d in config.results]
        startup = _median([d.startup for d in config.results])
        shown = "" if math.isnan(startup) else f"{startup:.2f}"
        line = (
            f"  {config.label:<{width}}{_median(rates):>10,.0f}{_median(spans):>14,.0f}{shown:>11}"
            f"   {_per_run(rates, ',.0f')}"
        )
        notes = sorted({note for d in config.results for note in d.notes})
        if config.failures:
            line += f"   [{len(config.failures)} failed run(s)]"
        print(line)
        for note in notes:
            print(f"  {'':<{width}}  note: {note}")
        for failure in config.failures:
            print(f"  {'':<{width}}  FAILED: {failure}")


def report_cpu(drains: list[Config], latencies: list[Config], cpus: int) -> None:
    """Where the CPU went: per delivery, by process, and how busy the machine was (medians over runs)."""
    measured = [c for c in drains if any(d.cpu for d in c.results)]
    if measured:
        print("\nCPU per delivery (µs, medians over runs). worker: the worker process(es) from spawn, startup")
        print("  included (bare: the loop alone); PostgreSQL: backends of the bench database, autovacuum, and")
        print(f"  the server's own processes (WAL writer, checkpointer, ...). busy: the machine's {cpus} CPUs;")
        print("  other: CPUs taken meanwhile by anything else (other people's work, the kernel); db tx: database")
        print("  transactions per delivery.")
        width = max(len(c.label) for c in measured) + 2
        print(
            f"  {'configuration':<{width}}{'worker':>7}{'pg back':>8}{'pg vac':>7}{'pg srv':>7}{'receiver':>9}"
            f"{'total':>7}{'busy':>6}{'other':>6}{'db tx':>6}"
        )
        for config in measured:
            uses = [d.cpu for d in config.results if d.cpu is not None]
            n = config.results[0].events

            def per(values: list[float | None], n: int = n) -> float:
                return _median([v for v in values if v is not None]) / n * 1e6

            worker = per([u.worker for u in uses])
            receiver = per([u.receiver for u in uses])
            kinds = [per([u.postgres_kinds[k] if u.postgres_kinds else None for u in uses]) for k in PG_KINDS]
            total = worker + receiver + sum(0.0 if math.isnan(k) else k for k in kinds)
            busy = _median([u.machine / u.wall / cpus for u in uses]) * 100
            other = _median([u.other / u.wall for u in uses])
            tx = _median([d.transactions for d in config.results if not math.isnan(d.transactions)])
            shown_tx = "" if math.isnan(tx) else f"{tx:.2f}"
            pg = "".join(f"{k:>{w}.0f}" for k, w in zip(kinds, (8, 7, 7), strict=True))
            print(
                f"  {config.label:<{width}}{worker:>7.0f}{pg}{receiver:>9.0f}{total:>7.0f}"
                f"{busy:>5.0f}%{other:>6.2f}{shown_tx:>6}"
            )
    lat = [c for c in latencies if any(r.cpu for r in c.results)]
    if lat:
        print("\n  latency runs (medians): worker and PostgreSQL CPU per event (µs), the worker's database")
        print("  transactions per event (besides the enqueuing one), machine busy, other CPUs meanwhile")
        width = max(len(c.label) for c in lat) + 2
        print(f"  {'configuration':<{width}}{'worker':>8}{'postgres':>10}{'db tx':>7}{'busy':>7}{'other':>7}")
        for config in lat:
            results = [r for r in config.results if r.cpu is not None]
            uses = [r.cpu for r in results if r.cpu is not None]
            events = WARMUP_EVENTS + LATENCY_EVENTS
            worker = _median([u.worker for u in uses]) / events * 1e6
            postgres = _median([u.postgres for u in uses if u.postgres is not None]) / events * 1e6
            tx = _median([r.transactions for r in results])
            busy = _median([u.machine / u.wall / cpus for u in uses]) * 100
            other = _median([u.other / u.wall for u in uses])
            print(f"  {config.label:<{width}}{worker:>8.0f}{postgres:>10.0f}{tx:>7.2f}{busy:>6.0f}%{other:>7.2f}")


def report_latencies(latencies: list[Config]) -> None:
    if not latencies:
        return
    print(
        f"\nCommit-to-arrival latency: {LATENCY_EVENTS} single events, {LATENCY_SPACING * 1000:.0f} ms apart, "
        f"{WARMUP_EVENTS} warm-up events excluded,"
    )
    print("  one idle worker in its own process; ms, median over runs of each run's figure")
    width = max(len(c.label) for c in latencies) + 2
    print(f"  {'configuration':<{width}}{'p50':>8}{'p99':>8}{'mean':>8}{'max':>8}   per run p50/p99")
    for config in latencies:
        results: list[Latency] = config.results
        per_run = " ".join(f"{r.p50:.2f}/{r.p99:.2f}" for r in results)
        figures = "".join(
            f"{_median([getattr(r, name) for r in results]):>8.2f}" for name in ("p50", "p99", "mean", "max")
        )
        print(f"  {config.label:<{width}}{figures}   {per_run}")
        for note in sorted({note for r in results for note in r.notes}):
            print(f"  {'':<{width}}  note: {note}")
        for failure in config.failures:
            print(f"  {'':<{width}}  FAILED: {failure}")


def _best(configs: list[Config], group: str, prefix: str = "") -> Config | None:
    candidates = [c for c in configs if c.group == group and c.key.startswith(prefix) and c.results]
    return max(candidates, key=drain_median) if candidates else None


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report_ratios_and_targets(drains: list[Config], latencies: list[Config]) -> None:
    by_key = {c.key: c for c in drains}
    one = by_key.get("outbox-1")
    two = by_key.get("outbox-2")
    one_rate = drain_median(one) if one and one.results else None
    best_peer = _best(drains, "peer")
    best_bare = _best(drains, "bare")
    best_transport = _best(drains, "bare", "bare-transport")

    print("\nRatios (medians)")
    if one_rate is not None and best_peer is not None:
        print(
            f"  outbox ×1 / best peer ({best_peer.label}, {drain_median(best_peer):,.0f}/s) = "
            f"{one_rate / drain_median(best_peer):.2f}"
        )
    for prefix, name in (("procrastinate", "procrastinate"), ("pgqueuer", "pgqueuer")):
        peer = _best(drains, "peer", prefix)
        if one_rate is not None and peer is not None:
            print(f"  outbox ×1 / best {name} ({peer.label}) = {one_rate / drain_median(peer):.2f}")
    if one_rate is not None and two is not None and two.results:
        print(f"  outbox ×2 / outbox ×1 = {drain_median(two) / one_rate:.2f}")
    if one_rate is not None and best_bare is not None:
        print(
            f"  outbox ×1 / bare ceiling ({best_bare.label}, {drain_median(best_bare):,.0f}/s) = "
            f"{one_rate / drain_median(best_bare):.2f}"
        )
    if one_rate is not None and best_transport is not None and best_transport is not best_bare:
        ratio = one_rate / drain_median(best_transport)
        print(f"  outbox ×1 / bare, worker's transport ({best_transport.label}) = {ratio:.2f}")
    if best_peer is not None and best_bare is not None:
        print(f"  best peer / bare ceiling = {drain_median(best_peer) / drain_median(best_bare):.2f}")
    lat = {c.key: c for c in latencies if c.results}
    own = lat.get("outbox")
    peer_lat = [c for c in latencies if c.group == "peer" and c.results]
    if own is not None and peer_lat:
        own_p50 = _median([r.p50 for r in own.results])
        own_p99 = _median([r.p99 for r in own.results])
        best_p50 = min(peer_lat, key=lambda c: _median([r.p50 for r in c.results]))
        best_p99 = min(peer_lat, key=lambda c: _median([r.p99 for r in c.results]))
        print(
            f"  latency p50 outbox / best peer ({best_p50.label}) = "
            f"{own_p50 / _median([r.p50 for r in best_p50.results]):.2f}"
        )
        print(
            f"  latency p99 outbox / best peer ({best_p99.label}) = "
            f"{own_p99 / _median([r.p99 for r in best_p99.results]):.2f}"
        )

    print("\nTargets")
    if one_rate is not None:
        print(f"  one outbox run process: {one_rate:,.0f} deliveries/s >= 4,000/s: {_verdict(one_rate >= 4000)}")
        if best_peer is not None:
            ratio = one_rate / drain_median(best_peer)
            print(f"  one outbox run process / best peer in this run = {ratio:.2f} >= 1.5: {_verdict(ratio >= 1.5)}")
        else:
            print("  one outbox run process / best peer: not measured (peers skipped or failed)")
    else:
        print("  deliveries/s of one outbox run process: not measured")
    if own is not None:
        own_p50 = _median([r.p50 for r in own.results])
        own_p99 = _median([r.p99 for r in own.results])
        print(f"  latency p50 {own_p50:.2f} ms <= 3 ms: {_verdict(own_p50 <= 3.0)}")
        print(f"  latency p99 {own_p99:.2f} ms <= 5 ms: {_verdict(own_p99 <= 5.0)}")
        if peer_lat:
            systems = sorted({c.key.split("-")[0] for c in peer_lat})
            ahead = all(
                own_p50 < _median([r.p50 for r in c.results]) and own_p99 < _median([r.p99 for r in c.results])
                for c in peer_lat
            )
            print(
                f"  latency ahead of both peers (p50 and p99 below every {' and '.join(systems)} configuration): "
                f"{_verdict(ahead)}"
            )
    else:
        print("  latency: not measured")


def report_logs(logs: dict[str, list[Path]], log_dir: Path) -> None:
    """What the workers said besides their start and stop lines."""
    print(f"\nWorker logs ({log_dir})")
    for system, paths in sorted(logs.items()):
        tally: Counter[str] = Counter()
        for path in paths:
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    text = line.strip()
                    if not text:
                        continue
                    try:
                        record = json.loads(text)
                    except ValueError:
                        record = None
                    if isinstance(record, dict) and "cpu" in record:  # a peer's or bare loop's own report
                        continue
                    if isinstance(record, dict) and "level" in record:
                        if record["level"] in ("debug", "info"):
                            continue
                        tally[f"{record['level']}: {record.get('event')}"] += 1
                    else:
                        tally[text[:160]] += 1
        if not tally:
            print(f"  {system}: {len(paths)} process(es), nothing but start/stop lines")
            continue
        print(f"  {system}: {len(paths)} process(es); {sum(tally.values())} other line(s), most frequent:")
        for text, count in tally.most_common(8):
            print(f"    {count:>6} × {text}")


# -- main -------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_peers_installed() -> None:
    missing = [name for name in ("procrastinate", "pgqueuer", "asyncpg") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: install the bench extra (pip install -e '.[bench]') or pass --skip-peers"
        )


def _positive_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive whole numbers")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_peer-worker":
        return peer_worker_main(argv[1:])
    if argv and argv[0] == "_bare":
        return bare_main(argv[1:])

    parser = argparse.ArgumentParser(
        description="Delivery throughput and commit-to-arrival latency of `outbox run`, against "
        "procrastinate, pgqueuer and a bare POST loop on the same local receiver.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OUTBOX_DATABASE_URL") or DEFAULT_URL,
        help=f"PostgreSQL URL of a superuser ($OUTBOX_DATABASE_URL if set); the bench drops and creates "
        f"the database {BENCH_DB} there",
    )
    parser.add_argument("--events", type=int, default=20_000, help="backlog size of every drain")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per configuration (the median is reported)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("outbox", "peers", "bare", "latency"),
        help="measure only these (all when not given; latency includes the peers' unless --skip-peers)",
    )
    parser.add_argument("--skip-peers", action="store_true", help="no procrastinate / pgqueuer runs")
    parser.add_argument(
        "--outbox-args",
        default=DEFAULT_OUTBOX_ARGS,
        help="flags passed to every `outbox run` (one string, shell-quoted)",
    )
    parser.add_argument(
        "--processes", type=_positive_list, default=[1, 2], help="outbox run process counts to drain with"
    )
    parser.add_argument(
        "--bare-in-flight", type=_positive_list, default=[10, 50], help="requests in flight of the bare loops"
    )
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="abort a drain after this many seconds")
    parser.add_argument(
        "--stall-timeout", type=float, default=60.0, help="abort a drain with no new arrival for this many seconds"
    )
    parser.add_argument(
        "--fast-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of the peers and bare loops that use the worker's transport (`outbox run` runs on "
        "uvloop when it is installed); those with httpx's default client use asyncio's, as in PEERS.md",
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds an idle worker gets before latency runs")
    args = parser.parse_args(argv)
    if args.events < 2 or args.runs < 1:
        parser.error("--events must be at least 2 and --runs at least 1")
    want_peers = not args.skip_peers and bool(set(args.only or ("peers", "latency")) & {"peers", "latency"})
    if want_peers:
        _check_peers_installed()

    signal.signal(signal.SIGTERM, _interrupt)
    url = bench_url(args.database_url)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    children = Children(log_dir)
    digest = code_digest()
    started = time.perf_counter()
    try:
        recreate_database(args.database_url)
        receiver = Receiver(children)
        setup_database(url, receiver.hook, want_peers)
        bench = Bench(args, url, children, receiver)
        print_header(args, url, receiver, digest)
        sys.stdout.flush()
        drains, latencies = build_configs(args)
        run_all(bench, drains, latencies, args.runs)
        report_drains(drains, args.events)
        report_latencies(latencies)
        report_cpu(drains, latencies, os.cpu_count() or 1)
        report_ratios_and_targets(drains, latencies)
        report_logs(bench.logs, log_dir)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the workers and the receiver", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
    if code_digest() != digest or len(bench.digests) > 1:
        print(
            "\nWARNING: the code in outbox/, worker/ or sql/ changed during the run: the outbox figures mix "
            f"{len(bench.digests | {code_digest()})} versions"
        )
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
