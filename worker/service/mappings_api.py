"""/api/v1/mappings: the consumers' mappings (JSONata, worker/consumers/mapping.py) over HTTP, for outbox.beheer.

A mapping is versioned: a PUT adds a version (the old ones stay, `/versions` lists them, `?version=N` reads
one), and consumers use the current one from their next request. A mapping that does not compile is refused
whole (400 naming `expression`), with every other invalid field; a taken id is a 409; removing a mapping that
consumers use is a 409 naming them. `/mappings/try` evaluates an unstored mapping on a request.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Final

import psycopg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from worker.consumers import model
from worker.consumers.mapping import InvalidMapping, try_mapping
from worker.service import registration
from worker.service.consumers_api import (
    TRY_RESULT,
    Admin,
    Writer,
    declared,
    json_answer,
    json_response,
    top,
    try_body,
)
from worker.service.problems import ApiProblem, InvalidParam, invalid, not_found, responses
from worker.store import consumers as store

PATH = "/mappings"
MAX_VERSION: Final = 2**31 - 1
_ID_DOC: dict[str, Any] = {"pattern": model.SLUG.pattern, "maxLength": 100, "examples": ["psp-payment-paid"]}
_EXPRESSION = (
    'JSONata, evaluated on {"body": <the request body as JSON>, "headers": {<chosen header>: <value>}}; '
    "it must give the CloudEvent's attributes (type, subject, source, id, time, data; a consumer's event-type "
    "target gives type and source when left out)"
)
_HEADERS = "the request headers (names, any case) the expression may read; no others reach it"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


@registration.body_model
class MappingWrite(_Model):
    """A new mapping (its version 1)."""

    id: str = Field(description="unique; consumers name it as mappingId", json_schema_extra=_ID_DOC)
    description: str | None = Field(None, description="what it maps")
    expression: str = Field(description=_EXPRESSION, min_length=1)
    headers: list[str] = Field(default_factory=list, description=_HEADERS)


@registration.body_model
class MappingVersionWrite(_Model):
    """A mapping's next version (PUT); `description` changes only when given."""

    description: str | None = Field(None, description="what it maps (left out: unchanged)")
    expression: str = Field(description=_EXPRESSION, min_length=1)
    headers: list[str] = Field(default_factory=list, description=_HEADERS)


@registration.body_model
class MappingDraft(_Model):
    """A mapping to try, not stored."""

    expression: str = Field(description=_EXPRESSION, min_length=1)
    headers: list[str] = Field(default_factory=list, description=_HEADERS)


@registration.body_model
class MappingTry(_Model):
    """A mapping and a request to try it on (nothing is stored): `payload` (JSON) or `body` (text)."""

    mapping: MappingDraft
    payload: Any = Field(None, description="the request body, as JSON")
    body: str | None = Field(None, description="the request body as text, instead of payload (e.g. not JSON)")
    headers: dict[str, str] = Field(default_factory=dict, description="request headers")


_READ_ONLY: dict[str, Any] = {"readOnly": True}


class MappingResource(BaseModel):
    """A mapping at one version, as the API answers it."""

    url: str = Field(description="this mapping's URL", json_schema_extra=_READ_ONLY)
    versionUrl: str = Field(description="this version's URL", json_schema_extra=_READ_ONLY)
    id: str
    description: str | None
    version: int = Field(description="the version shown", json_schema_extra=_READ_ONLY)
    currentVersion: int = Field(description="the version consumers use", json_schema_extra=_READ_ONLY)
    expression: str
    headers: list[str]
    consumers: list[str] = Field(description="the names of the consumers using it", json_schema_extra=_READ_ONLY)
    createdAt: str | None = Field(json_schema_extra=_READ_ONLY)
    versionCreatedAt: str | None = Field(json_schema_extra=_READ_ONLY)

    @classmethod
    def of(cls, mapping: store.StoredMapping, base_url: str) -> MappingResource:
        url = f"{base_url}/api/v1{PATH}/{mapping.id}"
        return cls.model_validate({**mapping.to_json(), "url": url, "versionUrl": f"{url}?version={mapping.version}"})


_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def _name(field: str) -> str:
    """A mapping problem's field as this API names fields (`headers.0` → `headers[0]`)."""
    return _INDEX.sub(r"[\1]", field)


# Stand-ins for fields the declared model flagged, so the rules speak only of the others.
_PLACEHOLDERS: Final = {"id": "x", "expression": "1", "headers": []}


def _faults(model_class: type[BaseModel], document: dict[str, Any], mapping_id: str | None) -> list[InvalidParam]:
    """The declared model's faults and the mapping's rules (it compiles, header names) in one list."""
    faults = declared(model_class, document)
    flagged = {top(fault.name) for fault in faults}
    given = {key: value for key, value in document.items() if key not in flagged}
    checked = {**_PLACEHOLDERS, **given, **({"id": mapping_id} if mapping_id is not None else {})}
    try:
        store.check_mapping(checked["id"], checked["expression"], checked["headers"])
    except InvalidMapping as exc:
        names = {top(fault.name) for fault in faults}
        faults += [
            InvalidParam(name=_name(p.field), code=exc.code if p.field == "expression" else "invalid", reason=p.rule)
            for p in exc.problems
            if top(p.field) not in names
        ]
    return faults


def _known_id(mapping_id: str) -> str:
    """An id no mapping can have is a 404 at once (and never reaches the database)."""
    if not model.SLUG.match(mapping_id) or len(mapping_id) > 100:
        raise not_found("mapping")
    return mapping_id


def _in_use(exc: store.MappingInUse) -> ApiProblem:
    reason = f"used by consumer(s) {', '.join(exc.consumers)}: give them another mapping (or none) first"
    return ApiProblem(
        409, "conflict", "Conflict.", f"The mapping is in use: {reason}.",
        [InvalidParam(name="consumers", code="in_use", reason=reason)],
    )  # fmt: skip


router = APIRouter(prefix=PATH, tags=["mappings"])
_ID = Annotated[str, Path(description="the mapping's id")]


@router.get(
    "",
    summary="List mappings",
    description="Every mapping at its current version, by id, with the consumers that use it.",
    responses=responses(401, 403, 429, 503),
)
async def list_mappings(request: Request, client: Admin) -> list[MappingResource]:
    service = request.app.state.service
    async with service.pool.connection() as conn:
        found = await store.list_mappings_async(conn, service.schema)
    base = service.base_url(request)
    return [MappingResource.of(mapping, base) for mapping in found]


@router.post(
    "",
    status_code=201,
    summary="Create a mapping",
    description="Its version 1. Refused whole when the expression does not compile; a taken id is a 409.",
    openapi_extra=registration.request_body(MappingWrite, "the new mapping"),
    responses=responses(400, 401, 403, 409, 413, 415, 429, 503),
)
async def create_mapping(request: Request, client: Writer, response: Response) -> MappingResource:
    service = request.app.state.service
    document = await registration.json_object(request)
    faults = _faults(MappingWrite, document, None)
    if faults:
        raise invalid(faults)
    body = MappingWrite.model_validate(document)
    try:
        async with service.pool.connection() as conn:
            created = await store.add_mapping_async(
                conn, service.schema, body.id, body.expression, body.headers, body.description
            )
    except store.MappingExists as exc:
        raise ApiProblem(
            409, "conflict", "Conflict.", "Another mapping already has this id.",
            [InvalidParam(name="id", code="unique", reason=str(exc))],
        ) from None  # fmt: skip
    resource = MappingResource.of(created, service.base_url(request))
    response.headers["Location"] = resource.url
    return resource


@router.post(
    "/try",
    summary="Try a mapping on a request",
    description="The event the (unstored) mapping makes of the request, or the code and problems of its "
    "failure (a mapping that does not compile included). Nothing is stored.",
    openapi_extra=registration.request_body(MappingTry, "the mapping and the request"),
    responses={
        **json_answer("the event, or why the mapping fails", TRY_RESULT),
        **responses(400, 401, 403, 413, 415, 429, 503),
    },
)
async def try_a_mapping(request: Request, client: Writer) -> Response:
    document, payload = await try_body(request, MappingTry)
    # jsonatapy holds the GIL for up to its timeout: off the event loop (its compiled cache is per thread).
    result = await asyncio.to_thread(try_mapping, document["mapping"], payload, document.get("headers"))
    if "problems" in result:
        code = result["code"]
        problems = result["problems"]
        result["problems"] = [{"name": _name(p["field"]), "code": code, "reason": p["rule"]} for p in problems]
    return json_response(result)


@router.get(
    "/{id}",
    summary="One mapping",
    description="At its current version, or at `version`.",
    responses=responses(400, 401, 403, 404, 429, 503),
)
async def get_mapping(
    request: Request,
    id: _ID,
    client: Admin,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION, description="this version (else the current)")] = None,
) -> MappingResource:
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            found = await store.get_mapping_async(conn, service.schema, _known_id(id), version)
    except store.MappingNotFound:
        raise not_found("mapping" if version is None else "such version of the mapping") from None
    return MappingResource.of(found, service.base_url(request))


@router.put(
    "/{id}",
    summary="Add a version of a mapping",
    description="The new version becomes the current one: consumers use it from their next request (and "
    "replays of their failures). The old versions stay.",
    openapi_extra=registration.request_body(MappingVersionWrite, "the mapping as it is to be"),
    responses=responses(400, 401, 403, 404, 413, 415, 429, 503),
)
async def replace_mapping(request: Request, id: _ID, client: Writer) -> MappingResource:
    service = request.app.state.service
    mapping_id = _known_id(id)
    document = await registration.json_object(request)
    faults = _faults(MappingVersionWrite, document, mapping_id)
    if faults:
        raise invalid(faults)
    body = MappingVersionWrite.model_validate(document)
    try:
        async with service.pool.connection() as conn:
            changed = await store.update_mapping_async(
                conn, service.schema, mapping_id, body.expression, body.headers, body.description,
                set_description="description" in document,
            )  # fmt: skip
    except store.MappingNotFound:
        raise not_found("mapping") from None
    return MappingResource.of(changed, service.base_url(request))


@router.get(
    "/{id}/versions",
    summary="A mapping's versions",
    description="Every version, newest first.",
    responses=responses(401, 403, 404, 429, 503),
)
async def mapping_versions(request: Request, id: _ID, client: Admin) -> list[MappingResource]:
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            found = await store.mapping_history_async(conn, service.schema, _known_id(id))
    except store.MappingNotFound:
        raise not_found("mapping") from None
    base = service.base_url(request)
    return [MappingResource.of(mapping, base) for mapping in found]


@router.delete(
    "/{id}",
    status_code=204,
    summary="Remove a mapping",
    description="With all its versions; a mapping consumers use is a 409 naming them.",
    response_class=Response,
    responses={204: {"description": "Removed."}, **responses(401, 403, 404, 409, 429, 503)},
)
async def delete_mapping(request: Request, id: _ID, client: Admin) -> Response:
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            await store.remove_mapping_async(conn, service.schema, _known_id(id))
    except store.MappingNotFound:
        raise not_found("mapping") from None
    except store.MappingInUse as exc:
        raise _in_use(exc) from None
    except psycopg.errors.ForeignKeyViolation:  # a consumer took it up meanwhile
        raise ApiProblem(409, "conflict", "Conflict.", "A consumer started using the mapping meanwhile.") from None
    return Response(status_code=204)
