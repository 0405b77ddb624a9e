"""/api/v1/kanaal: the kanalen this outbox knows, read-only.

A kanaal is named by the event catalogue (a type `nl.overheid.<kanaal>.…`) or by one of the calling
client's abonnementen (`kanalen`); its `filters` are the filter keys the client's own abonnementen use on
it. Another client's abonnementen show nothing here: neither their kanaal names nor their filter keys
(which say what they watch). `outbox.beheer`, which sees every subscription anyway, sees them all.
Open Notificaties' Kanaal shape (`url`, `naam`, `documentatieLink`, `filters`); kanalen are not
created here: they follow from the catalogue (`outbox event-types`) and the abonnementen.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from outbox._sql import query
from worker.service import registration
from worker.service.auth import require
from worker.service.problems import not_found, responses
from worker.store.clients import ADMIN, CONSUME, PUBLISH, ApiClient

router = APIRouter(tags=["kanaal"])
PATH = "/kanaal"


@registration.body_model
class Kanaal(BaseModel):
    """A kanaal (read-only)."""

    url: str
    naam: str = Field(examples=["zaken"])
    documentatieLink: str = Field(description="where its event types are described: this service's event catalogue")
    filters: list[str] = Field(description="the filter keys the calling client's abonnementen use on it")


Reader = Annotated[ApiClient, Depends(require(CONSUME, PUBLISH, ADMIN))]


async def _kanalen(request: Request, client: ApiClient, naam: str | None) -> list[dict[str, Any]]:
    service = request.app.state.service
    async with service.pool.connection() as conn:
        cursor = await conn.execute(
            query("kanalen", service.schema), {"naam": naam, "owner": registration.owner_filter(client)}
        )
        rows = await cursor.fetchall()
    base = service.base_url(request)
    return [
        {
            "url": f"{base}/api/v1/kanaal/{row[0]}",
            "naam": row[0],
            "documentatieLink": f"{base}/api/v1/event-types",
            "filters": list(row[1]),
        }
        for row in rows
    ]


def _json(content: Any) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


def _read(description: str, *, many: bool = False) -> dict[int | str, dict[str, Any]]:
    ref: dict[str, Any] = {"$ref": "#/components/schemas/Kanaal"}
    schema = {"type": "array", "items": ref} if many else ref
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


@router.get(
    PATH,
    summary="List kanalen",
    description="Read-only: the kanalen of the event catalogue and of the calling client's abonnementen, "
    "with the filter keys those abonnementen use (nothing of other clients' abonnementen).",
    responses={**_read("the kanalen", many=True), **responses(401, 403)},
)
async def list_kanalen(
    request: Request, client: Reader, naam: Annotated[str | None, Query(description="only this kanaal")] = None
) -> Response:
    return _json(await _kanalen(request, client, naam))


@router.get(PATH + "/{naam}", summary="Read a kanaal", responses={**_read("the kanaal"), **responses(401, 403, 404)})
async def read_kanaal(request: Request, client: Reader, naam: str) -> Response:
    found = await _kanalen(request, client, naam)
    if not found:
        raise not_found("kanaal")
    return _json(found[0])
