"""Connections that go through a transaction-pooling PgBouncer (docs/deploy/pgbouncer.md).

Found out per connection, not configured: a pooler answers the startup with its own cancel key, so
the backend pid psycopg was told is not the pid of the server process that runs our statements
(`pg_backend_pid()`). Directly connected, the two are always equal. Through a pooler, a connection
gets no named prepared statements (the next transaction may run on a server without them) and no
session settings (they would stay on the pooler's server connection, for whichever client is next).
"""

from __future__ import annotations

from typing import Any

import psycopg

BACKEND_PID = b"SELECT pg_backend_pid()"


def _pooled(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], server_pid: Any) -> bool:
    return server_pid is not None and int(server_pid) != conn.info.backend_pid


async def through_pooler(conn: psycopg.AsyncConnection[Any]) -> bool:
    """`conn` goes through a connection pooler such as PgBouncer."""
    row = await (await conn.execute(BACKEND_PID, prepare=False)).fetchone()
    return _pooled(conn, row[0] if row else None)


def through_pooler_sync(conn: psycopg.Connection[Any]) -> bool:
    """`through_pooler` for a sync connection."""
    row = conn.execute(BACKEND_PID, prepare=False).fetchone()
    return _pooled(conn, row[0] if row else None)


async def configure(conn: psycopg.AsyncConnection[Any], session_sql: bytes | str) -> bool:
    """A new connection of one of our pools: `session_sql` (SETs) when direct; through a pooler no
    prepared statements and no SETs instead. Returns whether it goes through a pooler."""
    if await through_pooler(conn):
        conn.prepare_threshold = None
        return True
    await conn.execute(session_sql)
    return False
