"""Django's connection wrapper → the psycopg 3 connection under it.

Inside `transaction.atomic()` Django has turned autocommit off and psycopg runs
the caller's transaction (nested blocks are savepoints on the same connection),
so the INSERT joins it: a rollback, or a rolled-back savepoint, takes the event
with it. Outside any atomic block Django is in autocommit and the INSERT is a
transaction of its own. That is allowed, as Django allows it for the host's own
writes, but the event is then no longer tied to the change: it is logged once
per process.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import pq

from outbox._errors import NoTransactionError, UnsupportedConnectionError

logger = logging.getLogger("outbox.django")

_warned_autocommit = False


def driver_problem(connection: Any) -> str | None:
    """Why this Django connection cannot carry the outbox, or None (also used by the system check)."""
    alias = getattr(connection, "alias", "?")
    if getattr(connection, "vendor", None) != "postgresql":
        return f"DATABASES[{alias!r}] is not PostgreSQL (ENGINE {connection.settings_dict.get('ENGINE')!r})"
    driver = getattr(getattr(connection, "Database", None), "__name__", "?")
    if driver != "psycopg":
        return (
            f"DATABASES[{alias!r}] runs on the {driver} driver; the outbox writes on psycopg 3 "
            "(Django's own postgresql backend uses it whenever it is installed)"
        )
    return None


def psycopg_connection(connection: Any) -> psycopg.Connection[Any]:
    """The psycopg connection of a Django connection, connected, checked to be usable."""
    if type(connection).__name__ == "ConnectionProxy":
        # `django.db.connection` looks the wrapper up again on every attribute (~4 µs each): once is enough.
        from django.db import connections

        connection = connections[connection.alias]
    problem = driver_problem(connection)
    if problem:
        raise UnsupportedConnectionError(f"enqueue: {problem}")
    if connection.in_atomic_block and connection.needs_rollback:
        raise NoTransactionError("enqueue: the caller's transaction has already failed; roll it back first")
    connection.ensure_connection()
    pg = connection.connection
    if not isinstance(pg, psycopg.Connection):  # pragma: no cover - guarded by driver_problem
        raise UnsupportedConnectionError(f"enqueue: Django handed out a {type(pg).__name__}, not a psycopg connection")
    if pg.info.transaction_status == pq.TransactionStatus.INERROR:  # an error caught outside an atomic block
        raise NoTransactionError("enqueue: the caller's transaction has already failed; roll it back first")
    if connection.get_autocommit():
        _note_autocommit(connection.alias)
    return pg


def _note_autocommit(alias: str) -> None:
    global _warned_autocommit
    if _warned_autocommit:
        return
    _warned_autocommit = True
    logger.warning(
        "outbox: event enqueued on DATABASES[%r] outside transaction.atomic(): Django is in autocommit, so the "
        "event is committed on its own, not together with your change; wrap the change and the event in "
        "transaction.atomic() (ATOMIC_REQUESTS does that per request)",
        alias,
    )
