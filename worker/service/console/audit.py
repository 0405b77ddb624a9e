"""The audit trail: every console action, who did it, to which object; shown on that object's page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from outbox._sql import query
from worker.runtime.logs import log


@dataclass(frozen=True)
class Entry:
    at: datetime
    operator: str
    action: str
    detail: str | None


async def record(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    operator: str,
    action: str,
    kind: str,
    object_id: str,
    detail: str | None = None,
) -> None:
    """One entry (in the caller's transaction, with the change it records) and its log line."""
    await conn.execute(query("insert_audit", schema), (operator, action, kind, object_id, detail))
    log(logging.INFO, "console action", operator=operator, action=action, object=f"{kind} {object_id}", detail=detail)


async def entries(
    conn: psycopg.AsyncConnection[Any], schema: str, kind: str, object_id: str, limit: int = 50
) -> list[Entry]:
    cursor = await conn.execute(query("audit_for_object", schema), (kind, object_id, limit))
    return [Entry(*row) for row in await cursor.fetchall()]
