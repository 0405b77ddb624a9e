"""System checks: the outbox's database runs on psycopg 3, and its schema is migrated.

The driver check needs no query, so it runs with every command (`runserver`,
`check`, …): a project on psycopg2 hears it at start, not at its first event.
The schema check queries the database, so it is a database check (`manage.py
check --database default`, `migrate`); it warns rather than errs, or `migrate`
itself, which runs it first, could never create the schema.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import connections

from outbox._migrate import schema_version
from outbox._sql import migrations
from outbox.django import conf
from outbox.django.connection import driver_problem


def check_driver(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    alias = conf.database()
    if alias not in connections.settings:
        return [
            checks.Error(
                f"OUTBOX_DATABASE is {alias!r}, which is not in DATABASES",
                hint="set OUTBOX_DATABASE to a DATABASES alias (default: 'default')",
                id="outbox.E001",
            )
        ]
    problem = driver_problem(connections[alias])
    if problem:
        return [
            checks.Error(
                f"the outbox cannot write events: {problem}",
                hint="use Django's django.db.backends.postgresql ENGINE with psycopg 3 installed",
                id="outbox.E002",
            )
        ]
    return []


def check_schema(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    alias = conf.database()
    if not databases or alias not in databases or check_driver():
        return []
    schema = conf.schema()
    expected = migrations()[-1].version
    connection = connections[alias]
    connection.ensure_connection()
    with connection.connection.transaction():  # a read on its own, whatever the connection's mode
        found = schema_version(connection.connection, schema)
    if found is not None and found >= expected:
        if found > expected:
            return [
                checks.Warning(
                    f"the outbox schema {schema!r} is at migration {found:03d}, newer than this package "
                    f"({expected:03d})",
                    hint="upgrade nlgov-outbox",
                    id="outbox.W002",
                )
            ]
        return []
    state = "not migrated" if found is None else f"at migration {found:03d}, this package needs {expected:03d}"
    return [
        checks.Warning(
            f"the outbox schema {schema!r} is {state}",
            hint="run `manage.py migrate outbox` (or `outbox migrate`)",
            id="outbox.W001",
        )
    ]


def register() -> None:
    checks.register(check_driver, "outbox")
    checks.register(check_schema, "outbox", checks.Tags.database)
