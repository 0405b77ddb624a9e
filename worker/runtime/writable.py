"""Connections that reach a primary, never a standby: the outbox only writes.

`outbox run` and `outbox serve` connect with `target_session_attrs=read-write` unless the URL (or
PGTARGETSESSIONATTRS) says otherwise, so with a multi-host URL (`host=a,b` or `postgresql://a,b/db`)
libpq skips a standby and tries the next host. A connection that turns out read-only anyway (the
server became a standby or read-only after it was opened: `ReadOnlySqlTransaction`, SQLSTATE 25006,
also "cannot execute … during recovery") counts as "database unavailable" and is closed, never put back
in the pool: the next connection looks for the primary again instead of failing on the same one forever.
A connection found broken or read-only makes the pool replace all the connections it opened before.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

READ_ONLY = (psycopg.errors.ReadOnlySqlTransaction,)
"""What a write on a standby (or a read-only server) raises: the database is not available for writing."""

UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, *READ_ONLY)
"""Errors that mean "no usable primary now": wait and retry (the worker), answer 503 (the service)."""


def read_write(url: str) -> dict[str, Any]:
    """Connection parameters to add to `url`: target_session_attrs=read-write, unless chosen already."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:  # not ours to judge here: connecting will say what is wrong
        return {}
    if "target_session_attrs" in params or os.environ.get("PGTARGETSESSIONATTRS"):
        return {}
    return {"target_session_attrs": "read-write"}


class _CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's reconnection backoff (1 s, doubling up to its reconnect_timeout) capped at
    RECONNECT_EVERY: a pool that lost its primary finds the new one about that soon after it is promoted,
    not up to twice the outage later. A connection attempt to a dead or standby host costs little."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_EVERY)


RECONNECT_EVERY = 1.0
"""Seconds between a pool's attempts to replace a lost connection, at most."""


class WritablePool(AsyncConnectionPool[psycopg.AsyncConnection[Any]]):
    """An AsyncConnectionPool of read-write connections (module docstring).

    `down_timeout`: while the last use of the pool failed for want of a database (a broken connection,
    no connection in time, a read-only server), callers wait at most this long for a connection instead
    of the pool's `timeout`, so a request is refused quickly during an outage; the first success ends it.
    """

    def __init__(self, conninfo: str, *, down_timeout: float | None = None, **options: Any) -> None:
        options["kwargs"] = {**read_write(conninfo), **(options.get("kwargs") or {})}
        super().__init__(conninfo, **options)
        self.down_timeout = down_timeout
        self.database_down = False

    # psycopg_pool's own (private, 3.2-3.3) step that opens a connection and reschedules itself on failure:
    # the first attempt of each replacement gets the capped backoff. Were it renamed, only the cap is lost.
    async def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        await super()._add_connection(attempt or _CappedBackoff(timeout=self.reconnect_timeout), growing)

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self.database_down and self.down_timeout is not None:
            timeout = min(self.timeout if timeout is None else timeout, self.down_timeout)
        suspect = False  # the others in the pool are no better: the server went away or turned read-only
        try:
            async with super().connection(timeout) as conn:
                try:
                    yield conn
                except READ_ONLY:
                    suspect = True
                    await conn.close()  # closed, the pool drops it and opens another (another host)
                    raise
                except UNAVAILABLE:
                    suspect = conn.broken
                    raise
        except UNAVAILABLE:
            self.database_down = True
            if suspect:
                # Replace every connection opened before (those lent out when they come back): not one
                # stale connection after another, each failing once the database is back.
                await self.drain()
            raise
        self.database_down = False
