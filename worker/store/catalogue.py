"""The event catalogue in the database: what `outbox event-types …` and `/api/v1/event-types` read and write."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from outbox._catalogue import EventType
from outbox._sql import query


class EventTypeNotFound(LookupError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"no event type with slug {slug!r}")


class EventTypeConflict(ValueError):
    """A slug or type that another entry already has."""


def _conflict(exc: psycopg.errors.UniqueViolation, entry: EventType) -> EventTypeConflict:
    # event_types_type_key (UNIQUE type); the primary key, event_types_pkey, is the slug
    field = "type" if (exc.diag.constraint_name or "").endswith("_type_key") else "slug"
    value = entry.type if field == "type" else entry.slug
    return EventTypeConflict(f"{field}: another event type already has {value!r}")


class BuiltInEventType(EventTypeConflict):
    """A change to a built-in (operational) entry other than isEnabled (sql/017 refuses it)."""


def _built_in(exc: psycopg.errors.CheckViolation) -> BuiltInEventType:
    # keep_operational_event_types (sql/017): "event type SLUG: is a built-in operational event type: ..."
    return BuiltInEventType(exc.diag.message_primary or "a built-in operational event type: only isEnabled may change")


def all_types(conn: psycopg.Connection[Any], schema: str) -> list[EventType]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [EventType.from_row(row) for row in cur.execute(query("list_event_types", schema)).fetchall()]


def get(conn: psycopg.Connection[Any], schema: str, slug: str, *, lock: bool = False) -> EventType:
    """One entry; `lock`: held until the transaction ends (read, change, write back)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("get_event_type_for_update" if lock else "get_event_type", schema), (slug,)).fetchone()
    if row is None:
        raise EventTypeNotFound(slug)
    return EventType.from_row(row)


def add(conn: psycopg.Connection[Any], schema: str, entry: EventType) -> None:
    try:
        with conn.transaction():
            conn.execute(query("insert_event_type", schema), entry.row())
    except psycopg.errors.UniqueViolation as exc:
        raise _conflict(exc, entry) from None


def replace(conn: psycopg.Connection[Any], schema: str, slug: str, entry: EventType) -> None:
    """The entry `slug` becomes `entry` (its slug may change)."""
    try:
        with conn.transaction():  # a savepoint when the caller's transaction holds the row
            row = conn.execute(query("update_event_type", schema), {**entry.row(), "current_slug": slug}).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise _conflict(exc, entry) from None
    except psycopg.errors.CheckViolation as exc:
        raise _built_in(exc) from None
    if row is None:
        raise EventTypeNotFound(slug)


def remove(conn: psycopg.Connection[Any], schema: str, slug: str) -> None:
    try:
        with conn.transaction():
            row = conn.execute(query("delete_event_type", schema), (slug,)).fetchone()
    except psycopg.errors.CheckViolation as exc:
        raise _built_in(exc) from None
    if row is None:
        raise EventTypeNotFound(slug)


def import_all(conn: psycopg.Connection[Any], schema: str, entries: list[EventType]) -> int:
    """Upsert by slug in one transaction; entries not in the file stay. Returns how many rows changed."""
    changed = 0
    try:
        with conn.transaction():
            for entry in entries:
                changed += conn.execute(query("upsert_event_type", schema), entry.row()).rowcount
    except psycopg.errors.UniqueViolation as exc:
        raise EventTypeConflict(f"type: two event types would have the same type ({exc.diag.message_detail})") from None
    except psycopg.errors.CheckViolation as exc:
        raise _built_in(exc) from None
    return changed


# -- asyncio (the service): the same queries -------------------------------------------------------------


async def find_async(
    conn: psycopg.AsyncConnection[Any], schema: str, *, type: str | None = None, is_enabled: bool | None = None
) -> list[EventType]:
    """The entries by slug, only those of `type` and/or `is_enabled` when given."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("find_event_types", schema), {"type": type, "is_enabled": is_enabled})
        return [EventType.from_row(row) for row in await cur.fetchall()]


async def get_async(conn: psycopg.AsyncConnection[Any], schema: str, slug: str, *, lock: bool = False) -> EventType:
    """`get` for asyncio connections."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("get_event_type_for_update" if lock else "get_event_type", schema), (slug,))
        row = await cur.fetchone()
    if row is None:
        raise EventTypeNotFound(slug)
    return EventType.from_row(row)


async def add_async(conn: psycopg.AsyncConnection[Any], schema: str, entry: EventType) -> None:
    try:
        async with conn.transaction():
            await conn.execute(query("insert_event_type", schema), entry.row())
    except psycopg.errors.UniqueViolation as exc:
        raise _conflict(exc, entry) from None


async def replace_async(conn: psycopg.AsyncConnection[Any], schema: str, slug: str, entry: EventType) -> None:
    """`replace` for asyncio connections."""
    try:
        async with conn.transaction():
            cursor = await conn.execute(query("update_event_type", schema), {**entry.row(), "current_slug": slug})
            row = await cursor.fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise _conflict(exc, entry) from None
    except psycopg.errors.CheckViolation as exc:
        raise _built_in(exc) from None
    if row is None:
        raise EventTypeNotFound(slug)


async def remove_async(conn: psycopg.AsyncConnection[Any], schema: str, slug: str) -> None:
    try:
        async with conn.transaction():
            row = await (await conn.execute(query("delete_event_type", schema), (slug,))).fetchone()
    except psycopg.errors.CheckViolation as exc:
        raise _built_in(exc) from None
    if row is None:
        raise EventTypeNotFound(slug)
