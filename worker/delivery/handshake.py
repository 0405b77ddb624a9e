"""The abuse-protection handshake of the NL GOV webhook guideline (§3.1.3).

    OPTIONS <callbackUrl>
    WebHook-Request-Origin: <OUTBOX_WEBHOOK_ORIGIN>
    WebHook-Request-Rate: <per minute>            (only when the operator asks for a rate)

The target agrees with a 2xx whose WebHook-Allowed-Origin is our origin or `*`; when a rate was
asked, it MUST answer WebHook-Allowed-Rate (requests per minute, or `*`). Anything else is a
refusal, described in the words of what the target answered.

The OPTIONS goes through the delivery transport, so it meets the same rules as the deliveries
after it: the address policy (checked at connect time), the subscription's TLS context, no
redirects, a capped answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from worker.delivery.credentials import USER_AGENT
from worker.delivery.safety import AddressPolicy, DestinationRefused
from worker.delivery.transport import TLS_EXTENSION, Resolver, WebhookTransport

_RATE = re.compile(r"^(\*|[0-9]+)$")


class HandshakeRefused(Exception):
    """The target did not agree; the message says what it answered."""


class HandshakeNotSpoken(HandshakeRefused):
    """The target does not implement the handshake (404, 405, 501, or a 2xx without
    WebHook-Allowed-Origin), as opposed to answering it with a no: registration may verify the
    callback with a probe instead (worker/delivery/verification.py); a pre-flight still fails."""


T = TypeVar("T")
NOT_SPOKEN = (404, 405, 501)


@dataclass(frozen=True)
class Agreement:
    allowed_origin: str
    allowed_rate: str | None  # requests per minute, "*", or None when not answered (and not asked)


def handshake(
    callback_url: str,
    origin: str,
    rate: int | None = None,
    timeout: float = 10.0,
    *,
    policy: AddressPolicy | None = None,
    tls: ssl.SSLContext | None = None,
    resolver: Resolver | None = None,
) -> Agreement:
    """The handshake, for synchronous callers (the CLI). Raises HandshakeRefused."""
    return run_sync(handshake_async(callback_url, origin, rate, timeout, policy=policy, tls=tls, resolver=resolver))


def run_sync(call: Coroutine[Any, Any, T]) -> T:
    """Run `call` to its end for a synchronous caller (the CLI)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    # Called from inside an event loop: asyncio.run needs a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call).result()


async def handshake_async(
    callback_url: str,
    origin: str,
    rate: int | None = None,
    timeout: float = 10.0,
    *,
    policy: AddressPolicy | None = None,
    tls: ssl.SSLContext | None = None,
    resolver: Resolver | None = None,
    transport: WebhookTransport | None = None,
) -> Agreement:
    """`transport`: one to reuse (the worker's, for pre-flights; it brings its own address policy and
    keeps the connection for the delivery that follows); else one made and closed for this call."""
    headers = {"WebHook-Request-Origin": origin, "User-Agent": USER_AGENT}
    if rate is not None:
        headers["WebHook-Request-Rate"] = str(rate)
    extensions: dict[str, object] = {"timeout": httpx.Timeout(timeout).as_dict()}
    if tls is not None:
        extensions[TLS_EXTENSION] = tls
    own = transport is None
    if transport is None:
        transport = WebhookTransport(max_idle_per_host=1, policy=policy, resolver=resolver)
    try:
        request = httpx.Request("OPTIONS", callback_url, headers=headers, extensions=extensions)
        answer = await transport.handle_async_request(request)
    except DestinationRefused as exc:
        raise HandshakeRefused(str(exc)) from None
    except httpx.TimeoutException:
        raise HandshakeRefused(f"the target did not answer the OPTIONS handshake within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        # The transport's messages say what failed (TLS, refused connection) without URL or headers.
        raise HandshakeRefused(
            f"the OPTIONS handshake could not reach the target ({type(exc).__name__}): {exc}"
        ) from None
    finally:
        if own:
            await transport.aclose()
    status = f"{answer.status_code} {answer.reason_phrase}".strip()
    if answer.status_code in NOT_SPOKEN:
        raise HandshakeNotSpoken(f"the target answered {status} to the OPTIONS handshake, not 2xx")
    if not answer.is_success:
        raise HandshakeRefused(f"the target answered {status} to the OPTIONS handshake, not 2xx")
    allowed = answer.headers.get("WebHook-Allowed-Origin")
    if allowed is None:
        raise HandshakeNotSpoken(f"the target answered {status} without WebHook-Allowed-Origin")
    if allowed.strip() not in (origin, "*"):
        raise HandshakeRefused(f"the target allows origin {allowed.strip()!r}, not {origin!r}")
    allowed_rate = answer.headers.get("WebHook-Allowed-Rate")
    if allowed_rate is not None:
        allowed_rate = allowed_rate.strip()
        if not _RATE.match(allowed_rate):
            raise HandshakeRefused(f"the target's WebHook-Allowed-Rate {allowed_rate!r} is not a number or *")
    elif rate is not None:
        raise HandshakeRefused("a rate was asked, but the target did not answer WebHook-Allowed-Rate")
    return Agreement(allowed_origin=allowed.strip(), allowed_rate=allowed_rate)
