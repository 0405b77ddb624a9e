"""/api/v1/event-types: the event catalogue (OpenConnector's Events) over HTTP.

Reading needs notificaties.consumeren, notificaties.publiceren or outbox.beheer; changing needs
outbox.beheer. Bodies are declared by the models below (they make the OpenAPI document and refuse
other fields); the rules of an entry are `EventType.from_json`'s, the ones the CLI and enqueue use,
each fault an `invalidParams` entry. A slug or type another entry already has is a 409 whose
`invalidParams` names it (code `unique`): the request is valid, it conflicts with the catalogue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, ClassVar, Self, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from outbox._catalogue import _SLUG, _TOKEN, EventType, InvalidEventTypeError
from worker.service.auth import require
from worker.service.problems import (
    ApiProblem,
    InvalidParam,
    from_problems,
    invalid,
    not_found,
    responses,
    validation_problem,
)
from worker.store import catalogue as store
from worker.store.clients import ADMIN, CONSUME, PUBLISH, ApiClient

PATH = "/event-types"

# What the OpenAPI document says of each field. The rules are enforced by EventType.from_json; the
# patterns shown are its own (the same compiled expressions), not a second copy.
_SLUG_DOC: dict[str, Any] = {"pattern": _SLUG.pattern, "maxLength": 100, "examples": ["zaak-gekoppeld"]}
_TYPE_DOC: dict[str, Any] = {"pattern": _TOKEN.pattern, "examples": ["nl.overheid.zaken.zaak-gekoppeld"]}
_SOURCE_DOC: dict[str, Any] = {
    "description": "the source every event of this type must have; null: any source",
    "pattern": _TOKEN.pattern,
}
# Text PostgreSQL can store (no NUL); a name has something besides white space.
_TEXT_DOC: dict[str, Any] = {"pattern": r"^[^\x00]*$"}
_NAME_DOC: dict[str, Any] = {"pattern": r"^[^\x00]*[^\x00\s][^\x00]*$", "examples": ["Zaak gekoppeld"]}
_SCHEMA_DOC: dict[str, Any] = {
    "description": "JSON Schema (draft 2020-12, or draft-07 by `$schema`) for the events' `data`; no remote "
    "`$ref`; null: any data"
}
_JsonSchema = dict[str, Any] | bool | None


class _Rules(BaseModel):
    """Runs EventType.from_json over the raw body next to pydantic's type checks, so one 400 names
    every invalid field: pydantic's faults first, the catalogue's rules for the other fields."""

    placeholders: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="wrap")
    @classmethod
    def _catalogue_rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        errors: list[InitErrorDetails] = []
        flagged: set[str] = set()
        try:
            model = handler(data)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                flagged.add(str(loc[0]) if loc else "")
                errors.append(
                    {"type": PydanticCustomError(error["type"], error["msg"]), "loc": loc, "input": error["input"]}
                )
        if isinstance(data, Mapping) and "" not in flagged:
            try:
                EventType.from_json({**cls.placeholders, **data})
            except InvalidEventTypeError as exc:
                for line in exc.problems:
                    name, _, reason = line.partition(": ")
                    if name not in flagged:
                        errors.append(
                            {"type": PydanticCustomError("invalid", reason), "loc": (name,), "input": data.get(name)}
                        )
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return model


class EventTypeWrite(_Rules):
    """An event type as a client writes it (POST, PUT): OpenConnector's Event fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="human name", json_schema_extra=_NAME_DOC)
    slug: str = Field(description="unique short name, in the entry's URL", json_schema_extra=_SLUG_DOC)
    type: str = Field(description="the CloudEvents type (unique)", json_schema_extra=_TYPE_DOC)
    source: str | None = Field(None, json_schema_extra=_SOURCE_DOC)
    schema_: _JsonSchema = Field(None, alias="schema", json_schema_extra=_SCHEMA_DOC)
    is_enabled: bool = Field(
        True, alias="isEnabled", description="false: events of this type are accepted and not written"
    )
    description: str | None = Field(None, description="what the event means", json_schema_extra=_TEXT_DOC)


def _no_defaults(schema: dict[str, Any]) -> None:
    """A field a patch leaves out is not null, it is unchanged: no `default` in the document."""
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class EventTypePatch(_Rules):
    """Some fields of an event type (PATCH); the others keep their value. The whole entry is checked again."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_no_defaults)
    # Stand-ins for the fields a patch leaves out, so the rules speak only of the fields it gives.
    placeholders: ClassVar[dict[str, Any]] = {"name": "x", "slug": "x", "type": "x"}

    name: str = Field(None, description="human name", json_schema_extra=_NAME_DOC)  # type: ignore[assignment]
    slug: str = Field(None, description="unique short name", json_schema_extra=_SLUG_DOC)  # type: ignore[assignment]
    type: str = Field(None, description="the CloudEvents type", json_schema_extra=_TYPE_DOC)  # type: ignore[assignment]
    source: str | None = Field(None, json_schema_extra=_SOURCE_DOC)
    schema_: _JsonSchema = Field(None, alias="schema", json_schema_extra=_SCHEMA_DOC)
    is_enabled: bool = Field(None, alias="isEnabled")  # type: ignore[assignment]
    description: str | None = Field(None, json_schema_extra=_TEXT_DOC)


class EventTypeResource(BaseModel):
    """An event type as the API answers it: its fields and its own `url`."""

    url: str = Field(description="this entry's URL", json_schema_extra={"readOnly": True})
    name: str
    slug: str
    type: str
    source: str | None
    schema_: _JsonSchema = Field(alias="schema")
    is_enabled: bool = Field(alias="isEnabled")
    description: str | None
    operational: bool = Field(
        False,
        description="built in: the outbox's own events (nl.overheid.outbox.*); only isEnabled may change",
        json_schema_extra={"readOnly": True},
    )

    @classmethod
    def of(cls, entry: EventType, base_url: str) -> EventTypeResource:
        return cls.model_validate({**entry.to_json(), "url": f"{base_url}/api/v1{PATH}/{entry.slug}"})


def _entry(document: dict[str, Any]) -> EventType:
    try:
        return EventType.from_json(document)
    except InvalidEventTypeError as exc:
        raise from_problems(exc.problems) from None


def _conflict(exc: store.EventTypeConflict) -> ApiProblem:
    if isinstance(exc, store.BuiltInEventType):
        return ApiProblem(
            409, "built-in", "Conflict.", str(exc), [InvalidParam(name="slug", code="built-in", reason=str(exc))]
        )
    name, _, reason = str(exc).partition(": ")
    return ApiProblem(
        409,
        "conflict",
        "Conflict.",
        f"Another event type already has this {name}.",
        [InvalidParam(name=name, code="unique", reason=reason)],
    )


def _known_slug(slug: str) -> str:
    """A slug that cannot be in the catalogue is a 404 at once (and never reaches the database)."""
    if not _SLUG.match(slug) or len(slug) > 100:
        raise not_found("event type")
    return slug


_READ = Depends(require(CONSUME, PUBLISH, ADMIN))
_ADMIN = Depends(require(ADMIN))
Reader = Annotated[ApiClient, _READ]
Admin = Annotated[ApiClient, _ADMIN]


async def _json_writer(request: Request, client: Admin) -> ApiClient:
    """An outbox.beheer client that sends JSON: any other Content-Type is a 415 (after 401/403, before 400)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
        raise ApiProblem(
            415,
            "unsupported_media_type",
            "Unsupported media type.",
            f"Content-Type {kind or '(none)'!r} is not taken here: send application/json.",
        )
    return client


Writer = Annotated[ApiClient, Depends(_json_writer)]


def _body(model: type[M]) -> Callable[..., Awaitable[M]]:
    """A dependency: the request body as `model`, read only once the caller may write and sends JSON
    (FastAPI's own body parameters are parsed first, so malformed JSON was a 400 even to strangers)."""

    async def parse(request: Request, client: Writer) -> M:
        try:
            document = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise invalid(
                [InvalidParam(name="nonFieldErrors", code="parse_error", reason=f"not JSON: {exc}")]
            ) from None
        try:
            return model.model_validate(document)
        except ValidationError as exc:
            raise validation_problem(exc.errors()) from None

    return parse


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a `_body(model)` operation (the model is in components, see BODY_MODELS)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


BODY_MODELS = (EventTypeWrite, EventTypePatch)
M = TypeVar("M", bound=BaseModel)
router = APIRouter(prefix=PATH, tags=["event-types"])


@router.get(
    "",
    summary="The event catalogue",
    description="Every event type, by slug; `type` and `isEnabled` narrow the list.",
    responses=responses(400, 401, 403, 429, 503),
)
async def list_event_types(
    request: Request,
    client: Reader,
    type: Annotated[str | None, Query(description="only the entry of this CloudEvents type")] = None,
    is_enabled: Annotated[bool | None, Query(alias="isEnabled", description="only enabled or disabled ones")] = None,
) -> list[EventTypeResource]:
    service = request.app.state.service
    if type is not None and not _TOKEN.match(type):
        return []  # no entry can have it
    async with service.pool.connection() as conn:
        entries = await store.find_async(conn, service.schema, type=type, is_enabled=is_enabled)
    base = service.base_url(request)
    return [EventTypeResource.of(entry, base) for entry in entries]


@router.get(
    "/{slug}",
    summary="One event type",
    responses=responses(401, 403, 404, 429, 503),
)
async def get_event_type(request: Request, slug: str, client: Reader) -> EventTypeResource:
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            entry = await store.get_async(conn, service.schema, _known_slug(slug))
    except store.EventTypeNotFound:
        raise not_found("event type") from None
    return EventTypeResource.of(entry, service.base_url(request))


@router.post(
    "",
    status_code=201,
    summary="Register an event type",
    openapi_extra=_request_body(EventTypeWrite),
    responses=responses(400, 401, 403, 409, 413, 415, 429, 503),
)
async def create_event_type(
    request: Request, body: Annotated[EventTypeWrite, Depends(_body(EventTypeWrite))], response: Response
) -> EventTypeResource:
    service = request.app.state.service
    entry = _entry(body.model_dump(by_alias=True))
    try:
        async with service.pool.connection() as conn:
            await store.add_async(conn, service.schema, entry)
    except store.EventTypeConflict as exc:
        raise _conflict(exc) from None
    resource = EventTypeResource.of(entry, service.base_url(request))
    response.headers["Location"] = resource.url
    return resource


@router.put(
    "/{slug}",
    summary="Replace an event type (its slug may change)",
    openapi_extra=_request_body(EventTypeWrite),
    responses=responses(400, 401, 403, 404, 409, 413, 415, 429, 503),
)
async def replace_event_type(
    request: Request, slug: str, body: Annotated[EventTypeWrite, Depends(_body(EventTypeWrite))]
) -> EventTypeResource:
    service = request.app.state.service
    entry = _entry(body.model_dump(by_alias=True))
    try:
        async with service.pool.connection() as conn:
            await store.replace_async(conn, service.schema, _known_slug(slug), entry)
    except store.EventTypeNotFound:
        raise not_found("event type") from None
    except store.EventTypeConflict as exc:
        raise _conflict(exc) from None
    return EventTypeResource.of(entry, service.base_url(request))


@router.patch(
    "/{slug}",
    summary="Change some fields of an event type",
    openapi_extra=_request_body(EventTypePatch),
    responses=responses(400, 401, 403, 404, 409, 413, 415, 429, 503),
)
async def update_event_type(
    request: Request, slug: str, body: Annotated[EventTypePatch, Depends(_body(EventTypePatch))]
) -> EventTypeResource:
    service = request.app.state.service
    changes = body.model_dump(by_alias=True, exclude_unset=True)
    try:
        async with service.pool.connection() as conn, conn.transaction():
            current = await store.get_async(conn, service.schema, _known_slug(slug), lock=True)
            entry = _entry({**current.to_json(), **changes})
            await store.replace_async(conn, service.schema, slug, entry)
    except store.EventTypeNotFound:
        raise not_found("event type") from None
    except store.EventTypeConflict as exc:
        raise _conflict(exc) from None
    return EventTypeResource.of(entry, service.base_url(request))


@router.delete(
    "/{slug}",
    status_code=204,
    summary="Remove an event type",
    response_class=Response,
    responses={204: {"description": "Removed."}, **responses(401, 403, 404, 429, 503)},
)
async def delete_event_type(request: Request, slug: str, client: Admin) -> Response:
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            await store.remove_async(conn, service.schema, _known_slug(slug))
    except store.EventTypeNotFound:
        raise not_found("event type") from None
    except store.EventTypeConflict as exc:
        raise _conflict(exc) from None
    return Response(status_code=204)
