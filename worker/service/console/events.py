"""Events: search by event id (and source) or by subject; each event found with its JSON and where it
went (its deliveries). The read is worker/store/deliveries.py's `find_events_async`, as `outbox events show`."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from worker.service.console.pages import render
from worker.service.console.security import service_of, signed_in
from worker.service.console.sessions import Session
from worker.store import deliveries as store

router = APIRouter()

MAX_FIELD = 2048
LIMIT = 20


@router.get("/events")
async def events_page(request: Request, session: Annotated[Session, Depends(signed_in)]) -> Response:
    values = {name: str(request.query_params.get(name) or "").strip() for name in ("event_id", "source", "subject")}
    error: tuple[str, str] | None = None
    for name, value in values.items():
        if len(value) > MAX_FIELD or "\x00" in value:
            error = (name, f"at most {MAX_FIELD} characters, no NUL")
    if error is None and values["source"] and not values["event_id"]:
        error = ("event_id", "give the event id with its source")
    if error is None and values["event_id"] and values["subject"]:
        error = ("subject", "search by event id or by subject, not both")
    searched = error is None and bool(values["event_id"] or values["subject"])
    found: list[tuple[store.FoundEvent, str]] = []
    if searched:
        service = service_of(request)
        async with service.pool.connection() as conn:
            events = await store.find_events_async(
                conn,
                service.schema,
                event_id=values["event_id"] or None,
                source=values["source"] or None,
                subject=values["subject"] or None,
                limit=LIMIT,
            )
        found = [(e, json.dumps(e.event, indent=2, ensure_ascii=False, sort_keys=True)) for e in events]
    return render(
        request,
        "events.html",
        session,
        status_code=400 if error else 200,
        values=values,
        error=error,
        searched=searched,
        found=found,
        limit=LIMIT,
    )
