"""The benchmark's webhook receiver: a bare ASGI app that answers 204 and remembers what arrived.

Run under uvicorn, one process, uvloop, httptools, access log off (as ../shared/PEERS.md):

    uvicorn --app-dir bench receiver_asgi:app --loop uvloop --http httptools --no-access-log --lifespan off

Every POST (any path but /arrivals/take) is answered 204 No Content. Its arrival time (`time.time_ns()` when the
request reaches the app) is kept per CloudEvent `id`, read from the body: structured mode, the
JSON event format, whose `id` is near the start; in batched mode every event of the array.
The bench reads and resets that state:

    GET    /count      {"count": requests, "distinct": ids, "duplicates": ..., "first": ns, "last": ns}
    GET    /arrivals   {"<id>": ns of its first arrival, ...}
    DELETE /arrivals   forget everything (204)
    POST   /arrivals/take
                       {"arrivals": [[id, ns], ...], "duplicates": n, "unidentified": n}: what arrived
                       since the last take, then forgotten, so a long run (bench/soak.py) holds only a
                       moment's worth; duplicates are then only seen within one take (the caller
                       matches ids against what it sent and sees the rest)

The per-request work is a dict insert and a bytes search, so the receiver stays far from being
the limit (the peers' figures were measured against the same kind of app).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ID_KEY = b'"id":"'
_NO_CONTENT: Message = {"type": "http.response.start", "status": 204, "headers": []}
_EMPTY: Message = {"type": "http.response.body", "body": b""}
_JSON_HEADERS = [(b"content-type", b"application/json")]
_TAKE = "/arrivals/take"


class State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.duplicates = 0
        self.unidentified = 0
        self.first = 0
        self.last = 0
        self.arrivals: dict[str, int] = {}
        self.taken_duplicates = 0
        self.taken_unidentified = 0

    def take(self) -> dict[str, object]:
        """What arrived since the last take (forgotten now); the counters go on counting."""
        arrivals, self.arrivals = self.arrivals, {}
        taken = {
            "arrivals": list(arrivals.items()),
            "duplicates": self.duplicates - self.taken_duplicates,
            "unidentified": self.unidentified - self.taken_unidentified,
        }
        self.taken_duplicates, self.taken_unidentified = self.duplicates, self.unidentified
        return taken

    def record(self, now: int, body: bytes) -> None:
        self.count += 1
        if not self.first:
            self.first = now
        self.last = now
        if body[:1] == b"[":  # batched mode: a JSON array of events, each counted
            try:
                batch = orjson.loads(body)
            except orjson.JSONDecodeError:
                batch = []
            ids = [str(e.get("id")) if isinstance(e, dict) and "id" in e else None for e in batch] or [None]
        else:
            ids = [_event_id(body)]
        for event_id in ids:
            if event_id is None:
                self.unidentified += 1
            elif event_id in self.arrivals:
                self.duplicates += 1
            else:
                self.arrivals[event_id] = now


def _event_id(body: bytes) -> str | None:
    """The top-level `id` of a JSON event (orjson output has no spaces); a full parse otherwise."""
    start = body.find(_ID_KEY)
    if start >= 0:
        start += len(_ID_KEY)
        end = body.find(b'"', start)
        if end > start:
            return body[start:end].decode()
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = document.get("id") if isinstance(document, dict) else None
    return str(value) if value is not None else None


STATE = State()


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body", False):
        message = await receive()
        body += message.get("body", b"")
    return body


async def _json(send: Send, document: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": orjson.dumps(document)})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    now = time.time_ns()
    body = await _read_body(receive)
    method = scope["method"]
    path = scope["path"]
    if method == "POST" and path != _TAKE:
        STATE.record(now, body)
        await send(_NO_CONTENT)
        await send(_EMPTY)
        return
    if method == "GET" and path == "/count":
        await _json(
            send,
            {
                "count": STATE.count,
                "distinct": len(STATE.arrivals),
                "duplicates": STATE.duplicates,
                "unidentified": STATE.unidentified,
                "first": STATE.first,
                "last": STATE.last,
            },
        )
    elif method == "GET" and path == "/arrivals":
        await _json(send, STATE.arrivals)
    elif method == "POST":  # _TAKE
        await _json(send, STATE.take())
    elif method == "DELETE" and path == "/arrivals":
        STATE.reset()
        await send(_NO_CONTENT)
        await send(_EMPTY)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send(_EMPTY)
