"""What the console shows of a subscription: its fields without secrets, and how its deliveries go."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from outbox import Subscription
from outbox._sql import query
from outbox._subscription import public_url
from worker.store import subscriptions as subscription_store


@dataclass(frozen=True)
class Health:
    subscription: Subscription
    last_success: datetime | None
    failures_in_a_row: int
    waiting: int
    failed: int
    pace: float | None = None
    concurrency_limit: float | None = None

    @property
    def id(self) -> str:
        return str(self.subscription.id)

    @property
    def callback_url(self) -> str:
        return public_url(self.subscription.callback_url)  # an access_token in the query stays hidden

    @property
    def troubled(self) -> bool:
        return self.subscription.status == "paused" or self.failures_in_a_row > 0 or self.failed > 0


async def _figures(conn: psycopg.AsyncConnection[Any], schema: str, subscription_id: str | None) -> dict[str, Any]:
    cursor = await conn.execute(query("console_subscription_health", schema), {"id": subscription_id})
    return {str(row[0]): row[1:] for row in await cursor.fetchall()}


def _health(subscription: Subscription, figures: dict[str, Any]) -> Health:
    last, in_a_row, waiting, failed, pace, limit = figures.get(str(subscription.id), (None, 0, 0, 0, None, None))
    return Health(subscription, last, int(in_a_row), int(waiting), int(failed), pace, limit)


async def subscriptions(conn: psycopg.AsyncConnection[Any], schema: str) -> list[Health]:
    """Every subscription, its secrets not opened, with its figures."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("list_subscriptions", schema))
        rows = await cur.fetchall()
    figures = await _figures(conn, schema, None)
    return [_health(subscription_store.from_row(row, None), figures) for row in rows]


async def one(conn: psycopg.AsyncConnection[Any], schema: str, subscription_id: str) -> Health:
    """Raises SubscriptionNotFound (also for an id that is not a UUID)."""
    subscription = await subscription_store.get_async(conn, schema, subscription_id, None, None)
    return _health(subscription, await _figures(conn, schema, str(subscription.id)))
