"""/api/v1/subscriptions: the CloudEvents Subscriptions API (cloudevents/spec `subscriptions/`), over
the same subscriptions as /abonnement.

`id` is the subscription's uuid, `sink` its callback URL, `sinkcredential` (write-only; credentialtype
ACCESSTOKEN only) its `Authorization: Bearer …`, `config` this product's delivery options under their
abonnement names, `protocol` HTTP only, `protocolsettings.headers` sent with every delivery (their
values are secrets: write-only, sealed with the other secrets; a read shows their names, as
`protocolsettings.headernames`) and `protocolsettings.method` POST only. Anything else is refused
with 400, as the spec asks of unsupported filter dialects. A PUT replaces what this API names (but
write-only secrets left out are kept); kanalen and cloudeventFilters set through /abonnement stay
unless `config` gives them. Without `types`, kanalen or cloudeventFilters a
subscription gets `types: ["*"]` (the spec: no types, no constraint).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from outbox import Subscription
from outbox._subscription import public_url
from worker.service import registration
from worker.service.abonnement import WRITE_ONLY, CloudEventFilterGroup, KanaalFilter, OAuth2Settings, ZgwSettings
from worker.service.auth import require
from worker.service.problems import InvalidParam, not_found, responses
from worker.store import subscriptions as store
from worker.store.clients import ADMIN, CONSUME, ApiClient

router = APIRouter(tags=["subscriptions"])
PATH = "/subscriptions"
_CONFIG_KEYS = (
    "contentMode", "orderingKey", "batchMax", "contentType", "rate", "preflight", "oauth2", "zgw", "signingSecrets",
    "caBundle", "clientCert", "clientKey", "allowQueryToken", "kanalen", "sendCloudevents", "cloudeventFilters",
)  # fmt: skip
_KEEP = ("kanalen", "sendCloudevents", "cloudeventFilters")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


@registration.body_model
class SinkCredential(_Model):
    """Write-only. Only credentialtype ACCESSTOKEN: the token is sent as `Authorization: Bearer <accesstoken>`."""

    credentialtype: str = Field(examples=["ACCESSTOKEN"])
    accesstoken: str | None = None
    accesstokentype: str | None = Field(None, description="bearer (the only kind) when given")
    accesstokenexpiresutc: str | None = Field(
        None, description="not supported (the token is sent until it is replaced): refused when given"
    )


@registration.body_model
class HttpSettings(_Model):
    """protocolsettings for HTTP."""

    headers: dict[str, str] | None = Field(
        None,
        description="write-only (the values may be credentials; left out on PUT: the stored ones are kept); sent "
        "with every delivery; Authorization, Content-Type, Content-Length, Host, ce-*, webhook-* and hop-by-hop "
        "headers are refused",
        json_schema_extra=WRITE_ONLY,
    )
    method: str | None = Field(None, description="POST (the only method)")
    headernames: list[str] | None = Field(None, description="read-only: ignored when sent back")


@registration.body_model
class HttpSettingsRead(_Model):
    """protocolsettings as returned: the names of the headers, never their values."""

    headernames: list[str] = Field(description="read-only: the names of `headers` (their values are write-only)")
    method: str


@registration.body_model
class DeliveryConfig(BaseModel):
    """This product's delivery options (abonnement names); secrets in it are write-only."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    contentMode: str | None = None
    orderingKey: str | None = None
    batchMax: int | None = None
    contentType: str | None = None
    rate: int | None = None
    preflight: bool | None = None
    oauth2: OAuth2Settings | None = None
    zgw: ZgwSettings | None = None
    signingSecrets: list[str] | None = Field(None, description="write-only")
    caBundle: str | None = None
    clientCert: str | None = None
    clientKey: str | None = Field(None, description="write-only")
    allowQueryToken: bool | None = None
    kanalen: list[KanaalFilter] | None = None
    sendCloudevents: bool | None = None
    cloudeventFilters: list[CloudEventFilterGroup] | None = None


@registration.body_model
class SubscriptionRequest(_Model):
    """A subscription as created or replaced."""

    id: str | None = Field(None, description="ignored on create; on PUT, the path's id when given")
    source: str | None = Field(None, description="only events with exactly this source")
    types: list[str] | None = Field(None, description="event types (patterns: `*` = any run of characters)")
    config: DeliveryConfig | None = None
    filters: list[dict[str, Any]] | None = Field(
        None, description="filter expressions: exact, prefix, suffix, all, any, not, sql (CESQL), jsonlogic"
    )
    sink: str = Field(examples=["https://endpoint.example.com/webhook"])
    sinkcredential: SinkCredential | None = None
    protocol: str = Field(examples=["HTTP"], description="HTTP only")
    protocolsettings: HttpSettings | None = None
    # A subscription as read may be sent back whole, as `id` and `headernames` may.
    verification: dict[str, Any] | None = Field(None, description="read-only: ignored when sent back")


@registration.body_model
class SubscriptionRead(_Model):
    """A subscription as returned (no secrets)."""

    id: str
    source: str | None = None
    types: list[str]
    config: dict[str, Any]
    filters: list[dict[str, Any]]
    sink: str
    sinkcredential: dict[str, str] | None = Field(None, description="its credentialtype, never the token")
    protocol: str
    protocolsettings: HttpSettingsRead
    verification: registration.Verification = Field(
        description="read-only: how the sink was verified", json_schema_extra=registration.VERIFICATION_FIELD
    )


def rename(name: str) -> str:
    """An abonnement field's name as this API names it."""
    head = name.split(".", 1)[0].split("[", 1)[0]
    rest = name[len(head) :]
    if head == "callbackUrl":
        return "sink" + rest
    if head == "auth":
        return "sinkcredential" + rest
    if head == "headers":
        return "protocolsettings.headers" + rest
    if head in ("source", "types", "filters", "nonFieldErrors"):
        return name
    return "config." + name


def _translate(body: dict[str, Any], path_id: str | None) -> tuple[dict[str, Any], list[InvalidParam]]:
    """The abonnement fields the body sets, and the faults only this API can have."""
    faults: list[InvalidParam] = []
    changes: dict[str, Any] = {}
    if "sink" in body:
        changes["callbackUrl"] = body["sink"]
    for key in ("source", "types", "filters"):
        if body.get(key) is not None:
            changes[key] = body[key]
    config = body.get("config")
    if isinstance(config, dict):
        changes.update({key: value for key, value in config.items() if key in _CONFIG_KEYS})
    protocol = body.get("protocol")
    if isinstance(protocol, str) and protocol != "HTTP":
        faults.append(
            InvalidParam(name="protocol", code="unsupported", reason=f"only HTTP is supported, not {protocol!r}")
        )
    settings = body.get("protocolsettings")
    if isinstance(settings, dict):
        if "headers" in settings:
            changes["headers"] = settings["headers"]
        method = settings.get("method")
        if isinstance(method, str) and method != "POST":
            faults.append(
                InvalidParam(
                    name="protocolsettings.method", code="unsupported", reason=f"only POST is supported, not {method!r}"
                )
            )
    credential = body.get("sinkcredential")
    if isinstance(credential, dict):
        kind = credential.get("credentialtype")
        if isinstance(kind, str) and kind != "ACCESSTOKEN":
            faults.append(
                InvalidParam(
                    name="sinkcredential.credentialtype",
                    code="unsupported",
                    reason=f"only ACCESSTOKEN is supported, not {kind!r}",
                )
            )
        kind_of_token = credential.get("accesstokentype")
        if isinstance(kind_of_token, str) and kind_of_token.lower() != "bearer":
            faults.append(
                InvalidParam(name="sinkcredential.accesstokentype", code="unsupported", reason="only bearer tokens")
            )
        if credential.get("accesstokenexpiresutc") is not None:
            faults.append(
                InvalidParam(
                    name="sinkcredential.accesstokenexpiresutc",
                    code="unsupported",
                    reason="token expiry is not supported: the token is sent until it is replaced; leave this out",
                )
            )
        token = credential.get("accesstoken")
        if kind == "ACCESSTOKEN" and not isinstance(token, str):
            faults.append(
                InvalidParam(name="sinkcredential.accesstoken", code="required", reason="is required for ACCESSTOKEN")
            )
        elif isinstance(token, str):
            changes["auth"] = f"Bearer {token}"
    given_id = body.get("id")
    if path_id is not None and given_id is not None and given_id != path_id:
        faults.append(InvalidParam(name="id", code="invalid", reason="must be the id in the path (it cannot change)"))
    return changes, faults


def document(subscription: Subscription) -> dict[str, Any]:
    """The Subscriptions API JSON of a subscription: no secrets (it need not have them opened)."""
    full = subscription.to_abonnement(secrets=False)
    config = {key: full[key] for key in _CONFIG_KEYS if key not in registration.SECRET_FIELDS}
    shown: dict[str, Any] = {"id": subscription.id}
    if subscription.source is not None:
        shown["source"] = subscription.source
    shown.update(
        types=list(subscription.types),
        config=config,
        filters=[f.to_json() for f in subscription.filters],
        sink=public_url(subscription.callback_url),  # an access_token in it is a secret
    )
    if subscription.auth_kind == "static" and (subscription.auth_hint or "").startswith("Bearer "):
        shown["sinkcredential"] = {"credentialtype": "ACCESSTOKEN"}
    settings = {"headernames": list(subscription.header_names), "method": "POST"}
    shown.update(protocol="HTTP", protocolsettings=settings, verification=subscription.verification)
    return shown


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers=headers, media_type="application/json")


def _read(description: str, status: int = 200, *, many: bool = False) -> dict[int | str, dict[str, Any]]:
    ref: dict[str, Any] = {"$ref": "#/components/schemas/SubscriptionRead"}
    schema = {"type": "array", "items": ref} if many else ref
    return {status: {"description": description, "content": {"application/json": {"schema": schema}}}}


Consumer = Annotated[ApiClient, Depends(require(CONSUME, ADMIN))]


async def _current(request: Request, client: ApiClient, subscription_id: str, *, opened: bool = False) -> Subscription:
    """`opened`: with its secrets, to change it (else sealed: enough to show it)."""
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            owner = registration.owner_filter(client)
            box = service.box if opened else None
            return await store.get_async(conn, service.schema, subscription_id, box, owner)
    except store.SubscriptionNotFound:
        raise not_found("subscription") from None


async def _save(request: Request, client: ApiClient, current: Subscription | None) -> Subscription:
    service = request.app.state.service
    body = await registration.json_object(request)
    declared = registration.declared_faults(SubscriptionRequest, body)
    changes, faults = _translate(body, None if current is None else current.id)
    combined = registration.combined(current, changes, replace_all=True, keep=_KEEP, rename=rename)
    if not combined.get("types") and not combined.get("kanalen") and not combined.get("cloudeventFilters"):
        combined["types"] = ["*"]
    subscription = registration.checked(combined, service.settings, registration.merged(declared, faults), rename)
    if current is None:
        subscription = registration.replace_owner(subscription, client.client_id)
    base = service.base_url(request)
    subscription = await registration.agreed(subscription, current, service.settings, base, rename)
    async with service.pool.connection() as conn:
        if current is None:
            new_id = await store.add_async(conn, service.schema, subscription, service.box)
        else:
            new_id = str(current.id)
            try:
                await store.update_async(conn, service.schema, subscription, service.box, current.updated_at)
            except store.SubscriptionChanged:
                raise registration.changed_meanwhile() from None
        return await store.get_async(conn, service.schema, new_id, None, None)


@router.get(
    PATH,
    summary="List subscriptions",
    description="The caller's subscriptions (all of them for outbox.beheer).",
    responses={**_read("the subscriptions", many=True), **responses(401, 403)},
)
async def list_subscriptions(request: Request, client: Consumer) -> Response:
    service = request.app.state.service
    async with service.pool.connection() as conn:
        found = await store.list_async(conn, service.schema, registration.owner_filter(client))
    return _json([document(s) for s in found])


@router.post(
    PATH,
    status_code=201,
    summary="Create a subscription",
    description="Checked whole; then the OPTIONS handshake of the NL GOV webhook guideline against the sink "
    "(unless config.preflight). Unsupported protocols, methods, credential types and filter dialects are refused.",
    openapi_extra=registration.request_body(SubscriptionRequest, "the new subscription"),
    responses={**_read("created (Location: its URL)", 201), **responses(400, 401, 403)},
)
async def create_subscription(request: Request, client: Consumer) -> Response:
    stored = await _save(request, client, None)
    location = f"{request.app.state.service.base_url(request)}/api/v1/subscriptions/{stored.id}"
    return _json(document(stored), 201, {"Location": location})


@router.get(
    PATH + "/{id}",
    summary="Read a subscription",
    responses={**_read("the subscription"), **responses(401, 403, 404)},
)
async def read_subscription(request: Request, client: Consumer, id: str) -> Response:
    return _json(document(await _current(request, client, id)))


@router.put(
    PATH + "/{id}",
    summary="Replace a subscription",
    description="Every field this API names as given (write-only secrets left out are kept). The handshake runs "
    "again when the sink, its TLS options, the rate or config.preflight change.",
    openapi_extra=registration.request_body(SubscriptionRequest, "the subscription as it is to be"),
    responses={**_read("the subscription"), **responses(400, 401, 403, 404, 409)},
)
async def replace_subscription(request: Request, client: Consumer, id: str) -> Response:
    current = await _current(request, client, id, opened=True)
    return _json(document(await _save(request, client, current)))


@router.delete(
    PATH + "/{id}",
    summary="Delete a subscription",
    description="With its deliveries and their history; answers the subscription as it was.",
    responses={**_read("deleted"), **responses(401, 403, 404)},
)
async def delete_subscription(request: Request, client: Consumer, id: str) -> Response:
    current = await _current(request, client, id)
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            await store.remove_async(conn, service.schema, id, registration.owner_filter(client))
    except store.SubscriptionNotFound:
        raise not_found("subscription") from None
    return _json(document(current))
