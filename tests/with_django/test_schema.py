"""The outbox schema through `manage.py migrate`, and the system checks."""

from __future__ import annotations

import sys
from typing import Any

import psycopg

from outbox._sql import migrations
from tests.with_django.conftest import HOST_DIR, manage

NEWEST = migrations()[-1].version


def applied(url: str) -> list[tuple[int, Any]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, applied_at FROM outbox.schema_migrations ORDER BY version").fetchall()


def django_applied(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT name FROM django_migrations WHERE app = 'outbox' ORDER BY id").fetchall()
    return [name for (name,) in rows]


def test_manage_py_migrate_creates_the_schema_and_outbox_migrate_is_then_a_no_op(
    empty_database_url: str, run_cli: Any
) -> None:
    result = manage("migrate", url=empty_database_url)
    assert result.returncode == 0, result.stderr
    assert "Applying outbox.0001_initial... OK" in result.stdout
    before = applied(empty_database_url)
    assert [version for version, _ in before] == list(range(1, NEWEST + 1))

    again = run_cli("migrate", url=empty_database_url)
    assert again.returncode == 0, again.stderr
    assert "is up to date" in again.stdout
    assert applied(empty_database_url) == before


def test_outbox_migrate_first_then_manage_py_migrate_only_records_it(empty_database_url: str, run_cli: Any) -> None:
    first = run_cli("migrate", url=empty_database_url)
    assert first.returncode == 0, first.stderr
    before = applied(empty_database_url)

    result = manage("migrate", url=empty_database_url)
    assert result.returncode == 0, result.stderr
    assert applied(empty_database_url) == before  # nothing applied twice
    assert django_applied(empty_database_url) == [
        "0001_initial",
        "0002_service",
        "0003_partitions",
        "0004_fast_path",
        "0005_adaptive_concurrency",
        "0006_fast_path_function",
        "0007_partition_clock",
        "0008_intake_digest_client_rate",
        "0009_sealed_headers",
        "0010_callback_verification",
        "0011_operational_events",
        "0012_console",
        "0013_delivery_search",
        "0014_consumers",
    ]
    # and a second manage.py migrate has nothing left to do
    assert "No migrations to apply" in manage("migrate", url=empty_database_url).stdout


def test_migrate_on_another_schema_follows_outbox_schema(empty_database_url: str) -> None:
    result = manage("migrate", url=empty_database_url, env={"OUTBOX_SCHEMA": "host_outbox"})
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_database_url) as conn:
        row = conn.execute("SELECT max(version) FROM host_outbox.schema_migrations").fetchone()
        assert row == (NEWEST,)
        assert conn.execute("SELECT to_regclass('outbox.events')").fetchone() == (None,)
    assert (
        "No changes detected"
        in manage(
            "makemigrations", "--check", "--dry-run", url=empty_database_url, env={"OUTBOX_SCHEMA": "host_outbox"}
        ).stdout
    )


def test_the_models_match_the_migrations(empty_database_url: str) -> None:
    result = manage("makemigrations", "--check", "--dry-run", url=empty_database_url)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_warns_until_migrated(empty_database_url: str, run_cli: Any) -> None:
    before = manage("check", "--database", "default", url=empty_database_url)
    assert "(outbox.W001) the outbox schema 'outbox' is not migrated" in before.stderr
    assert "manage.py migrate outbox" in before.stderr

    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        import outbox

        outbox.migrate(conn, up_to=NEWEST - 1)
    behind = manage("check", "--database", "default", url=empty_database_url)
    assert f"is at migration {NEWEST - 1:03d}, this package needs {NEWEST:03d}" in behind.stderr

    assert run_cli("migrate", url=empty_database_url).returncode == 0
    after = manage("check", "--database", "default", url=empty_database_url)
    assert after.returncode == 0
    assert "outbox.W00" not in after.stderr + after.stdout


# Django's postgresql backend picks psycopg 3 when it can import it, else psycopg2. This start-up script
# hides psycopg 3 from Django's driver choice only (as in a project whose backend runs on psycopg2), then
# runs the example host's `manage.py check`.
_ON_PSYCOPG2 = """
import os, sys
sys.modules["psycopg"] = None
import django.db.backends.postgresql.base as backend
assert backend.Database.__name__ == "psycopg2"
del sys.modules["psycopg"]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_host.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "check"])
"""


def test_a_project_on_psycopg2_gets_a_check_error_at_start(empty_database_url: str) -> None:
    import os
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", _ON_PSYCOPG2],
        cwd=HOST_DIR,
        env={**os.environ, "DATABASE_URL": empty_database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert (
        "(outbox.E002) the outbox cannot write events: DATABASES['default'] runs on the psycopg2 driver"
        in result.stderr
    )


def test_the_django_migrations_apply_every_sql_file() -> None:
    """A new sql/ file needs a Django migration that names it, or `manage.py migrate` would stop short."""
    from django.db.migrations.loader import MigrationLoader

    from outbox.django.migration_ops import ApplyOutboxSql

    loader = MigrationLoader(None, ignore_no_migrations=True)
    versions = [
        operation.version
        for (app, _), migration in sorted(loader.disk_migrations.items())
        if app == "outbox"
        for operation in migration.operations
        if isinstance(operation, ApplyOutboxSql)
    ]
    assert versions[-1] == NEWEST
