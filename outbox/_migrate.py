"""Apply the migrations in `sql/` to a database: in order, each once, safely in parallel.

Each file runs in its own transaction, which takes a transaction-level advisory
lock (per schema) and reads what is applied before it applies the next file, so
concurrent runs serialise, also through PgBouncer's transaction pooling (a
session lock would outlive the client there); a second run finds everything
applied and does nothing. A file runs with `search_path` set to the outbox
schema (SET LOCAL) and is recorded, with its checksum, in
`<schema>.schema_migrations`. A file that changed after it was
applied stops the run: migrations are forward-only.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from outbox._sql import DEFAULT_SCHEMA, Migration, check_schema_name, migrations, query


class MigrationError(RuntimeError):
    """The database's migration history does not fit the migration files."""


def _checksum(migration: Migration) -> str:
    return hashlib.sha256(migration.text.encode()).hexdigest()


def migrate(
    conninfo: str | psycopg.Connection[Any], *, schema: str = DEFAULT_SCHEMA, up_to: int | None = None
) -> list[Migration]:
    """Create or upgrade the outbox schema (to migration `up_to`, default the newest); returns the
    migrations applied now (empty if none). A connection given must be in autocommit mode."""
    check_schema_name(schema)
    if isinstance(conninfo, psycopg.Connection):
        return _migrate(conninfo, schema, up_to)
    # No prepared statements: the URL may go through PgBouncer's transaction pooling.
    with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
        return _migrate(conn, schema, up_to)


def _migrate(conn: psycopg.Connection[Any], schema: str, up_to: int | None) -> list[Migration]:
    lock_key = f"nlgov-outbox migrate {schema}"
    done: list[Migration] = []
    while True:  # one transaction per file, each under the lock, reading what is applied afresh
        with conn.transaction():
            # prepare=False here and below: a connection given (Django's) may go through PgBouncer too.
            conn.execute(query("migrate_lock", schema), (lock_key,), prepare=False)
            conn.execute(query("create_schema", schema), prepare=False)
            conn.execute(query("create_migrations_table", schema), prepare=False)
            applied = {
                version: (name, checksum)
                for version, name, checksum in conn.execute(
                    query("applied_migrations", schema), prepare=False
                ).fetchall()
            }
            migration = _next(applied, up_to)
            if migration is None:
                return done
            conn.execute(query("set_migration_search_path", schema))
            conn.execute(migration.text.encode())
            conn.execute(
                query("record_migration", schema),
                (migration.version, migration.name, _checksum(migration)),
                prepare=False,
            )
        done.append(migration)


def _next(applied: dict[int, tuple[str, str]], up_to: int | None) -> Migration | None:
    """The first migration still to apply (None: up to date); refuses a history that does not fit."""
    unknown = sorted(set(applied) - {m.version for m in migrations()})
    if unknown:
        raise MigrationError(f"the database has migrations {unknown} that this version does not know: upgrade")
    for migration in migrations():
        if up_to is not None and migration.version > up_to:
            return None
        if migration.version not in applied:
            return migration
        if applied[migration.version][1] != _checksum(migration):
            raise MigrationError(
                f"migration {migration.version:03d}_{migration.name}.sql changed after it was applied; "
                "migrations are forward-only: add a new file instead"
            )
    return None


def schema_version(conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> int | None:
    """The newest migration applied to `schema`, or None when it has none (not migrated)."""
    exists = conn.execute(query("schema_migrated", schema), (schema,)).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(query("schema_version", schema)).fetchone()
    return int(row[0]) if row and row[0] is not None else None
