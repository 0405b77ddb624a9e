"""Callback verification at registration: the OPTIONS handshake, else a probe event.

Many receivers (Open Zaak's `/events`, receivers built with the CloudEvents SDKs) do not speak
the abuse-protection handshake of the webhook guideline: OPTIONS answers 404/405/501, or a 2xx
without WebHook-Allowed-Origin. For them, as Open Notificaties verifies callbacks, registration
sends one probe: a CloudEvent of type `nl.overheid.outbox.verification`, in the subscription's
content mode with its credentials, which must get a 2xx; and where the subscription has
credentials, the same probe without them must be refused with 401 or 403 (the receiver checks
them). A handshake answered with a no (403, a 2xx naming another origin) stays a refusal: the
probe is for receivers that do not speak the handshake, never a way around a no.

The probe is sent by the delivery path's own `Sender` (address policy at connect time, TLS,
timeouts, no redirects), so it is the request a delivery would be.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import httpx

from outbox import CloudEvent, Subscription
from outbox._subscription import PROBE_TYPE, QUERY_TOKEN_PARAMETER, has_credentials, public_url
from worker.daemon.settings import WorkerSettings
from worker.delivery.credentials import CredentialsError
from worker.delivery.handshake import HandshakeNotSpoken, HandshakeRefused, handshake_async, run_sync
from worker.delivery.http import Claimed, Sender
from worker.delivery.safety import AddressPolicy, DestinationRefused

Method = Literal["handshake", "probe"]


class VerificationRefused(Exception):
    """The callback was not verified; `step` names the step that failed, the message what the
    receiver answered."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


@dataclass(frozen=True)
class Verified:
    method: Method
    allowed_rate: str | None  # WebHook-Allowed-Rate (handshake only)
    detail: str  # what was verified, in words


def probe_event(origin: str, callback_url: str) -> CloudEvent:
    """The probe: a valid NL GOV CloudEvent of our own type, saying what it is for."""
    return CloudEvent(
        type=PROBE_TYPE,
        source=f"https://{origin}",
        datacontenttype="application/json",
        data={"callbackUrl": public_url(callback_url), "purpose": "verification of a subscription's callback"},
    )


def _without_credentials(subscription: Subscription) -> Subscription:
    url = subscription.callback_url
    if subscription.allow_query_token:
        parts = urlsplit(url)
        pairs = [
            (n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n.lower() != QUERY_TOKEN_PARAMETER
        ]
        url = urlunsplit(parts._replace(query=urlencode(pairs)))
    return replace(subscription, callback_url=url, auth=None, oauth2=None, zgw=None, headers=(), signing_secrets=())


def _answered(status: int, body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return f"{status}" + (f" ({text})" if text else "")


async def _post(sender: Sender, subscription: Subscription, document: str, timeout: float) -> tuple[int, bytes]:
    claimed = Claimed(id=0, attempts=1, subscription_id=UUID(int=0), event=document, token=UUID(int=0))
    try:
        answer = await sender.post(sender.target(subscription), [claimed])
    except DestinationRefused as exc:
        raise VerificationRefused("probe", str(exc)) from None
    except (TimeoutError, httpx.TimeoutException):
        raise VerificationRefused("probe", f"the target did not answer within {timeout:g} s") from None
    except CredentialsError as exc:
        raise VerificationRefused("probe", f"no credentials to send: {exc}") from None
    except (httpx.HTTPError, OSError) as exc:
        raise VerificationRefused("probe", f"could not reach the target ({type(exc).__name__}): {exc}") from None
    return answer.status, answer.body


async def probe_async(subscription: Subscription, origin: str, timeout: float, policy: AddressPolicy) -> str:
    """Send the probe (and, with credentials, the probe without them). Returns what was verified;
    raises VerificationRefused naming the step."""
    settings = WorkerSettings.model_construct(
        allowed_networks=policy.allowed, request_timeout=timeout, webhook_origin=origin, concurrency=2,
        lease_seconds=timeout * 4,
    )  # fmt: skip
    sender = Sender(settings)
    document = probe_event(origin, subscription.callback_url).to_json()
    try:
        status, body = await _post(sender, subscription, document, timeout)
        if not 200 <= status < 300:
            raise VerificationRefused(
                "probe", f"the target answered {_answered(status, body)} to a {PROBE_TYPE} event, not 2xx"
            )
        if not has_credentials(subscription):
            return f"the target accepted a {PROBE_TYPE} probe ({status})"
        bare, bare_body = await _post(sender, _without_credentials(subscription), document, timeout)
        if bare not in (401, 403):
            raise VerificationRefused(
                "probe without credentials",
                f"the target answered {_answered(bare, bare_body)} to the probe without the subscription's "
                "credentials, not 401 or 403: it does not check them",
            )
        return (
            f"the target accepted a {PROBE_TYPE} probe with its credentials ({status}) and refused it without ({bare})"
        )
    finally:
        await sender.aclose()


async def verify_async(
    subscription: Subscription,
    origin: str,
    timeout: float,
    policy: AddressPolicy,
    tls: ssl.SSLContext | None = None,
) -> Verified:
    """The handshake; where the target does not speak it, the probe. Raises VerificationRefused."""
    try:
        agreement = await handshake_async(
            subscription.callback_url,
            origin,
            subscription.requested_rate,
            timeout,
            policy=policy,
            tls=tls,
        )
    except HandshakeNotSpoken as exc:
        not_spoken = str(exc)
    except HandshakeRefused as exc:
        raise VerificationRefused("handshake", str(exc)) from None
    else:
        return Verified("handshake", agreement.allowed_rate, f"the target allows origin {agreement.allowed_origin!r}")
    try:
        detail = await probe_async(subscription, origin, timeout, policy)
    except VerificationRefused as exc:
        raise VerificationRefused(exc.step, f"{exc.message} (the handshake: {not_spoken})") from None
    return Verified("probe", None, detail)


def verify(
    subscription: Subscription,
    origin: str,
    timeout: float,
    policy: AddressPolicy,
    tls: ssl.SSLContext | None = None,
) -> Verified:
    """verify_async for synchronous callers (the CLI)."""
    return run_sync(verify_async(subscription, origin, timeout, policy, tls))
