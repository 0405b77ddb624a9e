"""/api/v1/consumers: inbound webhooks (issue 22; OpenConnector's Consumers) over HTTP, for outbox.beheer only.

A consumer is OpenConnector's `name`, `endpoint`, `mappingId`, `targetType`, `targetId`, `isEnabled` plus
`verification` (one method's config, worker/consumers/verification.py) and its limits. Bodies are declared by
the models below (they make the OpenAPI document and refuse other fields and wrong types); the rules are
`parse_consumer`'s, the ones the CLI uses, so one 400 names every invalid field. A taken name or endpoint is a
409 naming it. Secrets (`secrets`, `tokens`, `password`, `keys` of the verification) are write-only: answers
show `secretCount`, and a PUT or PATCH that keeps the method and leaves them out keeps the stored ones.

Also: trying a payload (`/try`, nothing stored) and the failures kept for the operator (requests that passed
verification but not the mapping, the profile or the catalogue), with their replay once the mapping is fixed.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, Self

import orjson
import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, RootModel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from outbox._sql import query
from worker.consumers import intake, model, operations
from worker.consumers.verification import CONFIGS, SECRET_FIELDS
from worker.service import registration
from worker.service.auth import require
from worker.service.problems import ApiProblem, InvalidParam, invalid, not_found, responses
from worker.store import consumers as store
from worker.store.clients import ADMIN, ApiClient

PATH = "/consumers"
HOOKS_PATH = "/hooks"
MAX_BIGINT: Final = 2**63 - 1
FAILURES_PAGE: Final = 50
_KEPT_NOTE = (
    "write-only (answers show secretCount); required on create; left out of a PUT or PATCH that keeps the "
    "method: the stored value is kept"
)

# -- the verification config in the OpenAPI document: each method's own model, secrets write-only --------


def _method_schemas(read: bool, patch: bool = False) -> list[dict[str, Any]]:
    """Each method's config schema from its pydantic model (so the document follows the code): as written
    (secrets write-only, not required: a change may keep them; in a patch `method` neither), or as read (no
    secrets, `secretCount`)."""
    schemas = []
    for method, config in CONFIGS.items():
        schema = config.model_json_schema(by_alias=True)
        schema.pop("title", None)
        properties: dict[str, Any] = schema["properties"]
        for prop in properties.values():
            prop.pop("title", None)
        secret = SECRET_FIELDS[method]
        if read:
            for name in secret:
                properties.pop(name)
            if secret:
                properties["secretCount"] = {
                    "type": "integer",
                    "minimum": 0,
                    "readOnly": True,
                    "description": "how many secret values are set (never the values)",
                }
            for prop in properties.values():
                prop.pop("default", None)
            schema["required"] = list(properties)
        else:
            for name in secret:
                properties[name]["description"] = _KEPT_NOTE
            kept = (*secret, "method") if patch else secret
            schema["required"] = [name for name in schema.get("required", []) if name not in kept]
        schemas.append(schema)
    return schemas


class VerificationWrite(RootModel[dict[str, Any]]):
    """How requests are verified: `{"method": …, …}` (checked by the method's own rules)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {
            "description": "How requests to /hooks/{endpoint} are verified: one method and its settings.",
            "oneOf": _method_schemas(read=False),
        }


class VerificationPatch(RootModel[dict[str, Any]]):
    """A change of the verification config: the stored method's settings, or another method's whole."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {
            "description": "Without `method`, or with the stored one: the given settings replace only themselves "
            "(the secrets left out are kept). With another method: that method's settings, whole.",
            "anyOf": _method_schemas(read=False, patch=True),
        }


class VerificationRead(RootModel[dict[str, Any]]):
    """The verification config as answered: without secrets."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {
            "description": "How requests are verified, without the secrets (secretCount: how many are set).",
            "oneOf": _method_schemas(read=True),
        }


_SLUG_DOC: dict[str, Any] = {"pattern": model.SLUG.pattern, "maxLength": 100}
_NAME_DOC: dict[str, Any] = {"minLength": 1, "maxLength": 100, "pattern": r"^\S(.*\S)?$", "examples": ["PSP payments"]}


def _no_defaults(schema: dict[str, Any]) -> None:
    """A field a patch leaves out is not its default, it is unchanged: no `default` in the document."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


@registration.body_model
class ConsumerWrite(BaseModel):
    """A consumer as created or replaced (PUT: a field left out takes its default, secrets excepted)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="human-readable name; unique", json_schema_extra=_NAME_DOC)
    endpoint: str = Field(
        description="the exposed path: requests go to /hooks/{endpoint}; unique",
        json_schema_extra={**_SLUG_DOC, "examples": ["psp-payments"]},
    )
    mappingId: str | None = Field(
        None,
        description="the mapping (/api/v1/mappings) that turns a request into the CloudEvent; null: the body "
        "must be a CloudEvent itself (JSON event format)",
        json_schema_extra=_SLUG_DOC,
    )
    targetType: Literal["event-type", "source"] = Field(
        description="event-type: the event is validated against that catalogue entry and routed to every "
        "matching subscription; source: it goes to one subscription only"
    )
    targetId: str = Field(
        description="the catalogue entry's slug (event-type), or the subscription's id (source)", min_length=1
    )
    isEnabled: bool = Field(True, description="false: /hooks/{endpoint} answers 404")
    verification: VerificationWrite
    maxBodyBytes: int = Field(
        model.DEFAULT_MAX_BODY_BYTES,
        description="the largest request body taken (413 above)",
        json_schema_extra={"minimum": 1, "maximum": model.MAX_BODY_BYTES},
    )
    rateLimit: float | None = Field(
        None,
        description="requests per second over every process (429 above); null: none; with rateBurst",
        json_schema_extra={"exclusiveMinimum": 0, "maximum": 100_000},
    )
    rateBurst: int | None = Field(
        None, description="requests at once; with rateLimit", json_schema_extra={"minimum": 1, "maximum": 1_000_000}
    )


@registration.body_model
class ConsumerPatch(BaseModel):
    """Some fields of a consumer (PATCH); the others keep their value. The whole consumer is checked again."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_no_defaults)

    name: str = Field(None, description="human-readable name; unique", json_schema_extra=_NAME_DOC)  # type: ignore[assignment]
    endpoint: str = Field(None, description="the exposed path; unique", json_schema_extra=_SLUG_DOC)  # type: ignore[assignment]
    mappingId: str | None = Field(None, description="null: no mapping", json_schema_extra=_SLUG_DOC)
    targetType: Literal["event-type", "source"] = Field(None)  # type: ignore[arg-type]
    targetId: str = Field(None, min_length=1)  # type: ignore[assignment]
    isEnabled: bool = Field(None, description="false: disabled (/hooks/{endpoint} answers 404)")  # type: ignore[assignment]
    verification: VerificationPatch = Field(None)  # type: ignore[assignment]
    maxBodyBytes: int = Field(None, json_schema_extra={"minimum": 1, "maximum": model.MAX_BODY_BYTES})  # type: ignore[assignment]
    rateLimit: float | None = Field(None, json_schema_extra={"exclusiveMinimum": 0, "maximum": 100_000})
    rateBurst: int | None = Field(None, json_schema_extra={"minimum": 1, "maximum": 1_000_000})


_READ_ONLY: dict[str, Any] = {"readOnly": True}


class ConsumerResource(BaseModel):
    """A consumer as the API answers it: its fields (no secrets), its own `url` and the URL senders call."""

    url: str = Field(description="this consumer's URL", json_schema_extra=_READ_ONLY)
    hookUrl: str = Field(description="where the external system sends its webhooks", json_schema_extra=_READ_ONLY)
    id: str = Field(json_schema_extra=_READ_ONLY)
    name: str
    endpoint: str
    mappingId: str | None
    targetType: Literal["event-type", "source"]
    targetId: str
    isEnabled: bool
    verification: VerificationRead
    maxBodyBytes: int
    rateLimit: float | None
    rateBurst: int | None
    openFailures: int = Field(description="failures kept and not replayed", json_schema_extra=_READ_ONLY)
    createdAt: str | None = Field(json_schema_extra=_READ_ONLY)
    updatedAt: str | None = Field(json_schema_extra=_READ_ONLY)

    @classmethod
    def of(cls, consumer: store.Consumer, base_url: str) -> ConsumerResource:
        return cls.model_validate(
            {
                **consumer.to_json(),
                "url": f"{base_url}/api/v1{PATH}/{consumer.id}",
                "hookUrl": f"{base_url}{HOOKS_PATH}/{consumer.endpoint}",
            }
        )


@registration.body_model
class ConsumerTry(BaseModel):
    """A request to try (nothing is stored): `payload` (the body as JSON) or `body` (the raw body as text)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    payload: Any = Field(None, description="the request body, as JSON")
    body: str | None = Field(None, description="the request body as text, instead of payload (e.g. not JSON)")
    headers: dict[str, str] = Field(
        default_factory=dict, description="request headers; the mapping reads only those it chose"
    )


class FailureResource(BaseModel):
    """A request kept for the operator: why it failed, what the mapping may read of it, whether it was replayed."""

    url: str = Field(description="this failure's URL", json_schema_extra=_READ_ONLY)
    id: int
    consumerId: str
    receivedAt: str
    code: str = Field(description="why: the mapping's code, schema_violation, type_mismatch, target_missing, …")
    problems: list[InvalidParam]
    mappingVersion: int | None = Field(description="the mapping version it failed with")
    bodySize: int
    headers: dict[str, str] = Field(description="the headers the mapping chose (never the verification headers)")
    webhookId: str | None
    replayedAt: str | None
    eventSource: str | None = Field(description="the event a replay stored")
    eventId: str | None

    @classmethod
    def of(cls, failure: store.Failure, consumer_url: str, **more: Any) -> Self:
        return cls.model_validate({**failure.to_json(), "url": f"{consumer_url}/failures/{failure.id}", **more})


class FailureDetail(FailureResource):
    """One failure with its body: `body` as text when it is UTF-8, else `bodyBase64`."""

    body: str | None
    bodyBase64: str | None


# -- answers that carry a CloudEvent (hand-written: pydantic's schemas cannot point into the components) ----

_EVENT_REF: dict[str, Any] = {"$ref": "#/components/schemas/CloudEvent"}
TRY_RESULT: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "description": "the event the request would become (nothing stored)",
            "required": ["event"],
            "properties": {"event": _EVENT_REF},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "description": "why the request would be refused (422, kept as a failure): a code and each problem",
            "required": ["code", "problems"],
            "properties": {
                "code": {"type": "string", "examples": ["evaluation_error", "schema_violation", "invalid_event"]},
                "problems": {"type": "array", "items": {"$ref": "#/components/schemas/InvalidParam"}},
            },
            "additionalProperties": False,
        },
    ]
}
REPLAYED: dict[str, Any] = {
    "type": "object",
    "required": ["failureId", "stored", "event"],
    "properties": {
        "failureId": {"type": "integer"},
        "stored": {"type": "boolean", "description": "false: the event was taken in before (a duplicate)"},
        "event": _EVENT_REF,
    },
    "additionalProperties": False,
}


def json_answer(description: str, schema: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


# -- request bodies ----------------------------------------------------------------------------------------

Admin = Annotated[ApiClient, Depends(require(ADMIN))]


async def json_writer(request: Request, client: Admin) -> ApiClient:
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


Writer = Annotated[ApiClient, Depends(json_writer)]


def _nul_faults(value: Any, name: str = "") -> list[InvalidParam]:
    """Text PostgreSQL cannot store (NUL), anywhere in a document that is to be stored."""
    if isinstance(value, str):
        if "\x00" not in value:
            return []
        return [InvalidParam(name=name or "nonFieldErrors", code="invalid", reason="must not contain NUL")]
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            found += _nul_faults(key, name) + _nul_faults(item, f"{name}.{key}" if name else str(key))
        return found
    if isinstance(value, list):
        return [fault for i, item in enumerate(value) for fault in _nul_faults(item, f"{name}[{i}]")]
    return []


def top(name: str) -> str:
    """The top-level field a problem's name is about (`verification.secrets[0]` → verification)."""
    return name.split(".", 1)[0].split("[", 1)[0]


def declared(model_class: type[BaseModel], document: dict[str, Any], stored: bool = True) -> list[InvalidParam]:
    """The declared model's faults (types, unknown fields) and, in a stored document, NUL characters."""
    faults = registration.declared_faults(model_class, document)
    return registration.merged(faults, _nul_faults(document) if stored else [])


def _without(document: dict[str, Any], faults: list[InvalidParam]) -> dict[str, Any]:
    """The fields no fault is about (the rules then speak only of those)."""
    flagged = {top(fault.name) for fault in faults}
    return {key: value for key, value in document.items() if key not in flagged}


def _rule_faults(document: Mapping[str, Any], flagged: list[InvalidParam]) -> list[InvalidParam]:
    """parse_consumer's problems with the whole document, except for the fields already flagged."""
    names = {top(fault.name) for fault in flagged}
    try:
        model.parse_consumer(document)
    except model.InvalidConsumer as exc:
        return [_param(p) for p in exc.problems if top(p.name) not in names]
    return []


async def _reference_faults(
    request: Request, document: Mapping[str, Any], flagged: list[InvalidParam]
) -> list[InvalidParam]:
    """With other faults (the store checks references only of a valid consumer): a mapping or a target that
    does not exist, so that one 400 names those too."""
    names = {top(fault.name) for fault in flagged}
    service = request.app.state.service
    found: list[InvalidParam] = []
    async with service.pool.connection() as conn:
        mapping_id = document.get("mappingId")
        if "mappingId" not in names and isinstance(mapping_id, str):
            cursor = await conn.execute(query("mapping", service.schema), {"id": mapping_id, "version": None})
            if await cursor.fetchone() is None:
                reason = f"there is no mapping {mapping_id!r}"
                found.append(InvalidParam(name="mappingId", code="does_not_exist", reason=reason))
        kind, target = document.get("targetType"), document.get("targetId")
        if not {"targetType", "targetId"} & names and isinstance(target, str):
            if kind == model.EVENT_TYPE:
                cursor = await conn.execute(query("event_type_slug_exists", service.schema), (target,))
            else:
                try:  # parse_consumer checks this only of an otherwise valid consumer
                    subscription = str(uuid.UUID(target))
                except ValueError:
                    reason = "must be a subscription id (a UUID) for targetType source"
                    return [*found, InvalidParam(name="targetId", code="invalid", reason=reason)]
                cursor = await conn.execute(query("subscription_exists", service.schema), (subscription,))
            if await cursor.fetchone() is None:
                what = "event catalogue entry (slug)" if kind == model.EVENT_TYPE else "subscription"
                reason = f"there is no {what} {target!r}"
                found.append(InvalidParam(name="targetId", code="does_not_exist", reason=reason))
    return found


async def _checked(request: Request, faults: list[InvalidParam], document: Mapping[str, Any]) -> None:
    """One 400 naming every fault, the references' included, when there is any."""
    if faults:
        raise invalid(faults + await _reference_faults(request, document, faults))


def _param(problem: model.Problem) -> InvalidParam:
    return InvalidParam(name=problem.name, code=problem.code, reason=problem.reason or "invalid")


def _refused(exc: model.InvalidConsumer) -> ApiProblem:
    """The store's refusal: 409 when only a taken name or endpoint is at fault, else 400."""
    params = [_param(p) for p in exc.problems]
    if all(p.code == "unique" for p in params):
        names = " and ".join(p.name for p in params)
        return ApiProblem(409, "conflict", "Conflict.", f"Another consumer already has this {names}.", params)
    return invalid(params)


def _raced(exc: psycopg.errors.IntegrityError) -> ApiProblem:
    """A change that lost a race with another one (a name taken, a mapping removed meanwhile)."""
    return ApiProblem(409, "conflict", "Conflict.", "Someone else changed the consumers meanwhile: try again.")


def _known_id(consumer_id: str) -> str:
    """A path that cannot be a consumer's id is a 404 at once (and never reaches the database)."""
    try:
        return str(uuid.UUID(consumer_id))
    except ValueError:
        raise not_found("consumer") from None


async def _consumer(request: Request, consumer_id: str) -> store.Consumer:
    service = request.app.state.service
    key = _known_id(consumer_id)
    try:
        async with service.pool.connection() as conn:
            found = await store.get_async(conn, service.schema, key)
    except store.ConsumerNotFound:
        raise not_found("consumer") from None
    if str(found.id) != key:  # the store also looks up by name and endpoint
        raise not_found("consumer")
    return found


# PUT: a field left out takes its default (as on create); the verification's secrets excepted.
_PUT_DEFAULTS: Final = {
    "mappingId": None,
    "isEnabled": True,
    "maxBodyBytes": model.DEFAULT_MAX_BODY_BYTES,
    "rateLimit": None,
    "rateBurst": None,
}


def _patched_verification(current: store.Consumer, change: dict[str, Any]) -> dict[str, Any]:
    """A PATCH's verification over the stored one when it keeps the method (given settings replace only
    themselves; `store.merged` keeps the secrets left out); another method is taken as given."""
    given = change.get("verification")
    if isinstance(given, Mapping) and given.get("method", current.method) == current.method:
        clear = {k: v for k, v in current.verification_clear.items() if not k.startswith("_")}
        return {**change, "verification": {**clear, **given}}
    return change


async def _change(request: Request, current: store.Consumer, change: dict[str, Any]) -> store.Consumer:
    service = request.app.state.service
    request.app.state.hooks.cache.forget()  # this process at once; the others within OUTBOX_CONSUMER_CACHE_TTL
    try:
        async with service.pool.connection() as conn:
            if set(change) == {"isEnabled"}:  # only enable/disable: valid even while the target is gone
                return await store.set_enabled_async(conn, service.schema, str(current.id), change["isEnabled"])
            return await store.update_async(conn, service.schema, str(current.id), change, service.box)
    except store.ConsumerNotFound:
        raise not_found("consumer") from None
    except model.InvalidConsumer as exc:
        raise _refused(exc) from None
    except psycopg.errors.IntegrityError as exc:
        raise _raced(exc) from None


router = APIRouter(prefix=PATH, tags=["consumers"])
ID_PATH = "/{id}"
_ID = Annotated[str, Path(description="the consumer's id")]
_FAILURE_ID = Annotated[int, Path(alias="failureId", ge=1, le=MAX_BIGINT, description="the failure's id")]


@router.get(
    "",
    summary="List consumers",
    description="Every consumer, by name, with its failures waiting for a replay (openFailures).",
    responses=responses(401, 403, 429, 503),
)
async def list_consumers(request: Request, client: Admin) -> list[ConsumerResource]:
    service = request.app.state.service
    async with service.pool.connection() as conn:
        found = await store.list_all_async(conn, service.schema)
    base = service.base_url(request)
    return [ConsumerResource.of(consumer, base) for consumer in found]


@router.post(
    "",
    status_code=201,
    summary="Create a consumer",
    description="Checked whole (the mapping and the target must exist); a taken name or endpoint is a 409.",
    openapi_extra=registration.request_body(ConsumerWrite, "the new consumer"),
    responses=responses(400, 401, 403, 409, 413, 415, 429, 503),
)
async def create_consumer(request: Request, client: Writer, response: Response) -> ConsumerResource:
    service = request.app.state.service
    document = await registration.json_object(request)
    faults = declared(ConsumerWrite, document)
    faults += _rule_faults(_without(document, faults), faults)
    await _checked(request, faults, _without(document, faults))
    try:
        async with service.pool.connection() as conn:
            created = await store.add_async(conn, service.schema, document, service.box)
    except model.InvalidConsumer as exc:
        raise _refused(exc) from None
    except psycopg.errors.IntegrityError as exc:
        raise _raced(exc) from None
    resource = ConsumerResource.of(created, service.base_url(request))
    response.headers["Location"] = resource.url
    return resource


@router.get(ID_PATH, summary="One consumer", responses=responses(401, 403, 404, 429, 503))
async def get_consumer(request: Request, id: _ID, client: Admin) -> ConsumerResource:
    return ConsumerResource.of(await _consumer(request, id), request.app.state.service.base_url(request))


@router.put(
    ID_PATH,
    summary="Replace a consumer",
    description="Every field as given (left out: its default); the verification's secrets left out are kept "
    "when the method stays.",
    openapi_extra=registration.request_body(ConsumerWrite, "the consumer as it is to be"),
    responses=responses(400, 401, 403, 404, 409, 413, 415, 429, 503),
)
async def replace_consumer(request: Request, id: _ID, client: Writer) -> ConsumerResource:
    service = request.app.state.service
    current = await _consumer(request, id)
    document = await registration.json_object(request)
    faults = declared(ConsumerWrite, document)
    change = {**_PUT_DEFAULTS, **_without(document, faults)}
    full = store.merged(current, change, service.box)
    faults += _rule_faults(full, faults)
    await _checked(request, faults, full)
    return ConsumerResource.of(await _change(request, current, change), service.base_url(request))


@router.patch(
    ID_PATH,
    summary="Change some fields of a consumer",
    description="Only the given fields change (isEnabled alone enables or disables it); in `verification` "
    "only the given settings, unless it names another method. Secrets left out are kept.",
    openapi_extra=registration.request_body(ConsumerPatch, "the fields to change"),
    responses=responses(400, 401, 403, 404, 409, 413, 415, 429, 503),
)
async def update_consumer(request: Request, id: _ID, client: Writer) -> ConsumerResource:
    service = request.app.state.service
    current = await _consumer(request, id)
    document = await registration.json_object(request)
    faults = declared(ConsumerPatch, document)
    change = _patched_verification(current, _without(document, faults))
    full = store.merged(current, change, service.box) if set(change) != {"isEnabled"} else {}
    faults += _rule_faults(full, faults) if full else []
    await _checked(request, faults, full)
    return ConsumerResource.of(await _change(request, current, change), service.base_url(request))


@router.delete(
    ID_PATH,
    status_code=204,
    summary="Remove a consumer",
    description="With its kept failures and recorded webhook ids; the events it made stay.",
    response_class=Response,
    responses={204: {"description": "Removed."}, **responses(401, 403, 404, 429, 503)},
)
async def delete_consumer(request: Request, id: _ID, client: Admin) -> Response:
    service = request.app.state.service
    current = await _consumer(request, id)
    try:
        async with service.pool.connection() as conn:
            await store.remove_async(conn, service.schema, str(current.id))
    except store.ConsumerNotFound:
        raise not_found("consumer") from None
    request.app.state.hooks.cache.forget(current.endpoint)
    return Response(status_code=204)


def _payload(document: dict[str, Any]) -> tuple[bytes | Any, list[InvalidParam]]:
    """A try's request body: `payload` (JSON) or `body` (text), exactly one."""
    if ("payload" in document) == (document.get("body") is not None):
        reason = "give the request body as payload (JSON) or as body (text), one of them"
        return None, [InvalidParam(name="payload", code="invalid", reason=reason)]
    if "payload" in document:
        return document["payload"], []
    return str(document["body"]).encode(), []


async def try_body(request: Request, model_class: type[BaseModel]) -> tuple[dict[str, Any], bytes | Any]:
    """A try's document and payload, or one 400 naming every fault."""
    document = await registration.json_object(request)
    faults = declared(model_class, document, stored=False)
    payload: bytes | Any = None
    if not {"payload", "body"} & {top(fault.name) for fault in faults}:
        payload, more = _payload(document)
        faults += more
    if faults:
        raise invalid(faults)
    return document, payload


@router.post(
    ID_PATH + "/try",
    summary="Try a request on a consumer",
    description="The event the consumer's mapping and target would make of this request (the catalogue's "
    "schema included), or the code and problems it would be refused with. Nothing is stored; the request is "
    "not verified.",
    openapi_extra=registration.request_body(ConsumerTry, "the request to try"),
    responses={
        **json_answer("the event, or why it would be refused", TRY_RESULT),
        **responses(400, 401, 403, 404, 413, 415, 429, 503),
    },
)
async def try_consumer(request: Request, id: _ID, client: Writer) -> Response:
    service = request.app.state.service
    current = await _consumer(request, id)
    document, payload = await try_body(request, ConsumerTry)
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    try:
        async with service.pool.connection() as conn:
            result = await operations.try_payload_async(conn, service.schema, current, body, document.get("headers"))
    except store.ConsumerNotFound:
        raise not_found("consumer") from None
    return json_response(result)


# -- failures ---------------------------------------------------------------------------------------------

_LINK = {
    "Link": {"description": 'the next page: <URL>; rel="next" (when this one is full)', "schema": {"type": "string"}}
}


@router.get(
    ID_PATH + "/failures",
    summary="A consumer's failures",
    description="The requests kept for the operator, newest first: those not replayed (all=true: every one). "
    "A keyset page: `before` a failure id; the Link header gives the next page.",
    responses={200: {"description": "a page of failures", "headers": _LINK}, **responses(400, 401, 403, 404, 429, 503)},
)
async def list_failures(
    request: Request,
    id: _ID,
    client: Admin,
    response: Response,
    include_replayed: Annotated[bool, Query(alias="all", description="also the replayed ones")] = False,
    before: Annotated[int | None, Query(ge=1, le=MAX_BIGINT, description="only failures older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="at most this many")] = FAILURES_PAGE,
) -> list[FailureResource]:
    service = request.app.state.service
    current = await _consumer(request, id)
    async with service.pool.connection() as conn:
        found = await store.failures_async(
            conn, service.schema, current, before=before, limit=limit, open_only=not include_replayed
        )
    url = f"{service.base_url(request)}/api/v1{PATH}/{current.id}"
    if len(found) == limit:
        more = "&all=true" if include_replayed else ""
        response.headers["Link"] = f'<{url}/failures?before={found[-1].id}&limit={limit}{more}>; rel="next"'
    return [FailureResource.of(failure, url) for failure in found]


async def _failure(request: Request, current: store.Consumer, failure_id: int) -> store.Failure:
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            found = await store.failure_async(conn, service.schema, failure_id)
    except store.FailureNotFound:
        raise not_found("failure of this consumer") from None
    if found.consumer_id != current.id:
        raise not_found("failure of this consumer")
    return found


@router.get(
    ID_PATH + "/failures/{failureId}",
    summary="One failure, with its body",
    responses=responses(400, 401, 403, 404, 429, 503),
)
async def get_failure(request: Request, id: _ID, failure_id: _FAILURE_ID, client: Admin) -> FailureDetail:
    service = request.app.state.service
    current = await _consumer(request, id)
    found = await _failure(request, current, failure_id)
    body = found.body or b""
    try:
        shown: dict[str, Any] = {"body": body.decode("utf-8"), "bodyBase64": None}
    except UnicodeDecodeError:
        shown = {"body": None, "bodyBase64": base64.b64encode(body).decode()}
    url = f"{service.base_url(request)}/api/v1{PATH}/{current.id}"
    return FailureDetail.of(found, url, **shown)


@router.post(
    ID_PATH + "/failures/{failureId}/replay",
    summary="Replay a failure",
    description="Maps the kept body again with the mapping's current version and stores the event (once: a "
    "replayed failure is a 409). A replay that fails again is a 422 naming its problems; the failure then "
    "says why. The request is not verified again (it was when it arrived).",
    responses={
        **json_answer("the event stored (stored false: it was there already)", REPLAYED),
        422: {
            "description": "The request still cannot become an event (the detail gives the code, "
            "`invalidParams` names each problem).",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
        **responses(400, 401, 403, 404, 409, 429, 503),
    },
)
async def replay_failure(request: Request, id: _ID, failure_id: _FAILURE_ID, client: Admin) -> Response:
    service = request.app.state.service
    current = await _consumer(request, id)
    try:
        async with service.pool.connection() as conn:
            replayed = await operations.replay_async(conn, service.schema, current, failure_id)
    except (store.FailureNotFound, store.ConsumerNotFound):
        raise not_found("failure of this consumer") from None
    except operations.AlreadyReplayed as exc:
        raise ApiProblem(409, "conflict", "Conflict.", str(exc)) from None
    except intake.Refused as refused:
        params = [InvalidParam(name=p["name"], code=p["code"], reason=p["reason"]) for p in refused.problems]
        raise ApiProblem(
            422, "unprocessable", "The payload cannot be turned into an event.",
            f"The replay failed again ({refused.code}); nothing was stored, and the failure now says why.", params,
        ) from None  # fmt: skip
    return json_response(replayed.to_json())
