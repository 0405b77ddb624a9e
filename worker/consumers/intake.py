"""From a verified request to a stored event: what `/hooks/{endpoint}`, `outbox consumers try` and a replay share.

`make_event` maps the body (or, without a mapping, reads it as a CloudEvent) and checks it against the
consumer's target: for `event-type` the catalogue entry gives `type` and `source` when the mapping leaves them
out, and the event must be of that type; the entry's JSON Schema is applied by the catalogue (`admit`) when the
event is stored or tried. Every refusal is a `Refused(status, code, problems)`: 422 for the payload's faults
(the mapping's codes, `schema_violation`, `type_mismatch`), 503 `target_missing` when the target is gone (the
sender should retry; the operator must act). Both kinds are kept as failures for the operator.

`store_events` writes a group of requests' events in one statement (`consumer_events`, sql/020): a replayed
webhook id or a known (`source`, `id`) stores nothing and is a success (`duplicate`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import psycopg

from outbox import CloudEvent
from outbox._catalogue import EventType, admit, admit_async
from outbox._errors import InvalidEventError
from outbox._sql import notify_channel, query
from worker.consumers import model
from worker.consumers.mapping import Headers, MappingFailed, apply, as_event
from worker.store import catalogue as catalogue_store
from worker.store.consumers import Consumer

SCHEMA_VIOLATION: Final = "schema_violation"
TYPE_MISMATCH: Final = "type_mismatch"
TARGET_MISSING: Final = "target_missing"
TYPE_DISABLED: Final = "type_disabled"


class Refused(Exception):
    """A verified request that cannot become an event: `status` (422 or 503), `code`, and `problems`
    ({name, code, reason} each)."""

    def __init__(self, status: int, code: str, problems: Sequence[Mapping[str, str]]) -> None:
        self.status = status
        self.code = code
        self.problems = [dict(p) for p in problems]
        super().__init__(f"{code}: " + "; ".join(f"{p['name']}: {p['reason']}" for p in self.problems))

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "problems": self.problems}


def _problem(name: str, code: str, reason: str) -> dict[str, str]:
    return {"name": name, "code": code, "reason": reason}


@dataclass(frozen=True)
class Target:
    """What the consumer's target is, looked up once per cache period: the catalogue entry, or that the
    subscription exists."""

    entry: EventType | None = None
    subscription: uuid.UUID | None = None
    missing: str | None = None  # why the target is gone


def defaults(target: Target) -> dict[str, Any]:
    if target.entry is None:
        return {}
    found = {"type": target.entry.type}
    if target.entry.source is not None:
        found["source"] = target.entry.source
    return found


def make_event(consumer: Consumer, target: Target, body: bytes, headers: Headers | None) -> CloudEvent:
    """The event the request becomes, or `Refused`."""
    if target.missing is not None:
        raise Refused(503, TARGET_MISSING, [_problem("targetId", TARGET_MISSING, target.missing)])
    try:
        if consumer.mapping is not None:
            event = apply(consumer.mapping, body, headers, defaults(target))
        else:
            event = as_event(body, defaults(target))
    except MappingFailed as failed:
        raise Refused(422, failed.code, [_problem(p.field, failed.code, p.rule) for p in failed.problems]) from None
    if target.entry is not None and event.type != target.entry.type:
        raise Refused(
            422,
            TYPE_MISMATCH,
            [_problem("type", TYPE_MISMATCH, f"must be {target.entry.type!r}, the consumer's target event type "
                      f"({target.entry.slug!r})")],
        )  # fmt: skip
    return event


def _catalogue_refusal(exc: InvalidEventError) -> Refused:
    return Refused(422, SCHEMA_VIOLATION, [_problem(exc.attribute, SCHEMA_VIOLATION, exc.rule)])


def check_admitted(kept: bool, target: Target) -> None:
    if not kept:
        slug = target.entry.slug if target.entry is not None else "?"
        raise Refused(
            422, TYPE_DISABLED, [_problem("type", TYPE_DISABLED, f"the event catalogue entry {slug!r} is disabled")]
        )


async def admit_one_async(conn: psycopg.AsyncConnection[Any], schema: str, event: CloudEvent, target: Target) -> None:
    """The catalogue's verdict (schema, source, enabled) on the event, as `Refused`."""
    try:
        (kept,) = await admit_async(conn, schema, [event])
    except InvalidEventError as exc:
        raise _catalogue_refusal(exc) from None
    check_admitted(kept, target)


def admit_one(conn: psycopg.Connection[Any], schema: str, event: CloudEvent, target: Target) -> None:
    try:
        (kept,) = admit(conn, schema, [event])
    except InvalidEventError as exc:
        raise _catalogue_refusal(exc) from None
    check_admitted(kept, target)


def _target_of(consumer: Consumer, entry: EventType | None, subscription_found: bool) -> Target:
    if consumer.target_type == model.EVENT_TYPE:
        if entry is None:
            return Target(missing=f"the event catalogue has no entry {consumer.target_id!r}")
        return Target(entry=entry)
    if not subscription_found:
        return Target(missing=f"there is no subscription {consumer.target_id}")
    return Target(subscription=uuid.UUID(consumer.target_id))


async def target_async(conn: psycopg.AsyncConnection[Any], schema: str, consumer: Consumer) -> Target:
    if consumer.target_type == model.EVENT_TYPE:
        try:
            entry = await catalogue_store.get_async(conn, schema, consumer.target_id)
        except LookupError:
            entry = None
        return _target_of(consumer, entry, False)
    found = await (await conn.execute(query("subscription_exists", schema), (consumer.target_id,))).fetchone()
    return _target_of(consumer, None, found is not None)


def target(conn: psycopg.Connection[Any], schema: str, consumer: Consumer) -> Target:
    if consumer.target_type == model.EVENT_TYPE:
        try:
            entry = catalogue_store.get(conn, schema, consumer.target_id)
        except LookupError:
            entry = None
        return _target_of(consumer, entry, False)
    found = conn.execute(query("subscription_exists", schema), (consumer.target_id,)).fetchone()
    return _target_of(consumer, None, found is not None)


# -- storing ----------------------------------------------------------------------------------------------


@dataclass
class Taken:
    """One request's event, ready for `consumer_events`."""

    consumer_id: uuid.UUID
    webhook_id: str | None
    event: CloudEvent
    document: bytes  # the event as stored (JSON event format)
    target: uuid.UUID | None
    stored: bool = False  # after storing: new, or a duplicate / replay
    event_id: str = field(default="")  # the id answered: the event's, or the one a replayed webhook id named
    event_source: str = field(default="")


def taken(consumer: Consumer, target: Target, event: CloudEvent, webhook_id: str | None) -> Taken:
    document = orjson.dumps(event.to_dict())
    return Taken(consumer.id, webhook_id, event, document, target.subscription, event_id=event.id,
                 event_source=event.source)  # fmt: skip


def _parameters(group: Sequence[Taken], sequence: str, schema: str) -> tuple[Any, ...]:
    return (
        [t.consumer_id for t in group],
        [t.webhook_id for t in group],
        [t.event.source for t in group],
        [t.event.id for t in group],
        (b"[" + b",".join(t.document for t in group) + b"]").decode(),
        [t.target for t in group],
        sequence,
        notify_channel(schema),
    )


def _settle(group: Sequence[Taken], rows: Sequence[tuple[Any, ...]]) -> None:
    for ordinal, stored, source, event_id in rows:
        item = group[int(ordinal) - 1]
        item.stored = bool(stored)
        if event_id is not None:  # a replayed webhook id: the event it named when it was recorded
            item.event_source, item.event_id = source, event_id


def position_sequence(conn: psycopg.Connection[Any], schema: str) -> str:
    row = conn.execute(query("events_position_sequence", schema), (schema,)).fetchone()
    assert row is not None
    return str(row[0])


async def position_sequence_async(conn: psycopg.AsyncConnection[Any], schema: str) -> str:
    row = await (await conn.execute(query("events_position_sequence", schema), (schema,))).fetchone()
    assert row is not None
    return str(row[0])


async def store_events_async(
    conn: psycopg.AsyncConnection[Any], schema: str, sequence: str, group: Sequence[Taken]
) -> None:
    """Stores the group's events in one statement (the caller's transaction, or autocommit: one commit)."""
    cursor = await conn.execute(query("consumer_events", schema), _parameters(group, sequence, schema))
    _settle(group, await cursor.fetchall())


def store_events(conn: psycopg.Connection[Any], schema: str, sequence: str, group: Sequence[Taken]) -> None:
    rows = conn.execute(query("consumer_events", schema), _parameters(group, sequence, schema)).fetchall()
    _settle(group, rows)
