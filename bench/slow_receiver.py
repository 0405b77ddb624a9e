"""A slow receiver, as a new user meets one: issue 11's run, for adaptive and fixed concurrency limits.

2,000 events (each its own subject) for one subscription whose receiver is Python's
`http.server.ThreadingHTTPServer` on 127.0.0.1 (listen backlog 5, HTTP/1.0: a connection per request)
answering 204, drained by one `outbox run` with its defaults. Per configuration it prints the drain time
(from spawning the worker until every delivery is recorded delivered), the attempts that timed out or
failed otherwise, the duplicates the receiver got (requests it answered that we then sent again), and
where the subscription's limit ended and why. Configurations:

* adaptive: the worker's defaults (adaptive limit, OUTBOX_SUBSCRIPTION_CONCURRENCY 200 its ceiling);
* fixed N: OUTBOX_ADAPTIVE_CONCURRENCY=false, OUTBOX_SUBSCRIPTION_CONCURRENCY=N (16, 32, 64, 200);
* misbehaving: adaptive and fixed 200 again, with a second subscription next to the healthy one whose
  receiver never answers (our side times out after 10 s): the drain is the healthy subscription's, and
  its duplicates are what the misbehaving one made it suffer.

The last column counts the healthy subscription's limit cuts by reason (from the worker's log);
`BENCH_TRACE=file` appends every run's trace (seconds, delivered, limit, in flight, every 50 ms) and the
worker's log to `file`. Each figure is the median of `--runs` runs, interleaved. Everything lives in the database
`bench_slow_receiver`, dropped and created anew. The figures are noisy
on a shared machine: the worker, PostgreSQL and the receiver (a thread of this process, GIL-bound as
such receivers are) share the CPUs.

    python bench/slow_receiver.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/slow_receiver.py --only adaptive "fixed 32" --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg import conninfo, sql

import outbox
from outbox import CloudEvent, Subscription
from worker.store import subscriptions as subscription_store
from worker.store.secret_box import SecretBox

DATABASE = "bench_slow_receiver"
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "adaptive": {},
    "fixed 16": {"OUTBOX_ADAPTIVE_CONCURRENCY": "false", "OUTBOX_SUBSCRIPTION_CONCURRENCY": "16"},
    "fixed 32": {"OUTBOX_ADAPTIVE_CONCURRENCY": "false", "OUTBOX_SUBSCRIPTION_CONCURRENCY": "32"},
    "fixed 64": {"OUTBOX_ADAPTIVE_CONCURRENCY": "false", "OUTBOX_SUBSCRIPTION_CONCURRENCY": "64"},
    "fixed 200": {"OUTBOX_ADAPTIVE_CONCURRENCY": "false", "OUTBOX_SUBSCRIPTION_CONCURRENCY": "200"},
    "misbehaving, adaptive": {},
    "misbehaving, fixed 200": {"OUTBOX_ADAPTIVE_CONCURRENCY": "false", "OUTBOX_SUBSCRIPTION_CONCURRENCY": "200"},
}


class Counting(ThreadingHTTPServer):
    daemon_threads = True
    received: Counter[str]
    lock: threading.Lock


class Healthy(BaseHTTPRequestHandler):
    """Reads the event, counts its id, answers 204: the small municipal receiver."""

    server: Counting

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        event_id = json.loads(body).get("id", "?")
        with self.server.lock:
            self.server.received[event_id] += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Hanging(Healthy):
    """Takes the request and never answers in time."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(60)


@contextlib.contextmanager
def receiver(handler: type[BaseHTTPRequestHandler]) -> Iterator[Counting]:
    server = Counting(("127.0.0.1", 0), handler)  # request_queue_size 5, as http.server has it
    server.received, server.lock = Counter(), threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url_of(server: Counting) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/hook"


@dataclass
class Outcome:
    seconds: float | None  # None: not drained in time
    timeouts: int
    errors: int
    duplicates: int
    limit: str
    cuts: str  # the healthy subscription's limit cuts by reason, from the worker's log


def with_dbname(url: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def fresh_database(server_url: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = with_dbname(server_url, DATABASE)
    outbox.migrate(url)
    return url


def subscribe(url: str, callback_url: str) -> str:
    subscription = Subscription.create(callback_url=callback_url, types=["*"], allow_insecure=True)
    with psycopg.connect(url) as conn:
        return subscription_store.add(conn, subscription, "outbox", SecretBox())


def run_one(url: str, name: str, events: int, drain_timeout: float) -> Outcome:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox.events, outbox.deliveries, outbox.subscriptions CASCADE")
    misbehaving = name.startswith("misbehaving")
    with receiver(Healthy) as healthy, receiver(Hanging) as hanging:
        healthy_id = subscribe(url, url_of(healthy))
        if misbehaving:
            subscribe(url, url_of(hanging))
        batch = [
            CloudEvent(type="nl.overheid.zaken.zaak-gekoppeld", source="urn:nld:oin:01823288444:bench",
                       subject=str(uuid.uuid4()), data={"n": n})
            for n in range(events)
        ]  # fmt: skip
        with psycopg.connect(url) as conn:
            outbox.enqueue_many(conn, batch)
        env = {
            **os.environ,
            "OUTBOX_DATABASE_URL": url,
            "OUTBOX_ALLOWED_NETWORKS": "127.0.0.0/8",
            **CONFIGURATIONS[name],
        }
        with tempfile.TemporaryFile() as log:
            began = time.monotonic()
            worker = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env, stdout=log, stderr=log)
            seconds = None
            trace: list[tuple[float, int, float, int]] = []  # (seconds, delivered, limit, in flight) per 50 ms
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    while time.monotonic() - began < drain_timeout:
                        row = conn.execute(
                            "SELECT count(*) FILTER (WHERE status = 'delivered'),"
                            "       (SELECT concurrency_limit FROM outbox.subscription_pace"
                            "         WHERE subscription_id = %s),"
                            "       count(*) FILTER (WHERE status = 'delivering')"
                            "  FROM outbox.deliveries WHERE subscription_id = %s",
                            (healthy_id, healthy_id),
                        ).fetchone()
                        if row:
                            trace.append((time.monotonic() - began, row[0], row[1] or 0.0, row[2]))
                        if row and row[0] >= events:
                            seconds = time.monotonic() - began
                            break
                        time.sleep(0.05)
            finally:
                worker.terminate()
                try:
                    worker.wait(40)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
            log.seek(0)
            if os.environ.get("BENCH_TRACE"):  # the limit over time, and the worker's log, to study it
                with open(os.environ["BENCH_TRACE"], "a") as kept:
                    kept.write(f"# {name}\n" + "".join(f"{t:.2f} {n} {lim:.1f} {f}\n" for t, n, lim, f in trace))
                    kept.write(log.read().decode(errors="replace"))
                log.seek(0)
            cuts = Counter(
                line["reason"]
                for line in map(_json_line, log.read().splitlines())
                if line.get("event") == "concurrency limit cut" and line.get("subscription") == str(healthy_id)
            )
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE a.error LIKE 'timeout%%'),"
                "       count(*) FILTER (WHERE a.error IS NOT NULL OR a.status_code >= 300)"
                "  FROM outbox.delivery_attempts a JOIN outbox.deliveries d ON d.id = a.delivery_id"
                " WHERE d.subscription_id = %s",
                (healthy_id,),
            ).fetchone()
            limits = conn.execute(
                "SELECT s.callback_url, p.concurrency_limit, p.limit_reason FROM outbox.subscriptions s"
                "  LEFT JOIN outbox.subscription_pace p ON p.subscription_id = s.id ORDER BY s.created_at"
            ).fetchall()
        timeouts, errors = (int(row[0]), int(row[1])) if row else (0, 0)
        duplicates = sum(n - 1 for n in healthy.received.values() if n > 1)
        shown = [
            f"{limit:.1f} ({reason})" if limit is not None else "-" for callback, limit, reason in limits
        ]  # healthy first, then the misbehaving one
        cut_text = ",".join(f"{reason} {n}" for reason, n in sorted(cuts.items())) or "-"
        return Outcome(seconds, timeouts, errors, duplicates, " / ".join(shown), cut_text)


def _json_line(raw: bytes) -> dict[str, Any]:
    try:
        line = json.loads(raw)
    except ValueError:
        return {}
    return line if isinstance(line, dict) else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OUTBOX_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a server where the bench may create the database bench_slow_receiver",
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1, help="runs per configuration (the median is printed)")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--only", nargs="*", choices=sorted(CONFIGURATIONS), help="configurations to run")
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    names = args.only or list(CONFIGURATIONS)
    print(f"{args.events} events, ThreadingHTTPServer (backlog 5) answering 204; cpus={os.cpu_count()}; noisy")
    # Runs interleaved (each round runs every configuration once): the machine's load drifts.
    results: dict[str, list[Outcome]] = {name: [] for name in names}
    for _ in range(args.runs):
        for name in names:
            results[name].append(run_one(url, name, args.events, args.drain_timeout))
    print(
        f"{'configuration':24} {'drain s':>8} {'timeouts':>8} {'errors':>7} {'dupl.':>6}"
        "  limit at the end (why); cuts (last run)"
    )
    for name in names:
        outcomes = results[name]
        drained = [o.seconds for o in outcomes if o.seconds is not None]
        complete = len(drained) == len(outcomes)
        seconds = f"{statistics.median(drained):8.2f}" if complete else f"{'>' + str(args.drain_timeout):>8}"
        timeouts = statistics.median(o.timeouts for o in outcomes)
        errors = statistics.median(o.errors for o in outcomes)
        duplicates = statistics.median(o.duplicates for o in outcomes)
        print(
            f"{name:24} {seconds} {timeouts:8.0f} {errors:7.0f} {duplicates:6.0f}"
            f"  {outcomes[-1].limit}; {outcomes[-1].cuts}",
            flush=True,
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
