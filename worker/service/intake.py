"""POST /api/v1/cloudevents: producers hand in events over HTTP, in the three content modes.

Structured (`application/cloudevents+json`), binary (`ce-` headers, the body is `data`) and batched
(`application/cloudevents-batch+json`, all or nothing). JSON nulls are unset attributes (NL GOV
guideline §2.1), the NL GOV profile and the event catalogue apply, and a retried POST of the same
(`source`, `id`) stores nothing new (`intake_ids`): a replay with the same event (compared as stored:
the event after the profile's normalisation, as jsonb, so member order and white space do not count,
by a SHA-256 digest kept with the key) answers 201 again, one with other content 409 naming `id`.

Requests are written by a few `IntakeWriter` tasks that take whatever requests are waiting and
store them with one statement, one commit: under load many POSTs share a commit (and its WAL
flush), and each still answers only once its own events are durable.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote

import orjson
import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Receive, Scope, Send

from outbox._catalogue import admit_async
from outbox._errors import InvalidEventError
from outbox._event import CloudEvent, event_problems
from outbox._sql import notify_channel, query
from outbox._tracing import TRACEPARENT, TRACESTATE
from worker.runtime import tracing
from worker.service.auth import require
from worker.service.limits import read_body
from worker.service.problems import DATABASE_DOWN, ApiProblem, InvalidParam, invalid, responses, unavailable
from worker.store.clients import ADMIN, PUBLISH, ApiClient

if TYPE_CHECKING:
    from worker.service.app import Service

# A JSON number of 19 or more digits (beyond int64 orjson reads it as a float). Digits inside strings
# rarely sit between a separator and a delimiter like this: an OIN in a source URN is followed by ":" or
# a quote. A false match only costs the slower parser.
_LONG_NUMBER = re.compile(rb"[:,\[]\s*-?\d{19,}\s*[,}\].eE\s]")
STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
_WRITE_MAX_EVENTS = 2000  # events one writer stores in one statement


def _media_type(value: str | None) -> tuple[str, dict[str, str]]:
    if not value:
        return "", {}
    kind, *parameters = value.split(";")
    parsed = {}
    for parameter in parameters:
        name, _, raw = parameter.partition("=")
        parsed[name.strip().lower()] = raw.strip().strip('"').lower()
    return kind.strip().lower(), parsed


def _unsupported(kind: str) -> ApiProblem:
    return ApiProblem(
        415,
        "unsupported_media_type",
        "Unsupported media type.",
        f"Content-Type {kind or '(none)'!r} is not taken here: send {STRUCTURED}, {BATCHED}, or an event in "
        "binary mode (ce-specversion and the other attributes as ce- headers).",
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(body: bytes, what: str) -> Any:
    try:
        if _LONG_NUMBER.search(body):
            # orjson reads integers beyond 64 bits as floats, which would change the event silently; the
            # standard parser keeps them, and storing the event then refuses them by name (data).
            return json.loads(body, parse_constant=_reject_constant)
        return orjson.loads(body)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise invalid([InvalidParam(name=what, code="parse_error", reason=f"is not JSON: {exc}")]) from None


def _event(
    document: object, prefix: str, max_bytes: int, trace: dict[str, str] | None = None
) -> tuple[CloudEvent, bytes]:
    if trace is not None and isinstance(document, dict) and TRACEPARENT not in document and TRACESTATE not in document:
        document = {**document, **trace}  # the request's trace context; an event's own wins
    try:
        event = CloudEvent.from_dict(document)  # type: ignore[arg-type]
    except InvalidEventError:
        faults = event_problems(document)
        raise invalid(
            [InvalidParam(name=prefix + f.attribute, code="invalid", reason=f.rule) for f in faults],
            "The event breaks the NL GOV CloudEvents profile.",
        ) from None
    except TypeError:  # attribute names that are not strings, and the like
        raise invalid(
            [InvalidParam(name=prefix or "event", code="invalid", reason="must be an event object")]
        ) from None
    try:
        stored = orjson.dumps(event.to_dict())
    except TypeError as exc:
        raise invalid([InvalidParam(name=prefix + "data", code="invalid", reason=str(exc))]) from None
    if len(stored) > max_bytes:
        raise ApiProblem(
            413,
            "too_large",
            "Request entity too large.",
            f"{prefix or 'the event'} is {len(stored)} bytes; events may be at most {max_bytes} bytes.",
        )
    return event, stored


def _binary(headers: Mapping[str, str], body: bytes, kind: str) -> dict[str, Any]:
    """The event of a binary-mode request: `ce-` headers (percent-decoded) and the body as data."""
    document: dict[str, Any] = {}
    for name, value in headers.items():
        if name.startswith("ce-"):
            document[name[3:]] = unquote(value)
    content_type = headers.get("content-type")
    if content_type:
        document["datacontenttype"] = content_type
    if body:
        if kind == "application/json" or kind.endswith("+json"):
            document["data"] = _json(body, "data")
        elif kind.startswith("text/"):
            try:
                document["data"] = body.decode()
            except UnicodeDecodeError:
                document["data_base64"] = base64.b64encode(body).decode()
        else:
            document["data_base64"] = base64.b64encode(body).decode()
    return document


def parse(
    headers: Mapping[str, str],
    body: bytes,
    max_event_bytes: int,
    max_batch: int,
    trace: dict[str, str] | None = None,
) -> tuple[list[CloudEvent], list[bytes], bool]:
    """The events of a request (header names in lowercase), each validated, and whether it was a batch;
    or the problem to answer. Events without a traceparent of their own gain `trace` (the Distributed
    Tracing extension: the request's trace context, `tracing.stamp`)."""
    kind, parameters = _media_type(headers.get("content-type"))
    charset = parameters.get("charset", "utf-8")
    if kind in (STRUCTURED, BATCHED) and charset not in ("utf-8", "utf8"):
        raise _unsupported(f"{kind}; charset={charset}")
    if kind == STRUCTURED:
        event, raw = _event(_json(body, "event"), "", max_event_bytes, trace)
        return [event], [raw], False
    if kind == BATCHED:
        documents = _json(body, "batch")
        if not isinstance(documents, list):
            raise invalid([InvalidParam(name="batch", code="invalid", reason="must be a JSON array of events")])
        if len(documents) > max_batch:
            raise ApiProblem(
                413, "too_large", "Request entity too large.",
                f"the batch holds {len(documents)} events; at most {max_batch} (OUTBOX_MAX_BATCH_EVENTS)",
            )  # fmt: skip
        events: list[CloudEvent] = []
        stored: list[bytes] = []
        params: list[InvalidParam] = []
        for i, document in enumerate(documents):
            try:
                event, raw = _event(document, f"[{i}].", max_event_bytes, trace)
            except ApiProblem as problem:
                if problem.status != 400:
                    raise
                params.extend(problem.invalid_params)
                continue
            events.append(event)
            stored.append(raw)
        if params:
            raise invalid(params, "Events of the batch break the NL GOV CloudEvents profile; none was stored.")
        return events, stored, True
    if "ce-specversion" in headers:
        event, raw = _event(_binary(headers, body, kind), "", max_event_bytes, trace)
        return [event], [raw], False
    raise _unsupported(kind)


@dataclass
class _Request:
    events: list[CloudEvent]
    documents: list[bytes]
    batched: bool
    indices: list[int] = field(default_factory=list)  # each event's place in the request, for problem names
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def __post_init__(self) -> None:
        self.indices = self.indices or list(range(len(self.events)))


_RACE_RETRIES = 5  # intake_raced(): a concurrent request took a key in after this statement's snapshot


def _conflict(request: _Request, keys: set[tuple[str, str]]) -> ApiProblem:
    """409 naming each event of the request whose (source, id) is taken with other content."""
    params = [
        InvalidParam(
            name=f"[{i}].id" if request.batched else "id",
            code="unique",
            reason=f"an event with this id from source {event.source!r} was taken in before with other content",
        )
        for i, event in zip(request.indices, request.events, strict=True)
        if (event.source, event.id) in keys
    ]
    return ApiProblem(
        409,
        "conflict",
        "Conflict.",
        "An event with the same source and id but other content was taken in before (or in the same request); "
        "nothing of this request was stored. A retry must send the event unchanged; a new event needs a new id.",
        params,
    )


class IntakeWriter:
    """Stores requests' events, many requests per statement, a few statements at a time."""

    def __init__(self, pool: AsyncConnectionPool[Any], schema: str, writers: int) -> None:
        self._pool = pool
        self._schema = schema
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._write_forever(), name=f"intake-writer-{i}") for i in range(writers)]
        self._sql = query("intake_events", schema)
        self._channel = notify_channel(schema)
        self._sequence: str | None = None

    async def store(self, events: list[CloudEvent], documents: list[bytes], batched: bool = False) -> int:
        """Stores the events (or none: all or nothing); returns how many were new (not replays).
        Raises a 409 `ApiProblem` when a (source, id) is known with other content."""
        request = _Request(events, documents, batched)
        self._queue.put_nowait(request)
        return await request.done

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():  # never taken: nothing of them was stored
            _settle(self._queue.get_nowait(), error=unavailable())

    async def _write_forever(self) -> None:
        while True:
            group = [await self._queue.get()]
            count = len(group[0].events)
            while count < _WRITE_MAX_EVENTS and not self._queue.empty():
                group.append(self._queue.get_nowait())
                count += len(group[-1].events)
            try:
                await self._write(group)
            except BaseException as exc:
                for request in group:
                    _settle(request, error=exc if isinstance(exc, Exception) else asyncio.CancelledError())
                if not isinstance(exc, Exception):
                    raise

    async def _write(self, group: list[_Request]) -> None:
        async with self._pool.connection() as conn:
            admitted: list[_Request] = []
            for request in group:
                try:
                    keep = await _admit(conn, self._schema, request.events)
                except ApiProblem as problem:
                    _settle(request, error=problem)
                    continue
                if not all(keep):  # disabled types are accepted and dropped, as enqueue drops them
                    request.events = [e for e, k in zip(request.events, keep, strict=True) if k]
                    request.documents = [d for d, k in zip(request.documents, keep, strict=True) if k]
                    request.indices = [i for i, k in zip(request.indices, keep, strict=True) if k]
                admitted.append(request)
            new: set[tuple[str, str]] = set()
            if any(r.events for r in admitted):
                if self._sequence is None:
                    found = await (
                        await conn.execute(query("events_position_sequence", self._schema), (self._schema,))
                    ).fetchone()
                    self._sequence = str(found[0]) if found else None
                rows = await self._insert(conn, admitted)
                refused: dict[int, set[tuple[str, str]]] = {}
                for source, event_id, number in rows:
                    if number is None:
                        new.add((source, event_id))
                    else:
                        refused.setdefault(number, set()).add((source, event_id))
                for number, keys in refused.items():
                    _settle(admitted[number], error=_conflict(admitted[number], keys))
                admitted = [r for n, r in enumerate(admitted) if n not in refused]
        for request in admitted:
            stored = 0
            for event in request.events:
                key = (event.source, event.id)
                if key in new:
                    new.discard(key)  # the first of a repeated key in one group is the stored one
                    stored += 1
            _settle(request, stored=stored)

    async def _insert(self, conn: psycopg.AsyncConnection[Any], group: list[_Request]) -> list[Any]:
        """One intake_events statement for the group; run again when it raced a concurrent one."""
        parameters = (
            [e.source for r in group for e in r.events],
            [e.id for r in group for e in r.events],
            (b"[" + b",".join(d for r in group for d in r.documents) + b"]").decode(),
            [n for n, r in enumerate(group) for _ in r.events],
            self._sequence,
            self._channel,
        )
        for attempt in range(_RACE_RETRIES):
            try:
                cursor = await conn.execute(self._sql, parameters)
                return await cursor.fetchall()
            except psycopg.errors.SerializationFailure:
                if attempt == _RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


def _settle(request: _Request, *, stored: int = 0, error: BaseException | None = None) -> None:
    """Answer a request's waiter, unless it is gone (its HTTP request was cancelled, e.g. at shutdown):
    one cancelled request must not turn the answers of the others in its group into errors."""
    if request.done.done():
        return
    if error is not None:
        request.done.set_exception(error)
    else:
        request.done.set_result(stored)


async def _admit(conn: psycopg.AsyncConnection[Any], schema: str, events: list[CloudEvent]) -> list[bool]:
    """The catalogue's verdict per event; when a batch breaks it, every breach named, as [i].field."""
    try:
        return await admit_async(conn, schema, events)
    except InvalidEventError as exc:
        if len(events) == 1:
            raise invalid([InvalidParam(name=exc.attribute, code="invalid", reason=exc.rule)]) from None
    params = []
    for i, event in enumerate(events):
        try:
            await admit_async(conn, schema, [event])
        except InvalidEventError as exc:
            params.append(InvalidParam(name=f"[{i}].{exc.attribute}", code="invalid", reason=exc.rule))
    raise invalid(params, "Events of the batch break the event catalogue; none was stored.")


router = APIRouter(tags=["cloudevents"])

_EVENT_SCHEMA: dict[str, Any] = {"$ref": "#/components/schemas/CloudEvent"}


@router.post(
    "/cloudevents",
    status_code=201,
    summary="Hand in cloud events (structured, binary or batched)",
    description="Stores the events for delivery and answers 201 with them as stored (unset attributes left "
    "out). A retried POST of an event already taken in (the same `source` and `id`, the same event as stored: "
    "member order and white space do not count) stores nothing new and answers 201 again; the same `source` "
    "and `id` with other content is a 409 naming `id`, and nothing of the request is stored. A batch is "
    "stored whole or not at all. Events of a type the catalogue has disabled are accepted and dropped.",
    response_class=Response,
    responses={
        201: {
            "description": "Stored, or already stored before.",
            "content": {
                STRUCTURED: {"schema": _EVENT_SCHEMA},
                BATCHED: {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
            },
        },
        **responses(400, 401, 403, 408, 409, 413, 415, 429, 503),
    },
    openapi_extra={
        "parameters": [
            {
                "name": f"ce-{attribute}",
                "in": "header",
                "required": False,
                "description": f"Binary mode: the event's `{attribute}` (percent-encoded); required in binary mode, "
                "ignored in structured and batched mode. Other attributes likewise as ce-<name>.",
                "schema": {"type": "string", "enum": ["1.0"]}
                if attribute == "specversion"
                else {"type": "string", "minLength": 1},
            }
            for attribute in ("specversion", "id", "source", "type")
        ],
        "requestBody": {
            "required": True,
            "content": {
                STRUCTURED: {"schema": _EVENT_SCHEMA},
                BATCHED: {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
                "application/json": {"schema": {}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    },
)
async def post_cloudevents(
    request: Request, client: Annotated[ApiClient, Depends(require(PUBLISH, ADMIN))]
) -> Response:
    """Binary mode: any other Content-Type with the attributes as `ce-` headers (percent-encoded)."""
    # Requests are normally answered by IntakeFastPath before they reach FastAPI; both run take_in.
    body, media_type = await take_in(request.app.state.service, dict(request.headers), await request.body())
    return Response(body, 201, media_type=media_type)


async def take_in(service: Service, headers: Mapping[str, str], body: bytes) -> tuple[bytes, str]:
    """Validate and store a request's events; the 201 answer's body and media type."""
    settings = service.settings
    trace = tracing.stamp(headers) if tracing.tracer is not None or "traceparent" in headers else None
    events, documents, batched = parse(headers, body, settings.max_event_bytes, settings.max_batch_events, trace)
    if tracing.tracer is not None:
        tracing.took_in(events, batched)
    try:
        await service.writer.store(events, documents, batched)
    except DATABASE_DOWN:
        raise unavailable() from None
    if batched:
        return b"[" + b",".join(documents) + b"]", BATCHED
    return documents[0], STRUCTURED


class IntakeFastPath:
    """POST /api/v1/cloudevents without FastAPI's routing and dependency machinery, which cost more CPU
    than the rest of the request together (bench/intake.py). Same steps as the documented route:
    authorize, read the body within the limit, take_in, answer; every refusal the same problem document."""

    def __init__(self, app: ASGIApp, state_of: Any, path: str) -> None:
        self.app = app
        self.state_of = state_of  # the FastAPI application, whose state holds the Service
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        service = self.state_of.state.service
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if tracing.tracer is None:
            await self._answer(service, headers, scope, receive, send)
            return
        span = tracing.Intake(headers, self.path, scope)
        status = None
        try:
            status = await self._answer(service, headers, scope, receive, send)
        except BaseException as exc:
            span.end(status, exc)
            raise
        span.end(status)

    async def _answer(
        self, service: Service, headers: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> int:
        """Answer the request; returns the status sent."""
        try:
            await service.authenticator.authorize(headers.get("authorization"), (PUBLISH, ADMIN))
            body = await read_body(receive, headers, service.settings)
            answer, media_type = await take_in(service, headers, body)
        except ApiProblem as problem:
            await problem.response(service.settings.public_url or "")(scope, receive, send)
            return int(problem.status)
        except DATABASE_DOWN:  # e.g. looking up the client
            down = unavailable()
            await down.response(service.settings.public_url or "")(scope, receive, send)
            return int(down.status)
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"content-type", media_type.encode()),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})
        return 201
