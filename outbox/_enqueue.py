"""Write events into the outbox in the caller's transaction.

One INSERT per call (or per batch), on the caller's own connection, never a
commit: the event exists exactly when the caller's transaction commits. The
same statement queues a NOTIFY when a worker is idle (PostgreSQL delivers it
at commit, once per transaction); busy workers poll, and the host then commits
without the NOTIFY's cluster-wide commit lock.

SQLAlchemy sessions and connections are unwrapped to their psycopg 3
connection (the `postgresql+psycopg` dialect), and so are Django's
(`django.db.connection`, `connections[alias]`; see `outbox.django.connection`),
so every entry point runs the same SQL with the same binary parameters; only the
thin unwrapping differs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg import pq

from outbox import _tracing
from outbox._catalogue import admit, admit_async
from outbox._errors import NoTransactionError, UnsupportedConnectionError
from outbox._event import DEFAULT_MAX_EVENT_BYTES, CloudEvent
from outbox._sql import DEFAULT_SCHEMA, notify_channel, query

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    class DjangoConnection(Protocol):
        """`django.db.connection`, `connections[alias]` (Django ships no types: this is their shape)."""

        in_atomic_block: bool
        settings_dict: dict[str, Any]

    SyncTarget = psycopg.Connection[Any] | Session | SAConnection | DjangoConnection
    AsyncTarget = psycopg.AsyncConnection[Any] | AsyncSession | SAAsyncConnection


def _settings(schema: str | None, max_event_bytes: int | None) -> tuple[str, int]:
    """The explicit arguments, else OUTBOX_SCHEMA / OUTBOX_MAX_EVENT_BYTES, else the defaults."""
    if schema is None:
        schema = os.environ.get("OUTBOX_SCHEMA") or DEFAULT_SCHEMA
    if max_event_bytes is None:
        raw = os.environ.get("OUTBOX_MAX_EVENT_BYTES")
        try:
            max_event_bytes = int(raw) if raw else DEFAULT_MAX_EVENT_BYTES
        except ValueError:
            raise ValueError(f"OUTBOX_MAX_EVENT_BYTES: must be a whole number of bytes, got {raw!r}") from None
    return schema, max_event_bytes


def _document(event: CloudEvent, max_event_bytes: int, trace: _tracing.Enqueue | None = None) -> str:
    if not isinstance(event, CloudEvent):
        raise TypeError(f"enqueue takes an outbox.CloudEvent, not {type(event).__name__}")
    return event._serialize(max_event_bytes, trace.attributes if trace is not None else None)


def _documents(events: Iterable[CloudEvent], max_event_bytes: int, trace: _tracing.Enqueue | None = None) -> list[str]:
    # Every event is validated and serialized before the first byte is sent.
    return [_document(event, max_event_bytes, trace) for event in events]


def _check_transaction(status: pq.TransactionStatus, autocommit: bool) -> None:
    if autocommit and status == pq.TransactionStatus.IDLE:
        raise NoTransactionError(
            "enqueue: the connection is in autocommit mode outside a transaction; "
            "open one (with conn.transaction(): ...) so the event commits with your change"
        )
    if status == pq.TransactionStatus.INERROR:
        raise NoTransactionError("enqueue: the caller's transaction has already failed; roll it back first")


# -- sync ------------------------------------------------------------------------


def _is_django(target: object) -> bool:
    # Recognised by shape (a DatabaseWrapper, or the `django.db.connection` proxy in front of one, also from
    # third-party engines), so Django is imported only by hosts that use it.
    return hasattr(target, "in_atomic_block") and hasattr(target, "settings_dict")


def _connection(target: object) -> psycopg.Connection[Any]:
    """The psycopg connection to write on, checked to be inside the caller's transaction (a
    Django connection outside `transaction.atomic()` is allowed: see `outbox.django.connection`)."""
    if not isinstance(target, psycopg.Connection) and _is_django(target):
        from outbox.django.connection import psycopg_connection

        return psycopg_connection(target)
    pg = _psycopg_connection(target)
    _check_transaction(pg.info.transaction_status, pg.autocommit)
    return pg


def _psycopg_connection(target: object) -> psycopg.Connection[Any]:
    if isinstance(target, psycopg.Connection):
        return target
    try:
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.orm import Session
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        SAConnection = Session = None  # type: ignore[assignment,misc]
    if Session is not None and isinstance(target, Session):
        target = target.connection()  # begins the session's transaction if needed
    if SAConnection is not None and isinstance(target, SAConnection):
        if not target.in_transaction():
            target.begin()
        driver = target.connection.driver_connection
        if isinstance(driver, psycopg.Connection):
            return driver
        raise UnsupportedConnectionError(
            f"enqueue: SQLAlchemy must use the psycopg 3 driver (postgresql+psycopg://), not {type(driver).__module__}"
        )
    raise UnsupportedConnectionError(
        "enqueue takes a psycopg.Connection, a SQLAlchemy Session or Connection, or a Django connection; "
        f"got {type(target).__name__} (use enqueue_async for async connections)"
    )


def enqueue(
    conn: SyncTarget, event: CloudEvent, *, schema: str | None = None, max_event_bytes: int | None = None
) -> int | None:
    """Write `event` in the caller's open transaction and return its position.

    Never commits: a rollback leaves no trace. Invalid events raise `InvalidEventError` before anything
    is written, also when they break the event catalogue (`outbox._catalogue`); an event whose type the
    catalogue has disabled is not written and None is returned.
    """
    schema, max_event_bytes = _settings(schema, max_event_bytes)
    with _tracing.enqueueing(schema, (event,)) as trace:  # None unless the host traces (outbox/_tracing.py)
        document = _document(event, max_event_bytes, trace)
        pg = _connection(conn)
        if not admit(pg, schema, [event])[0]:
            return None
        with psycopg.Cursor(pg) as cur:  # server-side binding (%b), whatever the connection's cursor_factory
            # Never a named prepared statement, whatever the host's prepare_threshold: PgBouncer's transaction
            # pooling would send the next call to a server without it. insert_event's PL/pgSQL caches its plan.
            cur.execute(query("insert_event", schema), (document,), prepare=False)
            result = cur.fetchone()
    assert result is not None
    return int(result[0])


def enqueue_many(
    conn: SyncTarget,
    events: Iterable[CloudEvent],
    *,
    schema: str | None = None,
    max_event_bytes: int | None = None,
) -> list[int | None]:
    """Write a batch of events in one statement; returns their positions in order (None for an event
    whose type the catalogue has disabled: not written).

    All events are validated first: one invalid event writes none of them.
    """
    schema, max_event_bytes = _settings(schema, max_event_bytes)
    events = list(events)
    if not events:
        return []
    with _tracing.enqueueing(schema, events) as trace:  # one span for the batch; every event gains its context
        documents = _documents(events, max_event_bytes, trace)
        pg = _connection(conn)
        admitted = admit(pg, schema, events)
        written = _admitted(documents, admitted)
        positions: list[int] = []
        if written:
            with psycopg.Cursor(pg) as cur:  # server-side binding (%b), whatever the connection's cursor_factory
                cur.execute(query("insert_events", schema), (written, notify_channel(schema)), prepare=False)
                positions = [int(r[0]) for r in cur.fetchall()]
    return _aligned(positions, admitted)


def _admitted(documents: list[str], admitted: list[bool]) -> list[str]:
    """The documents the catalogue lets through (disabled types are left out)."""
    return [document for document, ok in zip(documents, admitted, strict=True) if ok]


def _aligned(positions: list[int], admitted: list[bool]) -> list[int | None]:
    """One result per event given: its position, or None where it was not written."""
    found = iter(positions)
    return [next(found) if ok else None for ok in admitted]


# -- async -----------------------------------------------------------------------


async def _async_psycopg_connection(target: object) -> psycopg.AsyncConnection[Any]:
    if isinstance(target, psycopg.AsyncConnection):
        return target
    if _is_django(target):
        raise UnsupportedConnectionError(
            "enqueue_async: Django's connections are synchronous; call outbox.enqueue (wrap it in "
            "sync_to_async in async views)"
        )
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
        from sqlalchemy.ext.asyncio import AsyncSession
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        SAAsyncConnection = AsyncSession = None  # type: ignore[assignment,misc]
    if AsyncSession is not None and isinstance(target, AsyncSession):
        target = await target.connection()
    if SAAsyncConnection is not None and isinstance(target, SAAsyncConnection):
        if not target.in_transaction():
            await target.begin()
        raw = await target.get_raw_connection()
        driver = raw.driver_connection
        if isinstance(driver, psycopg.AsyncConnection):
            return driver
        raise UnsupportedConnectionError(
            "enqueue_async: SQLAlchemy must use the psycopg 3 async driver (postgresql+psycopg://), "
            f"not {type(driver).__module__}"
        )
    raise UnsupportedConnectionError(
        "enqueue_async takes a psycopg.AsyncConnection, a SQLAlchemy AsyncSession or AsyncConnection; "
        f"got {type(target).__name__} (use enqueue for sync connections)"
    )


async def enqueue_async(
    conn: AsyncTarget, event: CloudEvent, *, schema: str | None = None, max_event_bytes: int | None = None
) -> int | None:
    """`enqueue` for asyncio: psycopg AsyncConnection, SQLAlchemy AsyncSession/AsyncConnection."""
    schema, max_event_bytes = _settings(schema, max_event_bytes)
    with _tracing.enqueueing(schema, (event,)) as trace:
        document = _document(event, max_event_bytes, trace)
        pg = await _async_psycopg_connection(conn)
        _check_transaction(pg.info.transaction_status, pg.autocommit)
        if not (await admit_async(pg, schema, [event]))[0]:
            return None
        async with psycopg.AsyncCursor(pg) as cur:  # server-side binding, as in `enqueue`
            await cur.execute(query("insert_event", schema), (document,), prepare=False)
            result = await cur.fetchone()
    assert result is not None
    return int(result[0])


async def enqueue_many_async(
    conn: AsyncTarget,
    events: Iterable[CloudEvent],
    *,
    schema: str | None = None,
    max_event_bytes: int | None = None,
) -> list[int | None]:
    """`enqueue_many` for asyncio."""
    schema, max_event_bytes = _settings(schema, max_event_bytes)
    events = list(events)
    if not events:
        return []
    with _tracing.enqueueing(schema, events) as trace:
        documents = _documents(events, max_event_bytes, trace)
        pg = await _async_psycopg_connection(conn)
        _check_transaction(pg.info.transaction_status, pg.autocommit)
        admitted = await admit_async(pg, schema, events)
        written = _admitted(documents, admitted)
        positions: list[int] = []
        if written:
            async with psycopg.AsyncCursor(pg) as cur:  # server-side binding (%b), as in `enqueue_many`
                await cur.execute(query("insert_events", schema), (written, notify_channel(schema)), prepare=False)
                positions = [int(r[0]) for r in await cur.fetchall()]
    return _aligned(positions, admitted)
