"""/api/v1/abonnement: Open Notificaties' abonnementen, with this product's delivery options.

List (a plain JSON array, no pagination), create, read, update (PUT), partial update (PATCH), delete.
Unlike Open Notificaties, a PATCH changes only the fields it gives: it does not wipe the kanalen or
cloudeventFilters it leaves out. Write-only fields (`auth`, `signingSecrets`, `clientKey`, the
secrets inside `oauth2` and `zgw`) are never returned; a PUT that leaves them out keeps them.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from outbox import Subscription
from outbox._subscription import public_url
from worker.service import registration
from worker.service.auth import require
from worker.service.problems import not_found, responses
from worker.store import subscriptions as store
from worker.store.clients import ADMIN, CONSUME, ApiClient

router = APIRouter(tags=["abonnement"])
PATH = "/abonnement"
WRITE_ONLY: dict[str, Any] = {"writeOnly": True}  # OpenAPI: a secret, never in an answer


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False)


@registration.body_model
class KanaalFilter(_Model):
    """A kanaal and its filters (AND-ed; a value `*` matches anything)."""

    naam: str = Field(examples=["zaken"])
    filters: dict[str, str] | None = Field(None, examples=[{"domein": "VTH", "#actie": "create"}])


@registration.body_model
class CloudEventFilterGroup(_Model):
    """Open Notificaties' cloud event filter: `typeSubstring` occurs in the event type, and each filter
    key is absent from the event's `data`, equal there, or `*`."""

    type_substring: str = Field(examples=["zaak-gekoppeld"])
    filters: dict[str, str] | None = None


@registration.body_model
class OAuth2Settings(_Model):
    """OAuth 2.0 client credentials the worker uses to get a token for the callback. `clientSecret` is write-only."""

    token_url: str
    client_id: str
    client_secret: str | None = Field(
        None, description="write-only; left out on update: the stored one is kept", json_schema_extra=WRITE_ONLY
    )
    scope: str | None = None


@registration.body_model
class ZgwSettings(_Model):
    """A ZGW JWT (HS256) the worker signs for the callback, as Open Notificaties does. `secret` is write-only."""

    client_id: str
    secret: str | None = Field(
        None, description="write-only; left out on update: the stored one is kept", json_schema_extra=WRITE_ONLY
    )


@registration.body_model
class AbonnementPatch(_Model):
    """The fields of an abonnement that can be written; in a PATCH, only those given change."""

    url: str | None = Field(None, description="read-only: ignored when sent back")
    callback_url: str | None = Field(None, examples=["https://myapp.example.nl/webhook"])
    auth: str | None = Field(
        None,
        description="write-only: the Authorization header value",
        examples=["Bearer …"],
        json_schema_extra=WRITE_ONLY,
    )
    kanalen: list[KanaalFilter] | None = None
    send_cloudevents: bool | None = Field(
        None, description="Open Notificaties' flag (default true here: every delivery is a CloudEvent)"
    )
    cloudevent_filters: list[CloudEventFilterGroup] | None = Field(
        None, description="an event matches when any kanaal or any of these groups matches"
    )
    types: list[str] | None = Field(None, description="event type patterns (`*` = any run of characters), AND-ed")
    filters: list[dict[str, Any]] | None = Field(
        None,
        description="CloudEvents Subscriptions API filter expressions (exact, prefix, suffix, all, any, not, "
        "sql, jsonlogic), all must hold",
    )
    content_mode: str | None = Field(None, description="structured (default), binary or batched")
    ordering_key: str | None = Field(None, description="the event attribute deliveries are ordered by (subject)")
    batch_max: int | None = Field(None, description="batched mode: events per request at most (1-1000)")
    content_type: str | None = None
    rate: int | None = Field(None, description="requests per minute at most (asked in the handshake)")
    preflight: bool | None = Field(None, description="handshake before deliveries instead of at registration")
    oauth2: OAuth2Settings | None = None
    zgw: ZgwSettings | None = None
    signing_secrets: list[str] | None = Field(
        None, description="write-only: Standard Webhooks secrets (whsec_…)", json_schema_extra=WRITE_ONLY
    )
    ca_bundle: str | None = Field(None, description="PEM: the CAs to trust for the callback")
    client_cert: str | None = Field(None, description="PEM: client certificate for mutual TLS")
    client_key: str | None = Field(
        None, description="write-only PEM: the client certificate's key", json_schema_extra=WRITE_ONLY
    )
    allow_query_token: bool | None = None


@registration.body_model
class Abonnement(AbonnementPatch):
    """An abonnement as created or replaced (PUT)."""

    callback_url: str = Field(examples=["https://myapp.example.nl/webhook"])


@registration.body_model
class AbonnementRead(_Model):
    """An abonnement as returned: no secret, and read-only fields besides."""

    url: str
    callback_url: str
    kanalen: list[KanaalFilter]
    send_cloudevents: bool
    cloudevent_filters: list[CloudEventFilterGroup]
    types: list[str]
    filters: list[dict[str, Any]]
    content_mode: str
    ordering_key: str | None
    batch_max: int
    content_type: str | None
    rate: int | None
    preflight: bool
    oauth2: OAuth2Settings | None
    zgw: ZgwSettings | None
    ca_bundle: str | None
    client_cert: str | None
    allow_query_token: bool
    status: str = Field(description="read-only: active or paused")
    agreement: str = Field(description="read-only: handshake, preflight, probe or out-of-band")
    verification: registration.Verification = Field(
        description="read-only: how the callback was verified", json_schema_extra=registration.VERIFICATION_FIELD
    )
    handshake_at: str | None = Field(description="read-only")
    allowed_rate: str | None = Field(description="read-only: what the target allowed in the handshake")


_FIELDS = frozenset(field.alias or name for name, field in AbonnementPatch.model_fields.items()) - {"url"}


def document(subscription: Subscription, base_url: str) -> dict[str, Any]:
    """The abonnement JSON of a subscription: no secrets (it need not have them opened)."""
    full = subscription.to_abonnement(secrets=False)
    shown = {key: full[key] for key in sorted(_FIELDS) if key not in registration.SECRET_FIELDS}
    shown["callbackUrl"] = public_url(subscription.callback_url)  # an access_token in it is a secret
    if subscription.oauth2 is not None:
        shown["oauth2"] = {k: v for k, v in full["oauth2"].items() if k != "clientSecret"}
    if subscription.zgw is not None:
        shown["zgw"] = {"clientId": subscription.zgw.client_id}
    return {
        "url": f"{base_url}/api/v1/abonnement/{subscription.id}",
        **shown,
        "status": subscription.status,
        "agreement": subscription.agreement,
        "verification": subscription.verification,
        "handshakeAt": subscription.handshake_at.isoformat() if subscription.handshake_at else None,
        "allowedRate": subscription.allowed_rate,
    }


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers=headers, media_type="application/json")


def _read(model: type[BaseModel], description: str, *, many: bool = False) -> dict[int | str, dict[str, Any]]:
    ref: dict[str, Any] = {"$ref": f"#/components/schemas/{model.__name__}"}
    schema = {"type": "array", "items": ref} if many else ref
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


Consumer = Annotated[ApiClient, Depends(require(CONSUME, ADMIN))]


async def _current(request: Request, client: ApiClient, uuid: str, *, opened: bool = False) -> Subscription:
    """`opened`: with its secrets, to change it (else sealed: enough to show it)."""
    service = request.app.state.service
    box = service.box if opened else None
    try:
        async with service.pool.connection() as conn:
            return await store.get_async(conn, service.schema, uuid, box, registration.owner_filter(client))
    except store.SubscriptionNotFound:
        raise not_found("abonnement") from None


async def _save(
    request: Request, client: ApiClient, body: dict[str, Any], current: Subscription | None, model: type[BaseModel]
) -> Subscription:
    service = request.app.state.service
    declared = registration.declared_faults(model, body)
    changes = {key: value for key, value in body.items() if key in _FIELDS}
    replace_all = model is not AbonnementPatch
    combined = registration.combined(
        current, changes, replace_all=replace_all, keep=("source", "headers"), rename=registration.abonnement_name
    )
    subscription = registration.checked(combined, service.settings, declared, registration.abonnement_name)
    base = service.base_url(request)
    if current is None:
        subscription = registration.replace_owner(subscription, client.client_id)
    subscription = await registration.agreed(
        subscription, current, service.settings, base, registration.abonnement_name
    )
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
    summary="List abonnementen",
    description="The caller's abonnementen (all of them for outbox.beheer), as a plain array.",
    responses={**_read(AbonnementRead, "the abonnementen", many=True), **responses(401, 403)},
)
async def list_abonnementen(request: Request, client: Consumer) -> Response:
    service = request.app.state.service
    async with service.pool.connection() as conn:
        found = await store.list_async(conn, service.schema, registration.owner_filter(client))
    base = service.base_url(request)
    return _json([document(s, base) for s in found])


@router.post(
    PATH,
    status_code=201,
    summary="Create an abonnement",
    description="Checked whole (every invalid field named), then the OPTIONS handshake of the NL GOV webhook "
    "guideline against the callback (unless `preflight`); a refusal names `callbackUrl` with what the target said.",
    openapi_extra=registration.request_body(Abonnement, "the new abonnement"),
    responses={
        201: {
            "description": "created",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AbonnementRead"}}},
        },
        **responses(400, 401, 403),
    },
)
async def create_abonnement(request: Request, client: Consumer) -> Response:
    body = await registration.json_object(request)
    stored = await _save(request, client, body, None, Abonnement)
    shown = document(stored, request.app.state.service.base_url(request))
    return _json(shown, 201, {"Location": shown["url"]})


@router.get(
    PATH + "/{uuid}",
    summary="Read an abonnement",
    responses={**_read(AbonnementRead, "the abonnement"), **responses(401, 403, 404)},
)
async def read_abonnement(request: Request, client: Consumer, uuid: str) -> Response:
    current = await _current(request, client, uuid)
    return _json(document(current, request.app.state.service.base_url(request)))


@router.put(
    PATH + "/{uuid}",
    summary="Replace an abonnement",
    description="Every field as given (left out: its default), except write-only secrets left out, which are "
    "kept. The handshake runs again when the callback, its TLS options, the rate or `preflight` change.",
    openapi_extra=registration.request_body(Abonnement, "the abonnement as it is to be"),
    responses={**_read(AbonnementRead, "the abonnement"), **responses(400, 401, 403, 404, 409)},
)
async def replace_abonnement(request: Request, client: Consumer, uuid: str) -> Response:
    current = await _current(request, client, uuid, opened=True)
    body = await registration.json_object(request)
    stored = await _save(request, client, body, current, Abonnement)
    return _json(document(stored, request.app.state.service.base_url(request)))


@router.patch(
    PATH + "/{uuid}",
    summary="Change some fields of an abonnement",
    description="Only the fields given change (unlike Open Notificaties, left-out kanalen and cloudeventFilters "
    "stay); the whole abonnement is checked again.",
    openapi_extra=registration.request_body(AbonnementPatch, "the fields to change"),
    responses={**_read(AbonnementRead, "the abonnement"), **responses(400, 401, 403, 404, 409)},
)
async def patch_abonnement(request: Request, client: Consumer, uuid: str) -> Response:
    current = await _current(request, client, uuid, opened=True)
    body = await registration.json_object(request)
    stored = await _save(request, client, body, current, AbonnementPatch)
    return _json(document(stored, request.app.state.service.base_url(request)))


@router.delete(
    PATH + "/{uuid}",
    status_code=204,
    summary="Delete an abonnement",
    description="With its deliveries and their history.",
    responses=responses(401, 403, 404),
)
async def delete_abonnement(request: Request, client: Consumer, uuid: str) -> Response:
    service = request.app.state.service
    try:
        async with service.pool.connection() as conn:
            await store.remove_async(conn, service.schema, uuid, registration.owner_filter(client))
    except store.SubscriptionNotFound:
        raise not_found("abonnement") from None
    return Response(status_code=204)
