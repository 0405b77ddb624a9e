"""`outbox serve`'s consumers (issue 22): verified + mapped + committed POST /hooks/{endpoint} requests per second.

One `outbox serve` process (default pool size) and PostgreSQL on this machine; the load comes from another
process: a lean HTTP/1.1 client on asyncio streams (uvloop), keep-alive, one connection per simulated sender,
closed loop. Every request is pre-built (and pre-signed) in the generator process before its clock starts, so
what is timed is sending bytes and reading answers, not HMACs.

    python bench/consumers.py                      # postgresql://postgres@127.0.0.1:5432/postgres, its own database
    python bench/consumers.py --database-url postgresql://postgres@db:5432/postgres
    python bench/consumers.py --quick              # 3 s runs, one each
    python bench/consumers.py --profile /tmp/prof  # and one extra run per method under py-spy (not counted)

The database `bench_consumers` is created (dropped first if it exists), migrated, and dropped at the end. It
holds one catalogue entry with a JSON Schema, the test suite's payment-provider JSONata mapping and three
consumers of it, one per verification method: `standard-webhooks` (webhook-id/-timestamp/-signature,
HMAC-SHA256), `hmac` (GitHub's `X-Hub-Signature-256: sha256=<hex>`) and `bearer`. Each request has its own
webhook-id and its own payment id, so each stores a new event; the `duplicate` run sends Standard Webhooks
requests whose webhook-ids were all recorded before it (the replay path: verified and mapped, nothing
stored). The baseline is POST /api/v1/cloudevents (a ZGW JWT) with the event the mapping produces, so the
difference is what verification + mapping cost. Before the timed runs the generator alone is measured against
a trivial HTTP server (fixed 202 answer) to show it is not the limit.

Figures: requests/s (median of the runs, interleaved), p50/p99 latency of the median run at the fixed
concurrency, and CPU per request of the service process, the PostgreSQL server's processes and the load
generator (they share the machine's CPUs). After every run the events table must hold exactly the number
of requests answered `accepted` (asserted).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import itertools
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import psycopg
from psycopg import conninfo, sql

import outbox
from outbox._catalogue import EventType
from worker.store import catalogue as catalogue_store
from worker.store import consumers as consumer_store
from worker.store.secret_box import SecretBox

DATABASE = "bench_consumers"
SCHEMA = "outbox"
CLIENT = "bench-producer"
CLIENT_SECRET = "bench-secret-0123456789-abcdefghijklmnop"  # noqa: S105 (throwaway credentials)
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
GITHUB_SECRET = "It's a Secret to Everybody, 2026"  # noqa: S105
TOKEN = "psp-bearer-token-8a0WWCKMgh1EIBlD2g1b6y"  # noqa: S105
TYPE = "nl.example.betalingen.betaling-ontvangen"
SOURCE = "urn:nld:oin:00000001234567890000:systeem:psp"
# tests/service/test_hooks.py's payment provider (Mollie/Adyen-like): the payment id is the sender's stable id.
EXPRESSION = """{
  "id": body.id,
  "subject": body.metadata.zaak,
  "time": body.paidAt,
  "datacontenttype": "application/json",
  "data": {"betaling": body.id, "bedrag": $number(body.amount.value), "valuta": body.amount.currency,
           "status": body.status, "event": headers."x-psp-event"}
}"""
SCHEMA_OF_DATA = {
    "type": "object",
    "required": ["betaling", "bedrag", "valuta", "status"],
    "properties": {
        "betaling": {"type": "string", "pattern": "^tr_"},
        "bedrag": {"type": "number", "exclusiveMinimum": 0},
        "valuta": {"enum": ["EUR"]},
        "status": {"enum": ["open", "paid", "failed", "expired"]},
        "event": {"type": "string"},
    },
}
CONSUMERS = {  # endpoint → verification
    "psp-sw": {"method": "standard-webhooks", "secrets": [WHSEC]},
    "psp-hmac": {"method": "hmac", "header": "X-Hub-Signature-256", "prefix": "sha256=", "secrets": [GITHUB_SECRET]},
    "psp-bearer": {"method": "bearer", "tokens": [TOKEN]},
}
# label → (what the generator sends, whether every request is a replay)
METHODS = {
    "cloudevents (baseline)": ("cloudevents", False),
    "standard-webhooks": ("standard-webhooks", False),
    "hmac (X-Hub-Signature-256)": ("hmac", False),
    "bearer": ("bearer", False),
    "standard-webhooks, all duplicates": ("standard-webhooks", True),
}
DUPLICATES = 2_000  # distinct requests stored before a duplicate run, then sent again and again


# -- the requests (built in the generator's process, before its clock starts) ------------------------------


def payment(pid: str, zaak: str) -> bytes:
    return (
        f'{{"id":"{pid}","status":"paid","amount":{{"value":"12.50","currency":"EUR"}},'
        f'"paidAt":"2026-12-07T10:00:00Z","metadata":{{"zaak":"{zaak}"}},"description":"Leges paspoort",'
        f'"method":"ideal","profileId":"pfl_QkEhN94Ba","sequenceType":"oneoff"}}'
    ).encode()


def cloudevent(pid: str, zaak: str) -> bytes:
    """The event the mapping makes of `payment(pid, zaak)` (type and source from the catalogue entry)."""
    return (
        f'{{"specversion":"1.0","id":"{pid}","source":"{SOURCE}","type":"{TYPE}","subject":"{zaak}",'
        f'"time":"2026-12-07T10:00:00Z","datacontenttype":"application/json","data":{{"betaling":"{pid}",'
        f'"bedrag":12.5,"valuta":"EUR","status":"paid","event":"payment.paid"}}}}'
    ).encode()


def _sw_key() -> bytes:
    return base64.b64decode(WHSEC.removeprefix("whsec_"))


def request_bytes(kind: str, port: int, n: int, run: str, token: str) -> bytes:
    pid, zaak = f"tr_{run}_{n}", str(uuid.uuid4())  # each payment its own zaak: the subject differs, as it would
    if kind == "cloudevents":
        body = cloudevent(pid, zaak)
        head = f"POST /api/v1/cloudevents HTTP/1.1\r\nAuthorization: Bearer {token}\r\n"
        head += "Content-Type: application/cloudevents+json\r\n"
    else:
        body = payment(pid, zaak)
        path = {"standard-webhooks": "psp-sw", "hmac": "psp-hmac", "bearer": "psp-bearer", "trivial": "trivial"}
        head = f"POST /hooks/{path[kind]} HTTP/1.1\r\nContent-Type: application/json\r\nX-PSP-Event: payment.paid\r\n"
        if kind in ("standard-webhooks", "trivial"):
            msg_id, stamp = f"msg_{run}_{n}", str(int(time.time()))
            mac = hmac.new(_sw_key(), f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
            head += f"webhook-id: {msg_id}\r\nwebhook-timestamp: {stamp}\r\n"
            head += f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\n"
        elif kind == "hmac":
            digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
            head += f"X-Hub-Signature-256: sha256={digest}\r\nX-GitHub-Event: payment\r\n"
        elif kind == "bearer":
            head += f"Authorization: Bearer {TOKEN}\r\n"
    head += f"Host: 127.0.0.1:{port}\r\nUser-Agent: bench-consumers\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# -- the load generator (its own process) -------------------------------------------------------------------


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> tuple[int, bytes]:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return int(head[9:12]), body


async def _load(port: int, clients: int, duration: float, requests: list[bytes], cycle: bool) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    answers: collections.Counter[str] = collections.Counter()
    sample: dict[int, bytes] = {}
    counter = itertools.count()
    exhausted = False
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    start = time.perf_counter()
    stop_at = start + duration

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal exhausted
        while time.perf_counter() < stop_at:
            i = next(counter)
            if i >= len(requests):
                if not cycle:
                    exhausted = True
                    break
                i %= len(requests)
            began = time.perf_counter()
            status, body = await _exchange(reader, writer, requests[i])
            latencies.append(time.perf_counter() - began)
            statuses[status] += 1
            if b'"accepted"' in body or status == 201:
                answers["accepted"] += 1
            elif b'"duplicate"' in body:
                answers["duplicate"] += 1
            if status >= 300:
                sample.setdefault(status, body[:300])
        writer.close()

    await asyncio.gather(*(one(r, w) for r, w in connections))
    elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "latencies": latencies, "statuses": dict(statuses), "answers": dict(answers),
            "exhausted": exhausted, "sample": sample}  # fmt: skip


def _generator(spec: dict[str, Any], out: Any) -> None:
    import uvloop

    token = jwt.encode({"client_id": CLIENT, "iat": int(time.time())}, CLIENT_SECRET, algorithm="HS256")
    if spec["replay"] is not None:
        requests = spec["replay"]
    else:
        count = spec["count"]
        requests = [request_bytes(spec["kind"], spec["port"], n, spec["run"], token) for n in range(count)]
    out.send("ready")
    cpu = time.process_time()
    result = uvloop.run(_load(spec["port"], spec["clients"], spec["duration"], requests, spec["cycle"]))
    result["cpu"] = time.process_time() - cpu
    result["requests"] = requests if spec["keep"] else None
    out.send(result)


def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one load in a fresh process; returns when it is done."""
    here, there = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_generator, args=(spec, there))
    process.start()
    assert here.recv() == "ready"
    machine = _machine_cpu()
    result: dict[str, Any] = here.recv()
    result["machine_cpu"] = _machine_cpu() - machine
    process.join()
    return result


# -- a trivial server, to see what the generator alone reaches ---------------------------------------------

_TRIVIAL_BODY = b'{"id":"tr_0","status":"accepted"}'
_TRIVIAL = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(_TRIVIAL_BODY),
    _TRIVIAL_BODY,
)


class _Trivial(asyncio.Protocol):
    """Answers every HTTP/1.1 request (Content-Length bodies) with the same 202."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(_TRIVIAL)


def _trivial_server(port: int) -> None:
    import uvloop

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


# -- measuring ---------------------------------------------------------------------------------------------


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu(conn: psycopg.Connection[Any]) -> float:
    """CPU seconds of this database's backends and the server's own processes (WAL writer, checkpointer…; same
    machine: /proc). Other databases' backends (someone else's tests) are left out: they count as others'."""
    total = 0.0
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL AND (datname IS NULL OR datname = current_database())"
    ).fetchall()
    for (pid,) in rows:
        with contextlib.suppress(FileNotFoundError, IndexError, ValueError, PermissionError):
            total += _cpu_of(pid)
    return total


def _machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (not idle, not waiting for I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit: float, threshold: float = 0.25) -> float:
    """Waits (at most `limit` s) until the machine is nearly idle over one second (other users of a shared
    machine); returns the CPUs busy in the last second looked at."""
    deadline = time.monotonic() + limit
    while True:
        before = _machine_cpu()
        time.sleep(1.0)
        busy = _machine_cpu() - before
        if busy < threshold or time.monotonic() > deadline:
            return busy


def _events(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(f"SELECT count(*) FROM {SCHEMA}.events").fetchone()
    return int(row[0]) if row else 0


def _clean(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"TRUNCATE {SCHEMA}.events, {SCHEMA}.intake_ids, {SCHEMA}.consumer_receipts, {SCHEMA}.consumer_failures,"
        f" {SCHEMA}.deliveries CASCADE"
    )


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, port: int, server_pid: int) -> None:
        self.args = args
        self.url = url
        self.port = port
        self.server_pid = server_pid

    def _spec(self, kind: str, duration: float, **extra: Any) -> dict[str, Any]:
        spec = {"kind": kind, "port": self.port, "clients": self.args.clients, "duration": duration,
                "run": uuid.uuid4().hex[:10], "count": int(self.args.max_rate * duration) + 1000, "cycle": False,
                "replay": None, "keep": False}  # fmt: skip
        spec.update(extra)
        return spec

    def measure(self, kind: str, replay: bool, profile: Path | None = None) -> dict[str, Any]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            _clean(conn)
            stored_before = 0
            spec = self._spec(kind, self.args.duration)
            if replay:  # the requests of a first load, all stored, are then sent again and again
                first = generate(self._spec(kind, 60.0, count=DUPLICATES, keep=True))
                assert first["answers"].get("accepted") == DUPLICATES, first["statuses"]
                stored_before = _events(conn)
                assert stored_before == DUPLICATES, stored_before
                spec.update(replay=first["requests"], cycle=True)
            # No ANALYZE here: on the emptied tables it would record 0 rows, and the statements' cached plans (made
            # for empty tables) then cost more with every row a run adds: measured, PostgreSQL's CPU per
            # request half as much again as without it. TRUNCATE leaves the row count unknown, as on a table
            # autovacuum has not looked at yet.
            conn.execute("CHECKPOINT")
            if profile is None and self.args.quiet_wait > 0:
                wait_quiet(self.args.quiet_wait)
            server_cpu, pg_cpu = _cpu_of(self.server_pid), _postgres_cpu(conn)
            spy = None
            if profile is not None:
                spy = subprocess.Popen(
                    [self.args.py_spy, "record", "--pid", str(self.server_pid), "--format", "raw", "--rate", "250",
                     "--duration", str(int(self.args.duration)), "--output", str(profile), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            result = generate(spec)
            if spy is not None:
                spy.wait(60)
            result["server_cpu"] = _cpu_of(self.server_pid) - server_cpu
            result["pg_cpu"] = _postgres_cpu(conn) - pg_cpu
            # what else ran meanwhile (other users of the machine; py-spy), in CPUs
            others = result["machine_cpu"] - result["server_cpu"] - result["pg_cpu"] - result["cpu"]
            result["others"] = max(0.0, others) / result["elapsed"]
            result["stored"] = _events(conn) - stored_before
        accepted = result["answers"].get("accepted", 0)
        print(f"    {kind}{' (duplicates)' if replay else ''}: {len(result['latencies']) / result['elapsed']:,.0f} "
              f"req/s, statuses {result['statuses']}, {accepted:,} accepted, {result['stored']:,} new events; "
            f"others used {result['others']:.2f} CPUs",
              flush=True)  # fmt: skip
        if result["sample"]:
            print(f"      e.g. {result['sample']}")
        assert result["stored"] == accepted, (
            f"the events table holds {result['stored']} new events for {accepted} accepted requests"
        )
        if replay:
            assert accepted == 0
            assert result["answers"].get("duplicate", 0) == len(result["latencies"])
        if result["exhausted"]:
            print(f"      NOTE: the {spec['count']:,} pre-built requests ran out; raise --max-rate")
        return result


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [len(r["latencies"]) / r["elapsed"] for r in results]
    median_rate = statistics.median(rates)
    middle = min(results, key=lambda r: abs(len(r["latencies"]) / r["elapsed"] - median_rate))
    latencies = sorted(middle["latencies"])
    n = max(1, len(latencies))
    requests = sum(len(r["latencies"]) for r in results) or 1
    return {
        "rate": median_rate,
        "rates": rates,
        "p50": latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
        "server_us": sum(r.get("server_cpu", 0.0) for r in results) * 1e6 / requests,
        "pg_us": sum(r.get("pg_cpu", 0.0) for r in results) * 1e6 / requests,
        "gen_us": sum(r["cpu"] for r in results) * 1e6 / requests,
        "stored": sum(r.get("stored", 0) for r in results),
        "others": max(r.get("others", 0.0) for r in results),
        "serve_busy": statistics.median(r.get("server_cpu", 0.0) / r["elapsed"] for r in results),
        "pg_busy": statistics.median(r.get("pg_cpu", 0.0) / r["elapsed"] for r in results),
        "n": n,
    }


def table(rows: dict[str, dict[str, Any]], baseline: float | None, runs: int, clients: int) -> None:
    print()
    print(f"{'':<34} {'req/s':>7} {'vs base':>7} {'p50 ms':>7} {'p99 ms':>7} │ CPU µs per request: {'serve':>5} "
          f"{'PG':>5} {'gen':>4} │ CPUs busy: {'serve':>5} {'PG':>4} {'others':>6} │ runs (req/s)")  # fmt: skip
    for label, s in rows.items():
        trivial = "trivial" in label
        versus = f"{s['rate'] / baseline:7.0%}" if baseline and "baseline" not in label and not trivial else ""
        spread = " / ".join(f"{r:,.0f}" for r in s["rates"])
        if trivial:
            cpu, busy = f"{'-':>5} {'-':>5} {s['gen_us']:4.0f}", f"{'-':>5} {'-':>4} {'-':>6}"
        else:
            cpu = f"{s['server_us']:5.0f} {s['pg_us']:5.0f} {s['gen_us']:4.0f}"
            busy = f"{s['serve_busy']:5.2f} {s['pg_busy']:4.2f} {s['others']:6.2f}"
        print(f"{label:<34} {s['rate']:>7,.0f} {versus:>7} {s['p50']:7.2f} {s['p99']:7.2f} │ {'':20}{cpu} │ {'':11}"
              f"{busy} │ {spread}")  # fmt: skip
    print(f"(median of {runs} interleaved runs; p50/p99 of the median run; {clients} connections, closed loop; "
          f"{os.cpu_count()} CPUs in all; 'others': the most any run saw used by other processes)")  # fmt: skip


# -- profile summary ---------------------------------------------------------------------------------------

_FRAMES = {  # a frame name (function (file)) part → what it is
    "verify (worker/consumers/verification.py": "verification",
    "make_event (worker/consumers/intake.py": "mapping + CloudEvent (make_event)",
    "_evaluate (worker/consumers/mapping.py": "  JSONata evaluation",
    "taken (worker/consumers/intake.py": "event → JSON (taken)",
    "admit_one_async (worker/consumers/intake.py": "catalogue admit (JSON Schema)",
    "store_events_async (worker/consumers/intake.py": "consumer_events statement (incl. waiting)",
    "_write (worker/service/hooks.py": "writer group (incl. waiting)",
    "_count (worker/service/hooks.py": "metrics counters",
    "observe (": "metrics histogram",
    "_body (worker/service/hooks.py": "reading the body",
    "from_scope (worker/consumers/verification.py": "Inbound.from_scope (headers)",
    "data_received (": "uvicorn: parsing",
    "run_asgi (": "uvicorn: ASGI app (all of the request)",
    "_run_once (": "event loop (all)",
    "select (": "event loop: waiting (idle)",
}


def profile_summary(path: Path) -> None:
    if not path.exists():
        print(f"  (no profile at {path})")
        return
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1].split(":")[0]] += count
        seen = set()
        for frame in frames:
            for part, name in _FRAMES.items():
                if part in frame and name not in seen:
                    seen.add(name)
                    inclusive[name] += count
    print(f"  {path.name}: {total} samples; inclusive share of samples:")
    for name in _FRAMES.values():
        if inclusive[name]:
            print(f"    {inclusive[name] / total:6.1%}  {name}")
    print("  most frequent innermost frames (self time):")
    for frame, count in own.most_common(12):
        print(f"    {count / total:6.1%}  {frame[:110]}")


# -- setup -------------------------------------------------------------------------------------------------


def _url(base: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(base)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.1)


def prepare(url: str) -> None:
    outbox.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        catalogue_store.add(
            conn,
            SCHEMA,
            EventType(slug="betaling-ontvangen", type=TYPE, name="Betaling ontvangen", source=SOURCE,
                      schema=SCHEMA_OF_DATA),
        )  # fmt: skip
        consumer_store.add_mapping(conn, SCHEMA, "psp-payment", EXPRESSION, ["X-PSP-Event"])
        for endpoint, verification in CONSUMERS.items():
            document = {
                "name": f"PSP {endpoint}",
                "endpoint": endpoint,
                "mappingId": "psp-payment",
                "targetType": "event-type",
                "targetId": "betaling-ontvangen",
                "verification": verification,
            }
            consumer_store.add(conn, SCHEMA, document, SecretBox())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OUTBOX_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help=f"a libpq URL of the server; the database {DATABASE!r} is made there (default: $OUTBOX_DATABASE_URL, "
        "else the local server on 127.0.0.1:5432)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--clients", type=int, default=64, help="connections (concurrent senders)")
    parser.add_argument("--pool-size", type=int, default=None, help="serve's --pool-size (default: serve's own)")
    parser.add_argument("--max-rate", type=float, default=5000, help="requests/s pre-built per run (an upper bound)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, one each")
    parser.add_argument("--only", action="append", choices=list(METHODS), help="measure only these (repeatable)")
    parser.add_argument("--profile", type=Path, help="a directory: one extra run per method under py-spy")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each timed run, wait up to this many seconds for the machine to be idle (0: do not)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    args = parser.parse_args()
    if args.quick:
        args.duration, args.runs = 3.0, 1
    base = args.database_url
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = _url(base, DATABASE)
    try:
        run(args, url)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def run(args: argparse.Namespace, url: str) -> None:
    prepare(url)
    outbox_cli = [sys.executable, "-m", "worker", "--database-url", url, "--schema", SCHEMA]
    env = {**os.environ, "OUTBOX_CLIENT_SECRET": CLIENT_SECRET, "OUTBOX_SECRET_KEY": ""}
    subprocess.run([*outbox_cli, "clients", "add", CLIENT, "--scope", "notificaties.publiceren"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    methods = {label: METHODS[label] for label in (args.only or METHODS)}
    rows: dict[str, dict[str, Any]] = {}

    # 1. The generator alone, against a trivial server in its own process (Standard Webhooks requests).
    trivial_port = free_port()
    trivial = multiprocessing.Process(target=_trivial_server, args=(trivial_port,), daemon=True)
    trivial.start()
    try:
        wait_for(trivial_port, "the trivial server")
        spec = {"kind": "trivial", "port": trivial_port, "clients": args.clients, "duration": args.duration,
                "run": "t", "count": 20_000, "cycle": True, "replay": None, "keep": False}  # fmt: skip
        print(f"{os.cpu_count()} CPUs shared by the load generator, outbox serve and PostgreSQL; "
              f"{args.duration:g} s per run, {args.clients} connections", flush=True)  # fmt: skip
        print("  the generator alone, against a trivial HTTP server (one process, fixed 202):", flush=True)
        if args.quiet_wait > 0:
            wait_quiet(args.quiet_wait)
        rows["trivial server (generator ceiling)"] = summary([generate(spec)])
    finally:
        trivial.terminate()
        trivial.join()

    # 2. One `outbox serve`.
    port = free_port()
    serve = [*outbox_cli, "serve", "--port", str(port), "--rate-limit", "0", "--log-level", "WARNING"]
    if args.pool_size is not None:
        serve += ["--pool-size", str(args.pool_size)]
    server = subprocess.Popen(serve, env={**os.environ, "OUTBOX_SECRET_KEY": ""})
    try:
        wait_for(port, "outbox serve")
        bench = Bench(args, url, port, server.pid)
        print(f"  outbox serve (pid {server.pid}, pool {args.pool_size or 'default'}): warm-up", flush=True)
        warm = argparse.Namespace(**{**vars(args), "duration": min(2.0, args.duration), "quiet_wait": 0})
        for kind, _replay in methods.values():  # a short real run per method, not counted
            Bench(warm, url, port, server.pid).measure(kind, False)
        results: dict[str, list[dict[str, Any]]] = {label: [] for label in methods}
        for round_ in range(args.runs):
            print(f"  round {round_ + 1} of {args.runs}", flush=True)
            for label, (kind, replay) in methods.items():
                results[label].append(bench.measure(kind, replay))
        for label in methods:
            rows[label] = summary(results[label])
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            print(f"  profiles (py-spy {args.py_spy}, one extra run each, not counted):", flush=True)
            for kind, replay in methods.values():
                path = args.profile / f"{kind}{'-duplicates' if replay else ''}.txt"
                bench.measure(kind, replay, profile=path)
                profile_summary(path)
    finally:
        server.terminate()
        server.wait(30)
    baseline = rows.get("cloudevents (baseline)", {}).get("rate")
    table(rows, baseline, args.runs, args.clients)
    total = sum(s["stored"] for label, s in rows.items() if "trivial" not in label)
    print(f"events stored in the timed runs: {total:,}, each run's count equal to its accepted requests (asserted)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
