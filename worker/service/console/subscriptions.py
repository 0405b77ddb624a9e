"""Subscriptions: the list, one subscription (never a secret) with its audit entries; pause, resume
and verify for operators (the same operations as the CLI and the API)."""

from __future__ import annotations

import logging
import ssl
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from outbox._operations import set_subscription_status_async
from outbox._sql import query
from worker.delivery.safety import AddressPolicy
from worker.delivery.tls import tls_context
from worker.delivery.verification import VerificationRefused, verify_async
from worker.runtime.logs import log
from worker.service import registration
from worker.service.console import audit, health
from worker.service.console.pages import PREFIX, ConsoleError, redirect, render
from worker.service.console.security import acting, service_of, signed_in
from worker.service.console.sessions import Session
from worker.store import subscriptions as subscription_store

router = APIRouter()

MAX_REASON = 200
Acting = Annotated[tuple[Session, FormData], Depends(acting)]


@router.get("/subscriptions")
async def subscriptions_page(request: Request, session: Annotated[Session, Depends(signed_in)]) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn:
        found = await health.subscriptions(conn, service.schema)
    return render(request, "subscriptions.html", session, subscriptions=found)


async def _page(
    request: Request, session: Session, subscription_id: str, status_code: int = 200, **context: object
) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn:
        try:
            found = await health.one(conn, service.schema, subscription_id)
        except subscription_store.SubscriptionNotFound:
            raise ConsoleError(404, "subscription") from None
        entries = await audit.entries(conn, service.schema, "subscription", found.id)
    return render(
        request,
        "subscription.html",
        session,
        status_code=status_code,
        health=found,
        document=found.subscription.to_public_dict(),
        entries=entries,
        notice=request.query_params.get("notice", ""),
        **context,
    )


@router.get("/subscriptions/{subscription_id}")
async def subscription_page(
    request: Request, subscription_id: str, session: Annotated[Session, Depends(signed_in)]
) -> Response:
    return await _page(request, session, subscription_id)


async def _set_status(
    request: Request, subscription_id: str, session: Session, status: str, reason: str | None
) -> bool:
    service = service_of(request)
    async with service.pool.connection() as conn, conn.transaction():
        try:
            changed = await set_subscription_status_async(
                conn, service.schema, subscription_id, status, reason, by=session.name
            )
        except ValueError:  # not a UUID
            changed = False
        if changed:
            action = "pause" if status == "paused" else "resume"
            await audit.record(conn, service.schema, session.name, action, "subscription", subscription_id, reason)
    return changed


@router.post("/subscriptions/{subscription_id}/pause")
async def pause(request: Request, subscription_id: str, form: Acting) -> Response:
    session, fields = form
    reason = str(fields.get("reason") or "").strip()
    if not reason or len(reason) > MAX_REASON:
        return await _page(request, session, subscription_id, status_code=400, reason_error=True, reason=reason)
    if not await _set_status(request, subscription_id, session, "paused", f"{reason} (by {session.name})"):
        raise ConsoleError(404, "subscription")
    return redirect(f"{PREFIX}/subscriptions/{subscription_id}", notice="paused")


@router.post("/subscriptions/{subscription_id}/resume")
async def resume(request: Request, subscription_id: str, form: Acting) -> Response:
    session, _ = form
    if not await _set_status(request, subscription_id, session, "active", None):
        raise ConsoleError(404, "subscription")
    return redirect(f"{PREFIX}/subscriptions/{subscription_id}", notice="resumed")


@router.post("/subscriptions/{subscription_id}/verify")
async def verify(request: Request, subscription_id: str, form: Acting) -> Response:
    """The handshake, else the probe event, as at registration through the API; recorded when it passes."""
    session, _ = form
    service = service_of(request)
    settings = service.settings
    async with service.pool.connection() as conn:
        try:
            subscription = await subscription_store.get_async(conn, service.schema, subscription_id, service.box, None)
        except subscription_store.SubscriptionNotFound:
            raise ConsoleError(404, "subscription") from None
    refused: str | None = None
    try:
        tls: ssl.SSLContext | None = None
        if subscription.ca_bundle or subscription.client_cert:
            tls = tls_context(subscription.ca_bundle, subscription.client_cert, subscription.client_key)
        verified = await verify_async(
            subscription,
            registration.origin(settings, service.base_url(request)),
            settings.request_timeout,
            AddressPolicy(settings.allowed_networks),
            tls,
        )
    except (VerificationRefused, ValueError) as exc:
        refused = str(exc)
    async with service.pool.connection() as conn, conn.transaction():
        if refused is None:
            await conn.execute(
                query("record_handshake", service.schema),
                (verified.method, subscription.requested_rate, verified.allowed_rate, subscription.id),
            )
            detail = f"{verified.method}: {verified.detail}"
        else:
            detail = f"refused: {refused}"
        await audit.record(conn, service.schema, session.name, "verify", "subscription", str(subscription.id), detail)
    if refused is not None:
        log(logging.WARNING, "console verification refused", subscription=str(subscription.id))
        return redirect(f"{PREFIX}/subscriptions/{subscription_id}", notice="verify-refused")
    return redirect(f"{PREFIX}/subscriptions/{subscription_id}", notice="verified")
