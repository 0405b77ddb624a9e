"""One database layer for every test.

The PostgreSQL server comes from, in order:
  1. OUTBOX_TEST_DATABASE_URL (its user needs CREATEDB),
  2. testcontainers' PostgreSQL, when a Docker engine answers,
  3. the embedded `pgserver` package, in a temporary folder.
A template database is migrated once per session; each test that asks for
`database_url` gets its own fresh copy (CREATE DATABASE … TEMPLATE), dropped
afterwards. `empty_database_url` is a database with nothing in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo, sql

import outbox
from tests.support import Receiver, WorkerFactory, WorkerProcess

TEMPLATE = "outbox_test_template"


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextlib.contextmanager
def _server_url() -> Iterator[str]:
    explicit = os.environ.get("OUTBOX_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        folder = tempfile.mkdtemp(prefix="outbox-test-pg-")
        server = pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    with _server_url() as url:
        yield url


@pytest.fixture(scope="session")
def admin(server_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        yield conn


def _drop(admin: psycopg.Connection[Any], name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_database(server_url: str, admin: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"{TEMPLATE}_{os.getpid()}"
    _drop(admin, name)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    outbox.migrate(_with_dbname(server_url, name))
    yield name
    _drop(admin, name)


@contextlib.contextmanager
def _fresh_database(server_url: str, admin: psycopg.Connection[Any], template: str | None) -> Iterator[str]:
    name = f"outbox_test_{uuid.uuid4().hex[:12]}"
    statement = "CREATE DATABASE {} TEMPLATE {}" if template else "CREATE DATABASE {}"
    idents = [sql.Identifier(name)] + ([sql.Identifier(template)] if template else [])
    admin.execute(sql.SQL(statement).format(*idents))  # type: ignore[arg-type]
    try:
        yield _with_dbname(server_url, name)
    finally:
        _drop(admin, name)


@pytest.fixture
def database_url(server_url: str, admin: psycopg.Connection[Any], template_database: str) -> Iterator[str]:
    """A migrated database (schema `outbox`) of this test's own."""
    with _fresh_database(server_url, admin, template_database) as url:
        yield url


@pytest.fixture
def empty_database_url(server_url: str, admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A database of this test's own with no outbox schema."""
    with _fresh_database(server_url, admin, None) as url:
        yield url


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url) as connection:
        yield connection


@pytest.fixture
async def aconn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url) as connection:
        yield connection


@pytest.fixture
def reader(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A second, autocommit connection: sees only what was committed."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def run_cli(database_url: str) -> Any:
    """Run the real `outbox` command in a subprocess against this test's database."""

    def run(
        *args: str, input: str | None = None, url: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "OUTBOX_DATABASE_URL": url or database_url}
        for name in ("OUTBOX_SCHEMA", "OUTBOX_WEBHOOK_ORIGIN"):
            environment.pop(name, None)
        # Receivers run on 127.0.0.1; a caller's env (even "") decides otherwise.
        environment["OUTBOX_ALLOWED_NETWORKS"] = "127.0.0.0/8,::1/128"
        environment.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "worker", *args],
            capture_output=True,
            text=True,
            env=environment,
            input=input,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 (answers 204 unless told otherwise)."""
    with Receiver().running() as r:
        yield r


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Starts `outbox run` processes on this test's database; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str] | None = None, *args: str) -> WorkerProcess:
        worker = WorkerProcess(database_url, tmp_path / f"worker-{len(started)}.log", env, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop_quietly()
