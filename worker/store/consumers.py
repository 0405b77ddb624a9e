"""Consumers and mappings in the database (sql/020): definitions, sealed verification secrets, versioned
mappings, the failures kept for the operator.

Verification secrets are sealed by the `SecretBox` as a subscription's are; reads give a `Consumer` with the
config in clear and the secrets still sealed (`secret_count` says how many are set), and `verification(box)`
opens them only for the request path and for changes. Sync functions serve the CLI, `*_async` twins the
service; both run the same named queries and build rows with the same helpers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from outbox._sql import query
from worker.consumers import model
from worker.consumers.mapping import InvalidMapping, Mapping, parse_mapping
from worker.consumers.mapping import Problem as MappingProblem
from worker.consumers.verification import (
    SECRET_FIELDS,
    VerificationConfig,
    parse_config,
    split_secrets,
)
from worker.store.secret_box import SecretBox


class ConsumerNotFound(LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no consumer {key!r}")


class MappingNotFound(LookupError):
    def __init__(self, mapping_id: str, version: int | None = None) -> None:
        at = f" version {version}" if version is not None else ""
        super().__init__(f"no mapping {mapping_id!r}{at}")


class MappingExists(ValueError):
    def __init__(self, mapping_id: str) -> None:
        super().__init__(f"a mapping {mapping_id!r} exists already (update it to add a version)")


class MappingInUse(ValueError):
    def __init__(self, mapping_id: str, consumers: Sequence[str]) -> None:
        self.consumers = tuple(consumers)
        super().__init__(f"mapping {mapping_id!r} is used by consumer(s) {', '.join(consumers)}; change them first")


class FailureNotFound(LookupError):
    def __init__(self, failure_id: int) -> None:
        super().__init__(f"no consumer failure {failure_id}")


# -- mappings ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMapping:
    """A mapping at one version (`current_version` is the one consumers use), with its users' names."""

    id: str
    description: str | None
    version: int
    expression: str
    headers: tuple[str, ...]
    current_version: int
    created_at: datetime | None = None
    version_created_at: datetime | None = None
    consumers: tuple[str, ...] = ()

    @property
    def mapping(self) -> Mapping:
        return Mapping(expression=self.expression, headers=self.headers, version=self.version)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "version": self.version,
            "currentVersion": self.current_version,
            "expression": self.expression,
            "headers": list(self.headers),
            "consumers": list(self.consumers),
            "createdAt": _iso(self.created_at),
            "versionCreatedAt": _iso(self.version_created_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def check_mapping(mapping_id: str, expression: str, headers: Sequence[str]) -> Mapping:
    """The mapping's definition checked whole (`InvalidMapping` names each field), the id included."""
    problems: list[MappingProblem] = []
    if not model.SLUG.match(mapping_id) or len(mapping_id) > 100:
        problems.append(MappingProblem("id", "must be lowercase letters and digits, joined by - _ or . (at most 100)"))
    try:
        checked = parse_mapping({"expression": expression, "headers": list(headers)})
    except InvalidMapping as exc:
        problems.extend(exc.problems)
    if problems:
        raise InvalidMapping(problems)
    return checked


def _mapping_from_row(row: Sequence[Any]) -> StoredMapping:
    (mapping_id, description, version, expression, headers, current, created, version_created, users) = row
    return StoredMapping(
        mapping_id, description, version, expression, tuple(headers), current, created, version_created, tuple(users)
    )


def add_mapping(
    conn: psycopg.Connection[Any], schema: str, mapping_id: str, expression: str, headers: Sequence[str] = (),
    description: str | None = None,
) -> StoredMapping:  # fmt: skip
    checked = check_mapping(mapping_id, expression, headers)
    params = {"id": mapping_id, "description": description, "expression": expression, "headers": list(checked.headers)}
    if conn.execute(query("insert_mapping", schema), params).fetchone() is None:
        raise MappingExists(mapping_id)
    return get_mapping(conn, schema, mapping_id)


def update_mapping(
    conn: psycopg.Connection[Any], schema: str, mapping_id: str, expression: str, headers: Sequence[str] = (),
    description: str | None = None, set_description: bool = False,
) -> StoredMapping:  # fmt: skip
    """A new version of the mapping (the old ones stay); consumers use it from their next request."""
    checked = check_mapping(mapping_id, expression, headers)
    params = {
        "id": mapping_id, "expression": expression, "headers": list(checked.headers),
        "description": description, "set_description": set_description,
    }  # fmt: skip
    if conn.execute(query("add_mapping_version", schema), params).fetchone() is None:
        raise MappingNotFound(mapping_id)
    return get_mapping(conn, schema, mapping_id)


def get_mapping(
    conn: psycopg.Connection[Any], schema: str, mapping_id: str, version: int | None = None
) -> StoredMapping:
    row = conn.execute(query("mapping", schema), {"id": mapping_id, "version": version}).fetchone()
    if row is None:
        raise MappingNotFound(mapping_id, version)
    return _mapping_from_row(row)


def list_mappings(conn: psycopg.Connection[Any], schema: str) -> list[StoredMapping]:
    return [_mapping_from_row(row) for row in conn.execute(query("list_mappings", schema)).fetchall()]


def mapping_history(conn: psycopg.Connection[Any], schema: str, mapping_id: str) -> list[StoredMapping]:
    current = get_mapping(conn, schema, mapping_id)
    rows = conn.execute(query("mapping_history", schema), {"id": mapping_id}).fetchall()
    return [replace(current, version=v, expression=e, headers=tuple(h), version_created_at=at) for v, e, h, at in rows]


def remove_mapping(conn: psycopg.Connection[Any], schema: str, mapping_id: str) -> None:
    current = get_mapping(conn, schema, mapping_id)
    if current.consumers:
        raise MappingInUse(mapping_id, current.consumers)
    conn.execute(query("delete_mapping", schema), {"id": mapping_id})


async def add_mapping_async(
    conn: psycopg.AsyncConnection[Any], schema: str, mapping_id: str, expression: str, headers: Sequence[str] = (),
    description: str | None = None,
) -> StoredMapping:  # fmt: skip
    checked = check_mapping(mapping_id, expression, headers)
    params = {"id": mapping_id, "description": description, "expression": expression, "headers": list(checked.headers)}
    if await (await conn.execute(query("insert_mapping", schema), params)).fetchone() is None:
        raise MappingExists(mapping_id)
    return await get_mapping_async(conn, schema, mapping_id)


async def update_mapping_async(
    conn: psycopg.AsyncConnection[Any], schema: str, mapping_id: str, expression: str, headers: Sequence[str] = (),
    description: str | None = None, set_description: bool = False,
) -> StoredMapping:  # fmt: skip
    checked = check_mapping(mapping_id, expression, headers)
    params = {
        "id": mapping_id, "expression": expression, "headers": list(checked.headers),
        "description": description, "set_description": set_description,
    }  # fmt: skip
    if await (await conn.execute(query("add_mapping_version", schema), params)).fetchone() is None:
        raise MappingNotFound(mapping_id)
    return await get_mapping_async(conn, schema, mapping_id)


async def get_mapping_async(
    conn: psycopg.AsyncConnection[Any], schema: str, mapping_id: str, version: int | None = None
) -> StoredMapping:
    row = await (await conn.execute(query("mapping", schema), {"id": mapping_id, "version": version})).fetchone()
    if row is None:
        raise MappingNotFound(mapping_id, version)
    return _mapping_from_row(row)


async def list_mappings_async(conn: psycopg.AsyncConnection[Any], schema: str) -> list[StoredMapping]:
    return [_mapping_from_row(row) for row in await (await conn.execute(query("list_mappings", schema))).fetchall()]


async def mapping_history_async(
    conn: psycopg.AsyncConnection[Any], schema: str, mapping_id: str
) -> list[StoredMapping]:
    current = await get_mapping_async(conn, schema, mapping_id)
    rows = await (await conn.execute(query("mapping_history", schema), {"id": mapping_id})).fetchall()
    return [replace(current, version=v, expression=e, headers=tuple(h), version_created_at=at) for v, e, h, at in rows]


async def remove_mapping_async(conn: psycopg.AsyncConnection[Any], schema: str, mapping_id: str) -> None:
    current = await get_mapping_async(conn, schema, mapping_id)
    if current.consumers:
        raise MappingInUse(mapping_id, current.consumers)
    await conn.execute(query("delete_mapping", schema), {"id": mapping_id})


# -- consumers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consumer:
    """A stored consumer. `verification_clear` is its config without secrets; the secrets stay sealed
    (`sealed`) until `verification(box)` opens them."""

    id: uuid.UUID
    name: str
    endpoint: str
    mapping_id: str | None
    target_type: str
    target_id: str
    is_enabled: bool
    verification_clear: dict[str, Any]
    sealed: tuple[str | None, bool] = field(repr=False, default=(None, False))
    max_body_bytes: int = model.DEFAULT_MAX_BODY_BYTES
    rate_limit: float | None = None
    rate_burst: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    open_failures: int = 0
    # With `hook_consumer_async` only: the mapping's current version.
    mapping: Mapping | None = None

    @property
    def method(self) -> str:
        return str(self.verification_clear.get("method"))

    def verification(self, box: SecretBox) -> VerificationConfig:
        """The whole config, secrets opened (for verifying requests and for merging a change)."""
        opened = box.open(self.sealed[0], self.sealed[1], f"consumer {self.name}")
        clear = {k: v for k, v in self.verification_clear.items() if not k.startswith("_")}
        return parse_config({**clear, **opened})

    def secret_count(self) -> int:
        """How many secret values are set (a listing shows the count, never a value)."""
        return int(self.verification_clear.get("_secretCount", 0))

    def public_verification(self) -> dict[str, Any]:
        """The config as listings show it: without secrets, with `secretCount`."""
        clear = {k: v for k, v in self.verification_clear.items() if not k.startswith("_")}
        if SECRET_FIELDS.get(self.method):
            clear["secretCount"] = self.secret_count()
        return clear

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "endpoint": self.endpoint,
            "mappingId": self.mapping_id,
            "targetType": self.target_type,
            "targetId": self.target_id,
            "isEnabled": self.is_enabled,
            "verification": self.public_verification(),
            "maxBodyBytes": self.max_body_bytes,
            "rateLimit": self.rate_limit,
            "rateBurst": self.rate_burst,
            "openFailures": self.open_failures,
            "createdAt": _iso(self.created_at),
            "updatedAt": _iso(self.updated_at),
        }

    def definition(self) -> dict[str, Any]:
        """The definition's JSON without the secrets (the base a change is merged into)."""
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "mappingId": self.mapping_id,
            "targetType": self.target_type,
            "targetId": self.target_id,
            "isEnabled": self.is_enabled,
            "maxBodyBytes": self.max_body_bytes,
            "rateLimit": self.rate_limit,
            "rateBurst": self.rate_burst,
        }


def _count_secrets(secrets: AbcMapping[str, Any]) -> int:
    return sum(len(v) if isinstance(v, list) else 1 for v in secrets.values())


def _consumer_from_row(row: Sequence[Any]) -> Consumer:
    (cid, name, endpoint, mapping_id, target_type, target_id, enabled, verification, secrets, encrypted,
     max_body, rate, burst, created, updated, failures) = row[:16]  # fmt: skip
    mapping = None
    if len(row) > 16 and row[16] is not None:
        mapping = Mapping(expression=row[17], headers=tuple(row[18]), version=row[16])
    return Consumer(
        cid, name, endpoint, mapping_id, target_type, target_id, enabled, dict(verification), (secrets, encrypted),
        max_body, rate, burst, created, updated, int(failures), mapping,
    )  # fmt: skip


def _row(definition: model.ConsumerDefinition, box: SecretBox) -> dict[str, Any]:
    config = parse_config(definition.verification)
    clear, secrets = split_secrets(config)
    clear["_secretCount"] = _count_secrets(secrets)
    stored, encrypted = box.seal(secrets)
    return {
        "name": definition.name,
        "endpoint": definition.endpoint,
        "mapping_id": definition.mapping_id,
        "target_type": definition.target_type,
        "target_id": _target_id(definition),
        "is_enabled": definition.is_enabled,
        "verification": Jsonb(clear),
        "secrets": stored,
        "secrets_encrypted": encrypted,
        "max_body_bytes": definition.max_body_bytes,
        "rate_limit": definition.rate_limit,
        "rate_burst": definition.rate_burst,
    }


def merged(current: Consumer, change: AbcMapping[str, Any], box: SecretBox) -> dict[str, Any]:
    """The whole definition after a change of some fields. A `verification` with the same method and a
    secret field left out keeps the stored secrets (write-only fields: a change need not repeat them)."""
    document = {**current.definition(), **{k: v for k, v in change.items() if k != "verification"}}
    given = change.get("verification")
    if given is not None and not isinstance(given, AbcMapping):
        return {**document, "verification": given}  # not an object: parse_consumer names it
    opened = current.verification(box)
    clear, secrets = split_secrets(opened)
    verification = dict(change.get("verification") or {**clear, **secrets})
    if isinstance(change.get("verification"), AbcMapping) and verification.get("method") == current.method:
        for name, value in secrets.items():
            verification.setdefault(name, value)
    document["verification"] = verification
    return document


def _targets_problems(
    found_mapping: bool | None, found_target: bool, definition: model.ConsumerDefinition
) -> list[model.Problem]:
    problems = []
    if found_mapping is False:
        problems.append(model.Problem("mappingId", f"there is no mapping {definition.mapping_id!r}", "does_not_exist"))
    if not found_target:
        what = "event catalogue entry (slug)" if definition.target_type == model.EVENT_TYPE else "subscription"
        problems.append(model.Problem("targetId", f"there is no {what} {definition.target_id!r}", "does_not_exist"))
    return problems


def _target_id(definition: model.ConsumerDefinition) -> str:
    """A subscription id in PostgreSQL's form: Python's UUID() also takes forms `::uuid` refuses (urn:uuid:…)."""
    if definition.target_type == model.SOURCE:
        return str(uuid.UUID(definition.target_id))
    return definition.target_id


def _target_query(definition: model.ConsumerDefinition) -> tuple[str, tuple[Any, ...]]:
    name = "event_type_slug_exists" if definition.target_type == model.EVENT_TYPE else "subscription_exists"
    return name, (_target_id(definition),)


def _taken_problems(rows: Sequence[tuple[bool, bool]], definition: model.ConsumerDefinition) -> list[model.Problem]:
    problems = []
    if any(name for name, _ in rows):
        problems.append(model.Problem("name", f"another consumer is called {definition.name!r}", "unique"))
    if any(endpoint for _, endpoint in rows):
        problems.append(model.Problem("endpoint", f"another consumer has endpoint {definition.endpoint!r}", "unique"))
    return problems


def _check_refs(
    conn: psycopg.Connection[Any], schema: str, definition: model.ConsumerDefinition, cid: uuid.UUID | None
) -> None:
    found_mapping = None
    if definition.mapping_id is not None:
        found_mapping = (
            conn.execute(query("mapping", schema), {"id": definition.mapping_id, "version": None}).fetchone()
            is not None
        )
    text, params = _target_query(definition)
    found_target = conn.execute(query(text, schema), params).fetchone() is not None
    taken = conn.execute(
        query("consumer_taken", schema), {"name": definition.name, "endpoint": definition.endpoint, "id": cid}
    ).fetchall()
    problems = _taken_problems(taken, definition) + _targets_problems(found_mapping, found_target, definition)
    if problems:
        raise model.InvalidConsumer(problems)


async def _check_refs_async(
    conn: psycopg.AsyncConnection[Any], schema: str, definition: model.ConsumerDefinition, cid: uuid.UUID | None
) -> None:
    found_mapping = None
    if definition.mapping_id is not None:
        cursor = await conn.execute(query("mapping", schema), {"id": definition.mapping_id, "version": None})
        found_mapping = await cursor.fetchone() is not None
    text, params = _target_query(definition)
    found_target = await (await conn.execute(query(text, schema), params)).fetchone() is not None
    cursor = await conn.execute(
        query("consumer_taken", schema), {"name": definition.name, "endpoint": definition.endpoint, "id": cid}
    )
    problems = _taken_problems(await cursor.fetchall(), definition) + _targets_problems(
        found_mapping, found_target, definition
    )
    if problems:
        raise model.InvalidConsumer(problems)


def _key_params(key: str) -> dict[str, Any]:
    try:
        as_id: uuid.UUID | None = uuid.UUID(key)
    except ValueError:
        as_id = None
    return {"key": key, "id": as_id}


def add(conn: psycopg.Connection[Any], schema: str, document: AbcMapping[str, Any], box: SecretBox) -> Consumer:
    """A new consumer from its JSON definition, refused whole (`InvalidConsumer`) when any field is wrong."""
    definition = model.parse_consumer(document)
    _check_refs(conn, schema, definition, None)
    row = conn.execute(query("insert_consumer", schema), _row(definition, box)).fetchone()
    if row is None:  # taken by a concurrent add after the check
        raise model.InvalidConsumer([model.Problem("name", "another consumer has this name or endpoint", "unique")])
    return get(conn, schema, str(row[0]))


def get(conn: psycopg.Connection[Any], schema: str, key: str) -> Consumer:
    """A consumer by id, name or endpoint."""
    row = conn.execute(query("consumer_by_key", schema), _key_params(key)).fetchone()
    if row is None:
        raise ConsumerNotFound(key)
    return _consumer_from_row(row)


def list_all(conn: psycopg.Connection[Any], schema: str) -> list[Consumer]:
    return [_consumer_from_row(row) for row in conn.execute(query("list_consumers", schema)).fetchall()]


def update(
    conn: psycopg.Connection[Any], schema: str, key: str, change: AbcMapping[str, Any], box: SecretBox
) -> Consumer:
    """Changes the given fields (JSON names); the rest, and write-only secrets, are kept."""
    current = get(conn, schema, key)
    definition = model.parse_consumer(merged(current, change, box))
    _check_refs(conn, schema, definition, current.id)
    conn.execute(query("update_consumer", schema), {**_row(definition, box), "id": current.id})
    return get(conn, schema, str(current.id))


def set_enabled(conn: psycopg.Connection[Any], schema: str, key: str, enabled: bool) -> Consumer:
    current = get(conn, schema, key)
    conn.execute(query("set_consumer_enabled", schema), {"id": current.id, "enabled": enabled})
    return get(conn, schema, str(current.id))


def remove(conn: psycopg.Connection[Any], schema: str, key: str) -> Consumer:
    current = get(conn, schema, key)
    conn.execute(query("delete_consumer", schema), {"id": current.id})
    return current


async def add_async(
    conn: psycopg.AsyncConnection[Any], schema: str, document: AbcMapping[str, Any], box: SecretBox
) -> Consumer:
    definition = model.parse_consumer(document)
    await _check_refs_async(conn, schema, definition, None)
    row = await (await conn.execute(query("insert_consumer", schema), _row(definition, box))).fetchone()
    if row is None:
        raise model.InvalidConsumer([model.Problem("name", "another consumer has this name or endpoint", "unique")])
    return await get_async(conn, schema, str(row[0]))


async def get_async(conn: psycopg.AsyncConnection[Any], schema: str, key: str) -> Consumer:
    row = await (await conn.execute(query("consumer_by_key", schema), _key_params(key))).fetchone()
    if row is None:
        raise ConsumerNotFound(key)
    return _consumer_from_row(row)


async def list_all_async(conn: psycopg.AsyncConnection[Any], schema: str) -> list[Consumer]:
    return [_consumer_from_row(row) for row in await (await conn.execute(query("list_consumers", schema))).fetchall()]


async def update_async(
    conn: psycopg.AsyncConnection[Any], schema: str, key: str, change: AbcMapping[str, Any], box: SecretBox
) -> Consumer:
    current = await get_async(conn, schema, key)
    definition = model.parse_consumer(merged(current, change, box))
    await _check_refs_async(conn, schema, definition, current.id)
    await conn.execute(query("update_consumer", schema), {**_row(definition, box), "id": current.id})
    return await get_async(conn, schema, str(current.id))


async def set_enabled_async(conn: psycopg.AsyncConnection[Any], schema: str, key: str, enabled: bool) -> Consumer:
    current = await get_async(conn, schema, key)
    await conn.execute(query("set_consumer_enabled", schema), {"id": current.id, "enabled": enabled})
    return await get_async(conn, schema, str(current.id))


async def remove_async(conn: psycopg.AsyncConnection[Any], schema: str, key: str) -> Consumer:
    current = await get_async(conn, schema, key)
    await conn.execute(query("delete_consumer", schema), {"id": current.id})
    return current


def hook_consumer(conn: psycopg.Connection[Any], schema: str, endpoint: str) -> Consumer | None:
    """The consumer served at /hooks/{endpoint}, with its mapping's current version; None when none."""
    row = conn.execute(query("hook_consumer", schema), {"endpoint": endpoint}).fetchone()
    return None if row is None else _consumer_from_row(row)


async def hook_consumer_async(conn: psycopg.AsyncConnection[Any], schema: str, endpoint: str) -> Consumer | None:
    """The consumer served at /hooks/{endpoint}, with its mapping's current version; None when none."""
    row = await (await conn.execute(query("hook_consumer", schema), {"endpoint": endpoint})).fetchone()
    return None if row is None else _consumer_from_row(row)


# -- failures ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A request kept for the operator: why it failed and what the mapping may read of it."""

    id: int
    consumer_id: uuid.UUID
    received_at: datetime
    code: str
    problems: list[dict[str, str]]
    mapping_version: int | None
    body_size: int
    headers: dict[str, str]
    webhook_id: str | None
    replayed_at: datetime | None
    event_source: str | None
    event_id: str | None
    body: bytes | None = field(default=None, repr=False)  # only when read one by one

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "consumerId": str(self.consumer_id),
            "receivedAt": self.received_at.isoformat(),
            "code": self.code,
            "problems": self.problems,
            "mappingVersion": self.mapping_version,
            "bodySize": self.body_size,
            "headers": self.headers,
            "webhookId": self.webhook_id,
            "replayedAt": _iso(self.replayed_at),
            "eventSource": self.event_source,
            "eventId": self.event_id,
        }


def _failure(row: Sequence[Any], with_body: bool) -> Failure:
    (fid, cid, received, code, problems, version, body, headers, webhook_id, replayed, source, event_id) = row
    if with_body:
        return Failure(fid, cid, received, code, problems, version, len(body), headers, webhook_id, replayed, source,
                       event_id, bytes(body))  # fmt: skip
    return Failure(fid, cid, received, code, problems, version, body, headers, webhook_id, replayed, source, event_id)


def _failure_params(
    consumer: Consumer, code: str, problems: Sequence[AbcMapping[str, str]], body: bytes,
    headers: AbcMapping[str, str], webhook_id: str | None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "consumer_id": consumer.id,
        "code": code,
        "problems": Jsonb([dict(p) for p in problems]),
        "mapping_version": consumer.mapping.version if consumer.mapping is not None else None,
        "body": body,
        "headers": Jsonb(dict(headers)),
        "webhook_id": webhook_id,
    }


def keep_failure(
    conn: psycopg.Connection[Any], schema: str, consumer: Consumer, code: str,
    problems: Sequence[AbcMapping[str, str]], body: bytes, headers: AbcMapping[str, str], webhook_id: str | None,
) -> int:  # fmt: skip
    """Keeps a request that failed after verification (the service's path is `keep_failure_async`)."""
    params = _failure_params(consumer, code, problems, body, headers, webhook_id)
    row = conn.execute(query("insert_consumer_failure", schema), params).fetchone()
    assert row is not None
    return int(row[0])


async def keep_failure_async(
    conn: psycopg.AsyncConnection[Any], schema: str, consumer: Consumer, code: str,
    problems: Sequence[AbcMapping[str, str]], body: bytes, headers: AbcMapping[str, str], webhook_id: str | None,
) -> int:  # fmt: skip
    params = _failure_params(consumer, code, problems, body, headers, webhook_id)
    row = await (await conn.execute(query("insert_consumer_failure", schema), params)).fetchone()
    assert row is not None
    return int(row[0])


def _page_params(consumer: Consumer, before: int | None, limit: int, open_only: bool) -> dict[str, Any]:
    return {"consumer_id": consumer.id, "before": before, "limit": limit, "open": open_only}


def failures(
    conn: psycopg.Connection[Any], schema: str, consumer: Consumer, *, before: int | None = None, limit: int = 50,
    open_only: bool = False,
) -> list[Failure]:  # fmt: skip
    rows = conn.execute(query("consumer_failures", schema), _page_params(consumer, before, limit, open_only)).fetchall()
    return [_failure(row, False) for row in rows]


async def failures_async(
    conn: psycopg.AsyncConnection[Any], schema: str, consumer: Consumer, *, before: int | None = None,
    limit: int = 50, open_only: bool = False,
) -> list[Failure]:  # fmt: skip
    cursor = await conn.execute(query("consumer_failures", schema), _page_params(consumer, before, limit, open_only))
    return [_failure(row, False) for row in await cursor.fetchall()]


def failure(conn: psycopg.Connection[Any], schema: str, failure_id: int) -> Failure:
    row = conn.execute(query("consumer_failure", schema), {"id": failure_id}).fetchone()
    if row is None:
        raise FailureNotFound(failure_id)
    return _failure(row, True)


async def failure_async(conn: psycopg.AsyncConnection[Any], schema: str, failure_id: int) -> Failure:
    row = await (await conn.execute(query("consumer_failure", schema), {"id": failure_id})).fetchone()
    if row is None:
        raise FailureNotFound(failure_id)
    return _failure(row, True)


def purge_receipts(conn: psycopg.Connection[Any], schema: str, cutoff: datetime) -> int:
    return conn.execute(query("purge_consumer_receipts", schema), (cutoff,)).rowcount


def reseal_all(conn: psycopg.Connection[Any], schema: str, box: SecretBox) -> int:
    """Re-encrypt every consumer's verification secrets with the box's first key (`outbox secrets rotate`)."""
    rows = conn.execute(query("sealed_consumer_secrets", schema)).fetchall()
    for consumer_id, name, stored, encrypted in rows:
        sealed, now_encrypted = box.reseal(stored, encrypted, f"consumer {name}")
        conn.execute(query("reseal_consumer_secrets", schema), (sealed, now_encrypted, consumer_id))
    return len(rows)
