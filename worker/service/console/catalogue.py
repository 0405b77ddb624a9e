"""The event catalogue: every type, and one type with its JSON Schema."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from psycopg.rows import dict_row

from outbox._catalogue import EventType
from outbox._sql import query
from worker.service.console.pages import ConsoleError, render
from worker.service.console.security import service_of, signed_in
from worker.service.console.sessions import Session

router = APIRouter()


@router.get("/event-types")
async def event_types_page(request: Request, session: Annotated[Session, Depends(signed_in)]) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("list_event_types", service.schema))
        types = [EventType.from_row(row) for row in await cur.fetchall()]
    return render(request, "event_types.html", session, types=types)


@router.get("/event-types/{slug}")
async def event_type_page(request: Request, slug: str, session: Annotated[Session, Depends(signed_in)]) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("get_event_type", service.schema), (slug,))
        row = await cur.fetchone()
    if row is None:
        raise ConsoleError(404, "event-type")
    entry = EventType.from_row(row)
    schema = json.dumps(entry.schema, indent=2, ensure_ascii=False) if entry.schema is not None else None
    return render(request, "event_type.html", session, entry=entry, schema=schema)
