"""Operator actions on consumers shared by the CLI, the API and the console: trying a payload, replaying a kept failure.

`try_payload` runs a payload through the consumer's mapping and target checks (the catalogue's schema included)
and stores nothing: `{"event": {...}}` or `{"code": ..., "problems": [{name, code, reason}]}`. `replay` maps a
kept failure's body again with the mapping's current version and stores the event in one transaction with the
failure's `replayedAt`, so a replay happens once; one that fails again updates the failure's code and problems
and raises `Refused`. A replay is not verified again: the request was verified when it arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from outbox._sql import query
from worker.consumers import intake
from worker.consumers.mapping import Headers
from worker.store import consumers as store
from worker.store.consumers import Consumer, ConsumerNotFound, FailureNotFound


class AlreadyReplayed(ValueError):
    def __init__(self, failure_id: int) -> None:
        super().__init__(f"consumer failure {failure_id} was replayed already")


@dataclass(frozen=True)
class Replayed:
    """A replay's result: the event stored (`stored` False: it was there already, a duplicate)."""

    failure_id: int
    stored: bool
    event: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"failureId": self.failure_id, "stored": self.stored, "event": self.event}


def _with_mapping(conn: psycopg.Connection[Any], schema: str, consumer: Consumer) -> Consumer:
    found = store.hook_consumer(conn, schema, consumer.endpoint)
    if found is None:
        raise ConsumerNotFound(consumer.name)
    return found


async def _with_mapping_async(conn: psycopg.AsyncConnection[Any], schema: str, consumer: Consumer) -> Consumer:
    found = await store.hook_consumer_async(conn, schema, consumer.endpoint)
    if found is None:
        raise ConsumerNotFound(consumer.name)
    return found


def try_payload(
    conn: psycopg.Connection[Any], schema: str, consumer: Consumer, body: bytes, headers: Headers | None = None
) -> dict[str, Any]:
    """The event the consumer would make of `body` (nothing stored), or the refusal."""
    full = _with_mapping(conn, schema, consumer)
    target = intake.target(conn, schema, full)
    try:
        event = intake.make_event(full, target, body, headers)
        intake.admit_one(conn, schema, event, target)
    except intake.Refused as refused:
        return refused.to_dict()
    return {"event": event.to_dict()}


async def try_payload_async(
    conn: psycopg.AsyncConnection[Any], schema: str, consumer: Consumer, body: bytes, headers: Headers | None = None
) -> dict[str, Any]:
    full = await _with_mapping_async(conn, schema, consumer)
    target = await intake.target_async(conn, schema, full)
    try:
        event = intake.make_event(full, target, body, headers)
        await intake.admit_one_async(conn, schema, event, target)
    except intake.Refused as refused:
        return refused.to_dict()
    return {"event": event.to_dict()}


def _failed_again(failure_id: int, refused: intake.Refused, consumer: Consumer) -> dict[str, Any]:
    version = consumer.mapping.version if consumer.mapping is not None else None
    return {"id": failure_id, "code": refused.code, "problems": Jsonb(refused.problems), "mapping_version": version}


def replay(conn: psycopg.Connection[Any], schema: str, consumer: Consumer, failure_id: int) -> Replayed:
    """Replays one kept failure of `consumer` (see the module's docstring)."""
    failure = store.failure(conn, schema, failure_id)
    if failure.consumer_id != consumer.id:
        raise FailureNotFound(failure_id)
    if failure.replayed_at is not None:
        raise AlreadyReplayed(failure_id)
    full = _with_mapping(conn, schema, consumer)
    target = intake.target(conn, schema, full)
    assert failure.body is not None
    try:
        event = intake.make_event(full, target, failure.body, failure.headers)
        intake.admit_one(conn, schema, event, target)
    except intake.Refused as refused:
        conn.execute(query("failure_failed_again", schema), _failed_again(failure_id, refused, full))
        raise
    item = intake.taken(full, target, event, failure.webhook_id)
    with conn.transaction():
        intake.store_events(conn, schema, intake.position_sequence(conn, schema), [item])
        marked = conn.execute(
            query("failure_replayed", schema),
            {"id": failure_id, "source": item.event_source, "event_id": item.event_id},
        ).fetchone()
        if marked is None:
            raise AlreadyReplayed(failure_id)  # a concurrent replay won: this one's transaction is undone
    return Replayed(failure_id, item.stored, event.to_dict())


async def replay_async(
    conn: psycopg.AsyncConnection[Any], schema: str, consumer: Consumer, failure_id: int
) -> Replayed:
    failure = await store.failure_async(conn, schema, failure_id)
    if failure.consumer_id != consumer.id:
        raise FailureNotFound(failure_id)
    if failure.replayed_at is not None:
        raise AlreadyReplayed(failure_id)
    full = await _with_mapping_async(conn, schema, consumer)
    target = await intake.target_async(conn, schema, full)
    assert failure.body is not None
    try:
        event = intake.make_event(full, target, failure.body, failure.headers)
        await intake.admit_one_async(conn, schema, event, target)
    except intake.Refused as refused:
        await conn.execute(query("failure_failed_again", schema), _failed_again(failure_id, refused, full))
        raise
    item = intake.taken(full, target, event, failure.webhook_id)
    async with conn.transaction():
        sequence = await intake.position_sequence_async(conn, schema)
        await intake.store_events_async(conn, schema, sequence, [item])
        cursor = await conn.execute(
            query("failure_replayed", schema),
            {"id": failure_id, "source": item.event_source, "event_id": item.event_id},
        )
        if await cursor.fetchone() is None:
            raise AlreadyReplayed(failure_id)
    return Replayed(failure_id, item.stored, event.to_dict())
