"""`outbox demo`: the whole flow on the embedded PostgreSQL, in one command.

Migrates (schema `outbox_demo`, made anew), starts the reference receiver, registers it, runs the
example Open Klant host (Onderwerpobjecten linked to and unlinked from Zaken, some transactions
rolled back), runs the worker with a progress line, and ends with what was delivered, in order,
and `outbox status`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import psycopg
from psycopg import sql

from outbox import Subscription, migrate
from outbox.zaken import CloudEventSettings
from worker.cli import status as status_report
from worker.daemon.runner import Worker
from worker.daemon.settings import WorkerSettings
from worker.delivery.handshake import handshake
from worker.delivery.safety import AddressPolicy, parse_networks
from worker.store import subscriptions as subscription_store
from worker.store.secret_box import SecretBox

SCHEMA = "outbox_demo"
HOST_SCHEMA = "demo_host"
TOKEN = "Bearer demo-" + uuid.uuid4().hex
SOURCE = "urn:nld:oin:01823288444:openklant"
ORIGIN = "outbox-demo.localhost"
BULK = 300  # extra links, to watch the progress line move


def _load_example_host() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "examples" / "open_klant_host.py"
    if not path.is_file():
        raise click.ClickException("the demo runs from a checkout of the repository (examples/ is missing)")
    spec = importlib.util.spec_from_file_location("open_klant_host", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["open_klant_host"] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in (SCHEMA, HOST_SCHEMA):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOST_SCHEMA)))
    migrate(url, schema=SCHEMA)


def _run_host(url: str, host: ModuleType) -> tuple[int, dict[str, str]]:
    """The host's transactions; returns how many events they committed, and the Zaken by letter."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    settings = CloudEventSettings(enable_cloud_events=True, notifications_source=SOURCE)
    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(url, options=f"-c search_path={HOST_SCHEMA}"),
    )
    host.Base.metadata.create_all(engine)
    zaak = {name: str(uuid.uuid4()) for name in "ABC"}
    steps: list[tuple[str, int]] = []
    os.environ["OUTBOX_SCHEMA"] = SCHEMA  # the host enqueues into the demo's outbox schema
    with Session(engine) as session:
        one = host.create(session, "Klantcontact over de aanvraag", host.zaak_identificator(zaak["A"]), settings)
        session.commit()
        steps.append(("Onderwerpobject 1 linked to Zaak A", 1))
        two = host.create(session, "Vraag over de vergunning", host.zaak_identificator(zaak["B"]), settings)
        session.commit()
        steps.append(("Onderwerpobject 2 linked to Zaak B", 1))
        host.create(session, "Nooit bewaard", host.zaak_identificator(zaak["C"]), settings)
        session.rollback()
        steps.append(("Onderwerpobject 3 linked to Zaak C — rolled back", 0))
        host.change_identificator(session, one, host.zaak_identificator(zaak["C"]), settings)
        session.commit()
        steps.append(("Onderwerpobject 1 moved from Zaak A to Zaak C", 2))
        host.delete(session, two, settings)
        session.rollback()
        steps.append(("Onderwerpobject 2 deleted — rolled back", 0))
        other = {
            "codeObjecttype": "klantcontact",
            "codeSoortObjectId": "nummer",
            "objectId": "42",
            "codeRegister": "ok",
        }
        host.change_identificator(session, two, other, settings)
        session.commit()
        steps.append(("Onderwerpobject 2 now points at a klantcontact, not a Zaak", 1))
        host.delete(session, one, settings)
        session.commit()
        steps.append(("Onderwerpobject 1 deleted", 1))
        for batch in range(BULK // 20):
            for _ in range(20):
                host.create(session, f"Bulk {batch}", host.zaak_identificator(str(uuid.uuid4())), settings)
            session.commit()
        steps.append((f"{BULK} more Onderwerpobjecten linked, 20 per transaction", BULK))
    os.environ.pop("OUTBOX_SCHEMA", None)
    engine.dispose()
    for text, events in steps:
        click.echo(f"  host: {text:64} {events} event{'s' if events != 1 else ''}")
    return sum(events for _, events in steps), zaak


# The demo's receiver runs on this machine: the only non-public network the worker may reach.
LOOPBACK = "127.0.0.0/8"


async def _run_worker(url: str, expected: int) -> float:
    settings = WorkerSettings.load(db_schema=SCHEMA, poll_interval=0.2, allowed_networks=LOOPBACK)
    worker = Worker(settings, url)
    began = time.monotonic()
    task = asyncio.create_task(worker.run())
    tty = sys.stdout.isatty()
    shown = -1
    while worker.delivered < expected and not task.done():
        await asyncio.sleep(0.1 if tty else 0.5)
        done = worker.delivered
        if done != shown:
            bar = "#" * int(30 * done / expected)
            click.echo(f"{chr(13) if tty else ''}  worker: [{bar:30}] {done}/{expected} delivered", nl=not tty)
            shown = done
    elapsed = time.monotonic() - began
    if tty:
        click.echo()
    worker.stop()
    await task
    return elapsed


def _received(port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=10) as answer:
        result: list[dict[str, Any]] = json.load(answer)
    return result


def run(url: str) -> None:
    host = _load_example_host()
    click.echo(f"1. schema {SCHEMA!r} migrated on {'the embedded PostgreSQL' if '?host=' in url else 'the database'}")
    _reset(url)
    port = _free_port()
    receiver = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "worker", "receiver", "--port", str(port), "--auth", TOKEN, "--quiet"],
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        callback = f"http://127.0.0.1:{port}/webhook"
        click.echo(f"2. reference receiver (outbox receiver) listening on {callback}")
        subscription = Subscription.from_abonnement(
            {"callbackUrl": callback, "auth": TOKEN, "kanalen": [{"naam": "zaken", "filters": {}}]},
            allow_insecure=True,
        )
        agreement = handshake(callback, ORIGIN, policy=AddressPolicy(parse_networks(LOOPBACK)))
        subscription = replace(
            subscription, agreement="handshake", handshake_at=datetime.now(UTC), allowed_rate=agreement.allowed_rate
        )
        with psycopg.connect(url) as conn:
            sub_id = subscription_store.add(conn, subscription, SCHEMA, SecretBox())
        click.echo(
            f"3. OPTIONS handshake as {ORIGIN}: allowed (origin {agreement.allowed_origin!r}); subscribed it to "
            f"kanaal 'zaken' (subscription {sub_id}, auth {subscription.auth_hint})"
        )
        click.echo("4. the example Open Klant host changes Onderwerpobjecten:")
        expected, zaken = _run_host(url, host)
        click.echo(f"5. the worker delivers the {expected} committed events:")
        elapsed = asyncio.run(_run_worker(url, expected))
        click.echo(f"   {expected} deliveries in {elapsed:.1f} s")
        received = _received(port)
    finally:
        receiver.terminate()
        receiver.wait(10)
    letters = {uuid_: letter for letter, uuid_ in zaken.items()}
    story = [(n, item) for n, item in enumerate(received, start=1) if item["event"].get("subject") in letters]
    click.echo("\n6. what the receiver got: the story's events, by arrival; per Zaak they keep the order of commit")
    click.echo(f"  {'arrival':>7}  {'type':34}  {'Zaak':4}  {'label':30}  mode")
    for number, item in story:
        event = item["event"]
        label = str(event.get("data", {}).get("label", ""))[:30]
        click.echo(f"  {number:>7}  {event['type']:34}  {letters[event['subject']]:4}  {label:30}  {item['mode']}")
    click.echo(f"  and {len(received) - len(story)} bulk events, each for a Zaak of its own (they need not wait).")
    click.echo(f"\n7. outbox status --schema {SCHEMA}:")
    with psycopg.connect(url) as conn:
        click.echo(status_report.render(status_report.collect(conn, SCHEMA)))
    if len(received) != expected:
        raise click.ClickException(f"the receiver got {len(received)} events, expected {expected}")


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise click.ClickException("the reference receiver did not start")
