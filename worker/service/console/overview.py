"""The overview: the backlog per state, the oldest pending delivery, the last hour, the subscriptions
that fail or are paused. Refreshed by htmx every few seconds; a reload does the same without it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from psycopg.rows import dict_row

from outbox._sql import query
from worker.service.console import health
from worker.service.console.pages import render
from worker.service.console.security import service_of, signed_in
from worker.service.console.sessions import Session

router = APIRouter()

STATES = ("blocked", "pending", "delivering", "delivered", "failed")


@router.get("/")
async def overview(request: Request, session: Annotated[Session, Depends(signed_in)]) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("console_overview", service.schema))
            figures = await cur.fetchone()
        assert figures is not None
        troubled = [row for row in await health.subscriptions(conn, service.schema) if row.troubled]
    states = {state: int(figures["states"].get(state, 0)) for state in STATES}
    return render(request, "overview.html", session, states=states, figures=figures, troubled=troubled)
