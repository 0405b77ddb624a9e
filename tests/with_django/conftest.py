"""Django tests: the example host (examples/django_host) on the test PostgreSQL server.

pytest-django creates the test database once and runs `migrate`, which creates
the outbox schema through the app's migration. The outbox tables are not
Django-managed, so Django's flush leaves them: they are emptied after each test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from tests.support import Receiver, WorkerProcess, enqueue, subscribe, wait_until, zaak_event

HOST_DIR = Path(__file__).resolve().parents[2] / "examples" / "django_host"
OUTBOX_TABLES = (
    "outbox.delivery_attempts, outbox.deliveries, outbox.subscription_pace, outbox.failure_streaks, "
    "outbox.subscriptions, outbox.events, outbox.console_audit, outbox.operator_sessions, outbox.operators, "
    "outbox.signin_failures"
)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(server_url: str) -> None:
    from django.conf import settings
    from django.db import connections

    params = conninfo.conninfo_to_dict(server_url)
    values = {
        "NAME": params.get("dbname") or "postgres",
        "USER": params.get("user") or "",
        "PASSWORD": params.get("password") or "",
        "HOST": params.get("host") or "",
        "PORT": str(params.get("port") or ""),
    }
    for target in (settings.DATABASES["default"], connections["default"].settings_dict):
        target.update(values)
        target.setdefault("TEST", {})["NAME"] = f"outbox_django_test_{os.getpid()}"


@pytest.fixture
def django_db_url(django_db_setup: Any, server_url: str) -> Iterator[str]:
    """The libpq URL of the Django test database (for workers, the CLI and reads from outside).
    The outbox tables are emptied after the test."""
    from django.db import connections

    params = conninfo.conninfo_to_dict(server_url)
    params["dbname"] = connections["default"].settings_dict["NAME"]
    url = conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    yield url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {OUTBOX_TABLES}")
        # The built-in operational entries stay (a migration wrote them); the test's own go.
        conn.execute("DELETE FROM outbox.event_types WHERE NOT operational")
        conn.execute("UPDATE outbox.event_types SET is_enabled = true WHERE NOT is_enabled")
    # The next test uses the same database: it must not see this one's catalogue (cached for up to its TTL).
    from outbox._catalogue import forget

    forget()


def manage(
    *args: str, url: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python manage.py …` of the example host, in a subprocess, on the database at `url`."""
    environment = dict(os.environ)
    for name in ("OUTBOX_DATABASE_URL", "OUTBOX_SCHEMA", "DJANGO_SETTINGS_MODULE"):
        environment.pop(name, None)
    environment.update({"DATABASE_URL": url, **(env or {})})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=HOST_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outbox_rows(url: str) -> list[dict[str, Any]]:
    """The events in the outbox, committed ones only (read on a connection of its own)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return [row["event"] for row in cur.execute("SELECT event FROM outbox.events ORDER BY position").fetchall()]


STATIC_TOKEN = "Bearer static-secret-0f3c9a"
QUERY_TOKEN = "query-secret-77ab12"
HEADER_VALUE = "header-secret-5d1e08"  # protocolsettings.headers values are secrets too


def rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql, params).fetchall()


@pytest.fixture
def failed(django_db_url: str, tmp_path: Path) -> dict[str, Any]:
    """Two subscriptions with secrets; three events failed on a receiver that answers 415 with a body."""
    receiver = Receiver(answer=lambda n, r: (415, {}, 0.0), body_for=lambda r: b"unsupported: use structured mode")
    with receiver.running():
        subscription = subscribe(django_db_url, receiver.url, auth=STATIC_TOKEN, headers={"X-Api-Key": HEADER_VALUE})
        other = subscribe(
            django_db_url, f"https://receiver.example/hook?access_token={QUERY_TOKEN}", allow_query_token=True
        )
        with psycopg.connect(django_db_url) as conn:
            conn.execute(
                "UPDATE outbox.subscriptions SET status = 'paused', paused_reason = 'later' WHERE id = %s", (other,)
            )
        events = [zaak_event(str(uuid.uuid4()), n) for n in range(3)]
        enqueue(django_db_url, events)
        worker = WorkerProcess(django_db_url, tmp_path / "worker.log")
        try:
            wait_until(
                lambda: len(rows(django_db_url, "SELECT id FROM outbox.deliveries WHERE status = 'failed'")) == 3,
                message="three failed deliveries",
            )
        finally:
            worker.terminate()
    deliveries = rows(
        django_db_url, "SELECT * FROM outbox.deliveries WHERE subscription_id = %s ORDER BY id", subscription
    )
    return {"subscription": subscription, "other": other, "events": events, "deliveries": deliveries}
