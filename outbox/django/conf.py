"""The Django settings the outbox app reads, with their defaults.

OUTBOX_SCHEMA    the PostgreSQL schema of the outbox tables (default "outbox", as `outbox --schema`)
OUTBOX_DATABASE  the DATABASES alias that holds them (default "default")
"""

from __future__ import annotations

from django.conf import settings

from outbox._sql import DEFAULT_SCHEMA, check_schema_name


def schema() -> str:
    return check_schema_name(getattr(settings, "OUTBOX_SCHEMA", None) or DEFAULT_SCHEMA)


def database() -> str:
    return str(getattr(settings, "OUTBOX_DATABASE", None) or "default")
