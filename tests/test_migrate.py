"""Migrations: in order, each once, recorded, safe in parallel, and the schema the code expects."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

import outbox
from outbox._sql import migrations, query, raw_queries
from tests.support import migrate_in_parallel


def _tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as c:
        # Partition leaves are the partitioned tables' own business (tests/test_partitions.py).
        rows = c.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            (schema,),
        ).fetchall()
    return {r[0] for r in rows}


def test_first_run_applies_all_second_is_a_no_op(empty_database_url: str) -> None:
    applied = outbox.migrate(empty_database_url)
    assert [m.version for m in applied] == [m.version for m in migrations()]
    assert outbox.migrate(empty_database_url) == []
    assert _tables(empty_database_url, "outbox") == {
        "events",
        "subscriptions",
        "deliveries",
        "delivery_attempts",
        "schema_migrations",
        "idle_workers",
        "subscription_pace",
        "event_types",
        "catalogue_version",
        "subscriptions_version",
        "api_clients",
        "intake_ids",
        "client_rates",
        "failure_streaks",
        "operators",
        "operator_sessions",
        "mappings",
        "mapping_versions",
        "consumers",
        "consumer_receipts",
        "consumer_failures",
        "consumer_rates",
        "signin_failures",
        "console_audit",
    }
    with psycopg.connect(empty_database_url) as c:
        recorded = c.execute("SELECT version, name FROM outbox.schema_migrations ORDER BY version").fetchall()
    assert recorded == [(m.version, m.name) for m in migrations()]
    # Nothing leaked into the host's schema.
    assert _tables(empty_database_url, "public") == set()


def test_concurrent_migrations_apply_each_file_once(empty_database_url: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: outbox.migrate(empty_database_url), range(4)))
    applied = [m.version for result in results for m in result]
    # Each file once, in order; the runs may share the work (the lock is per file's transaction).
    assert sorted(applied) == [m.version for m in migrations()]


def test_concurrent_cli_processes(empty_database_url: str) -> None:
    migrate_in_parallel(empty_database_url, processes=3, timeout=60)


def test_changed_migration_file_stops_the_run(database_url: str) -> None:
    with psycopg.connect(database_url) as c:
        c.execute("UPDATE outbox.schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(outbox.MigrationError, match="001_initial.sql changed after it was applied"):
        outbox.migrate(database_url)


def test_unknown_newer_migration_stops_the_run(database_url: str) -> None:
    with psycopg.connect(database_url) as c:
        c.execute("INSERT INTO outbox.schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
    with pytest.raises(outbox.MigrationError, match=r"\[999\].*upgrade"):
        outbox.migrate(database_url)


def test_schema_is_configurable_and_isolated(empty_database_url: str) -> None:
    outbox.migrate(empty_database_url, schema="tenant_a")
    assert "events" in _tables(empty_database_url, "tenant_a")
    assert _tables(empty_database_url, "outbox") == set()


def test_claim_indexes_are_partial(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'outbox' AND tablename = 'deliveries_live'"
    ).fetchall()
    definitions = dict(rows)
    assert "WHERE (status = 'pending'::text)" in definitions["deliveries_due_idx"]
    assert "WHERE (status = 'delivering'::text)" in definitions["deliveries_leased_idx"]


def test_constraints_tie_columns_to_states(conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO outbox.events (event) VALUES ('{}')")
    conn.execute("INSERT INTO outbox.subscriptions (callback_url, types) VALUES ('https://example.org/hook', '{*}')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, status) "
            "SELECT 1, now(), id, 'delivered' FROM outbox.subscriptions"
        )
    conn.rollback()
    conn.execute("INSERT INTO outbox.subscriptions (callback_url, types) VALUES ('https://example.org/hook', '{*}')")
    with pytest.raises(psycopg.errors.CheckViolation, match="deliveries_finished_at_check"):
        conn.execute(  # delivered, but not finished
            "INSERT INTO outbox.deliveries (event_position, event_enqueued_at, subscription_id, status, delivered_at) "
            "SELECT 1, now(), id, 'delivered', now() FROM outbox.subscriptions"
        )


def _numbered_placeholders(statement: str) -> str:
    """psycopg's %s / %b / %(name)s as PostgreSQL's $1, $2 ... (a name keeps its number)."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        key = match.group(1) or f"#{len(numbers)}"
        return f"${numbers.setdefault(key, len(numbers) + 1)}"

    return re.sub(r"%(?:\((\w+)\))?[sb]", number, statement)


def test_every_query_prepares_against_the_schema(conn: psycopg.Connection[Any]) -> None:
    # Each named query parses and refers only to existing tables and columns.
    for name in raw_queries():
        if name in {"migrate_lock", "migrate_unlock", "create_schema", "create_migrations_table"}:
            continue
        statement = query(name, "outbox").decode()
        if statement.startswith(("SET", "LISTEN", "BEGIN", "COMMIT")):
            continue
        numbered = _numbered_placeholders(statement)
        conn.execute(("PREPARE probe AS " + numbered).encode())
        conn.execute("DEALLOCATE probe")
    conn.rollback()


def test_sql_command_prints_migrations_without_a_database() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--database-url", "postgresql://nobody@127.0.0.1:1/none", "sql"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "-- ==== 001_initial.sql ====" in result.stdout
    assert "CREATE TABLE events" in result.stdout
    assert "CREATE FUNCTION enqueue(event jsonb" in result.stdout
