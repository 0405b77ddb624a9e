"""Leaves made ahead: every worker creates the partitions of the next days, at start and then every
few minutes, so hosts always find a leaf ready (sql/009_partitions.sql, `ensure_partitions`).

Several workers may do it at once (the function takes an advisory lock and creates only what is
missing). A lock not granted within the lock_timeout, or any other error, is logged and tried again
at the next round: the leaves are made well ahead, and an event that finds no leaf still goes to the
DEFAULT leaf, so nothing waits on this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import psycopg

from outbox._sql import query
from worker.runtime.clock import as_utc
from worker.runtime.logs import log

CHECK_EVERY = 600.0  # seconds between rounds (at most; a quarter of a short interval)
RETRY_AFTER = 60.0  # seconds, after a round that failed


def ahead(step: timedelta) -> timedelta:
    """How far ahead leaves are made: two intervals, and a day where that is at most twelve leaves, so
    workers that are all down for less than that leave no event to the DEFAULT leaf; a short interval
    (tests, benchmarks) does not make hundreds of empty leaves."""
    return max(2 * step, min(timedelta(days=1), 12 * step))


def _parameters(step: timedelta, at: datetime | None) -> tuple[float, float, datetime | None]:
    return ahead(step).total_seconds(), step.total_seconds(), None if at is None else as_utc(at)


def ensure(conn: psycopg.Connection[Any], schema: str, step: timedelta, at: datetime | None = None) -> list[str]:
    """One round on a connection in autocommit: the lines of `ensure_partitions`, as of the instant
    `at` (default: the database's clock, which also writes the leaves' keys)."""
    with conn.transaction():
        conn.execute(query("partition_lock_timeout", schema))
        rows = conn.execute(query("ensure_partitions", schema), _parameters(step, at)).fetchall()
    return [row[0] for row in rows]


async def ensure_async(
    conn: psycopg.AsyncConnection[Any], schema: str, step: timedelta, at: datetime | None = None
) -> list[str]:
    """`ensure` on an async connection (autocommit)."""
    async with conn.transaction():
        await conn.execute(query("partition_lock_timeout", schema))
        cursor = await conn.execute(query("ensure_partitions", schema), _parameters(step, at))
        rows = await cursor.fetchall()
    return [row[0] for row in rows]


async def keep(
    connection: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]],
    schema: str,
    step: timedelta,
    stopping: asyncio.Event,
) -> None:
    """Rounds of `ensure_async` until `stopping` is set; `connection` lends a pooled connection."""
    while not stopping.is_set():
        wait = min(CHECK_EVERY, step.total_seconds() / 4)
        try:
            async with connection() as conn:
                lines = await ensure_async(conn, schema, step)
            for line in lines:
                level = logging.WARNING if line.startswith("skipped") else logging.INFO
                log(level, "partition " + line.split(" ", 1)[0], detail=line)
        except Exception as exc:  # the database away, a lock not granted: the next round will do
            log(logging.WARNING, "partitions not made ahead, retrying", error=type(exc).__name__)
            wait = RETRY_AFTER
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=wait)
