"""Deliveries and events as operators read them: `outbox deliveries list|show`, `outbox events show`
and the console's pages. Reads only; the SQL is in sql/queries.sql (deliveries_page, delivery_get, …).
Each read has a sync form (the CLI) and an async one (the console, on the service's pool)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from outbox._deliveries_filter import MAX_LIMIT, DeliveryFilter
from outbox._sql import query
from outbox._subscription import public_url

EXCERPT = 512  # characters of an answer shown with an attempt (up to 4 KiB are kept)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class DeliveryRow:
    """One line of a listing. `to_json()` is the `--json` object (its keys are a contract)."""

    id: int
    event_id: str
    source: str
    type: str
    subject: str | None
    subscription_id: uuid.UUID
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    enqueued_at: datetime
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        live = self.status in ("blocked", "pending", "delivering")
        return {
            "id": self.id,
            "eventId": self.event_id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "subscription": str(self.subscription_id),
            "state": self.status,
            "attempts": self.attempts,
            "lastStatusCode": self.last_status_code,
            "lastError": self.last_error,
            "nextAttemptAt": _iso(self.next_attempt_at) if live else None,
            "enqueuedAt": _iso(self.enqueued_at),
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
            "finishedAt": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class Page:
    """Newest first; `next` is the cursor of the following page (None: this is the last)."""

    rows: list[DeliveryRow]
    next: str | None


@dataclass(frozen=True)
class Attempt:
    id: int
    attempted_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    response_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": _iso(self.attempted_at),
            "durationMs": round(self.duration_ms, 1),
            "statusCode": self.status_code,
            "error": self.error,
            "response": self.response_excerpt,
            "responseTruncated": bool(
                self.response_bytes
                and self.response_excerpt is not None
                and self.response_bytes > len(self.response_excerpt.encode())
            ),
        }


@dataclass(frozen=True)
class Delivery:
    """One delivery whole: its event, its subscription's public callback and every attempt, oldest first."""

    id: int
    event: dict[str, Any]
    subscription_id: uuid.UUID
    callback_url: str
    status: str
    ordering_key: str | None
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    leased_until: datetime | None
    enqueued_at: datetime
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    tries: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        live = self.status in ("blocked", "pending", "delivering")
        return {
            "id": self.id,
            "state": self.status,
            "subscription": str(self.subscription_id),
            "callbackUrl": self.callback_url,
            "orderingKey": self.ordering_key,
            "attempts": self.attempts,
            "lastStatusCode": self.last_status_code,
            "lastError": self.last_error,
            "nextAttemptAt": _iso(self.next_attempt_at) if live else None,
            "leasedUntil": _iso(self.leased_until),
            "enqueuedAt": _iso(self.enqueued_at),
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
            "finishedAt": _iso(self.finished_at),
            "event": self.event,
            "attemptLog": [a.to_json() for a in self.tries],
        }


@dataclass(frozen=True)
class EventDelivery:
    id: int
    subscription_id: uuid.UUID
    callback_url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subscription": str(self.subscription_id),
            "callbackUrl": self.callback_url,
            "state": self.status,
            "attempts": self.attempts,
            "lastStatusCode": self.last_status_code,
            "lastError": self.last_error,
            "nextAttemptAt": _iso(self.next_attempt_at) if self.status not in ("delivered", "failed") else None,
            "createdAt": _iso(self.created_at),
            "finishedAt": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class FoundEvent:
    """An event and where it went."""

    position: int
    enqueued_at: datetime
    routed_at: datetime | None
    event: dict[str, Any]
    deliveries: list[EventDelivery]

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "enqueuedAt": _iso(self.enqueued_at),
            "routedAt": _iso(self.routed_at),
            "deliveries": [d.to_json() for d in self.deliveries],
        }


def _page_params(where: DeliveryFilter, limit: int, after: int | None) -> dict[str, Any]:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be between 1 and {MAX_LIMIT}")
    # one more than asked: whether a next page exists, without a count
    return {**where.params(), "limit": limit + 1, "after": after}


def _page(rows: list[dict[str, Any]], limit: int) -> Page:
    items = [DeliveryRow(**row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items, str(items[-1].id) if more and items else None)


def _delivery(row: dict[str, Any], attempts: list[dict[str, Any]]) -> Delivery:
    row = dict(row)
    row.pop("event_position")
    row.pop("event_enqueued_at")
    row["callback_url"] = public_url(row["callback_url"])
    return Delivery(**row, tries=[Attempt(**a) for a in attempts])


# ---- sync (the CLI) ----


def list_deliveries(
    conn: psycopg.Connection[Any], schema: str, where: DeliveryFilter, *, limit: int = 50, after: int | None = None
) -> Page:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            query("deliveries_page", schema), _page_params(where, limit, after), prepare=False
        ).fetchall()
    return _page(rows, limit)


def count_deliveries(conn: psycopg.Connection[Any], schema: str, where: DeliveryFilter) -> int:
    row = conn.execute(query("deliveries_count", schema), where.params(), prepare=False).fetchone()
    return int(row[0]) if row else 0


def get_delivery(conn: psycopg.Connection[Any], schema: str, delivery_id: int) -> Delivery | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("delivery_get", schema), {"id": delivery_id}).fetchone()
        if row is None:
            return None
        attempts = cur.execute(query("delivery_attempts", schema), {"id": delivery_id, "excerpt": EXCERPT}).fetchall()
    return _delivery(row, attempts)


def find_events(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    event_id: str | None = None,
    source: str | None = None,
    subject: str | None = None,
    limit: int = 20,
) -> list[FoundEvent]:
    """By CloudEvents id (and source), or by subject; newest first, each with its deliveries."""
    with conn.cursor(row_factory=dict_row) as cur:
        if event_id is not None:
            params = {"event_id": event_id, "source": source, "limit": limit}
            events = cur.execute(query("events_by_id", schema), params).fetchall()
        else:
            events = cur.execute(query("events_by_subject", schema), {"subject": subject, "limit": limit}).fetchall()
        if not events:
            return []
        rows = cur.execute(query("event_deliveries", schema), _event_keys(events)).fetchall()
    return _found(events, rows)


def _event_keys(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"positions": [e["position"] for e in events], "enqueued": [e["enqueued_at"] for e in events]}


def _found(events: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[FoundEvent]:
    # the query matched positions and times as two lists: keep the exact pairs
    found = []
    for e in events:
        mine = [
            EventDelivery(
                **{k: v for k, v in r.items() if not k.startswith("event_")}
                | {"callback_url": public_url(r["callback_url"])}
            )
            for r in rows
            if (r["event_position"], r["event_enqueued_at"]) == (e["position"], e["enqueued_at"])
        ]
        found.append(FoundEvent(e["position"], e["enqueued_at"], e["routed_at"], e["event"], mine))
    return found


# ---- async (the console) ----


async def list_deliveries_async(
    conn: psycopg.AsyncConnection[Any], schema: str, where: DeliveryFilter, *, limit: int = 50, after: int | None = None
) -> Page:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("deliveries_page", schema), _page_params(where, limit, after), prepare=False)
        rows = await cur.fetchall()
    return _page(rows, limit)


async def count_deliveries_async(conn: psycopg.AsyncConnection[Any], schema: str, where: DeliveryFilter) -> int:
    cur = await conn.execute(query("deliveries_count", schema), where.params(), prepare=False)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_delivery_async(conn: psycopg.AsyncConnection[Any], schema: str, delivery_id: int) -> Delivery | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("delivery_get", schema), {"id": delivery_id})
        row = await cur.fetchone()
        if row is None:
            return None
        await cur.execute(query("delivery_attempts", schema), {"id": delivery_id, "excerpt": EXCERPT})
        attempts = await cur.fetchall()
    return _delivery(row, attempts)


async def find_events_async(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    *,
    event_id: str | None = None,
    source: str | None = None,
    subject: str | None = None,
    limit: int = 20,
) -> list[FoundEvent]:
    async with conn.cursor(row_factory=dict_row) as cur:
        if event_id is not None:
            await cur.execute(query("events_by_id", schema), {"event_id": event_id, "source": source, "limit": limit})
        else:
            await cur.execute(query("events_by_subject", schema), {"subject": subject, "limit": limit})
        events = await cur.fetchall()
        if not events:
            return []
        await cur.execute(query("event_deliveries", schema), _event_keys(events))
        rows = await cur.fetchall()
    return _found(events, rows)
