"""`outbox serve`'s intake: POST /api/v1/cloudevents throughput and latency.

One `outbox serve` process and PostgreSQL on this machine; the load comes from another process (a
lean HTTP/1.1 client on asyncio streams, keep-alive, one connection per simulated client).

    python bench/intake.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/intake.py      # $OUTBOX_DATABASE_URL, else the embedded PostgreSQL in .outbox/pgdata
    python bench/intake.py --duration 10 --clients 64

Figures: single structured events (64 clients, closed loop), batches of 100 events, and the latency
of single events at half the measured single-event rate (open loop). CPU seconds per request of the
service process, the PostgreSQL backends and the load generator say where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
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

from worker.runtime.database import database_url

HERE = Path(__file__).resolve().parent
SCHEMA = "bench_intake"
CLIENT = "bench-producer"
SECRET = "bench-secret-0123456789-abcdefghijklmnop"  # noqa: S105 (a throwaway client)
EVENT_TYPE = "nl.overheid.zaken.zaak-gekoppeld"


_DATA = f'{{"zaak":"urn:uuid:{uuid.uuid4()}","onderwerpobject":"urn:uuid:{uuid.uuid4()}","padding":"{"x" * 300}"}}'
_SUBJECT = str(uuid.uuid4())


def event_json(n: int, run: str) -> bytes:
    """~600 bytes, as the peer figures (PEERS.md) use; only the id differs (the generator must stay cheap)."""
    return (
        f'{{"specversion":"1.0","id":"{run}-{n}","source":"urn:nld:oin:00000001823288444000:systeem:openklant",'
        f'"type":"{EVENT_TYPE}","subject":"{_SUBJECT}","time":"2026-01-01T00:00:00Z",'
        f'"datacontenttype":"application/json","dataref":null,"data":{_DATA}}}'
    ).encode()


def request_bytes(port: int, token: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST /api/v1/cloudevents HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _load(port: int, clients: int, duration: float, batch: int, rate: float, run: str) -> dict[str, Any]:
    token = jwt.encode({"client_id": CLIENT, "iat": int(time.time())}, SECRET, algorithm="HS256")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = 0
    start = time.perf_counter()
    stop_at = start + duration
    interval = clients / rate if rate else 0.0

    async def one(k: int) -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        next_at = start + interval * k / clients
        while True:
            if interval:
                next_at += interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if time.perf_counter() >= stop_at:
                break
            if batch == 1:
                counter += 1
                data = request_bytes(port, token, event_json(counter, run), "application/cloudevents+json")
            else:
                events = []
                for _ in range(batch):
                    counter += 1
                    events.append(event_json(counter, run))
                body = b"[" + b",".join(events) + b"]"
                data = request_bytes(port, token, body, "application/cloudevents-batch+json")
            began = time.perf_counter()
            status = await _exchange(reader, writer, data)
            latencies.append(time.perf_counter() - began)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(one(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "latencies": latencies, "statuses": statuses}


def _generator(port: int, clients: int, duration: float, batch: int, rate: float, run: str, out: Any) -> None:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    cpu = time.process_time()
    result = runner(_load(port, clients, duration, batch, rate, run))
    result["cpu"] = time.process_time() - cpu
    out.send(result)


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu(conn: psycopg.Connection[Any]) -> float:
    """CPU seconds of every backend of this server (same machine: /proc)."""
    total = 0.0
    for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL").fetchall():
        with contextlib.suppress(FileNotFoundError, IndexError, ValueError, PermissionError):
            total += _cpu_of(pid)
    return total


def measure(
    args: argparse.Namespace, port: int, server_pid: int, batch: int, clients: int, rate: float
) -> dict[str, Any]:
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {SCHEMA}.events, {SCHEMA}.intake_ids, {SCHEMA}.deliveries CASCADE")
        conn.execute("CHECKPOINT")
        server_cpu, pg_cpu = _cpu_of(server_pid), _postgres_cpu(conn)
        here, there = multiprocessing.Pipe()
        run = uuid.uuid4().hex[:8]
        process = multiprocessing.Process(
            target=_generator, args=(port, clients, args.duration, batch, rate, run, there)
        )
        process.start()
        result = here.recv()
        process.join()
        result["server_cpu"] = _cpu_of(server_pid) - server_cpu
        result["pg_cpu"] = _postgres_cpu(conn) - pg_cpu
        stored = conn.execute(f"SELECT count(*) FROM {SCHEMA}.events").fetchone()
        result["stored"] = stored[0] if stored else 0
    return result


def report(label: str, result: dict[str, Any], batch: int) -> float:
    latencies = sorted(result["latencies"])
    requests = len(latencies)
    per_s = requests / result["elapsed"]
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0.0
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0
    bad = {s: n for s, n in result["statuses"].items() if s != 201}
    us = 1e6 / max(1, requests)
    print(
        f"{label:<34} {per_s:>8,.0f} req/s {per_s * batch:>9,.0f} events/s   p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        f"   stored {result['stored']:,}{'  NOT 201: ' + str(bad) if bad else ''}"
    )
    print(
        f"{'':<34} CPU per request: service {result['server_cpu'] * us:6.0f} µs, PostgreSQL "
        f"{result['pg_cpu'] * us:6.0f} µs, load generator {result['cpu'] * us:6.0f} µs"
    )
    return per_s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OUTBOX_DATABASE_URL"),
        help="libpq URL (default: $OUTBOX_DATABASE_URL, else the embedded PostgreSQL in .outbox/pgdata)",
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--batch-clients", type=int, default=16)
    parser.add_argument("--pool-size", type=int, default=8)
    args = parser.parse_args()
    with database_url(args.database_url) as url:
        args.database_url = url
        run(args)


def run(args: argparse.Namespace) -> None:

    outbox = [sys.executable, "-m", "worker", "--database-url", args.database_url, "--schema", SCHEMA]
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    subprocess.run([*outbox, "migrate"], check=True, capture_output=True)
    env = {**os.environ, "OUTBOX_CLIENT_SECRET": SECRET}
    subprocess.run([*outbox, "clients", "add", CLIENT, "--scope", "notificaties.publiceren"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [*outbox, "serve", "--port", str(port), "--rate-limit", "0", "--pool-size", str(args.pool_size),
         "--log-level", "WARNING"],
        env={**os.environ, "OUTBOX_SECRET_KEY": ""},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("outbox serve did not start") from None
                time.sleep(0.1)
        print(
            f"outbox serve (pool {args.pool_size}) on this machine, {os.cpu_count()} CPUs; {args.duration:g} s per run"
        )
        measure(args, port, server.pid, 1, args.clients, 0)  # warm-up
        single = report(
            f"single events, {args.clients} clients", measure(args, port, server.pid, 1, args.clients, 0), 1
        )
        report(
            f"batches of 100, {args.batch_clients} clients",
            measure(args, port, server.pid, 100, args.batch_clients, 0),
            100,
        )
        half = single / 2
        report(
            f"single events at {half:,.0f}/s (half)",
            measure(args, port, server.pid, 1, args.clients, half),
            1,
        )
        print("p99 targets: >= 2,000 single events/s, >= 20,000 events/s in batches, p99 <= 20 ms at half load")
    finally:
        server.terminate()
        server.wait(30)
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        print(f"statistics: median of one run each; run it three times for a median of three ({statistics.__name__})")


if __name__ == "__main__":
    main()
