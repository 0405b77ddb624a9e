"""Subscriptions in the database: add, list, get, pause, resume, remove."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from outbox import Kanaal, Subscription
from outbox._sql import query


class SubscriptionNotFound(LookupError):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"no subscription with id {subscription_id}")


def _subscription_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise SubscriptionNotFound(value) from None


def from_row(row: dict[str, Any]) -> Subscription:
    return Subscription(
        id=str(row["id"]),
        callback_url=row["callback_url"],
        auth=row["auth"],
        kanalen=tuple(Kanaal(naam=k["naam"], filters=k.get("filters") or {}) for k in row["kanalen"]),
        types=tuple(row["types"]),
        content_mode=row["content_mode"],
        status=row["status"],
        paused_reason=row["paused_reason"],
        ordering_key=row["ordering_key"],
        allow_insecure=row["allow_insecure"],
        handshake_at=row["handshake_at"],
        created_at=row["created_at"],
        agreement=row["agreement"],
        requested_rate=row["requested_rate"],
        allowed_rate=row["allowed_rate"],
    )


def add(conn: psycopg.Connection[Any], subscription: Subscription, schema: str) -> str:
    """Store a validated subscription (with how delivery was agreed); returns its new id."""
    row = conn.execute(
        query("insert_subscription", schema),
        (
            subscription.callback_url,
            subscription.auth,
            Jsonb([k.to_dict() for k in subscription.kanalen]),
            list(subscription.types),
            subscription.content_mode,
            subscription.ordering_key,
            subscription.allow_insecure,
            subscription.handshake_at,
            subscription.agreement,
            subscription.requested_rate,
            subscription.allowed_rate,
        ),
    ).fetchone()
    assert row is not None
    return str(row[0])


def list_all(conn: psycopg.Connection[Any], schema: str) -> list[Subscription]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [from_row(row) for row in cur.execute(query("list_subscriptions", schema)).fetchall()]


def get(conn: psycopg.Connection[Any], schema: str, subscription_id: str) -> Subscription:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("get_subscription", schema), (_subscription_id(subscription_id),)).fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)
    return from_row(row)


def set_status(
    conn: psycopg.Connection[Any], schema: str, subscription_id: str, status: str, reason: str | None
) -> None:
    """active (reason None) or paused (with a reason)."""
    row = conn.execute(
        query("set_subscription_status", schema), (status, reason, _subscription_id(subscription_id))
    ).fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)


def record_handshake(
    conn: psycopg.Connection[Any],
    schema: str,
    subscription_id: str,
    requested_rate: int | None,
    allowed_rate: str | None,
) -> None:
    row = conn.execute(
        query("record_handshake", schema), (requested_rate, allowed_rate, _subscription_id(subscription_id))
    ).fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)


def remove(conn: psycopg.Connection[Any], schema: str, subscription_id: str) -> None:
    row = conn.execute(query("delete_subscription", schema), (_subscription_id(subscription_id),)).fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)
