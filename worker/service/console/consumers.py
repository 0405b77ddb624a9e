"""Consumers (inbound webhooks, issue 22): the list with the mappings, one consumer (its definition without a
secret, its mapping, its open failures in keyset pages) with enable/disable for operators, one kept failure
with its body, and the replay of one, of the selected or of all open failures (after a confirmation that
says how many); a mapping's versions. The reads are worker/store/consumers.py, the replay the CLI's
(worker/consumers/operations.py)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from worker.consumers import intake
from worker.consumers.operations import AlreadyReplayed, replay_async
from worker.service.console import audit
from worker.service.console.pages import PREFIX, ConsoleError, redirect, render
from worker.service.console.security import acting, service_of, signed_in
from worker.service.console.sessions import Session
from worker.store import consumers as store

router = APIRouter()

Acting = Annotated[tuple[Session, FormData], Depends(acting)]
SignedIn = Annotated[Session, Depends(signed_in)]

PAGE = 50
MAX_PAGE = 200
# Failures in one replay (selected, or the oldest open ones): each maps a body on the event loop (≤ 50 ms).
MAX_REPLAY = 200
BODY_SHOWN = 65_536  # bytes of a failure's body on its page; the rest is said, not shown


def _consumer_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ConsoleError(404, "consumer") from None


async def _consumer(conn: psycopg.AsyncConnection[Any], schema: str, text: str) -> store.Consumer:
    """The consumer of a page's address: by id only (a name may hold characters a path cannot)."""
    key = _consumer_id(text)
    try:
        found = await store.get_async(conn, schema, str(key))
    except store.ConsumerNotFound:
        raise ConsoleError(404, "consumer") from None
    if found.id != key:
        raise ConsoleError(404, "consumer")  # another consumer's name or endpoint that looks like this id
    return found


def _number(text: str, kind: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise ConsoleError(404, kind)
    return int(text)


def _limit(text: str | None) -> int:
    if not text:
        return PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise ConsoleError(400, "invalid", field="limit", rule=f"must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


def _cursor(text: str | None) -> int | None:
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise ConsoleError(400, "invalid", field="after", rule="is not a cursor")
    return int(text)


def hook_url(request: Request, consumer: store.Consumer) -> str:
    return f"{service_of(request).base_url(request)}/hooks/{consumer.endpoint}"


def _settings(consumer: store.Consumer) -> list[tuple[str, str]]:
    """The verification config's non-secret settings as (name, value) texts; `public_verification` leaves
    the secrets out (their count is shown apart)."""
    shown = consumer.public_verification()
    return [
        (name, "–" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for name, value in shown.items()
        if name not in ("method", "secretCount")
    ]


@router.get("/consumers")
async def consumers_page(request: Request, session: SignedIn) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn:
        found = await store.list_all_async(conn, service.schema)
        mappings = await store.list_mappings_async(conn, service.schema)
    hooks = {c.id: hook_url(request, c) for c in found}
    return render(request, "consumers.html", session, consumers=found, hooks=hooks, mappings=mappings)


@dataclass(frozen=True)
class FailurePage:
    rows: list[store.Failure]
    next: int | None  # the cursor of the next page (the last row's id), None on the last page


async def _open_failures(
    conn: psycopg.AsyncConnection[Any], schema: str, consumer: store.Consumer, after: int | None, limit: int
) -> FailurePage:
    rows = await store.failures_async(conn, schema, consumer, before=after, limit=limit + 1, open_only=True)
    more = len(rows) > limit
    rows = rows[:limit]
    return FailurePage(rows, rows[-1].id if more and rows else None)


async def _page(request: Request, session: Session, consumer_id: str) -> Response:
    params = request.query_params
    limit = _limit(params.get("limit"))
    after = _cursor(params.get("after"))
    service = service_of(request)
    async with service.pool.connection() as conn:
        consumer = await _consumer(conn, service.schema, consumer_id)
        mapping = None
        if consumer.mapping_id is not None:
            mapping = await store.get_mapping_async(conn, service.schema, consumer.mapping_id)
        page = await _open_failures(conn, service.schema, consumer, after, limit)
        entries = await audit.entries(conn, service.schema, "consumer", str(consumer.id))
    args = {"limit": str(limit)} if params.get("limit") else {}
    counts = {name: params.get(name, "") for name in ("stored", "duplicate", "failed", "skipped")}
    return render(
        request,
        "consumer.html",
        session,
        consumer=consumer,
        hook=hook_url(request, consumer),
        settings=_settings(consumer),
        mapping=mapping,
        page=page,
        args=args,
        first=after is None,
        entries=entries,
        notice=params.get("notice", ""),
        counts=counts,
        max_replay=MAX_REPLAY,
        cache_ttl=service.settings.consumer_cache_ttl,
    )


@router.get("/consumers/{consumer_id}")
async def consumer_page(request: Request, consumer_id: str, session: SignedIn) -> Response:
    return await _page(request, session, consumer_id)


async def _set_enabled(request: Request, consumer_id: str, session: Session, enabled: bool) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn, conn.transaction():
        consumer = await _consumer(conn, service.schema, consumer_id)
        if consumer.is_enabled != enabled:  # no entry for nothing
            await store.set_enabled_async(conn, service.schema, str(consumer.id), enabled)
            action = "enable" if enabled else "disable"
            await audit.record(conn, service.schema, session.name, action, "consumer", str(consumer.id))
    request.app.state.hooks.cache.forget(consumer.endpoint)  # this process at once, the others within the TTL
    return redirect(f"{PREFIX}/consumers/{consumer.id}", notice="enabled" if enabled else "disabled")


@router.post("/consumers/{consumer_id}/enable")
async def enable(request: Request, consumer_id: str, form: Acting) -> Response:
    return await _set_enabled(request, consumer_id, form[0], True)


@router.post("/consumers/{consumer_id}/disable")
async def disable(request: Request, consumer_id: str, form: Acting) -> Response:
    return await _set_enabled(request, consumer_id, form[0], False)


# -- one failure ------------------------------------------------------------------------------------------


def _text(body: bytes, size: int) -> str | None:
    """The first `size` bytes as text, or None when the body is not UTF-8 text (then it is shown in base64)."""
    part = body[:size]
    try:
        text = part.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(body) <= size or exc.reason != "unexpected end of data":
            return None
        text = part[: exc.start].decode("utf-8", errors="replace")  # the cut split a character: up to it
    if any(ord(c) < 0x20 and c not in "\t\n\r" for c in text) or "\x7f" in text:
        return None  # control characters: binary, not text
    return text


def shown_body(body: bytes) -> tuple[str, str, int]:
    """(how, text, bytes shown): the body as text when it is UTF-8, else base64; at most BODY_SHOWN bytes."""
    text = _text(body, BODY_SHOWN)
    if text is not None:
        return "text", text, len(text.encode())
    part = body[:BODY_SHOWN]
    return "base64", base64.b64encode(part).decode(), len(part)


async def _failure(
    conn: psycopg.AsyncConnection[Any], schema: str, consumer: store.Consumer, failure_id: str
) -> store.Failure:
    number = _number(failure_id, "failure")
    try:
        found = await store.failure_async(conn, schema, number)
    except store.FailureNotFound:
        raise ConsoleError(404, "failure") from None
    if found.consumer_id != consumer.id:
        raise ConsoleError(404, "failure")
    return found


@router.get("/consumers/{consumer_id}/failures/{failure_id}")
async def failure_page(request: Request, consumer_id: str, failure_id: str, session: SignedIn) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn:
        consumer = await _consumer(conn, service.schema, consumer_id)
        failure = await _failure(conn, service.schema, consumer, failure_id)
        mapping = None
        if consumer.mapping_id is not None:
            mapping = await store.get_mapping_async(conn, service.schema, consumer.mapping_id)
    assert failure.body is not None
    how, text, shown = shown_body(failure.body)
    return render(
        request,
        "consumer_failure.html",
        session,
        consumer=consumer,
        failure=failure,
        mapping=mapping,
        body_how=how,
        body_text=text,
        body_shown=shown,
        notice=request.query_params.get("notice", ""),
    )


# -- replay -----------------------------------------------------------------------------------------------

# What a replay came to, by the notice and audit words.
STORED, DUPLICATE, FAILED, SKIPPED = "stored", "duplicate", "failed", "skipped"


async def _replay_one(conn: psycopg.AsyncConnection[Any], schema: str, consumer: store.Consumer, number: int) -> str:
    """One replay in the caller's transaction: a refusal is an outcome (the failure now says why), not an error."""
    try:
        replayed = await replay_async(conn, schema, consumer, number)
    except intake.Refused:
        return FAILED
    except (AlreadyReplayed, store.FailureNotFound):
        return SKIPPED  # replayed meanwhile, or removed
    except store.ConsumerNotFound:
        raise ConsoleError(404, "consumer") from None
    return STORED if replayed.stored else DUPLICATE


def _summary(outcomes: dict[int, str]) -> str:
    counts = {kind: sum(1 for o in outcomes.values() if o == kind) for kind in (STORED, DUPLICATE, FAILED, SKIPPED)}
    said = f"{counts[STORED]} stored, {counts[DUPLICATE]} duplicate, {counts[FAILED]} failed again"
    if counts[SKIPPED]:
        said += f", {counts[SKIPPED]} no longer open"
    ids = ", ".join(str(n) for n in list(outcomes)[:20]) + (", …" if len(outcomes) > 20 else "")
    return f"{said} (failures {ids})"


@router.post("/consumers/{consumer_id}/failures/{failure_id}/replay")
async def replay_failure(request: Request, consumer_id: str, failure_id: str, form: Acting) -> Response:
    session, _ = form
    service = service_of(request)
    async with service.pool.connection() as conn, conn.transaction():
        consumer = await _consumer(conn, service.schema, consumer_id)
        failure = await _failure(conn, service.schema, consumer, failure_id)
        outcome = await _replay_one(conn, service.schema, consumer, failure.id)
        if outcome != SKIPPED:
            said = {STORED: "stored", DUPLICATE: "duplicate", FAILED: "failed again"}[outcome]
            detail = f"failure {failure.id}: {said}"
            await audit.record(conn, service.schema, session.name, "replay", "consumer", str(consumer.id), detail)
    notice = {SKIPPED: "not-open", FAILED: "failed-again"}.get(outcome, outcome)
    return redirect(f"{PREFIX}/consumers/{consumer.id}/failures/{failure.id}", notice=notice)


def _selected(source: Any) -> list[int]:
    chosen = [str(value) for value in source.getlist("failure")]
    if len(chosen) > MAX_REPLAY or not all(v.isdigit() and len(v) <= 18 for v in chosen):
        raise ConsoleError(400, "invalid", field="failure", rule=f"1 to {MAX_REPLAY} failure ids")
    return sorted({int(v) for v in chosen})


async def _oldest_open(conn: psycopg.AsyncConnection[Any], schema: str, consumer: store.Consumer) -> list[int]:
    """The ids of the MAX_REPLAY oldest open failures, oldest first: replayed in the order they came in.
    The store pages newest first, so this walks every open one (their rows without bodies)."""
    ids: list[int] = []
    before: int | None = None
    while True:
        rows = await store.failures_async(conn, schema, consumer, before=before, limit=MAX_PAGE, open_only=True)
        ids += [row.id for row in rows]
        if len(rows) < MAX_PAGE:
            return sorted(ids)[:MAX_REPLAY]
        before = rows[-1].id
        ids = sorted(ids)[:MAX_REPLAY]


async def _open_of(
    conn: psycopg.AsyncConnection[Any], schema: str, consumer: store.Consumer, ids: Sequence[int]
) -> list[int]:
    """Which of the selected failures are this consumer's and still open: its open ones from the newest selected
    down to the oldest, in pages without their bodies (a body may be megabytes)."""
    if not ids:
        return []
    wanted, lowest = set(ids), min(ids)
    found: list[int] = []
    before = max(ids) + 1
    while True:
        rows = await store.failures_async(conn, schema, consumer, before=before, limit=MAX_PAGE, open_only=True)
        found += [row.id for row in rows if row.id in wanted]
        if len(rows) < MAX_PAGE or rows[-1].id <= lowest:
            return sorted(found)
        before = rows[-1].id


@router.get("/consumers/{consumer_id}/replay")
async def confirm_page(request: Request, consumer_id: str, session: SignedIn) -> Response:
    """ "Replay selected…" / "Replay all open…": how many a replay would take now, and the form that replays them."""
    everything = request.query_params.get("all") == "1"
    selected = [] if everything else _selected(request.query_params)
    service = service_of(request)
    async with service.pool.connection() as conn:
        consumer = await _consumer(conn, service.schema, consumer_id)
        mapping = None
        if consumer.mapping_id is not None:
            mapping = await store.get_mapping_async(conn, service.schema, consumer.mapping_id)
        chosen = [] if everything else await _open_of(conn, service.schema, consumer, selected)
    count = min(consumer.open_failures, MAX_REPLAY) if everything else len(chosen)
    return render(
        request,
        "confirm_replay.html",
        session,
        consumer=consumer,
        mapping=mapping,
        everything=everything,
        selected=selected,
        chosen=chosen,
        count=count,
        open_count=consumer.open_failures,
        max_replay=MAX_REPLAY,
    )


@router.post("/consumers/{consumer_id}/replay")
async def replay_many(request: Request, consumer_id: str, form: Acting) -> Response:
    session, fields = form
    everything = fields.get("all") == "1"
    selected = [] if everything else _selected(fields)
    service = service_of(request)
    async with service.pool.connection() as conn, conn.transaction():
        consumer = await _consumer(conn, service.schema, consumer_id)
        if not everything and not selected:
            return redirect(f"{PREFIX}/consumers/{consumer.id}", notice="none-selected")
        ids = await _oldest_open(conn, service.schema, consumer) if everything else selected
        outcomes = {number: await _replay_one(conn, service.schema, consumer, number) for number in ids}
        if any(o != SKIPPED for o in outcomes.values()):
            what = f"replay of all open ({len(ids)} oldest)" if everything else f"replay of {len(ids)} selected"
            detail = f"{what}: {_summary(outcomes)}"
            await audit.record(conn, service.schema, session.name, "replay", "consumer", str(consumer.id), detail)
    counts = {kind: sum(1 for o in outcomes.values() if o == kind) for kind in (STORED, DUPLICATE, FAILED, SKIPPED)}
    return redirect(f"{PREFIX}/consumers/{consumer.id}", notice="replayed", **counts)


# -- mappings ---------------------------------------------------------------------------------------------


@router.get("/mappings/{mapping_id}")
async def mapping_page(request: Request, mapping_id: str, session: SignedIn) -> Response:
    service = service_of(request)
    async with service.pool.connection() as conn:
        try:
            versions = await store.mapping_history_async(conn, service.schema, mapping_id)
        except store.MappingNotFound:
            raise ConsoleError(404, "mapping") from None
        users = {c.name: c.id for c in await store.list_all_async(conn, service.schema) if c.mapping_id == mapping_id}
    current = next((v for v in versions if v.version == v.current_version), versions[0])
    return render(request, "mapping.html", session, mapping=current, versions=versions, users=users)
