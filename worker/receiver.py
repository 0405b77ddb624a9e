"""`outbox receiver`: a reference receiver for the webhook side of the NL GOV CloudEvents guideline.

OPTIONS  the abuse-protection handshake: answers WebHook-Allowed-Origin (and -Rate) when the
         request carries WebHook-Request-Origin, 400 otherwise
POST     checks the bearer token (401 without the right one), accepts the three content modes
         (structured application/cloudevents+json, batched application/cloudevents-batch+json,
         binary with ce-* headers), answers 415 for anything else and 400 for a broken event,
         logs one line per event and answers 204
GET /events   what arrived so far, in order (for the demo and tests; bind it to 127.0.0.1)
"""

from __future__ import annotations

import hmac
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

REQUIRED = ("specversion", "id", "source", "type")


@dataclass
class ReceiverConfig:
    auth: str | None = None  # the Authorization value to expect; None accepts any
    allowed_origin: str = "*"
    answer: int = 204
    quiet: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _binary_event(request: web.Request, body: bytes) -> dict[str, Any] | None:
    attributes = {k[3:].lower(): v for k, v in request.headers.items() if k.lower().startswith("ce-")}
    if any(name not in attributes for name in REQUIRED):
        return None
    event: dict[str, Any] = dict(attributes)
    if request.headers.get("Content-Type"):
        event["datacontenttype"] = request.headers["Content-Type"]
    if body:
        try:
            event["data"] = json.loads(body)
        except ValueError:
            event["data"] = body.decode("utf-8", errors="replace")
    return event


def make_app(config: ReceiverConfig) -> web.Application:
    async def options(request: web.Request) -> web.Response:
        origin = request.headers.get("WebHook-Request-Origin")
        if not origin:
            return web.Response(status=400, text="WebHook-Request-Origin is required\n")
        allowed = origin if config.allowed_origin in ("*", origin) else None
        if allowed is None:
            return web.Response(status=403, text="origin not allowed\n")
        headers = {"Allow": "POST, OPTIONS", "WebHook-Allowed-Origin": allowed}
        headers["WebHook-Allowed-Rate"] = request.headers.get("WebHook-Request-Rate", "*")
        return web.Response(status=200, headers=headers)

    async def post(request: web.Request) -> web.Response:
        if config.auth is not None and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), config.auth.encode()
        ):
            return web.Response(status=401, text="missing or wrong bearer token\n")
        body = await request.read()
        media = _media_type(request)
        events: list[dict[str, Any]]
        if media == "application/cloudevents+json":
            mode, parsed = "structured", _json(body)
            events = [parsed] if isinstance(parsed, dict) else []
        elif media == "application/cloudevents-batch+json":
            mode, parsed = "batched", _json(body)
            events = [e for e in parsed if isinstance(e, dict)] if isinstance(parsed, list) else []
            if not isinstance(parsed, list) or len(events) != len(parsed):
                return web.Response(status=400, text="a batch must be a JSON array of events\n")
        elif media.startswith("application/cloudevents"):
            return web.Response(status=415, text=f"event format {media} is not supported\n")
        else:
            mode = "binary"
            event = _binary_event(request, body)
            if event is None:
                return web.Response(status=415, text="not a CloudEvent: ce-* headers missing\n")
            events = [event]
        if mode != "batched" and not events:
            return web.Response(status=400, text="the body is not a JSON event\n")
        for event in events:
            missing = [name for name in REQUIRED if not event.get(name)]
            if missing:
                return web.Response(status=400, text=f"event lacks {', '.join(missing)}\n")
        now = time.time()
        for event in events:
            config.received.append({"mode": mode, "arrived": now, "event": event})
            if not config.quiet:
                line = {"received": event["id"], "type": event["type"], "subject": event.get("subject"), "mode": mode}
                print(json.dumps(line), flush=True)
        return web.Response(status=config.answer)

    async def events(request: web.Request) -> web.Response:
        return web.json_response(config.received)

    app = web.Application()
    app.router.add_route("OPTIONS", "/{tail:.*}", options)
    app.router.add_post("/{tail:.*}", post)
    app.router.add_get("/events", events)
    return app


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def serve(host: str, port: int, config: ReceiverConfig) -> None:
    print(f"receiver listening on http://{host}:{port}/", file=sys.stderr, flush=True)
    web.run_app(make_app(config), host=host, port=port, access_log=None, print=None)
