"""`manage.py outbox …`: every `outbox` command, on the database of Django's DATABASES.

    manage.py outbox run
    manage.py outbox status --json
    manage.py outbox --database replica subscriptions list

The connection settings of DATABASES[alias] (default OUTBOX_DATABASE) and
OUTBOX_SCHEMA become the command's `--database-url` and `--schema`; everything
after `outbox` goes to the command unchanged, in this process (no second
configuration, no password on a command line).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from psycopg import conninfo

from outbox.django import conf

# Django's own OPTIONS for its postgresql backend; the rest are libpq parameters (sslmode, …).
_DJANGO_OPTIONS = frozenset(
    {"isolation_level", "server_side_binding", "pool", "assume_role", "cursor_factory", "context", "prepare_threshold"}
)


def database_conninfo(alias: str) -> str:
    """A libpq connection string for DATABASES[alias]."""
    if alias not in connections.settings:
        raise CommandError(f"--database: {alias!r} is not in DATABASES")
    settings = connections[alias].settings_dict
    params: dict[str, Any] = {
        "dbname": settings.get("NAME") or None,
        "user": settings.get("USER") or None,
        "password": settings.get("PASSWORD") or None,
        "host": settings.get("HOST") or None,
        "port": str(settings["PORT"]) if settings.get("PORT") else None,
    }
    for key, value in (settings.get("OPTIONS") or {}).items():
        if key not in _DJANGO_OPTIONS and isinstance(value, str | int):
            params[key] = str(value)
    return conninfo.make_conninfo(**{key: value for key, value in params.items() if value is not None})


class Command(BaseCommand):
    help = "Run an `outbox` command (run, status, subscriptions, retry, purge, …) on Django's database."
    # The outbox command checks what it needs itself (`run` refuses an unmigrated schema).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=None,
            help="the DATABASES alias to use (default: OUTBOX_DATABASE, else 'default')",
        )
        parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the outbox command and its options")

    def handle(self, *args: Any, **options: Any) -> None:
        url = database_conninfo(options["database"] or conf.database())
        # The command line is the operators' side (worker/): loaded only when this command runs, so
        # importing the Django app never loads the daemon.
        cli = importlib.import_module("worker.cli")
        arguments = list(options["arguments"]) or ["--help"]
        try:
            cli.cli.main(["--database-url", url, "--schema", conf.schema(), *arguments], prog_name="manage.py outbox")
        except SystemExit as exit:
            if exit.code not in (0, None):
                raise  # the outbox command's own exit status (2: bad input or configuration)
