"""Routing: new events become one delivery per matching active subscription, in event order.

One router at a time per schema (a transaction-level advisory lock; the others skip), so delivery
ids follow event order, which the per-key ordering of the claim relies on. The unique
(event, subscription) key makes a delivery exist exactly once even so.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from outbox import CloudEvent, InvalidEventError, Subscription
from outbox._sql import query
from worker.logs import log
from worker.subscription_store import from_row


def ordering_key(subscription: Subscription, event: CloudEvent) -> str | None:
    """The event's subject, or the attribute the subscription orders by; None = unordered."""
    value = event.get(subscription.ordering_key) if subscription.ordering_key else event.subject
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def route_once(conn: psycopg.AsyncConnection[Any], schema: str, batch_size: int) -> int:
    """Route up to `batch_size` events; returns how many were routed (0 if none, or another router is busy)."""
    async with conn.transaction():
        locked = await (await conn.execute(query("route_lock", schema), (f"nlgov-outbox route {schema}",))).fetchone()
        if not locked or not locked[0]:
            return 0
        rows = await (await conn.execute(query("unrouted_events", schema), (batch_size,))).fetchall()
        if not rows:
            return 0
        async with conn.cursor(row_factory=dict_row) as cur:
            subscriptions = [
                from_row(r) for r in await (await cur.execute(query("active_subscriptions", schema))).fetchall()
            ]
        positions: list[int] = []
        subscription_ids: list[str] = []
        keys: list[str | None] = []
        for position, text in rows:
            try:
                event = CloudEvent.from_dict(orjson.loads(text))
            except (InvalidEventError, orjson.JSONDecodeError) as exc:
                # Only rows written around enqueue can be broken; they cannot be delivered. Say so, go on.
                log(logging.ERROR, "event not routable", position=position, reason=str(exc))
                continue
            for subscription in subscriptions:
                if subscription.wants(event):
                    positions.append(position)
                    subscription_ids.append(str(subscription.id))
                    keys.append(ordering_key(subscription, event))
        if positions:
            await conn.execute(query("insert_deliveries", schema), (positions, subscription_ids, keys))
        await conn.execute(query("mark_routed", schema), ([row[0] for row in rows],))
        return len(rows)
