"""Operator actions shared by the `outbox` command and the Django admin: the same SQL for both.

`retry_failed` is `outbox retry`, `set_subscription_status` is `outbox
subscriptions pause|resume`. Each runs in its own transaction on the caller's
connection (nested as a savepoint when one is open).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from outbox._deliveries_filter import DeliveryFilter
from outbox._operational import operational_source
from outbox._sql import query


def key_lock_prefix(schema: str) -> str:
    """Prefix of the per-(subscription, ordering key) advisory locks (see `lock_keys` in queries.sql)."""
    return f"nlgov-outbox key {schema} "


_MOVED_TRIES = 3


def _retry_params(
    subscription_id: str | uuid.UUID | None,
    delivery_id: int | None,
    delivery_ids: list[int] | None,
    where: DeliveryFilter | None,
) -> dict[str, Any]:
    params = (where or DeliveryFilter()).params()
    if subscription_id:
        params["subscription"] = uuid.UUID(str(subscription_id))
    params.update(delivery=delivery_id, deliveries=delivery_ids)
    del params["states"]  # failed, always
    return params


def retry_failed(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    subscription_id: str | uuid.UUID | None = None,
    delivery_id: int | None = None,
    delivery_ids: list[int] | None = None,
    where: DeliveryFilter | None = None,
) -> int:
    """Failed deliveries back (with fresh attempts): pending, or blocked behind an unfinished
    delivery of their ordering key, so a key never has two in flight. Returns how many.
    Narrowed by subscription, one delivery, a list of deliveries (the admin's selection) and a filter
    (`outbox retry --type …`, the console's "all matching")."""
    params = _retry_params(subscription_id, delivery_id, delivery_ids, where)
    for attempt in range(_MOVED_TRIES):
        try:
            with conn.transaction():
                rows = conn.execute(query("failed_for_retry", schema), params, prepare=False).fetchall()
                if not rows:
                    return 0
                ids, subscriptions, keys = (list(column) for column in zip(*rows, strict=True))
                conn.execute(query("lock_keys", schema), (key_lock_prefix(schema), subscriptions, keys))
                return len(conn.execute(query("retry_failed", schema), (ids,)).fetchall())
        except psycopg.errors.SerializationFailure:
            # A row we waited for was moved out of its partition meanwhile (a concurrent retry took it
            # back to the live leaf): PostgreSQL cannot follow it, so look again.
            if attempt == _MOVED_TRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def retry_failed_async(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    *,
    delivery_ids: list[int] | None = None,
    where: DeliveryFilter | None = None,
) -> int:
    """`retry_failed` for the console (its pool is async)."""
    params = _retry_params(None, None, delivery_ids, where)
    for attempt in range(_MOVED_TRIES):
        try:
            async with conn.transaction():
                cur = await conn.execute(query("failed_for_retry", schema), params, prepare=False)
                rows = await cur.fetchall()
                if not rows:
                    return 0
                ids, subscriptions, keys = (list(column) for column in zip(*rows, strict=True))
                await conn.execute(query("lock_keys", schema), (key_lock_prefix(schema), subscriptions, keys))
                cur = await conn.execute(query("retry_failed", schema), (ids,))
                return len(await cur.fetchall())
        except psycopg.errors.SerializationFailure:
            if attempt == _MOVED_TRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _status_params(
    schema: str, subscription_id: str | uuid.UUID, status: str, reason: str | None, by: str | None, source: str | None
) -> dict[str, Any]:
    return {
        "id": uuid.UUID(str(subscription_id)),
        "status": status,
        "reason": reason,
        "by": by,
        "source": operational_source(schema, source),
    }


def set_subscription_status(
    conn: psycopg.Connection[Any],
    schema: str,
    subscription_id: str | uuid.UUID,
    status: str,
    reason: str | None,
    *,
    by: str | None = None,
    source: str | None = None,
) -> bool:
    """active (reason None) or paused (with a reason); False when there is no such subscription.
    Pausing an active one writes a subscription-paused event in the same transaction (`by`: the
    operator's name where known; `source`: default `operational_source`); resuming ends its failure
    streak, so the auto-disable counts afresh."""
    params = _status_params(schema, subscription_id, status, reason, by, source)
    with conn.transaction():
        row = conn.execute(query("set_subscription_status", schema), params).fetchone()
    return row is not None


async def set_subscription_status_async(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    subscription_id: str | uuid.UUID,
    status: str,
    reason: str | None,
    *,
    by: str | None = None,
    source: str | None = None,
) -> bool:
    """`set_subscription_status` for `outbox serve`'s console (the same SQL, an async connection)."""
    params = _status_params(schema, subscription_id, status, reason, by, source)
    async with conn.transaction():
        cursor = await conn.execute(query("set_subscription_status", schema), params)
        row = await cursor.fetchone()
    return row is not None
