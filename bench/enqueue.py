"""Host-side enqueue cost: what `outbox.enqueue` adds to the host's own transaction.

The targets of the issue:

* a host transaction that inserts a business row plus one event costs at most
  1.1x the same transaction with a plain INSERT of the same JSON into a bare table;
* `enqueue_many` of 100 events reaches 50,000 events/s.

Measured (all on psycopg 3 connections that are not in autocommit mode):

single connection, one transaction = INSERT of a business row, then
  A   `outbox.enqueue(conn, CloudEvent(...))` (the CloudEvent is built in the loop:
      the host pays the validation and serialization);
  B   a plain `INSERT INTO bench_host.bare_events (body) VALUES (%s)` of the same
      JSON document (a dict built and serialized with orjson in the loop);
  AK  `outbox.enqueue` into a schema whose event catalogue has 200 types, the benchmarked one with the
      shipped zaak-gekoppeld JSON Schema (validated at every enqueue; the catalogue cached, OUTBOX_CATALOGUE_TTL);
  A'  `outbox.enqueue` while a worker is idle, so every commit sends a NOTIFY
      (schema `bench_outbox_idle`, whose idle_workers table has a row). Without
      an idle worker (A: busy workers, or none) enqueue sends no NOTIFY;
  then COMMIT. C (diagnostic) is one tiny INSERT + COMMIT: the commit floor.
batches of 100 events, one transaction each: `enqueue_many` against a plain
  `INSERT ... SELECT unnest(...)::json` with binary (`%b`) and text (`%s`) arrays;
  M0 / Bb0 send events / JSON built once, outside the loop. M0 is the figure
  the 50,000 events/s target is checked against: the library's cost (validate,
  serialize, insert), as the peer figure is that of the INSERT alone.
Django (section `django`, the example host's model on Django's psycopg 3 connection), one
  `transaction.atomic()` = `Onderwerpobject.objects.create(...)` (one model save), then
  D   `outbox.django.process_cloudevent(...)` (the drop-in for notifications-api-common);
  DB  the same JSON document as notifications-api-common builds it, INSERTed through Django's
      cursor into the bare table;
  DE  (diagnostic) as DB, but into the outbox's own events table: what the table costs;
  all leave the atomic block with a COMMIT. Target: cost(D)/cost(DB) <= 1.10.
K concurrent connections (threads), A / B / A' as above. A transaction that
  notified takes, at commit, a heavyweight lock on "database 0" (PreCommit_Notify
  in PostgreSQL's async.c: cluster-wide) and holds it until after its commit
  record is flushed, so notifying transactions commit one at a time and cannot
  share a WAL flush (group commit).

Method (as ../shared/PEERS.md): before every timed run TRUNCATE, pre-load
(optional, `--preload`), ANALYZE, CHECKPOINT; warm-up before the first timed
run; each figure is the median of `--runs` runs, the kinds interleaved (the
order rotates from run to run).

    python bench/enqueue.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/enqueue.py          # embedded PostgreSQL in .outbox/pgdata (run from the repository)

The outbox lives in the schema `bench_outbox`, the host tables in `bench_host`;
the host tables are dropped and created anew at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

import outbox
from outbox import CloudEvent
from worker.runtime.database import database_url

OUTBOX_SCHEMA = "bench_outbox"
IDLE_SCHEMA = "bench_outbox_idle"
CATALOGUE_SCHEMA = "bench_outbox_catalogue"  # 200 event types, a schema on the benchmarked one
HOST_SCHEMA = "bench_host"
EVENT_TYPE = "nl.overheid.zaken.zaak-gekoppeld"
SOURCE = "urn:nld:oin:01823288444:openklant"
LINK_BASE = "https://openklant.example.nl/klantinteracties/api/v1/onderwerpobjecten/"
TARGET_EVENT_BYTES = 600

HOST_DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {HOST_SCHEMA}",
    f"DROP TABLE IF EXISTS {HOST_SCHEMA}.onderwerpobject, {HOST_SCHEMA}.bare_events",
    f"""CREATE TABLE {HOST_SCHEMA}.onderwerpobject (
            id            bigserial PRIMARY KEY,
            url           text      NOT NULL,
            label         text      NOT NULL,
            identificator jsonb     NOT NULL)""",
    f"""CREATE TABLE {HOST_SCHEMA}.bare_events (
            id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            body json   NOT NULL)""",
)
TABLES = (
    f"{HOST_SCHEMA}.onderwerpobject",
    f"{HOST_SCHEMA}.bare_events",
    f"{OUTBOX_SCHEMA}.events",
    f"{IDLE_SCHEMA}.events",
    f"{CATALOGUE_SCHEMA}.events",
)

INSERT_HOST = f"INSERT INTO {HOST_SCHEMA}.onderwerpobject (url, label, identificator) VALUES (%s, %s, %s)"
INSERT_BARE = f"INSERT INTO {HOST_SCHEMA}.bare_events (body) VALUES (%s)"
INSERT_TINY = f"INSERT INTO {HOST_SCHEMA}.bare_events (body) VALUES ('{{}}')"
INSERT_BARE_MANY_BINARY = f"INSERT INTO {HOST_SCHEMA}.bare_events (body) SELECT unnest(%b::text[])::json"
INSERT_BARE_MANY_TEXT = f"INSERT INTO {HOST_SCHEMA}.bare_events (body) SELECT unnest(%s::text[])::json"
Conn = psycopg.Connection[Any]
TxFn = Callable[[Conn], None]


# -- the event -----------------------------------------------------------------------


def _now_rfc3339() -> str:
    # As CloudEvent does for a missing `time`.
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _data(zaak: str, link: str, label: str) -> dict[str, str]:
    return {"zaak": f"urn:uuid:{zaak}", "linkTo": link, "label": label, "linkObjectType": "Onderwerpobject"}


def _pad_label() -> str:
    """A label that makes the serialized event TARGET_EVENT_BYTES long (uuids and time are fixed-width)."""
    base = "Onderwerpobject voor zaak"
    zaak, obj = str(uuid.uuid4()), str(uuid.uuid4())
    probe = CloudEvent(
        type=EVENT_TYPE,
        source=SOURCE,
        subject=zaak,
        datacontenttype="application/json",
        data=_data(zaak, LINK_BASE + obj, base),
    )
    missing = TARGET_EVENT_BYTES - len(probe.serialize().encode())
    return base + (" " + "x" * (missing - 1) if missing > 1 else "")


LABEL = _pad_label()


def make_event(zaak: str, link: str) -> CloudEvent:
    return CloudEvent(
        type=EVENT_TYPE,
        source=SOURCE,
        subject=zaak,
        datacontenttype="application/json",
        data=_data(zaak, link, LABEL),
    )


def make_json(zaak: str, link: str) -> str:
    """The same document as `make_event(...).serialize()`, without the CloudEvent checks."""
    document = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": EVENT_TYPE,
        "subject": zaak,
        "time": _now_rfc3339(),
        "datacontenttype": "application/json",
        "data": _data(zaak, link, LABEL),
    }
    # The same serializer as CloudEvent, so A and B pay the same for the JSON.
    return orjson.dumps(document).decode()


def _business_row(conn: Conn) -> tuple[str, str]:
    """The host's own change: one Onderwerpobject that points at a Zaak."""
    zaak = str(uuid.uuid4())
    link = LINK_BASE + str(uuid.uuid4())
    ident = {
        "codeObjecttype": "zaak",
        "codeRegister": "openzaak",
        "codeSoortObjectId": "uuid",
        "objectId": zaak,
    }
    conn.execute(INSERT_HOST, (link, LABEL, Jsonb(ident)))
    return zaak, link


# -- one transaction of each kind -------------------------------------------------------


def tx_enqueue(conn: Conn) -> None:
    zaak, link = _business_row(conn)
    outbox.enqueue(conn, make_event(zaak, link), schema=OUTBOX_SCHEMA)
    conn.commit()


def tx_bare(conn: Conn) -> None:
    zaak, link = _business_row(conn)
    conn.execute(INSERT_BARE, (make_json(zaak, link),))
    conn.commit()


def tx_enqueue_idle_worker(conn: Conn) -> None:
    zaak, link = _business_row(conn)
    outbox.enqueue(conn, make_event(zaak, link), schema=IDLE_SCHEMA)
    conn.commit()


def tx_enqueue_catalogue(conn: Conn) -> None:
    zaak, link = _business_row(conn)
    outbox.enqueue(conn, make_event(zaak, link), schema=CATALOGUE_SCHEMA)
    conn.commit()


def load_catalogue(url: str, size: int) -> None:
    """`size` event types in CATALOGUE_SCHEMA, the benchmarked type with the shipped zaak-gekoppeld schema."""
    shipped = json.loads((Path(outbox.__file__).parent / "catalogues" / "zaak-links.json").read_text())
    with psycopg.connect(url) as conn:
        conn.execute(f"DELETE FROM {CATALOGUE_SCHEMA}.event_types")
        for entry in [
            *shipped,
            *({"name": f"t{i}", "slug": f"t{i}", "type": f"nl.overheid.bench.t{i}"} for i in range(size - 2)),
        ]:
            conn.execute(
                f"INSERT INTO {CATALOGUE_SCHEMA}.event_types (slug, type, name, schema) VALUES (%s, %s, %s, %s)",
                (
                    entry["slug"],
                    entry["type"],
                    entry["name"],
                    Jsonb(entry.get("schema")) if entry.get("schema") else None,
                ),
            )


def tx_commit_floor(conn: Conn) -> None:
    conn.execute(INSERT_TINY)
    conn.commit()


def _batch_links(n: int) -> list[tuple[str, str]]:
    return [(str(uuid.uuid4()), LINK_BASE + str(uuid.uuid4())) for _ in range(n)]


def batch_enqueue_many(size: int) -> TxFn:
    def run(conn: Conn) -> None:
        outbox.enqueue_many(conn, [make_event(z, link) for z, link in _batch_links(size)], schema=OUTBOX_SCHEMA)
        conn.commit()

    return run


def batch_enqueue_many_prebuilt(size: int) -> TxFn:
    events = [make_event(z, link) for z, link in _batch_links(size)]

    def run(conn: Conn) -> None:
        outbox.enqueue_many(conn, events, schema=OUTBOX_SCHEMA)
        conn.commit()

    return run


def batch_bare_prebuilt(size: int, query: str) -> TxFn:
    bodies = [make_json(z, link) for z, link in _batch_links(size)]

    def run(conn: Conn) -> None:
        conn.execute(query, (bodies,))
        conn.commit()

    return run


def batch_bare(size: int, query: str) -> TxFn:
    def run(conn: Conn) -> None:
        conn.execute(query, ([make_json(z, link) for z, link in _batch_links(size)],))
        conn.commit()

    return run


# -- running ----------------------------------------------------------------------------


@dataclass
class Kind:
    label: str
    name: str
    fn: TxFn
    seconds: list[float] = field(default_factory=list)


@dataclass
class Section:
    title: str
    unit: str  # "tx" or "events"
    per_run: int  # transactions per run
    per_tx: int  # units per transaction
    kinds: list[Kind]
    concurrent: bool = False  # µs/tx is then wall time divided by all transactions


def reset_tables(maint: Conn, preload: int) -> None:
    """TRUNCATE, pre-load, ANALYZE, CHECKPOINT: every timed run starts from the same state."""
    maint.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    if preload:
        # Routed events, as an outbox that has been running holds; the same documents in the bare table.
        body = make_json(str(uuid.uuid4()), LINK_BASE + str(uuid.uuid4()))
        maint.execute(
            f"INSERT INTO {OUTBOX_SCHEMA}.events (event, routed_at) SELECT %s::json, now() FROM generate_series(1, %s)",
            (body, preload),
        )
        maint.execute(
            f"INSERT INTO {HOST_SCHEMA}.bare_events (body) SELECT %s::json FROM generate_series(1, %s)",
            (body, preload),
        )
        maint.execute(
            f"INSERT INTO {HOST_SCHEMA}.onderwerpobject (url, label, identificator) "
            "SELECT %s || gen_random_uuid(), %s, '{}'::jsonb FROM generate_series(1, %s)",
            (LINK_BASE, LABEL, preload),
        )
    maint.execute(f"ANALYZE {', '.join(TABLES)}")
    try:
        maint.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        print("  (warning: CHECKPOINT not permitted for this user; skipped)", file=sys.stderr)


def run_serial(conn: Conn, fn: TxFn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn(conn)
    return time.perf_counter() - start


def run_concurrent(conns: Sequence[Conn], fn: TxFn, per_conn: int) -> float:
    """`per_conn` transactions on each connection, one thread per connection; wall time."""
    barrier = threading.Barrier(len(conns) + 1)
    errors: list[BaseException] = []

    def work(conn: Conn) -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(per_conn):
                fn(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(conn,), daemon=True) for conn in conns]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=60)
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def measure(
    section: Section,
    runner: Callable[[TxFn, int], float],
    maint: Conn,
    *,
    runs: int,
    warmup: int,
    preload: int,
) -> None:
    for kind in section.kinds:
        runner(kind.fn, warmup)
    for run in range(runs):
        shift = run % len(section.kinds)
        for kind in section.kinds[shift:] + section.kinds[:shift]:
            reset_tables(maint, preload)
            kind.seconds.append(runner(kind.fn, section.per_run))
            print(
                f"  run {run + 1}/{runs} {kind.label:<3} "
                f"{section.per_run * section.per_tx / kind.seconds[-1]:>10,.0f} {section.unit}/s",
                file=sys.stderr,
                flush=True,
            )


def _us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def report(section: Section) -> dict[str, float]:
    """Prints the section's table; returns median µs per transaction by kind label."""
    n = section.per_run
    rate = f"{section.unit}/s"
    print(f"\n{section.title}")
    per_tx = "wall µs/tx" if section.concurrent else "µs/tx"
    print(f"  {'':<59} {rate:>12} {per_tx:>11}   runs ({per_tx})")
    medians: dict[str, float] = {}
    for kind in section.kinds:
        seconds = statistics.median(kind.seconds)
        medians[kind.label] = _us(seconds, n)
        runs = " ".join(f"{_us(s, n):.0f}" for s in kind.seconds)
        print(
            f"  {kind.label:<4}{kind.name:<55} {n * section.per_tx / seconds:>12,.0f} "
            f"{medians[kind.label]:>11,.0f}   {runs}"
        )
    return medians


def ratio_line(section: Section, a: str, b: str) -> float:
    kinds = {kind.label: kind for kind in section.kinds}
    medians = statistics.median(kinds[a].seconds) / statistics.median(kinds[b].seconds)
    paired = [sa / sb for sa, sb in zip(kinds[a].seconds, kinds[b].seconds, strict=True)]
    print(
        f"  cost({a})/cost({b}) = {medians:.3f}   "
        f"(per run: {' '.join(f'{r:.3f}' for r in paired)}; median {statistics.median(paired):.3f})"
    )
    return medians


def python_costs(n: int) -> None:
    """The Python work alone, no database: what A and B pay before sending anything."""
    zaak, link = str(uuid.uuid4()), LINK_BASE + str(uuid.uuid4())
    start = time.perf_counter()
    for _ in range(n):
        make_event(zaak, link).serialize()
    event_us = _us(time.perf_counter() - start, n)
    start = time.perf_counter()
    for _ in range(n):
        make_json(zaak, link)
    json_us = _us(time.perf_counter() - start, n)
    print("\nPython work per event, no database")
    print(f"  CloudEvent(...) + serialize() (A, enqueue_many): {event_us:6.1f} µs")
    print(f"  dict + orjson.dumps           (B, bare inserts): {json_us:6.1f} µs")


# -- the whole benchmark --------------------------------------------------------------


def connect(url: str, args: argparse.Namespace) -> Conn:
    """A bench connection: not autocommit, the chosen prepare_threshold and synchronous_commit."""
    conn = psycopg.connect(url, autocommit=False)
    conn.prepare_threshold = args.prepare_threshold
    if args.synchronous_commit:
        conn.execute("SELECT set_config('synchronous_commit', %s, false)", (args.synchronous_commit,))
        conn.commit()
    return conn


def describe(conn: Conn, args: argparse.Namespace) -> None:
    rows = conn.execute(
        "SELECT version(), current_setting('server_version'), current_setting('synchronous_commit'), "
        "current_setting('fsync'), current_setting('wal_sync_method'), current_setting('shared_buffers'), "
        "current_setting('max_connections')"
    ).fetchone()
    conn.commit()
    assert rows is not None
    full, version, sync_commit, fsync, wal_sync, shared_buffers, max_conn = rows
    print(f"PostgreSQL {version}: {full}")
    print(
        f"  synchronous_commit={sync_commit} fsync={fsync} wal_sync_method={wal_sync} "
        f"shared_buffers={shared_buffers} max_connections={max_conn}"
    )
    print(
        f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), libpq {psycopg.pq.version()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    threshold = "never" if args.prepare_threshold is None else args.prepare_threshold
    size = len(make_event(str(uuid.uuid4()), LINK_BASE + str(uuid.uuid4())).serialize().encode())
    listener = "on" if args.listener else "off"
    print(f"event: {size} bytes ({EVENT_TYPE}); prepare_threshold={threshold}; listener={listener}")
    print(
        f"runs={args.runs} per kind (median, interleaved); warm-up={args.warmup} tx per kind; "
        f"preload={args.preload} rows"
    )


def prepared_statements(conn: Conn) -> str:
    row = conn.execute(
        "SELECT count(*), "
        "coalesce(bool_or(statement LIKE '%insert_event(%'), false), "
        "coalesce(bool_or(statement LIKE '%pg_notify%' AND statement LIKE '%unnest%'), false) "
        "FROM pg_prepared_statements"
    ).fetchone()
    conn.commit()
    assert row is not None
    return f"{row[0]} prepared statements; insert_event prepared: {row[1]}; insert_events prepared: {row[2]}"


class Listener:
    """A connection LISTENing on the outbox channel and draining it, as an idle worker would."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        channel = sql.Identifier(f"{OUTBOX_SCHEMA}.events")
        self.conn.execute(sql.SQL("LISTEN {}").format(channel))
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            for _ in self.conn.notifies(timeout=0.2):
                self.received += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


def single_section(n: int) -> Section:
    return Section(
        f"Single connection: business row + event, then COMMIT ({n} tx per run)",
        "tx",
        n,
        1,
        [
            Kind("A", "outbox.enqueue", tx_enqueue),
            Kind("B", "plain INSERT of the same JSON into a bare table", tx_bare),
            Kind("A'", "outbox.enqueue, a worker idle: NOTIFY at commit", tx_enqueue_idle_worker),
            Kind("AK", "outbox.enqueue, 200-type catalogue, schema on its type", tx_enqueue_catalogue),
        ],
    )


def single_section_with_floor(n: int) -> Section:
    section = single_section(n)
    section.kinds.append(Kind("C", "one INSERT of '{}' + COMMIT: commit floor (diagnostic)", tx_commit_floor))
    return section


def batch_section(n: int, size: int) -> Section:
    unnest = "INSERT ... SELECT unnest({}::text[])::json"
    return Section(
        f"Batches of {size} events, one transaction each, one connection ({n} batches per run)",
        "events",
        n,
        size,
        [
            Kind("M", f"outbox.enqueue_many({size} events)", batch_enqueue_many(size)),
            Kind("Bb", unnest.format("%b") + " (binary)", batch_bare(size, INSERT_BARE_MANY_BINARY)),
            Kind("Bt", unnest.format("%s") + " (text)", batch_bare(size, INSERT_BARE_MANY_TEXT)),
            Kind("M0", "enqueue_many, events built once", batch_enqueue_many_prebuilt(size)),
            Kind(
                "Bb0",
                "binary unnest, JSON built once (diagnostic)",
                batch_bare_prebuilt(size, INSERT_BARE_MANY_BINARY),
            ),
        ],
    )


def concurrent_section(k: int, per_conn: int) -> Section:
    section = single_section(per_conn * k)
    section.concurrent = True
    section.title = (
        f"{k} concurrent connections (threads): business row + event, then COMMIT ({per_conn * k} tx per run)"
    )
    return section


# -- Django: the ORM transaction of a Django host -----------------------------------------


def django_setup(url: str) -> None:
    """Django configured on `url` with the example host's app, migrated; the outbox in OUTBOX_SCHEMA."""
    import django
    from django.conf import settings
    from django.core.management import call_command
    from psycopg import conninfo

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "django_host"))
    params = conninfo.conninfo_to_dict(url)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params.get("dbname", ""),
                "USER": params.get("user", ""),
                "PASSWORD": params.get("password", ""),
                "HOST": params.get("host", ""),
                "PORT": str(params.get("port", "")),
            }
        },
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "outbox.django", "onderwerpen"],
        OUTBOX_SCHEMA=OUTBOX_SCHEMA,
        NOTIFICATIONS_SOURCE=SOURCE,
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    call_command("migrate", verbosity=0)


def django_tables() -> tuple[str, ...]:
    from onderwerpen.models import Onderwerpobject

    return (Onderwerpobject._meta.db_table,)


def _django_change() -> tuple[str, str]:
    from onderwerpen.models import Onderwerpobject

    zaak = str(uuid.uuid4())
    row = Onderwerpobject.objects.create(
        onderwerpobjectidentificator_code_objecttype="zaak",
        onderwerpobjectidentificator_code_soort_object_id="uuid",
        onderwerpobjectidentificator_object_id=zaak,
        onderwerpobjectidentificator_code_register="openzaak",
    )
    return zaak, LINK_BASE + str(row.uuid)


def tx_django_process_cloudevent(_: Conn) -> None:
    from django.db import transaction

    from outbox.django import process_cloudevent

    with transaction.atomic():
        zaak, link = _django_change()
        process_cloudevent(EVENT_TYPE, subject=zaak, data=_data(zaak, link, LABEL))


def tx_django_bare(_: Conn, insert: str = INSERT_BARE) -> None:
    from django.db import connection, transaction

    with transaction.atomic():
        zaak, link = _django_change()
        # notifications-api-common's document (construct_cloudevent), serialized as CloudEvent does.
        document = {
            "id": str(uuid.uuid4()),
            "source": SOURCE,
            "specversion": "1.0",
            "type": EVENT_TYPE,
            "subject": zaak,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "datacontenttype": "application/json",
            "data": _data(zaak, link, LABEL),
        }
        with connection.cursor() as cur:
            cur.execute(insert, [orjson.dumps(document).decode()])


def tx_django_events_table(conn: Conn) -> None:
    tx_django_bare(conn, f"INSERT INTO {OUTBOX_SCHEMA}.events (event) VALUES (%s)")


def django_section(n: int) -> Section:
    return Section(
        f"Django: transaction.atomic() = one model save + the event ({n} tx per run)",
        "tx",
        n,
        1,
        [
            Kind("D", "save() + outbox.django.process_cloudevent", tx_django_process_cloudevent),
            Kind("DB", "save() + INSERT of the same JSON through Django's cursor", tx_django_bare),
            Kind("DE", "same, INSERT into the outbox's events table (diagnostic)", tx_django_events_table),
        ],
    )


SECTIONS = ("single", "batch", "concurrent", "django")


def bench(url: str, args: argparse.Namespace) -> tuple[float | None, float | None]:
    """Runs the chosen sections and prints their tables; returns the two target figures (None: not run)."""
    outbox.migrate(url, schema=OUTBOX_SCHEMA)
    outbox.migrate(url, schema=IDLE_SCHEMA)
    outbox.migrate(url, schema=CATALOGUE_SCHEMA)
    load_catalogue(url, 200)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DELETE FROM {OUTBOX_SCHEMA}.idle_workers")
        c.execute(
            f"INSERT INTO {IDLE_SCHEMA}.idle_workers (worker_id, listen_pid) VALUES ('bench', 0) ON CONFLICT DO NOTHING"
        )
    k = args.concurrency
    chosen = {
        "single": single_section_with_floor(args.transactions),
        "batch": batch_section(args.batches, args.batch_size),
        "concurrent": concurrent_section(k, max(1, args.concurrent_transactions // k)),
        "django": django_section(args.transactions),
    }
    sections = {name: chosen[name] for name in SECTIONS if name in args.sections}
    warmups = {
        "single": args.warmup,
        "batch": max(1, args.warmup // 10),
        "concurrent": max(k, args.warmup // 2),
        "django": args.warmup,
    }
    prepared = ""

    with psycopg.connect(url, autocommit=True) as maint:
        for statement in HOST_DDL:
            maint.execute(statement)
        listener = Listener(url) if args.listener else None
        try:
            with connect(url, args) as conn:
                describe(conn, args)
                python_costs(20_000)

                def serial(fn: TxFn, n: int) -> float:
                    return run_serial(conn, fn, n)

                if "django" in sections:
                    django_setup(url)
                    global TABLES
                    TABLES = (*TABLES, *django_tables())
                for name in ("single", "batch", "django"):
                    if name in sections:
                        print(f"\n[{sections[name].title}]", file=sys.stderr)
                        measure(
                            sections[name], serial, maint, runs=args.runs, warmup=warmups[name], preload=args.preload
                        )
                prepared = prepared_statements(conn)

            if "concurrent" in sections:
                conns = [connect(url, args) for _ in range(k)]
                try:

                    def parallel(fn: TxFn, n: int) -> float:
                        return run_concurrent(conns, fn, max(1, n // k))

                    section = sections["concurrent"]
                    print(f"\n[{section.title}]", file=sys.stderr)
                    measure(
                        section, parallel, maint, runs=args.runs, warmup=warmups["concurrent"], preload=args.preload
                    )
                finally:
                    for c in conns:
                        c.close()
        finally:
            if listener is not None:
                listener.close()
                print(f"\nlistener received {listener.received:,} notifications", file=sys.stderr)

    ratio = many_rate = None
    if "single" in sections:
        report(sections["single"])
        ratio = ratio_line(sections["single"], "A", "B")
        ratio_line(sections["single"], "A", "A'")
        ratio_line(sections["single"], "AK", "A")
        catalogue_ratio = ratio_line(sections["single"], "AK", "B")
        verdict = "PASS" if catalogue_ratio <= 1.10 else "FAIL"
        print(f"  catalogue target: cost(AK)/cost(B) = {catalogue_ratio:.3f} <= 1.10: {verdict}")
    if "batch" in sections:
        medians = report(sections["batch"])
        ratio_line(sections["batch"], "M", "Bb")
        # The target is the library's own cost, like the peer figure (85k/s for a binary batched INSERT
        # of JSON built beforehand): enqueue_many of 100 ready CloudEvents (M0). M adds building them.
        many_rate = sections["batch"].per_tx / medians["M0"] * 1e6
    if "single" in sections or "batch" in sections:
        print(f"  bench connection: {prepared}")
    if "concurrent" in sections:
        report(sections["concurrent"])
        ratio_line(sections["concurrent"], "A", "B")
        ratio_line(sections["concurrent"], "A", "A'")
    if "django" in sections:
        report(sections["django"])
        django_ratio = ratio_line(sections["django"], "D", "DB")
        ratio_line(sections["django"], "D", "DE")
        ratio_line(sections["django"], "DE", "DB")
        verdict = "PASS" if django_ratio <= 1.10 else "FAIL"
        print(f"  Django target: cost(D)/cost(DB) = {django_ratio:.3f} <= 1.10: {verdict}")
    return ratio, many_rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Host-side cost of outbox.enqueue / enqueue_many against plain INSERTs of the same JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OUTBOX_DATABASE_URL"),
        help="libpq URL (default: $OUTBOX_DATABASE_URL, else the embedded PostgreSQL in .outbox/pgdata)",
    )
    parser.add_argument("--transactions", type=int, default=3000, help="transactions per single-connection run")
    parser.add_argument("--batches", type=int, default=300, help="batches per enqueue_many run")
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per kind (the median is reported)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up transactions per kind (batches: a tenth)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections (threads) in the concurrent runs")
    parser.add_argument(
        "--concurrent-transactions",
        type=int,
        default=3200,
        help="transactions per concurrent run, all threads",
    )
    parser.add_argument("--preload", type=int, default=0, help="rows put in each table before every timed run")
    parser.add_argument(
        "--prepare-threshold",
        type=lambda s: None if s.lower() in ("none", "never", "-1") else int(s),
        default=5,
        help="psycopg prepare_threshold of the bench connections (0: always, none: never)",
    )
    parser.add_argument(
        "--listener",
        action="store_true",
        help="keep a connection LISTENing on the outbox channel during the runs",
    )
    parser.add_argument(
        "--synchronous-commit",
        choices=("on", "off", "local", "remote_write", "remote_apply"),
        help="set synchronous_commit on the bench connections (default: the server's setting); "
        "off takes the WAL flush out of every COMMIT and leaves the CPU cost",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="which measurements to run",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    with database_url(args.database_url) as url:
        ratio, many_rate = bench(url, args)
    if ratio is not None or many_rate is not None:
        print("\nTargets")
    if ratio is not None:
        print(f"  ratio cost(A)/cost(B) = {ratio:.3f} <= 1.10: {'PASS' if ratio <= 1.10 else 'FAIL'}")
    if many_rate is not None:
        verdict = "PASS" if many_rate >= 50_000 else "FAIL"
        print(f"  enqueue_many of 100 ready events (M0) = {many_rate:,.0f} events/s >= 50,000 events/s: {verdict}")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
