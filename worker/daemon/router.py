"""Routing: new events become one delivery per matching active subscription, in event order.

One router at a time per schema (a transaction-level advisory lock; the others skip), so delivery
ids follow event order, which the per-key ordering of the claim relies on. The unique
(event, subscription) key makes a delivery exist exactly once even so.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from outbox import CloudEvent, InvalidEventError, Subscription
from outbox._filters import EventView
from worker.runtime.logs import log


def ordering_key(subscription: Subscription, event: CloudEvent) -> str | None:
    """The event's subject, or the attribute the subscription orders by; None = unordered."""
    value = event.get(subscription.ordering_key) if subscription.ordering_key else event.subject
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Routes:
    """The deliveries to create for a batch of events, as columns for one INSERT."""

    positions: list[int] = field(default_factory=list)
    # Each event's enqueued_at, copied to its deliveries: the events leaf their joins read.
    enqueued_at: list[datetime] = field(default_factory=list)
    subscription_ids: list[uuid.UUID] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)


def plan(rows: Sequence[tuple[Any, ...]], subscriptions: Sequence[Subscription]) -> Routes:
    """Match each (position, JSON event, enqueued_at[, target subscription]) against the active
    subscriptions. An event with a target (a 'source' consumer's, sql/020) goes to that subscription only,
    whatever its filters and status say (a paused one's delivery waits, as its pending ones do); a target
    removed meanwhile gets nothing."""
    routes = Routes()
    # Parsed once per pass, not once per matching event.
    active = [(s, uuid.UUID(str(s.id))) for s in subscriptions if s.status == "active"]
    by_id: dict[uuid.UUID, Subscription] | None = None
    any_filters = any(s.filters for s, _ in active)
    for row in rows:
        position, text, enqueued_at = row[0], row[1], row[2]
        target = row[3] if len(row) > 3 else None
        try:
            event = CloudEvent.from_dict(orjson.loads(text))
        except (InvalidEventError, orjson.JSONDecodeError, TypeError, ValueError) as exc:
            # Only rows written around enqueue can be broken; they cannot be delivered. Say so, go on.
            log(logging.ERROR, "event not routable", position=position, reason=str(exc))
            continue
        if target is not None:
            if by_id is None:
                by_id = {uuid.UUID(str(s.id)): s for s in subscriptions}
            subscription = by_id.get(target)
            if subscription is None:
                log(logging.WARNING, "event's target subscription is gone", position=position, subscription=str(target))
                continue
            routes.positions.append(position)
            routes.enqueued_at.append(enqueued_at)
            routes.subscription_ids.append(target)
            routes.keys.append(ordering_key(subscription, event))
            continue
        view = EventView(event) if any_filters else None  # what filters read, once per event
        for subscription, subscription_id in active:
            if subscription.wants(event, view):
                routes.positions.append(position)
                routes.enqueued_at.append(enqueued_at)
                routes.subscription_ids.append(subscription_id)
                routes.keys.append(ordering_key(subscription, event))
    return routes


def lock_key(schema: str) -> str:
    """The advisory lock that makes one worker at a time the router of a schema."""
    return f"nlgov-outbox route {schema}"
