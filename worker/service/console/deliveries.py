"""Deliveries: the filtered listing (keyset pages, newest first), one delivery with its event and its
attempts, the failed deliveries with retry of one, of the selected or of all matching a filter (after a
confirmation that says how many). The reads are worker/store/deliveries.py, the retry is the CLI's."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from outbox._deliveries_filter import STATES, DeliveryFilter, FilterError, parse_cursor
from outbox._operations import retry_failed_async
from worker.service.console import audit
from worker.service.console.pages import PREFIX, ConsoleError, redirect, render
from worker.service.console.security import acting, service_of, signed_in
from worker.service.console.sessions import Session
from worker.store import deliveries as store

router = APIRouter()

Acting = Annotated[tuple[Session, FormData], Depends(acting)]
SignedIn = Annotated[Session, Depends(signed_in)]

PAGE = 50
MAX_PAGE = 200
MAX_SELECTED = 1000  # deliveries in one "Retry selected" (a page holds at most MAX_PAGE)
# The form's fields, by the name the filter's errors give them (FilterError.field).
FIELDS = ("state", "subscription", "type", "subject", "event_id", "source", "since", "until")
ERROR_FIELD = {"event-id": "event_id"}
# Every retry of all matching is one audit entry of this object (shown on the failed page).
ALL_FAILED = ("deliveries", "failed")


def _values(source: Any) -> dict[str, str]:
    """The filter's fields as typed (query or form), to show them back in the form."""
    return {name: str(source.get(name) or "").strip() for name in FIELDS}


def _parse(values: dict[str, str], failed_only: bool) -> DeliveryFilter:
    where = DeliveryFilter.parse(
        states=None if failed_only else values["state"],
        subscription=values["subscription"],
        type=values["type"],
        subject=values["subject"],
        event_id=values["event_id"],
        source=values["source"],
        since=values["since"],
        until=values["until"],
    )
    return where.with_states("failed") if failed_only else where


def _limit(text: str | None) -> int:
    if not text:
        return PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise FilterError("limit", f"must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


def _filter_args(where: DeliveryFilter, failed_only: bool) -> dict[str, str]:
    args = where.query_args()
    if failed_only:
        args.pop("state", None)  # fixed on that page
    return args


async def _listing(request: Request, session: Session, template: str, failed_only: bool, **context: Any) -> Response:
    params = request.query_params
    values = _values(params)
    service = service_of(request)
    shown: dict[str, Any] = {
        "values": values,
        "notice": params.get("notice", ""),
        "moved": params.get("moved", ""),
        **context,
    }
    try:
        where = _parse(values, failed_only)
        limit = _limit(params.get("limit"))
        after = parse_cursor(params["after"]) if params.get("after") else None
    except FilterError as exc:
        field = ERROR_FIELD.get(exc.field, exc.field)
        return render(request, template, session, status_code=400, error=exc, error_field=field, **shown)
    async with service.pool.connection() as conn:
        page = await store.list_deliveries_async(conn, service.schema, where, limit=limit, after=after)
        entries = await audit.entries(conn, service.schema, *ALL_FAILED, limit=10) if failed_only else []
        # The failed page says how many "Retry all matching" would take (the failed leaves only: small).
        matching = await store.count_deliveries_async(conn, service.schema, where) if failed_only else 0
    args = _filter_args(where, failed_only)
    if params.get("limit"):
        args["limit"] = str(limit)
    return render(
        request,
        template,
        session,
        error=None,
        error_field="",
        page=page,
        args=args,
        first=after is None,
        entries=entries,
        matching=matching,
        **shown,
    )


@router.get("/deliveries")
async def deliveries_page(request: Request, session: SignedIn) -> Response:
    return await _listing(request, session, "deliveries.html", failed_only=False, states=STATES)


def _delivery_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise ConsoleError(404, "delivery")
    return int(text)


@router.get("/deliveries/{delivery_id}")
async def delivery_page(request: Request, delivery_id: str, session: SignedIn) -> Response:
    number = _delivery_id(delivery_id)
    service = service_of(request)
    async with service.pool.connection() as conn:
        found = await store.get_delivery_async(conn, service.schema, number)
        if found is None:
            raise ConsoleError(404, "delivery")
        entries = await audit.entries(conn, service.schema, "delivery", str(number))
    return render(
        request,
        "delivery.html",
        session,
        delivery=found,
        event_json=json.dumps(found.event, indent=2, ensure_ascii=False, sort_keys=True),
        entries=entries,
        notice=request.query_params.get("notice", ""),
    )


@router.post("/deliveries/{delivery_id}/retry")
async def retry_one(request: Request, delivery_id: str, form: Acting) -> Response:
    session, _ = form
    number = _delivery_id(delivery_id)
    service = service_of(request)
    async with service.pool.connection() as conn, conn.transaction():
        if await store.get_delivery_async(conn, service.schema, number) is None:
            raise ConsoleError(404, "delivery")
        moved = await retry_failed_async(conn, service.schema, delivery_ids=[number])
        if moved:
            await audit.record(conn, service.schema, session.name, "retry", "delivery", str(number), "retried")
    return redirect(f"{PREFIX}/deliveries/{number}", notice="retried" if moved else "not-failed")


@router.get("/failed")
async def failed_page(request: Request, session: SignedIn) -> Response:
    return await _listing(request, session, "failed.html", failed_only=True)


def _selected(fields: FormData) -> list[int]:
    chosen = [str(value) for value in fields.getlist("delivery")]
    if len(chosen) > MAX_SELECTED or not all(v.isdigit() and len(v) <= 18 for v in chosen):
        raise ConsoleError(400, "invalid", field="delivery", rule=f"1 to {MAX_SELECTED} delivery ids")
    return sorted({int(v) for v in chosen})


def _back(fields: FormData, **params: Any) -> dict[str, Any]:
    """The failed page's query after an action: its filter kept, the outcome said."""
    kept = {name: value for name, value in _values(fields).items() if value and name != "state"}
    return {**kept, **params}


@router.post("/failed/retry")
async def retry_selected(request: Request, form: Acting) -> Response:
    session, fields = form
    ids = _selected(fields)
    if not ids:
        return redirect(f"{PREFIX}/failed", **_back(fields, notice="none-selected"))
    service = service_of(request)
    async with service.pool.connection() as conn, conn.transaction():
        moved = await retry_failed_async(conn, service.schema, delivery_ids=ids)
        detail = f"retry of {len(ids)} selected: {moved} moved (those no longer failed stay as they are)"
        for number in ids:  # an entry on each delivery's page
            await audit.record(conn, service.schema, session.name, "retry", "delivery", str(number), detail)
    return redirect(f"{PREFIX}/failed", **_back(fields, notice="retried", moved=moved))


def _form_filter(fields: FormData) -> DeliveryFilter:
    try:
        return _parse(_values(fields), failed_only=True)
    except FilterError as exc:
        raise ConsoleError(400, "invalid", field=exc.field, rule=exc.rule) from None


@router.get("/failed/confirm")
async def confirm_page(request: Request, session: SignedIn) -> Response:
    """ "Retry all N matching": how many the filter matches now, and the form that retries them."""
    try:
        where = _parse(_values(request.query_params), failed_only=True)
    except FilterError as exc:
        raise ConsoleError(400, "invalid", field=exc.field, rule=exc.rule) from None
    service = service_of(request)
    async with service.pool.connection() as conn:
        count = await store.count_deliveries_async(conn, service.schema, where)
    return render(
        request, "confirm_retry.html", session, count=count, args=_filter_args(where, True), described=_describe(where)
    )


def _describe(where: DeliveryFilter) -> str:
    """The filter in the audit entry and on the confirmation: `type=… subject=…`, or "every failed"."""
    args = _filter_args(where, True)
    return " ".join(f"{k}={v}" for k, v in args.items()) or "no filter: every failed delivery"


@router.post("/failed/retry-all")
async def retry_all(request: Request, form: Acting) -> Response:
    session, fields = form
    where = _form_filter(fields)
    service = service_of(request)
    async with service.pool.connection() as conn, conn.transaction():
        moved = await retry_failed_async(conn, service.schema, where=where)
        detail = f"retried {moved} matching {_describe(where)}"
        await audit.record(conn, service.schema, session.name, "retry-all", *ALL_FAILED, detail)
    return redirect(f"{PREFIX}/failed", **_back(fields, notice="retried", moved=moved))
