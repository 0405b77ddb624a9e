"""What `/abonnement` and `/subscriptions` share: one subscription table, one set of rules.

A request body is checked twice over, and every fault of both is answered at once: the declared
pydantic model (field types, unknown fields) and `Subscription.from_abonnement` (every real rule,
as `field: rule` lines). Then the target checks of the command line (TLS material that loads,
literal addresses the worker may go to) and the OPTIONS handshake of the webhook guideline, also
as the command line runs it. Owners: a client sees and changes only the subscriptions it created;
an `outbox.beheer` client sees and changes all.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import orjson
from fastapi import Request
from pydantic import BaseModel, Field, ValidationError

from outbox import InvalidSubscriptionError, Subscription
from outbox._subscription import PROBE_TYPE, public_url
from worker.delivery.safety import AddressPolicy
from worker.delivery.targets import target_problems
from worker.delivery.tls import tls_context
from worker.delivery.verification import VerificationRefused, verify_async
from worker.service.problems import ApiProblem, InvalidParam, invalid, validation_problem
from worker.service.settings import ServeSettings
from worker.store.clients import ADMIN, ApiClient

Rename = Callable[[str], str]
_M = TypeVar("_M", bound=type[BaseModel])
# Write-only fields: kept as stored when a PUT leaves them out (a client cannot read them back).
SECRET_FIELDS = ("auth", "signingSecrets", "clientKey", "headers")  # headers: their values
AUTH_KINDS = ("auth", "oauth2", "zgw")

# Every request and response body model, added to the OpenAPI document's components by the app.
BODY_MODELS: list[type[BaseModel]] = []


def body_model(model: _M) -> _M:
    """Register a body model for the OpenAPI document (a decorator)."""
    BODY_MODELS.append(model)
    return model


def request_body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """`openapi_extra` declaring `model` as the JSON request body (the handler parses it itself)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def owner_filter(client: ApiClient) -> str | None:
    """Whose subscriptions the client may see: its own, or (None) all for outbox.beheer."""
    return None if ADMIN in client.scopes else client.client_id


async def json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid([InvalidParam(name="nonFieldErrors", code="parse_error", reason=f"is not JSON: {exc}")]) from None
    if not isinstance(document, dict):
        raise invalid([InvalidParam(name="nonFieldErrors", code="invalid", reason="must be a JSON object")])
    return document


def declared_faults(model: type[BaseModel], document: Mapping[str, Any]) -> list[InvalidParam]:
    """What the declared model says (types, unknown fields), as invalid params."""
    try:
        model.model_validate(document)
    except ValidationError as exc:
        return validation_problem(exc.errors()).invalid_params
    return []


def merged(first: Iterable[InvalidParam], second: Iterable[InvalidParam]) -> list[InvalidParam]:
    """Both lists, a field named by the first not named again by the second."""
    params = list(first)
    named = {p.name for p in params}
    return params + [p for p in second if p.name not in named]


def rule_params(problems: Iterable[str], rename: Rename) -> list[InvalidParam]:
    """`field: rule` lines as invalid params, each field named as this API names it."""
    params = []
    for line in problems:
        name, sep, reason = line.partition(": ")
        if not sep:
            name, reason = "nonFieldErrors", line
        params.append(InvalidParam(name=rename(name), code="invalid", reason=reason))
    return params


def abonnement_name(name: str) -> str:
    return name


def replace_owner(subscription: Subscription, owner: str) -> Subscription:
    return replace(subscription, owner=owner)


def _origin(url: object) -> tuple[str, str | None, int | None] | None:
    try:
        parts = urlsplit(str(url))
        return parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return None


def secrets_left_behind(before: Mapping[str, Any], changes: Mapping[str, Any]) -> list[str]:
    """`field: rule` for each stored credential a change would carry to another host: a new callback
    origin (or token endpoint) must come with its credentials, or anyone allowed to change the
    subscription could send them to a host of their choosing."""
    lines = []
    reason = "give it again: the target moves to another host, and stored credentials do not follow it"
    if "callbackUrl" in changes and _origin(changes["callbackUrl"]) != _origin(before.get("callbackUrl")):
        lines += [f"{key}: {reason}" for key in SECRET_FIELDS if before.get(key) and key not in changes]
        for kind, secret in (("oauth2", "clientSecret"), ("zgw", "secret")):
            given = changes.get(kind)
            if (before.get(kind) and kind not in changes) or (
                isinstance(given, Mapping) and isinstance(before.get(kind), Mapping) and secret not in given
            ):
                lines.append(f"{kind}.{secret}: {reason}")
    given, stored = changes.get("oauth2"), before.get("oauth2")
    token_url_moved = (
        isinstance(given, Mapping)
        and isinstance(stored, Mapping)
        and "clientSecret" not in given
        and _origin(given.get("tokenUrl", stored.get("tokenUrl"))) != _origin(stored.get("tokenUrl"))
    )
    if token_url_moved and f"oauth2.clientSecret: {reason}" not in lines:
        lines.append(f"oauth2.clientSecret: {reason}")
    return lines


def combined(
    current: Subscription | None,
    changes: Mapping[str, Any],
    *,
    replace_all: bool,
    keep: tuple[str, ...],
    rename: Rename,
) -> dict[str, Any]:
    """The abonnement document to check: `changes` over the current subscription (PATCH), or over
    the defaults (PUT, create) with the current write-only secrets kept where `changes` is silent.
    Choosing one kind of credentials (auth, oauth2, zgw) drops the others; an oauth2 or zgw
    object without its secret keeps the stored one. `keep`: the fields the caller's API has no
    words for, which a PUT through it does not wipe."""
    before = current.to_abonnement() if current is not None else {}
    if current is not None and changes.get("callbackUrl") == public_url(current.callback_url):
        # The URL as we showed it (its access_token hidden) means: unchanged.
        changes = {**changes, "callbackUrl": current.callback_url}
    left_behind = secrets_left_behind(before, changes) if current is not None else []
    if left_behind:
        raise invalid(rule_params(left_behind, rename))
    if replace_all:
        document = {key: before[key] for key in SECRET_FIELDS + AUTH_KINDS if key in before}
        document.update({key: before[key] for key in keep if key in before})
    else:
        document = dict(before)
    if any(kind in changes for kind in AUTH_KINDS):
        document.update(auth=None, oauth2=None, zgw=None)
    for kind, secret in (("oauth2", "clientSecret"), ("zgw", "secret")):
        given = changes.get(kind)
        stored = before.get(kind)
        if isinstance(given, Mapping) and secret not in given and isinstance(stored, Mapping):
            changes = {**changes, kind: {**given, secret: stored.get(secret)}}
    document.update(changes)
    return document


def checked(
    document: Mapping[str, Any],
    settings: ServeSettings,
    declared: list[InvalidParam],
    rename: Rename,
) -> Subscription:
    """The subscription `document` describes, or one 400 naming every invalid field."""
    params = list(declared)
    subscription = None
    try:
        subscription = Subscription.from_abonnement(document, allow_insecure=settings.allow_insecure_callbacks)
    except InvalidSubscriptionError as exc:
        params = merged(params, rule_params(exc.problems, rename))
    if subscription is not None and not params:
        problems = target_problems(subscription, AddressPolicy(settings.allowed_networks))
        if not problems and not _has_credentials(subscription):
            problems.append(
                "auth: the webhook guideline (§3.1.2) says deliveries MUST carry an access token: give auth "
                "(or oauth2, zgw, or a client certificate for mutual TLS)"
            )
        params = rule_params(problems, rename)
    if params or subscription is None:
        raise invalid(params)
    return subscription


def _has_credentials(subscription: Subscription) -> bool:
    return subscription.auth_kind != "none" or subscription.allow_query_token or subscription.client_cert is not None


def origin(settings: ServeSettings, base_url: str) -> str:
    """Our WebHook-Request-Origin: OUTBOX_WEBHOOK_ORIGIN, else the host this service is reached at."""
    return settings.webhook_origin or urlsplit(base_url).hostname or "localhost"


async def agreed(
    subscription: Subscription,
    current: Subscription | None,
    settings: ServeSettings,
    base_url: str,
    rename: Rename,
) -> Subscription:
    """The subscription with how delivery was agreed. The handshake runs at create and whenever the
    target (URL, TLS options, rate, pre-flight) changes; `preflight: true` leaves it to the worker,
    before deliveries. A refusal is a 400 naming the callback URL, with what the target answered."""
    if current is not None:
        subscription = replace(
            subscription,
            id=current.id,
            owner=current.owner,
            created_at=current.created_at,
            agreement=current.agreement,
            handshake_at=current.handshake_at,
            allowed_rate=current.allowed_rate,
        )
        unchanged = (
            subscription.callback_url == current.callback_url
            and subscription.requested_rate == current.requested_rate
            and (subscription.ca_bundle, subscription.client_cert, subscription.client_key)
            == (current.ca_bundle, current.client_cert, current.client_key)
            and subscription.preflight == current.preflight
        )
        if unchanged:
            return subscription
    if subscription.preflight:
        return replace(subscription, agreement="preflight", handshake_at=None, allowed_rate=None)
    tls: ssl.SSLContext | None = None
    try:
        if subscription.ca_bundle or subscription.client_cert:
            tls = tls_context(subscription.ca_bundle, subscription.client_cert, subscription.client_key)
        verified = await verify_async(
            subscription,
            origin(settings, base_url),
            settings.request_timeout,
            AddressPolicy(settings.allowed_networks),
            tls,
        )
    except ValueError as exc:
        raise invalid(
            [InvalidParam(name=rename("callbackUrl"), code="handshake_refused", reason=str(exc))],
            "The callback refused the OPTIONS handshake of the NL GOV webhook guideline.",
        ) from None
    except VerificationRefused as exc:
        if exc.step == "handshake":
            raise invalid(
                [InvalidParam(name=rename("callbackUrl"), code="handshake_refused", reason=str(exc))],
                "The callback refused the OPTIONS handshake of the NL GOV webhook guideline.",
            ) from None
        raise invalid(
            [InvalidParam(name=rename("callbackUrl"), code="probe_refused", reason=str(exc))],
            f"The callback does not speak the OPTIONS handshake and did not pass the {PROBE_TYPE} probe.",
        ) from None
    return replace(
        subscription, agreement=verified.method, handshake_at=datetime.now(UTC), allowed_rate=verified.allowed_rate
    )


@body_model
class Verification(BaseModel):
    """Read-only: how the callback was verified at registration."""

    method: Literal["handshake", "probe", "operator"] = Field(
        description="handshake: the OPTIONS handshake (at registration, or before deliveries with preflight); "
        f"probe: a {PROBE_TYPE} event accepted with the credentials (and refused without them); "
        "operator: registered without verification by the operator (agreed out of band)"
    )
    at: str | None = Field(description="when (None: a pre-flight handshake that has not run yet)")
    verified: str = Field(description="what was verified, in words")


VERIFICATION_FIELD: dict[str, Any] = {"readOnly": True}


def changed_meanwhile() -> ApiProblem:
    return ApiProblem(
        409, "conflict", "Conflict.", "The subscription was changed by someone else meanwhile: read it again."
    )
