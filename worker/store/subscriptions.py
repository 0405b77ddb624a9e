"""Subscriptions in the database: add, update, list, get, pause, resume, remove; secrets sealed by a SecretBox.

Secrets are opened only where they are used: delivery (the worker), verification (the handshake)
and writes that merge kept secrets with new ones. Listings and reads take no box: what they show
of the secrets (`SealedSecrets`: the auth hint, how many signing secrets, the header names) is
stored in clear beside them when they are written.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from outbox import Kanaal, Subscription
from outbox._filters import stored_filters
from outbox._operations import set_subscription_status
from outbox._sql import query
from outbox._subscription import CloudEventFilter, OAuth2Client, SealedSecrets, ZgwClient, auth_hint
from worker.store.secret_box import SecretBox, SecretKeyError


class SubscriptionNotFound(LookupError):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"no subscription with id {subscription_id}")


def _subscription_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise SubscriptionNotFound(value) from None


def _sealed(row: dict[str, Any]) -> SealedSecrets:
    hint = row["auth_hint"]
    if hint is None and row["auth_kind"] == "static":
        hint = "…"  # a row from before 015 not yet completed (see sql/015): its hint is not known yet
    return SealedSecrets(hint, row["signing_secret_count"], tuple(row["header_names"]))


def from_row(row: dict[str, Any], box: SecretBox | None) -> Subscription:
    """A stored subscription, its secrets opened with `box` (raises SecretKeyError if they cannot be);
    without a box, one whose secrets stay sealed (`sealed`: what may be shown of them), enough to
    show it and to route events to it, not to send them."""
    secrets = {} if box is None else box.open(row["secrets"], row["secrets_encrypted"], f"subscription {row['id']}")
    # Header values of a row from before 015 not yet completed are still in `unsealed_headers`.
    headers = {**(row["unsealed_headers"] or {}), **secrets.get("headers", {})} if box is not None else {}
    oauth2 = zgw = None
    if row["auth_kind"] == "oauth2":
        oauth2 = OAuth2Client(
            token_url=row["oauth2_token_url"],
            client_id=row["oauth2_client_id"],
            client_secret=secrets.get("oauth2_client_secret", ""),
            scope=row["oauth2_scope"],
        )
    elif row["auth_kind"] == "zgw":
        zgw = ZgwClient(client_id=row["zgw_client_id"], secret=secrets.get("zgw_secret", ""))
    return Subscription(
        id=str(row["id"]),
        callback_url=row["callback_url"],
        auth=secrets.get("auth") if row["auth_kind"] == "static" else None,
        kanalen=tuple(Kanaal(naam=k["naam"], filters=k.get("filters") or {}) for k in row["kanalen"]),
        types=tuple(row["types"]),
        filters=stored_filters(row["filters"]),
        content_mode=row["content_mode"],
        status=row["status"],
        paused_reason=row["paused_reason"],
        ordering_key=row["ordering_key"],
        allow_insecure=row["allow_insecure"],
        handshake_at=row["handshake_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        agreement=row["agreement"],
        requested_rate=row["requested_rate"],
        allowed_rate=row["allowed_rate"],
        batch_max=row["batch_max"],
        content_type=row["content_type"],
        preflight=row["preflight"],
        allow_query_token=row["allow_query_token"],
        oauth2=oauth2,
        zgw=zgw,
        signing_secrets=tuple(secrets.get("signing_secrets", ())),
        ca_bundle=row["ca_bundle"],
        client_cert=row["client_cert"],
        client_key=secrets.get("client_key"),
        owner=row["owner"],
        source=row["source"],
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
        send_cloudevents=row["send_cloudevents"],
        cloudevent_filters=tuple(
            CloudEventFilter(type_substring=g["typeSubstring"], filters=g.get("filters") or {})
            for g in row["cloudevent_filters"]
        ),
        sealed=_sealed(row) if box is None else None,
    )


def _parameters(subscription: Subscription, box: SecretBox) -> dict[str, Any]:
    sealed, encrypted = box.seal(subscription.secrets())  # SecretsNotOpened for one read without them
    hints = subscription.hints()
    return {
        "callback_url": subscription.callback_url,
        "kanalen": Jsonb([k.to_dict() for k in subscription.kanalen]),
        "types": list(subscription.types),
        "filters": Jsonb([f.to_json() for f in subscription.filters]),
        "content_mode": subscription.content_mode,
        "ordering_key": subscription.ordering_key,
        "allow_insecure": subscription.allow_insecure,
        "handshake_at": subscription.handshake_at,
        "agreement": subscription.agreement,
        "requested_rate": subscription.requested_rate,
        "allowed_rate": subscription.allowed_rate,
        "batch_max": subscription.batch_max,
        "content_type": subscription.content_type,
        "preflight": subscription.preflight,
        "allow_query_token": subscription.allow_query_token,
        "auth_kind": subscription.auth_kind,
        "oauth2_token_url": subscription.oauth2.token_url if subscription.oauth2 else None,
        "oauth2_client_id": subscription.oauth2.client_id if subscription.oauth2 else None,
        "oauth2_scope": subscription.oauth2.scope if subscription.oauth2 else None,
        "zgw_client_id": subscription.zgw.client_id if subscription.zgw else None,
        "ca_bundle": subscription.ca_bundle,
        "client_cert": subscription.client_cert,
        "secrets": sealed,
        "secrets_encrypted": encrypted,
        "owner": subscription.owner,
        "source": subscription.source,
        "header_names": list(hints.header_names),
        "auth_hint": hints.auth_hint,
        "signing_secret_count": hints.signing_secrets,
        "send_cloudevents": subscription.send_cloudevents,
        "cloudevent_filters": Jsonb([g.to_dict() for g in subscription.cloudevent_filters]),
    }


def add(conn: psycopg.Connection[Any], subscription: Subscription, schema: str, box: SecretBox) -> str:
    """Store a validated subscription (with how delivery was agreed); returns its new id."""
    row = conn.execute(query("insert_subscription", schema), _parameters(subscription, box)).fetchone()
    assert row is not None
    return str(row[0])


class SubscriptionChanged(RuntimeError):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"subscription {subscription_id} was changed by someone else meanwhile: run update again")


def update(
    conn: psycopg.Connection[Any], schema: str, subscription: Subscription, box: SecretBox, read_at: Any
) -> None:
    """Write every option of an existing subscription (status and pause reason stay as they are),
    if it is still as it was at `read_at` (its updated_at then); else SubscriptionChanged."""
    assert subscription.id is not None
    parameters = {**_parameters(subscription, box), "id": _subscription_id(subscription.id), "read_at": read_at}
    if conn.execute(query("update_subscription", schema), parameters).fetchone() is None:
        get(conn, schema, subscription.id, None)  # raises SubscriptionNotFound if it is gone
        raise SubscriptionChanged(subscription.id)


def rotate_secrets(conn: psycopg.Connection[Any], schema: str, box: SecretBox) -> int:
    """Re-encrypt every subscription's secrets with the box's first key, in one transaction."""
    seal_unsealed(conn, schema, box)  # rows it leaves do not open: the loop below says so
    rows = conn.execute(query("sealed_secrets", schema)).fetchall()
    for subscription_id, stored, encrypted in rows:
        sealed, now_encrypted = box.reseal(stored, encrypted, f"subscription {subscription_id}")
        conn.execute(query("reseal_secrets", schema), (sealed, now_encrypted, subscription_id))
    return len(rows)


def _completed(row: tuple[Any, ...], box: SecretBox) -> dict[str, Any]:
    """A row from before 015 (id, secrets, secrets_encrypted, unsealed_headers) as it is now stored:
    the header values sealed with the other secrets, the hints beside them."""
    subscription_id, stored, encrypted, unsealed = row
    secrets = box.open(stored, encrypted, f"subscription {subscription_id}")
    headers = {**unsealed, **secrets.get("headers", {})}
    if headers:
        secrets["headers"] = headers
    sealed, now_encrypted = box.seal(secrets)
    return {
        "id": subscription_id,
        "secrets": sealed,
        "secrets_encrypted": now_encrypted,
        "header_names": list(headers),
        "auth_hint": auth_hint(secrets.get("auth")),
        "signing_secret_count": len(secrets.get("signing_secrets", ())),
    }


def _sealing(rows: list[tuple[Any, ...]], box: SecretBox) -> tuple[list[dict[str, Any]], list[str]]:
    """The completed rows, and the subscriptions whose secrets do not open with `box`."""
    completed, left = [], []
    for row in rows:
        try:
            completed.append(_completed(row, box))
        except SecretKeyError:
            left.append(f"subscription {row[0]}")
    return completed, left


def seal_unsealed(conn: psycopg.Connection[Any], schema: str, box: SecretBox) -> tuple[int, list[str]]:
    """Complete the rows written before migration 015 (sql/015_sealed_headers.sql): their header
    values sealed with their secrets, their hints filled in. Returns how many were, and the
    subscriptions whose secrets do not open with `box` (left as they are, for a run with the key)."""
    with conn.transaction(), conn.cursor() as cur:
        completed, left = _sealing(cur.execute(query("unsealed_subscriptions", schema)).fetchall(), box)
        cur.executemany(query("seal_subscription", schema), completed)
    return len(completed), left


async def seal_unsealed_async(conn: psycopg.AsyncConnection[Any], schema: str, box: SecretBox) -> tuple[int, list[str]]:
    """`seal_unsealed` for the worker at start."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(query("unsealed_subscriptions", schema))
        completed, left = _sealing(await cur.fetchall(), box)
        await cur.executemany(query("seal_subscription", schema), completed)
    return len(completed), left


def list_all(conn: psycopg.Connection[Any], schema: str) -> list[Subscription]:
    """Every subscription, its secrets not opened (no key needed)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return [from_row(row, None) for row in cur.execute(query("list_subscriptions", schema)).fetchall()]


def get(conn: psycopg.Connection[Any], schema: str, subscription_id: str, box: SecretBox | None) -> Subscription:
    """Its secrets opened with `box` (to deliver, verify or change it); with None, not (to show it)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query("get_subscription", schema), (_subscription_id(subscription_id),)).fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)
    return from_row(row, box)


def set_status(
    conn: psycopg.Connection[Any], schema: str, subscription_id: str, status: str, reason: str | None
) -> None:
    """active (reason None) or paused (with a reason)."""
    if not set_subscription_status(conn, schema, _subscription_id(subscription_id), status, reason):
        raise SubscriptionNotFound(subscription_id)


def record_handshake(
    conn: psycopg.Connection[Any],
    schema: str,
    subscription_id: str,
    requested_rate: int | None,
    allowed_rate: str | None,
    method: str = "handshake",
) -> None:
    """`method`: handshake or probe (worker/delivery/verification.py)."""
    row = conn.execute(
        query("record_handshake", schema), (method, requested_rate, allowed_rate, _subscription_id(subscription_id))
    ).fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)


def remove(conn: psycopg.Connection[Any], schema: str, subscription_id: str) -> None:
    row = conn.execute(query("delete_subscription", schema), (_subscription_id(subscription_id),)).fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)


# -- for `outbox serve` (async connections; `owner` None = every subscription, for outbox.beheer) --------


async def add_async(conn: psycopg.AsyncConnection[Any], schema: str, subscription: Subscription, box: SecretBox) -> str:
    """`add` for the service: the subscription's `owner` is stored with it."""
    cursor = await conn.execute(query("insert_subscription", schema), _parameters(subscription, box))
    row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


async def list_async(conn: psycopg.AsyncConnection[Any], schema: str, owner: str | None) -> list[Subscription]:
    """The subscriptions `owner` may see, their secrets not opened."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("list_owned_subscriptions", schema), {"owner": owner})
        return [from_row(row, None) for row in await cur.fetchall()]


async def get_async(
    conn: psycopg.AsyncConnection[Any], schema: str, subscription_id: str, box: SecretBox | None, owner: str | None
) -> Subscription:
    """The subscription, if `owner` may see it; else SubscriptionNotFound (whether or not it exists).
    Its secrets opened with `box` (to change it); with None, not (to show it)."""
    parameters = {"id": _subscription_id(subscription_id), "owner": owner}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("get_owned_subscription", schema), parameters)
        row = await cur.fetchone()
    if row is None:
        raise SubscriptionNotFound(subscription_id)
    return from_row(row, box)


async def update_async(
    conn: psycopg.AsyncConnection[Any], schema: str, subscription: Subscription, box: SecretBox, read_at: Any
) -> None:
    """`update` for the service: every option, if the row is still as read (else SubscriptionChanged)."""
    assert subscription.id is not None
    parameters = {**_parameters(subscription, box), "id": _subscription_id(subscription.id), "read_at": read_at}
    cursor = await conn.execute(query("update_subscription", schema), parameters)
    if await cursor.fetchone() is None:
        raise SubscriptionChanged(subscription.id)


async def remove_async(
    conn: psycopg.AsyncConnection[Any], schema: str, subscription_id: str, owner: str | None
) -> None:
    parameters = {"id": _subscription_id(subscription_id), "owner": owner}
    cursor = await conn.execute(query("delete_owned_subscription", schema), parameters)
    if await cursor.fetchone() is None:
        raise SubscriptionNotFound(subscription_id)
