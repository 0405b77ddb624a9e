"""Request body limits, enforced while the body arrives (a declared Content-Length is refused at once)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.service.problems import ApiProblem

INTAKE_PATH = "/api/v1/cloudevents"


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


def too_slow(seconds: float) -> ApiProblem:
    return ApiProblem(
        408,
        "request_timeout",
        "Request timeout.",
        f"The request body did not arrive within {seconds:g} s (OUTBOX_REQUEST_TIMEOUT).",
        headers={"Connection": "close"},
    )


def too_large(limit: int) -> ApiProblem:
    return ApiProblem(
        413,
        "too_large",
        "Request entity too large.",
        f"The request body is over this operation's limit of {limit} bytes.",
    )


class BodyLimit:
    """413 for bodies over `intake_limit` (POST /cloudevents: the event size limit × the batch limit)
    or `other_limit` (everything else); 408 when a part of the body takes longer than `timeout`."""

    def __init__(self, app: ASGIApp, intake_limit: int, other_limit: int, timeout: float) -> None:
        self.app = app
        self.intake_limit = intake_limit
        self.other_limit = other_limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.intake_limit if scope["path"] == INTAKE_PATH else self.other_limit
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await too_large(limit).response()(scope, receive, send)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            try:
                async with asyncio.timeout(self.timeout):
                    message = await receive()
            except TimeoutError:
                raise _TooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await too_large(limit).response()(scope, receive, send)
        except _TooSlow:
            if not started:
                await too_slow(self.timeout).response()(scope, receive, send)
