"""Auto-disable (OUTBOX_DISABLE_AFTER): a subscription whose deliveries have all failed for longer than
the limit is paused, with a reason that says so, and announces it (subscription-disabled).

The streak (`failure_streaks`, sql/017) begins at the first failed attempt (any answer but 2xx, or
none) after the subscription's last 2xx and ends at a 2xx. Its deliveries stay where they are:
pending ones wait (a paused subscription is not claimed, nor routed to), blocked ones stay behind
their key's head, and `outbox subscriptions resume` lets them go in their order. Every worker runs the
round (`disable_failing` is safe to run at once: one of them pauses, and announces).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import psycopg

from outbox._sql import query
from worker.runtime.logs import log, redact

RETRY_AFTER = 30.0  # seconds, after a round that failed


def check_every(after: timedelta) -> float:
    """A tenth of the limit, between 0.2 s (tests) and a minute: a disable comes at most that late."""
    return min(60.0, max(0.2, after.total_seconds() / 10))


def shown(after: timedelta) -> str:
    """The limit as the paused reason says it: 5d, 12h, 30s, 1.5s."""
    seconds = after.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


async def run_once(conn: psycopg.AsyncConnection[Any], schema: str, after: timedelta, source: str) -> list[str]:
    """One round on an autocommit connection: the ids of the subscriptions it disabled (each logged)."""
    params = {"after": after.total_seconds(), "after_text": shown(after), "source": source}
    async with conn.transaction():
        cursor = await conn.execute(query("disable_failing", schema), params)
        rows = await cursor.fetchall()
    for sub_id, url, reason, _ in rows:
        log(logging.WARNING, "subscription disabled", subscription=str(sub_id), callbackUrl=redact(url), reason=reason)
    return [str(row[0]) for row in rows]


async def keep(
    connection: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]],
    schema: str,
    after: timedelta,
    source: str,
    stopping: asyncio.Event,
) -> None:
    """Rounds of `run_once` until `stopping` is set; `connection` lends a pooled connection."""
    while not stopping.is_set():
        wait = check_every(after)
        try:
            async with connection() as conn:
                await run_once(conn, schema, after, source)
        except Exception as exc:  # the database away: the next round will do (a disable may come later)
            log(logging.WARNING, "auto-disable round failed, retrying", error=type(exc).__name__)
            wait = max(wait, min(RETRY_AFTER, after.total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=wait)
