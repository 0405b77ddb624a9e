"""The abuse-protection handshake of the NL GOV webhook guideline (§3.1.3).

    OPTIONS <callbackUrl>
    WebHook-Request-Origin: <OUTBOX_WEBHOOK_ORIGIN>
    WebHook-Request-Rate: <per minute>            (only when the operator asks for a rate)

The target agrees with a 2xx whose WebHook-Allowed-Origin is our origin or `*`; when a rate was
asked, it MUST answer WebHook-Allowed-Rate (requests per minute, or `*`). Anything else is a
refusal, described in the words of what the target answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from worker.http import USER_AGENT

_RATE = re.compile(r"^(\*|[0-9]+)$")


class HandshakeRefused(Exception):
    """The target did not agree; the message says what it answered."""


@dataclass(frozen=True)
class Agreement:
    allowed_origin: str
    allowed_rate: str | None  # requests per minute, "*", or None when not answered (and not asked)


def handshake(callback_url: str, origin: str, rate: int | None = None, timeout: float = 10.0) -> Agreement:
    headers = {"WebHook-Request-Origin": origin, "User-Agent": USER_AGENT}
    if rate is not None:
        headers["WebHook-Request-Rate"] = str(rate)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, verify=True, trust_env=False) as client:
            answer = client.options(callback_url, headers=headers)
    except httpx.TimeoutException:
        raise HandshakeRefused(f"the target did not answer the OPTIONS handshake within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise HandshakeRefused(f"the OPTIONS handshake could not reach the target ({type(exc).__name__})") from None
    status = f"{answer.status_code} {answer.reason_phrase}".strip()
    if not answer.is_success:
        raise HandshakeRefused(f"the target answered {status} to the OPTIONS handshake, not 2xx")
    allowed = answer.headers.get("WebHook-Allowed-Origin")
    if allowed is None:
        raise HandshakeRefused(f"the target answered {status} without WebHook-Allowed-Origin")
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
