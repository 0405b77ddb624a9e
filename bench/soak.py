"""Soak: do claim time, enqueue cost and disk stay flat over hours of steady load?

Hosts enqueue at a fixed rate while `outbox run` workers deliver and `outbox purge` runs as an
operator's cron would; every `--interval` (default a minute) one line says:

* enq/s, enq p50/p99: events the hosts committed in that minute, and what one cost them: the
  `outbox.enqueue` call plus the COMMIT (the CloudEvent is built before the clock starts), in ms;
* claim: the worker's `claim` query (sql/queries.sql, the worker's default parameters: 200 for the one
  subscription, 400 at most) run under EXPLAIN (ANALYZE, BUFFERS) from a side connection against the
  live data, rolled back, the median of 3: its execution time in ms (planning left out: the worker's
  connections prepare it) and the buffers it touched, a figure the noise of a shared machine does not
  blur. It walks the same index the workers walk, with the dead entries they leave behind; it is not
  the worker's own round trip. (The server has no pg_stat_statements preloaded, and the worker has no
  claim histogram.) The probe locks what it finds for a moment, and its rolled-back UPDATE leaves a
  few hundred dead rows a minute: noise against thousands of deliveries a second;
* backlog: unrouted events + unfinished deliveries (`metrics_snapshot`, what `outbox run
  --metrics-port` exports), and the age of the oldest waiting event in seconds;
* deliv/s, c→a p50/p99: events the receiver saw in that minute, and the time from the return of the
  enqueuing COMMIT (host clock) to the arrival (receiver clock, the same machine), in ms;
* sizes of events, deliveries, delivery_attempts and intake_ids in MB, table (with TOAST) / indexes,
  summed over pg_partition_tree (so partitioned tables count all their partitions), dead tuples of the
  four (pg_stat_user_tables.n_dead_tup, summed likewise: an estimate), the database size, the
  deliveries deleted by the purges that finished in that interval and the longest one's time (the
  whole command, start-up included, as cron sees it), and how long the bench's own VACUUM took (below).

Vacuum: dead rows are what a queue table makes (every delivery is updated twice and deleted, every
event updated once and deleted); autovacuum takes them away. A server with autovacuum off (the test
server at 127.0.0.1:5432 is one) would show every figure grow for a reason no production server has,
so then the bench says so and VACUUMs (ANALYZE) the four tables every minute from a thread of its own
(`--vacuum-every`: auto, off, or a duration), never two at once.

At the end the same lines as a table, how each figure moved from the first to the last third of the
steady state (the intervals after retention + one purge interval: before that the tables fill up by
design), the disk used against the retention window, and whether every event arrived.

The pieces: N host processes (`--hosts`, this script's `_host` mode; one psycopg connection each, one
event per transaction, paced by the clock: event k is due at start + k / rate, and a host that is late
sends at once until it has caught up, so sleep drift never lowers the rate), `--workers` `outbox run`
processes, the receiver of bench/throughput.py (bench/receiver_asgi.py under uvicorn; 204 to every
POST), and `outbox purge --older-than RETENTION` every `--purge-every` (a purge still running when the
next is due is skipped, as `flock -n` in a crontab would). Hosts report (id, commit time, cost) on
their stdout; the bench takes the receiver's arrivals every second (POST /arrivals/take, so neither
side holds more than a moment's worth) and matches them by CloudEvent id.

It stops cleanly at the end or on Ctrl-C (every child stopped, the figures so far printed), and fails
loudly (exit 1) when a child dies, when the oldest waiting event is older than `--max-lag` (the
workers fall behind without bound) or when the hosts are that far behind their schedule (enqueue
cannot sustain the rate).

`--find-rate` looks for the highest rate this machine sustains: steps of `--step-seconds` from `--rate`
up by `--step-factor` while the step holds (hosts on schedule, delivered ≥ 97 % of enqueued, oldest
waiting event ≤ 5 s at its end), then `--refine` halvings between the last rate held and the first
that was not. A machine shared with other work gives a rough figure; confirm it with a plain run.

    python bench/soak.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/soak.py --minutes 3 --rate 300
    python bench/soak.py --find-rate --rate 500 --step-seconds 60

Everything lives in the database `bench_soak`, dropped and created anew at the start.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson
import psycopg
from throughput import (
    DEFAULT_URL,
    OUTBOX_SCHEMA,
    RECEIVER_NETWORK,
    REPO,
    Children,
    Receiver,
    bench_url,
    make_event,
    percentile,
    recreate_database,
    setup_database,
)

import outbox
from outbox._sql import query
from worker.daemon import partitions
from worker.daemon.maintenance import parse_duration

SOAK_DB = "bench_soak"
TABLES = ("events", "deliveries", "delivery_attempts", "intake_ids")
SHORT = {"events": "events", "deliveries": "deliveries", "delivery_attempts": "attempts", "intake_ids": "intake"}
HOST_FLUSH = 0.5  # seconds between a host's reports
TICK = 1.0  # seconds between the bench's looks at hosts, receiver and children
CHECK_EVERY = 5.0  # seconds between backlog checks for --max-lag
ORPHAN_SECONDS = 30.0  # an arrival no host reported sending within this long: a duplicate (or a stranger)
PROBE_REPEATS = 3
# The worker's defaults (worker/daemon/settings.py): claim at most batch_size, a subscription its share.
CLAIM_LIMIT = 400
CLAIM_CAP = 200
DRAIN_SECONDS = 60.0
READY_SECONDS = 60.0
# --find-rate: when a step holds.
STEP_MAX_OLDEST = 5.0
STEP_MIN_DELIVERED = 0.97
STEP_MAX_HOST_LAG = 1.0
MB = 1024 * 1024

# The bench's own monitoring (catalogue reads, not the product's queries). Sizes and dead tuples summed
# over each table's partition tree (pg_partition_tree; a plain table counts as its own one member).
SIZES_SQL = """
SELECT t.name,
       coalesce(sum(pg_table_size(p.relid)), 0)::int8,
       coalesce(sum(pg_indexes_size(p.relid)), 0)::int8,
       coalesce(sum(s.n_dead_tup), 0)::int8,
       coalesce(sum(s.n_live_tup), 0)::int8,
       coalesce(sum(s.autovacuum_count + s.vacuum_count), 0)::int8,
       count(p.relid) FILTER (WHERE p.isleaf)::int4
  FROM unnest(%(tables)s::text[]) WITH ORDINALITY AS t(name, n)
 CROSS JOIN LATERAL (SELECT to_regclass(format('%%I.%%I', %(schema)s::text, t.name)) AS root) AS r
  LEFT JOIN LATERAL (SELECT relid, isleaf FROM pg_partition_tree(r.root)
                     UNION ALL  -- a plain table has no tree: it is its own one member
                     SELECT r.root, true WHERE NOT EXISTS (SELECT FROM pg_partition_tree(r.root))) AS p
         ON r.root IS NOT NULL
  LEFT JOIN pg_stat_user_tables s ON s.relid = p.relid
 GROUP BY t.name, t.n
 ORDER BY t.n
"""
DATABASE_SIZE_SQL = "SELECT pg_database_size(current_database())"
IDLE_WORKERS_SQL = f"SELECT count(*) FROM {OUTBOX_SCHEMA}.idle_workers"  # workers listening for work
AUTOVACUUM_SQL = "SELECT current_setting('autovacuum')::bool"
VACUUM_SQL = "VACUUM (ANALYZE) " + ", ".join(f"{OUTBOX_SCHEMA}.{t}" for t in TABLES)  # fixed names of ours
# `outbox purge` prints a line per leaf dropped, then the rows it deleted one by one (DEFAULT leaves).
PURGED = re.compile(r"deleted (\d+) delivered and (\d+) failed deliveries")
DROPPED = re.compile(r"^dropped ", re.M)


class SoakFailed(Exception):
    """The run cannot go on: a child died, or the workers or hosts fell behind without bound."""


# -- the host processes ----------------------------------------------------------------------------


def host_main(argv: Sequence[str]) -> int:
    """One host: enqueue one event per transaction at `--rate` events/s until SIGTERM; report on stdout
    one JSON line per HOST_FLUSH: {"sent": [[id, commit wall ns, enqueue µs], ...], "lag": s behind}.
    A line "rate R" on stdin starts a new schedule at R events/s (0: pause)."""
    parser = argparse.ArgumentParser(prog="soak.py _host")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--offset", type=float, default=0.0, help="seconds: interleaves the hosts' schedules")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    rates: queue.SimpleQueue[float] = queue.SimpleQueue()

    def read_rates() -> None:
        for line in sys.stdin:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "rate":
                rates.put(float(parts[1]))

    threading.Thread(target=read_rates, daemon=True).start()
    out = sys.stdout.buffer
    records: list[tuple[str, int, int]] = []
    rate = args.rate
    with psycopg.connect(args.database_url) as conn:
        out.write(b'{"ready": true}\n')  # connected: the bench starts every host's schedule at once
        out.flush()
        begin = time.monotonic() + args.offset
        k = 0
        flushed = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                while True:
                    rate = rates.get_nowait()
                    begin, k = time.monotonic() + args.offset, 0
            now = time.monotonic()
            due = begin + k / rate if rate > 0 else math.inf
            if due > now:
                stop.wait(min(due - now, 0.05))  # short: a new rate or SIGTERM is seen at once
            else:
                event = make_event()  # built before the clock starts: what is timed is enqueue + COMMIT
                started = time.perf_counter_ns()
                outbox.enqueue(conn, event, schema=OUTBOX_SCHEMA)
                conn.commit()
                cost = time.perf_counter_ns() - started
                records.append((event.id, time.time_ns(), cost // 1000))
                k += 1
            now = time.monotonic()
            if now - flushed >= HOST_FLUSH:
                lag = max(0.0, now - (begin + k / rate)) if rate > 0 else 0.0
                out.write(orjson.dumps({"sent": records, "lag": lag}) + b"\n")
                out.flush()
                records, flushed = [], now
    out.write(orjson.dumps({"sent": records, "lag": 0.0}) + b"\n")
    out.flush()
    return 0


@dataclass
class Host:
    proc: subprocess.Popen[bytes]
    log: Path
    reports: queue.SimpleQueue[dict[str, Any]]
    lag: float = 0.0


def spawn_host(children: Children, url: str, rate: float, offset: float) -> Host:
    """A host process whose stdout a thread reads; it joins `children`, so it is stopped on the way out."""
    children._seq += 1
    log = children.log_dir / f"{children._seq:03d}-host.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "_host", "--database-url", url]
    cmd += ["--rate", repr(rate), "--offset", repr(offset)]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=REPO, start_new_session=True
        )
    children.live.append(proc)
    reports: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def read(stream: IO[bytes]) -> None:
        for line in stream:
            with contextlib.suppress(orjson.JSONDecodeError):
                reports.put(orjson.loads(line))

    assert proc.stdout is not None
    threading.Thread(target=read, args=(proc.stdout,), daemon=True).start()
    return Host(proc, log, reports)


# -- one interval's figures --------------------------------------------------------------------------


@dataclass
class Sizes:
    table: int
    index: int
    dead: int
    live: int
    vacuums: int
    partitions: int


@dataclass
class Row:
    """The figures of one interval (times in ms unless named otherwise)."""

    end: float  # seconds since the start
    rate: float  # the rate the hosts were asked for
    enqueued: float  # per second
    enq_p50: float
    enq_p99: float
    claim_ms: float
    claim_plan_ms: float
    claim_buffers: int
    claim_rows: int
    backlog: int
    oldest: float  # seconds
    delivered: float  # per second
    lat_p50: float
    lat_p99: float
    sizes: dict[str, Sizes]
    db_bytes: int
    purged: int | None  # leaves dropped by the purges that finished in this interval
    purge_seconds: float | None  # the longest of them
    vacuum_seconds: float | None  # the bench's own VACUUM, when the server has no autovacuum
    host_lag: float  # seconds
    notes: list[str] = field(default_factory=list)

    @property
    def dead(self) -> int:
        return sum(s.dead for s in self.sizes.values())

    def flat(self) -> dict[str, Any]:
        """For the CSV file: one column per figure."""
        flat = {k: v for k, v in asdict(self).items() if k not in ("sizes", "notes")}
        for name, s in self.sizes.items():
            flat.update({f"{name}_{k}": v for k, v in asdict(s).items()})
        flat["dead_total"] = self.dead
        flat["notes"] = "; ".join(self.notes)
        return flat


def _pct(values: list[float], p: float) -> float:
    return percentile(sorted(values), p) if values else math.nan


def _num(value: float | None, width: int, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width},.{digits}f}"


HEADER = (
    f"{'min':>6}{'enq/s':>7}{'enq p50':>8}{'p99':>7}{'claim':>7}{'buf':>6}{'backlog':>8}{'oldest':>7}"
    f"{'deliv/s':>8}{'c→a p50':>8}{'p99':>7}"
    + "".join(f"{SHORT[t] + ' t/i':>15}" for t in TABLES)
    + f"{'dead':>9}{'db MB':>8}{'dropped':>8}{'purge s':>8}{'vac s':>6}"
)
UNITS = (
    f"{'':>6}{'':>7}{'ms':>8}{'ms':>7}{'ms':>7}{'':>6}{'':>8}{'s':>7}{'':>8}{'ms':>8}{'ms':>7}"
    + "".join(f"{'MB':>15}" for _ in TABLES)
    + f"{'tuples':>9}{'':>8}{'':>8}{'':>8}{'':>6}"
)


def format_row(row: Row) -> str:
    sizes = "".join(f"{f'{s.table / MB:,.1f}/{s.index / MB:,.1f}':>15}" for s in row.sizes.values())
    purged = f"{row.purged:>8,}" if row.purged is not None else f"{'-':>8}"
    line = (
        f"{row.end / 60:>6.1f}{_num(row.enqueued, 7, 0)}{_num(row.enq_p50, 8, 2)}{_num(row.enq_p99, 7, 2)}"
        f"{_num(row.claim_ms, 7, 2)}{row.claim_buffers:>6,}{row.backlog:>8,}{_num(row.oldest, 7, 1)}"
        f"{_num(row.delivered, 8, 0)}{_num(row.lat_p50, 8, 1)}{_num(row.lat_p99, 7, 1)}{sizes}"
        f"{row.dead:>9,}{row.db_bytes / MB:>8,.0f}{purged}{_num(row.purge_seconds, 8, 1)}"
        f"{_num(row.vacuum_seconds, 6, 1)}"
    )
    return line + ("  " + "; ".join(row.notes) if row.notes else "")


# -- the run --------------------------------------------------------------------------------------------


class Purger:
    """`outbox purge --older-than RETENTION` as cron would run it: in its own process, never two at once."""

    def __init__(self, children: Children, env: dict[str, str], retention: str) -> None:
        self.children = children
        self.env = env
        self.retention = retention
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self.started = 0.0
        self.runs = self.skipped = self.failed = 0
        self.total_deliveries = 0  # deleted one by one
        self.total_dropped = 0  # leaves

    def startup_seconds(self) -> float:
        """How long `outbox --help` takes: the part of every purge's time that is Python starting."""
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "worker", "--help"], env=self.env, cwd=REPO, capture_output=True, check=True
        )
        return time.monotonic() - started

    def start(self) -> bool:
        """False: the previous purge is still running (this one is skipped)."""
        if self.proc is not None:
            self.skipped += 1
            return False
        cmd = [sys.executable, "-m", "worker", "purge", "--older-than", self.retention]
        self.proc, self.log = self.children.spawn("purge", cmd, self.env)
        self.started = time.monotonic()
        return True

    def poll(self) -> tuple[int | None, float, str | None] | None:
        """A purge that finished since the last poll: (leaves dropped or None, seconds, a problem)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        proc, log, self.proc = self.proc, self.log, None
        seconds = time.monotonic() - self.started
        rc = self.children.stop(proc)
        self.runs += 1
        output = log.read_text(errors="replace") if log is not None else ""
        match = PURGED.search(output)
        if rc != 0:
            self.failed += 1
            return None, seconds, f"PURGE FAILED (exit {rc}; see {log})"
        if match is None:
            return None, seconds, f"purge said something else: {output.strip()[-120:]!r}"
        self.total_deliveries += int(match.group(1)) + int(match.group(2))
        dropped = len(DROPPED.findall(output))
        self.total_dropped += dropped
        return dropped, seconds, None


class Vacuumer:
    """VACUUM (ANALYZE) of the four tables from a thread of the bench, in place of the autovacuum a
    server that has it off does not run (never two at once; partitioned tables recurse)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.thread: threading.Thread | None = None
        self.result: tuple[float, str | None] | None = None
        self.runs = self.skipped = 0

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.skipped += 1
            return
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        problem = None
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(VACUUM_SQL)
        except psycopg.Error as exc:
            problem = f"VACUUM FAILED: {exc}"
        self.result = (time.monotonic() - started, problem)

    def poll(self) -> tuple[float, str | None] | None:
        """A vacuum that finished since the last poll: (seconds, a problem)."""
        if self.thread is None or self.thread.is_alive() or self.result is None:
            return None
        result, self.result, self.thread = self.result, None, None
        self.runs += 1
        return result


class Soak:
    def __init__(self, args: argparse.Namespace, admin_url: str) -> None:
        self.args = args
        self.url = bench_url(admin_url, SOAK_DB)
        self.log_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
        self.children = Children(self.log_dir)
        self.rows: list[Row] = []
        self.hosts: list[Host] = []
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.pending: dict[str, int] = {}  # sent, not arrived yet: id -> commit wall ns
        self.orphans: dict[str, tuple[int, float]] = {}  # arrived before its host's report: id -> (ns, seen)
        self.sent = self.arrived = self.duplicates = self.unidentified = self.unmatched = 0
        self.rate = args.rate
        self.purger = Purger(self.children, self.env(), args.retention)
        self.vacuumer = Vacuumer(self.url)
        self.vacuum_every: float | None = None  # seconds; None: the server's autovacuum does it
        self._reset_interval()
        self._csv: Any = None
        self._csv_file: IO[str] | None = None

    # - setup

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OUTBOX_DATABASE_URL"] = self.url
        env["OUTBOX_SCHEMA"] = OUTBOX_SCHEMA
        env["OUTBOX_ALLOWED_NETWORKS"] = RECEIVER_NETWORK  # the receiver runs on this machine
        env["OUTBOX_PARTITION_INTERVAL"] = self.args.partition_interval
        return env

    def _leaves_of_the_interval(self) -> None:
        """The migration made daily leaves ahead, and new leaves continue from the last bound: on this
        new, empty database, make the run's interval apply at once (as an installation that chose it
        before its first event would) by dropping those empty leaves and making the run's ones."""
        step = parse_duration(self.args.partition_interval)
        with psycopg.connect(self.url, autocommit=True) as conn:
            for parent in ("events", "deliveries_delivered", "deliveries_failed", "delivery_attempts"):
                leaves = conn.execute(
                    f"SELECT leaf::text FROM {OUTBOX_SCHEMA}.partition_leaves(%s) WHERE upper_bound IS NOT NULL",
                    (parent,),
                ).fetchall()
                for (leaf,) in leaves:
                    conn.execute(f"DROP TABLE {leaf}")  # regclass text: already a qualified, quoted name
            partitions.ensure(conn, OUTBOX_SCHEMA, step)

    def start(self, admin_url: str) -> None:
        recreate_database(admin_url, SOAK_DB)
        self.receiver = Receiver(self.children)
        self.subscription_id = setup_database(self.url, self.receiver.hook, peers=False)  # outbox.migrate + 1 sub
        self._leaves_of_the_interval()
        self.monitor = psycopg.connect(self.url, autocommit=True)
        self.monitor.execute(query("worker_session", OUTBOX_SCHEMA))  # no JIT, as the worker's sessions
        self.monitor.execute("SET statement_timeout = '30s'")
        row = self.monitor.execute(AUTOVACUUM_SQL).fetchone()
        self.autovacuum = bool(row and row[0])
        choice = self.args.vacuum_every
        if choice != "off" and (choice != "auto" or not self.autovacuum):
            self.vacuum_every = parse_duration("1m" if choice == "auto" else choice).total_seconds()
        for _ in range(self.args.workers):
            cmd = [sys.executable, "-m", "worker", "run"]
            self.workers.append(self.children.spawn("worker", cmd, self.env()))
        for i in range(self.args.hosts):
            offset = i / self.rate  # host i sends between host i-1's events
            self.hosts.append(spawn_host(self.children, self.url, 0.0, offset))  # paused until all are ready
        self.wait_ready()
        if self.args.csv:
            self._csv_file = open(self.args.csv, "w", newline="")  # noqa: SIM115 - closed in stop()

    def wait_ready(self) -> None:
        """Until every host is connected and every worker has gone idle (listening), so the first
        interval measures the load, not the start-up."""
        deadline = time.monotonic() + READY_SECONDS
        for host in self.hosts:
            while True:
                with contextlib.suppress(queue.Empty):
                    if host.reports.get(timeout=0.2).get("ready"):
                        break
                self.check_children()
                if time.monotonic() > deadline:
                    raise SoakFailed(f"a host did not connect within {READY_SECONDS:.0f} s; see {host.log}")
        while True:
            row = self.monitor.execute(IDLE_WORKERS_SQL).fetchone()
            if row is not None and row[0] >= len(self.workers):
                return
            self.check_children()
            if time.monotonic() > deadline:
                raise SoakFailed(f"the workers did not start within {READY_SECONDS:.0f} s; see {self.log_dir}")
            time.sleep(0.2)

    def begin(self) -> None:
        """The clock starts: hosts at the rate, the first interval, the purge schedule."""
        self.began = time.monotonic()
        self.purge_every = parse_duration(self.args.purge_every).total_seconds()
        self.next_purge = self.began + self.purge_every
        self.next_vacuum = self.began + (self.vacuum_every or 0.0)
        self.set_rate(self.rate)
        self._reset_interval()

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        for host in self.hosts:
            assert host.proc.stdin is not None
            host.proc.stdin.write(f"rate {rate / len(self.hosts)!r}\n".encode())
            host.proc.stdin.flush()

    # - every tick

    def _reset_interval(self) -> None:
        self.i_costs: list[float] = []
        self.i_latencies: list[float] = []
        self.i_sent = self.i_arrived = 0
        self.i_started = time.monotonic()
        self.i_purged: int | None = None
        self.i_purge_seconds: float | None = None
        self.i_vacuum_seconds: float | None = None
        self.i_notes: list[str] = []

    def tick(self, hosts_running: bool = True) -> None:
        """Take what the hosts reported and what arrived, match them, and check the children."""
        for host in self.hosts:
            with contextlib.suppress(queue.Empty):
                while True:
                    report = host.reports.get_nowait()
                    if "sent" not in report:
                        continue
                    host.lag = float(report["lag"])
                    for event_id, committed, cost in report["sent"]:
                        self.sent += 1
                        self.i_sent += 1
                        self.i_costs.append(cost / 1000)
                        orphan = self.orphans.pop(event_id, None)
                        if orphan is None:
                            self.pending[event_id] = committed
                        else:
                            self._matched(orphan[0] - committed)
        self._take_arrivals()
        finished = self.purger.poll()
        if finished is not None:
            purged, seconds, problem = finished  # several in one interval: their sum and the longest
            if purged is not None:
                self.i_purged = (self.i_purged or 0) + purged
            self.i_purge_seconds = max(seconds, self.i_purge_seconds or 0.0)
            if problem:
                self.i_notes.append(problem)
        vacuumed = self.vacuumer.poll()
        if vacuumed is not None:
            seconds, problem = vacuumed
            self.i_vacuum_seconds = max(seconds, self.i_vacuum_seconds or 0.0)
            if problem:
                self.i_notes.append(problem)
        self.check_children(hosts_running)

    def _matched(self, latency_ns: int) -> None:
        self.arrived += 1
        self.i_latencies.append(latency_ns / 1e6)

    def _take_arrivals(self) -> None:
        response = self.receiver.client.post("/arrivals/take")
        response.raise_for_status()
        taken = response.json()
        self.duplicates += taken["duplicates"]
        self.unidentified += taken["unidentified"]
        now = time.monotonic()
        for event_id, arrived in taken["arrivals"]:
            self.i_arrived += 1
            committed = self.pending.pop(event_id, None)
            if committed is None:  # its host has not reported it yet (or it is a redelivery)
                self.orphans[event_id] = (arrived, now)
            else:
                self._matched(arrived - committed)
        for event_id, (_, seen) in list(self.orphans.items()):
            if now - seen > ORPHAN_SECONDS:  # its id was matched before: a redelivery, or not ours at all
                del self.orphans[event_id]
                self.unmatched += 1

    def check_children(self, hosts_running: bool = True) -> None:
        named = [("the receiver", self.receiver.proc, self.receiver.log)]
        named += [("a worker (outbox run)", proc, log) for proc, log in self.workers]
        if hosts_running:
            named += [("a host", host.proc, host.log) for host in self.hosts]
        for name, proc, log in named:
            if proc.poll() is not None:
                tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[-400:]
                raise SoakFailed(f"{name} exited with code {proc.returncode}; log {log}: {tail}")

    def snapshot(self) -> tuple[int, float]:
        """(backlog, age in seconds of the oldest waiting event) from `metrics_snapshot`."""
        row = self.monitor.execute(query("metrics_snapshot", OUTBOX_SCHEMA)).fetchone()
        assert row is not None
        pending, blocked, delivering, unrouted, _paused, oldest = row
        return int(pending + blocked + delivering + unrouted), max(0.0, float(oldest or 0.0))

    def check_lag(self, guard: bool = True) -> tuple[int, float]:
        backlog, oldest = self.snapshot()
        limit = self.args.max_lag
        if guard and oldest > limit:
            raise SoakFailed(
                f"FELL BEHIND: the oldest waiting event is {oldest:.0f} s old (> --max-lag {limit:.0f} s), "
                f"backlog {backlog:,}: the workers do not keep up with {self.rate:,.0f} events/s here"
            )
        lag = max((h.lag for h in self.hosts), default=0.0)
        if guard and lag > limit:
            raise SoakFailed(
                f"HOSTS FELL BEHIND: {lag:.0f} s behind their schedule (> --max-lag {limit:.0f} s): enqueue "
                f"cannot sustain {self.rate:,.0f} events/s here with {len(self.hosts)} host(s)"
            )
        return backlog, oldest

    # - every interval

    def claim_probe(self) -> tuple[float, float, int, int]:
        """(execution ms, planning ms, buffers, rows): medians of PROBE_REPEATS rolled-back runs."""
        statement = b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query("claim", OUTBOX_SCHEMA)
        params = {
            "subscriptions": [self.subscription_id], "caps": [CLAIM_CAP], "units": [1], "rated": [False],
            "limit": CLAIM_LIMIT, "token": uuid.uuid4(), "lease": 60.0,
            # The adaptive limit as the worker passes it (its pace row, else the initial 4; at most the default 200).
            "max_requests": [CLAIM_CAP], "adaptive": True, "initial": 4.0,
        }  # fmt: skip
        runs = []
        for _ in range(PROBE_REPEATS):
            with self.monitor.transaction(force_rollback=True):
                row = self.monitor.execute(statement, params).fetchone()
            assert row is not None
            document = row[0][0]
            plan = document["Plan"]
            runs.append(
                (
                    float(document["Execution Time"]),
                    float(document["Planning Time"]),
                    int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0)),
                    int(plan.get("Actual Rows", 0)),
                )
            )
        runs.sort()
        return runs[len(runs) // 2]

    def sizes(self) -> dict[str, Sizes]:
        rows = self.monitor.execute(SIZES_SQL, {"tables": list(TABLES), "schema": OUTBOX_SCHEMA}).fetchall()
        return {name: Sizes(*values) for name, *values in rows}

    def sample(self, elapsed: float) -> Row:
        seconds = max(1e-9, time.monotonic() - self.i_started)
        backlog, oldest = self.check_lag(guard=False)
        claim_ms, plan_ms, buffers, claimed = self.claim_probe()
        db_bytes_row = self.monitor.execute(DATABASE_SIZE_SQL).fetchone()
        assert db_bytes_row is not None
        row = Row(
            end=elapsed,
            rate=self.rate,
            enqueued=self.i_sent / seconds,
            enq_p50=_pct(self.i_costs, 50),
            enq_p99=_pct(self.i_costs, 99),
            claim_ms=claim_ms,
            claim_plan_ms=plan_ms,
            claim_buffers=buffers,
            claim_rows=claimed,
            backlog=backlog,
            oldest=oldest,
            delivered=self.i_arrived / seconds,
            lat_p50=_pct(self.i_latencies, 50),
            lat_p99=_pct(self.i_latencies, 99),
            sizes=self.sizes(),
            db_bytes=int(db_bytes_row[0]),
            purged=self.i_purged,
            purge_seconds=self.i_purge_seconds,
            vacuum_seconds=self.i_vacuum_seconds,
            host_lag=max((h.lag for h in self.hosts), default=0.0),
            notes=self.i_notes,
        )
        if row.host_lag > STEP_MAX_HOST_LAG:
            row.notes.append(f"hosts {row.host_lag:.1f} s behind schedule")
        self.rows.append(row)
        self._write_csv(row)
        self._reset_interval()
        return row

    def _write_csv(self, row: Row) -> None:
        if self._csv_file is None:
            return
        flat = row.flat()
        if self._csv is None:
            self._csv = csv.DictWriter(self._csv_file, fieldnames=list(flat))
            self._csv.writeheader()
        self._csv.writerow(flat)
        self._csv_file.flush()

    # - the main loops

    def run_for(self, seconds: float, began: float, suffix: str = "") -> None:
        """Ticks until `seconds` have passed since `began`: a line per interval, purge on time."""
        interval = self.args.interval
        next_row = began + interval * (1 + math.floor((time.monotonic() - began) / interval))
        next_check = time.monotonic() + CHECK_EVERY
        end = began + seconds
        while True:
            now = time.monotonic()
            if now >= self.next_purge:
                if not self.purger.start():
                    self.i_notes.append("purge skipped: the last one still runs")
                self.next_purge += self.purge_every
            if self.vacuum_every is not None and now >= self.next_vacuum:
                self.vacuumer.start()
                self.next_vacuum += self.vacuum_every
            self.tick()
            if now >= next_check:
                self.check_lag(guard=not self.args.find_rate)
                next_check = now + CHECK_EVERY
            if now >= end or now >= next_row:
                row = self.sample(now - self.began)
                print(format_row(row) + suffix, flush=True)
                next_row += interval
                if now >= end:
                    return
            time.sleep(max(0.0, min(TICK, next_row - time.monotonic(), end - time.monotonic())))

    def soak(self) -> None:
        self.begin()
        self.run_for(self.args.minutes * 60, self.began)

    def find_rate(self) -> tuple[float | None, float | None, str]:
        """Steps up while each holds, then halves the gap; returns (highest held, lowest not held, why)."""
        self.begin()
        held: float | None = None
        failed: float | None = None
        reason = ""
        rate = self.args.rate
        steps = 0
        refine = self.args.refine
        while True:
            steps += 1
            if steps > 1:
                self.set_rate(rate)
            first = len(self.rows)
            self.run_for(self.args.step_seconds, time.monotonic(), f"  [step {rate:,.0f}/s]")
            verdict = self.step_verdict(rate, self.rows[first:])
            print(f"  step {rate:,.0f} events/s: {'held' if verdict is None else 'NOT HELD: ' + verdict}", flush=True)
            if verdict is None:
                held = rate
            else:
                failed, reason = rate, verdict
                self.settle()
            if failed is None:
                rate *= self.args.step_factor
                continue
            if held is None or refine <= 0:
                return held, failed, reason
            refine -= 1
            rate = (held + failed) / 2

    def step_verdict(self, rate: float, rows: list[Row]) -> str | None:
        """None if the step held, else why not (judged on its last interval)."""
        last = rows[-1]
        sent = sum(r.enqueued * self.args.interval for r in rows)
        delivered = sum(r.delivered * self.args.interval for r in rows)
        if last.host_lag > STEP_MAX_HOST_LAG or last.enqueued < STEP_MIN_DELIVERED * rate:
            return (
                f"the hosts enqueued {last.enqueued:,.0f}/s ({last.host_lag:.1f} s behind schedule): enqueue is "
                f"the limit with {len(self.hosts)} host(s) (more --hosts commit more at once)"
            )
        if last.oldest > STEP_MAX_OLDEST:
            return f"oldest waiting event {last.oldest:.1f} s old, backlog {last.backlog:,}"
        if sent and delivered < STEP_MIN_DELIVERED * sent:
            return f"delivered {delivered / sent:.0%} of what was enqueued (backlog {last.backlog:,})"
        return None

    def settle(self) -> None:
        """After a step that did not hold: no enqueueing until the backlog is gone (at most DRAIN_SECONDS x 2)."""
        rate = self.rate
        self.set_rate(0.0)
        deadline = time.monotonic() + 2 * DRAIN_SECONDS
        while time.monotonic() < deadline and self.snapshot()[0] > 0:
            self.tick()
            time.sleep(TICK)
        self.tick()
        self._reset_interval()
        self.rate = rate

    def drain(self) -> tuple[int, float]:
        """Hosts stopped: the workers get DRAIN_SECONDS to deliver what is left; returns (backlog, seconds)."""
        for host in self.hosts:
            self.children.stop(host.proc)  # a host sends its last report on the way out
        started = time.monotonic()
        backlog = -1
        while time.monotonic() - started < DRAIN_SECONDS:
            time.sleep(0.5)
            self.tick(hosts_running=False)
            backlog, _ = self.snapshot()
            if backlog == 0 and not self.pending:
                break
        time.sleep(1.0)  # the last answers reach the receiver's books
        self.tick(hosts_running=False)
        return backlog, time.monotonic() - started

    def stop(self) -> list[tuple[str, int | None]]:
        """Every child stopped (workers by SIGTERM, as an operator would); their exit codes."""
        codes = [(f"worker {proc.pid}", self.children.stop(proc)) for proc, _ in self.workers]
        self.children.stop_all()
        with contextlib.suppress(Exception):
            self.monitor.close()
        if self._csv_file is not None:
            self._csv_file.close()
        return codes

    def counts(self) -> tuple[int, dict[str, int]]:
        row = self.monitor.execute(query("count_events", OUTBOX_SCHEMA)).fetchone()
        assert row is not None
        rows = self.monitor.execute(query("count_deliveries", OUTBOX_SCHEMA)).fetchall()
        return int(row[0]), {str(status): int(n) for status, n in rows}


# -- the report ----------------------------------------------------------------------------------------

FIGURES: tuple[tuple[str, str], ...] = (
    ("enqueue p50 (ms)", "enq_p50"),
    ("enqueue p99 (ms)", "enq_p99"),
    ("claim (ms)", "claim_ms"),
    ("claim buffers", "claim_buffers"),
    ("backlog", "backlog"),
    ("commit→arrival p50 (ms)", "lat_p50"),
    ("commit→arrival p99 (ms)", "lat_p99"),
    ("delivered/s", "delivered"),
    ("dead tuples", "dead"),
    ("database (MB)", "db_mb"),
    ("purge (s)", "purge_seconds"),
    ("vacuum (s)", "vacuum_seconds"),
)


def _figure(row: Row, name: str) -> float:
    if name == "db_mb":
        return row.db_bytes / MB
    value = getattr(row, name)
    return math.nan if value is None else float(value)


def vacuum_note(soak: Soak) -> str:
    if soak.autovacuum:
        extra = f"; the bench also VACUUMs every {soak.args.vacuum_every}" if soak.vacuum_every else ""
        return f"autovacuum: on (the server's){extra}"
    if soak.vacuum_every is None:
        return "WARNING: autovacuum is OFF on this server and --vacuum-every off: nothing vacuums, dead rows pile up"
    return (
        f"WARNING: autovacuum is OFF on this server: the bench VACUUMs the four tables every "
        f"{soak.vacuum_every:g} s itself (`vac s` column) as a stand-in; a production server has autovacuum on"
    )


def report(soak: Soak, retention: float, purge_every: float) -> None:
    rows = soak.rows
    if not rows:
        print("\nno interval completed: nothing to report")
        return
    print(f"\nAll intervals ({soak.args.interval:.0f} s each)")
    print(HEADER)
    print(UNITS)
    for row in rows:
        print(format_row(row))
    # The tables fill for the retention window and one purge interval; then they should hold still.
    steady_from = retention + purge_every + soak.args.interval
    steady = [r for r in rows if r.end >= steady_from]
    note = ""
    if len(steady) < 3:
        steady = rows[1:] if len(rows) >= 4 else rows
        note = (
            f" (the run is too short for a steady state, which needs more than {steady_from / 60:.0f} min: "
            "all intervals but the first are compared, and the sizes grow by design)"
        )
    if len(steady) < 2:
        return
    third = max(1, len(steady) // 3)
    first, last = steady[:third], steady[-third:]
    print(f"\nFirst vs last third of the steady state, medians ({len(first)} and {len(last)} interval(s)){note}:")
    for label, name in FIGURES:
        a = [v for v in (_figure(r, name) for r in first) if not math.isnan(v)]
        b = [v for v in (_figure(r, name) for r in last) if not math.isnan(v)]
        if not a or not b:
            print(f"  {label:<26}{'-':>12}{'-':>12}")
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        ratio = mb / ma if ma else (math.inf if mb else 1.0)
        flag = "flat" if 0.8 <= ratio <= 1.25 else ("GROWS" if ratio > 1 else "falls")
        print(f"  {label:<26}{ma:>12,.2f}{mb:>12,.2f}   ×{ratio:.2f} {flag}")
    for table in TABLES:
        ma = statistics.median([(r.sizes[table].table + r.sizes[table].index) / MB for r in first])
        mb = statistics.median([(r.sizes[table].table + r.sizes[table].index) / MB for r in last])
        ratio = mb / ma if ma else (math.inf if mb else 1.0)
        flag = "flat" if 0.8 <= ratio <= 1.25 else ("GROWS" if ratio > 1 else "falls")
        print(f"  {table + ' (MB, t+i)':<26}{ma:>12,.1f}{mb:>12,.1f}   ×{ratio:.2f} {flag}")


def report_disk(soak: Soak, retention: float, purge_every: float) -> None:
    if not soak.rows:
        return
    last = soak.rows[-1]
    kept, by_status = soak.counts()
    total = sum(s.table + s.index for s in last.sizes.values())
    rate = statistics.median([r.enqueued for r in soak.rows[1:]] or [last.enqueued])
    window = rate * (retention + purge_every)
    print(
        f"\nDisk at the end: {total / MB:,.1f} MB in {', '.join(TABLES)} (tables + indexes; "
        + ", ".join(f"{SHORT[t]} {s.table / MB:,.1f}+{s.index / MB:,.1f}" for t, s in last.sizes.items())
        + f"), database {last.db_bytes / MB:,.0f} MB"
    )
    partitions = {t: s.partitions for t, s in last.sizes.items() if s.partitions > 1}
    if partitions:
        print("  partitions: " + ", ".join(f"{t} {n}" for t, n in partitions.items()))
    print(
        f"  events kept: {kept:,}; deliveries by state: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(by_status.items())) or "none")
    )
    print(
        f"  retention window: {soak.args.retention} + purge every {soak.args.purge_every} at {rate:,.0f} events/s "
        f"holds at most ≈ {window:,.0f} events" + (f" ({kept / window:.2f} of that is kept)" if window else "")
    )
    if kept:
        per_event = total / kept
        per_day = per_event * rate * 86_400
        print(
            f"  {per_event:,.0f} bytes per kept event (its delivery, attempt, indexes and the dead space not yet "
            f"reused); at {rate:,.0f} events/s each day of retention would need ≈ {per_day / 1024**3:,.1f} GB (an "
            "upper bound: the dead space is a smaller share of a longer window)"
        )


def report_accounting(soak: Soak, drained: tuple[int, float] | None) -> None:
    print(
        f"\nEvents: {soak.sent:,} enqueued, {soak.arrived:,} arrived, {len(soak.pending):,} not arrived, "
        f"{soak.duplicates + soak.unmatched:,} duplicate arrivals (at least once), "
        f"{soak.unidentified:,} requests without an id"
    )
    if drained is not None:
        backlog, seconds = drained
        state = "everything delivered" if backlog == 0 else f"backlog still {backlog:,}"
        print(f"  after the hosts stopped, the workers had {seconds:.0f} s: {state}")
    if soak.purger.runs or soak.purger.skipped:
        print(
            f"  purge: {soak.purger.runs} run(s), {soak.purger.total_dropped:,} leaves dropped, "
            f"{soak.purger.total_deliveries:,} deliveries deleted one by one, "
            f"{soak.purger.skipped} skipped (still running), {soak.purger.failed} failed"
        )


def report_logs(soak: Soak) -> None:
    """Warnings and errors the workers logged (their JSON lines), most frequent first."""
    tally: dict[str, int] = {}
    for _, log in soak.workers:
        with contextlib.suppress(OSError):
            for line in log.read_text(errors="replace").splitlines():
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    record = {"level": "raw", "event": line[:160]}
                if isinstance(record, dict) and record.get("level") not in ("debug", "info"):
                    key = f"{record.get('level')}: {record.get('event')}"
                    tally[key] = tally.get(key, 0) + 1
    print(f"\nLogs in {soak.log_dir}" + ("" if tally else "; the workers logged no warning or error"))
    for key, n in sorted(tally.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {n:>6} × {key}")


# -- main -----------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _duration(text: str) -> str:
    """A duration as `outbox purge --older-than` takes it (argparse names the flag)."""
    try:
        if parse_duration(text).total_seconds() <= 0:
            raise ValueError(f"{text!r} must be longer than zero")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Long-run soak: hosts enqueue at a fixed rate, workers deliver, purge runs; "
        "a line of figures per interval.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OUTBOX_DATABASE_URL") or DEFAULT_URL,
        help=f"PostgreSQL URL of a superuser ($OUTBOX_DATABASE_URL if set); the bench drops and creates "
        f"the database {SOAK_DB} there",
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="how long to run")
    parser.add_argument("--rate", type=float, default=500.0, help="events/s of all hosts together")
    parser.add_argument("--hosts", type=int, default=2, help="host processes (one connection each)")
    parser.add_argument("--workers", type=int, default=1, help="`outbox run` processes")
    parser.add_argument("--retention", type=_duration, default="5m", help="purge --older-than")
    parser.add_argument(
        "--partition-interval",
        type=_duration,
        default="5m",
        help="the workers' OUTBOX_PARTITION_INTERVAL: leaves this wide are dropped once past the retention, "
        "so a short one reaches the steady state within the run (production: 1d)",
    )
    parser.add_argument("--purge-every", type=_duration, default="1m", help="how often to purge")
    parser.add_argument(
        "--vacuum-every",
        default="auto",
        metavar="DURATION|auto|off",
        help="the bench VACUUMs the outbox tables this often itself; auto: every 1m when the server's "
        "autovacuum is off, else never",
    )
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per line of figures")
    parser.add_argument(
        "--max-lag",
        type=float,
        default=120.0,
        help="seconds the oldest waiting event (or the hosts' schedule) may lag before the run fails",
    )
    parser.add_argument("--csv", metavar="FILE", help="also write every interval's figures to FILE")
    parser.add_argument("--find-rate", action="store_true", help="look for the highest sustained rate instead")
    parser.add_argument("--step-seconds", type=float, default=60.0, help="--find-rate: length of a step")
    parser.add_argument("--step-factor", type=float, default=1.25, help="--find-rate: rate × this per step")
    parser.add_argument("--refine", type=int, default=2, help="--find-rate: halvings after the first step lost")
    args = parser.parse_args(argv)
    faults = []
    if args.minutes <= 0:
        faults.append("--minutes must be more than 0")
    if args.rate <= 0:
        faults.append("--rate must be more than 0 events/s")
    if args.hosts < 1 or args.workers < 1:
        faults.append("--hosts and --workers must be at least 1")
    if args.interval < 5:
        faults.append("--interval must be at least 5 seconds")
    if args.vacuum_every not in ("auto", "off"):
        try:
            if parse_duration(args.vacuum_every).total_seconds() <= 0:
                faults.append("--vacuum-every must be longer than zero")
        except ValueError as exc:
            faults.append(f"--vacuum-every: {exc} (or auto, off)")
    if args.max_lag <= 0:
        faults.append("--max-lag must be more than 0 seconds")
    if args.find_rate and args.step_factor <= 1:
        faults.append("--step-factor must be more than 1")
    if args.find_rate and args.step_seconds < 10:
        faults.append("--step-seconds must be at least 10")
    if faults:
        parser.error("\n  ".join(["one line per fault:", *faults]))
    if args.find_rate:
        args.interval = min(args.interval, args.step_seconds / 2)  # a step is judged on its last line
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_host":
        return host_main(argv[1:])
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    retention = parse_duration(args.retention).total_seconds()
    purge_every = parse_duration(args.purge_every).total_seconds()
    soak = Soak(args, args.database_url)
    what = "finding the highest sustained rate" if args.find_rate else f"{args.minutes:g} min"
    print(
        f"soak: {what}; {args.rate:,.0f} events/s from {args.hosts} host(s), {args.workers} worker(s), "
        f"purge --older-than {args.retention} every {args.purge_every}; database {SOAK_DB}; "
        f"{os.cpu_count()} CPUs (shared: figures are noisy)"
    )
    status = 0
    drained: tuple[int, float] | None = None
    found: tuple[float | None, float | None, str] | None = None
    try:
        print(
            f"purge s: the whole `outbox purge` run, cron's view, of which ≈ {soak.purger.startup_seconds():.1f} s "
            "is the command starting (`outbox --help` takes that long here)"
        )
        soak.start(args.database_url)
        print(vacuum_note(soak))
        print(HEADER)
        print(UNITS, flush=True)
        if args.find_rate:
            found = soak.find_rate()
        else:
            soak.soak()
        drained = soak.drain()
    except SoakFailed as exc:
        print(f"\nFAILED: {exc}", flush=True)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping hosts, workers, purge and receiver", flush=True)
        status = 130
    except psycopg.Error as exc:  # the bench's own connection: the database went away
        print(f"\nFAILED: database error: {exc}", flush=True)
        status = 1
    finally:
        codes = soak.stop()
    bad = [f"{name} exit {code}" for name, code in codes if code != 0]
    if bad:
        print("  workers after SIGTERM: " + ", ".join(bad))
    report(soak, retention, purge_every)
    with contextlib.suppress(psycopg.Error):
        soak.monitor = psycopg.connect(soak.url, autocommit=True)
        report_disk(soak, retention, purge_every)
        soak.monitor.close()
    report_accounting(soak, drained)
    if hasattr(soak, "autovacuum"):
        print("  " + vacuum_note(soak) + f"; {soak.vacuumer.runs} bench VACUUM(s), {soak.vacuumer.skipped} skipped")
    report_logs(soak)
    if found is not None:
        held, failed, reason = found
        if held is None:
            print(f"\nHighest sustained rate: below {args.rate:,.0f} events/s ({reason})")
        elif failed is None:
            print(f"\nHighest sustained rate: at least {held:,.0f} events/s")
        else:
            print(f"\nHighest sustained rate: {held:,.0f} events/s; {failed:,.0f}/s did not hold ({reason})")
    return status


if __name__ == "__main__":
    sys.exit(main())
