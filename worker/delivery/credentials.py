"""Per-subscription authentication and signing: building blocks for the sender.

- `ZgwJwt`: the HS256 JWT the ZGW APIs and Open Notificaties send (as gemma-zds-client builds it).
- `OAuth2ClientCredentials`: an OAuth 2.0 client credentials grant (RFC 6749 §4.4), token cached
  until shortly before it expires, one token request at a time however many deliveries ask.
- `WebhookSigner` / `signing_headers`: Standard Webhooks signatures (https://www.standardwebhooks.com).

No secret and no token ever appears in an error message or a repr.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets as _secrets
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlencode

import httpx

from outbox._subscription import SIGNING_SECRET_PREFIX, signing_key

Send = Callable[[httpx.Request], Awaitable[httpx.Response]]

USER_AGENT = "nlgov-outbox/0.1"
ZGW_REUSE_SECONDS = 60.0  # servers check iat with a leeway: a token must stay recent
DEFAULT_TOKEN_SECONDS = 300.0  # kept this long when the token endpoint gives no expires_in
TOKEN_TIMEOUT = 10.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §5.2 error charset, bounded
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: safe in an Authorization header


class CredentialsError(Exception):
    """Getting or making credentials failed. The message names what, never a secret or a token."""


# -- ZGW JWT ---------------------------------------------------------------------------------------


class ZgwJwt:
    """The JWT of the ZGW APIs (zgw-consumers / gemma-zds-client): HS256 with a shared secret.

    The token is reused for up to 60 s: signing per delivery costs CPU for nothing, and the
    receiver only checks that iat is recent.
    """

    __slots__ = ("_iat", "_secret", "_token", "client_id", "reuse_seconds")

    def __init__(self, client_id: str, secret: str, *, reuse_seconds: float = ZGW_REUSE_SECONDS) -> None:
        self.client_id = client_id
        self._secret = secret
        self.reuse_seconds = reuse_seconds
        self._token: str | None = None
        self._iat = 0

    def __repr__(self) -> str:
        return f"ZgwJwt(client_id={self.client_id!r})"

    def authorization(self, now: float | None = None) -> str:
        """The Authorization value, "Bearer <jwt>"; `now` is wall-clock seconds (time.time()), the source of iat."""
        now = time.time() if now is None else now
        age = now - self._iat
        if self._token is None or not 0 <= age < self.reuse_seconds:  # backwards clock: sign anew
            self._iat = int(now)
            self._token = self._sign(self._iat)
        return f"Bearer {self._token}"

    def _sign(self, iat: int) -> str:
        claims = {
            "iss": self.client_id,
            "iat": iat,
            "client_id": self.client_id,
            "user_id": "",
            "user_representation": "",
        }
        import jwt  # PyJWT (and cryptography): loaded by the first ZGW subscription only

        with warnings.catch_warnings():
            # ZGW secrets are whatever the API's admin set, often under 32 bytes: still what it checks.
            warnings.simplefilter("ignore", getattr(jwt, "InsecureKeyLengthWarning", UserWarning))  # PyJWT >= 2.10
            return jwt.encode(claims, self._secret, algorithm="HS256")  # header {"typ": "JWT", "alg": "HS256"}


# -- OAuth 2.0 client credentials ----------------------------------------------------------------


def _basic(client_id: str, client_secret: str) -> str:
    """client_secret_basic: id and secret form-urlencoded first (RFC 6749 §2.3.1)."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _lifetime(expires_in: object) -> float:
    """Seconds to keep a token: expires_in minus min(30 s, 10 %), 5 minutes when it is unknown."""
    seconds: float | None = None
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        seconds = float(expires_in)
    elif isinstance(expires_in, str):  # some servers (Azure AD v1) send a string
        try:
            seconds = float(expires_in)
        except ValueError:
            seconds = None
    if seconds is None or seconds != seconds or seconds == float("inf"):  # missing, NaN or infinite
        return DEFAULT_TOKEN_SECONDS
    return max(0.0, seconds - min(30.0, seconds * 0.1))


class OAuth2ClientCredentials:
    """A bearer token from a token endpoint, cached until shortly before it expires.

    Single flight: callers that find no valid token wait on one lock and the first one fetches;
    those that waited during a fetch take its token, or its error, without asking again.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        timeout: float = TOKEN_TIMEOUT,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.timeout = timeout
        self._url = httpx.URL(token_url)
        self._basic = _basic(client_id, client_secret)
        self._body = urlencode({"grant_type": "client_credentials", **({"scope": scope} if scope else {})}).encode()
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0  # time.monotonic()
        self._finished = 0  # fetches that ended with a token or an error: did one end while a caller waited?
        self._failure: str | None = None  # the message of the last fetch, when it failed

    def __repr__(self) -> str:
        return (
            f"OAuth2ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r}, scope={self.scope!r})"
        )

    def invalidate(self, token: str) -> None:
        """Drop `token` (or "Bearer <token>") after the receiver refused it; a newer token stays."""
        if self._token is not None and token in (self._token, f"Bearer {self._token}"):
            self._token = None

    async def authorization(self, send: Send, now: float | None = None) -> str:
        """The Authorization value, "Bearer <token>", fetched with `send` when none is valid.

        `now` is a time.monotonic() reading (tests move it on).
        """
        if self._token is not None and (time.monotonic() if now is None else now) < self._expires_at:
            return f"Bearer {self._token}"
        seen = self._finished
        async with self._lock:
            if self._finished != seen:  # a fetch ended while this caller waited: share its outcome
                if self._failure is not None:
                    raise CredentialsError(self._failure)
                if self._token is not None:
                    return f"Bearer {self._token}"
            elif self._token is not None and (time.monotonic() if now is None else now) < self._expires_at:
                return f"Bearer {self._token}"
            self._token, self._failure = None, None
            try:
                token, lifetime = await self._fetch(send)
            except CredentialsError as exc:
                self._failure = str(exc)
                self._finished += 1
                raise
            # A cancelled fetch does not count as finished: the next waiter fetches for itself.
            self._token = token
            self._expires_at = (time.monotonic() if now is None else now) + lifetime
            self._finished += 1
            return f"Bearer {token}"

    def _request(self) -> httpx.Request:
        return httpx.Request(
            "POST",
            self._url,
            headers={
                "Authorization": self._basic,
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            content=self._body,
            extensions={"timeout": httpx.Timeout(self.timeout).as_dict()},
        )

    async def _fetch(self, send: Send) -> tuple[str, float]:
        # `from None` throughout: a chained exception carries the request (with the Basic
        # credentials) or the answer's text (with the token) into tracebacks.
        try:
            response = await send(self._request())
            await response.aread()  # a plain transport's answer is still a stream
        except httpx.TimeoutException as exc:
            raise CredentialsError(f"OAuth2 token endpoint did not answer in time ({type(exc).__name__})") from None
        except (httpx.HTTPError, OSError) as exc:
            # The transport's own words (a TLS verdict, a refused address) carry no header or URL.
            said = str(exc).splitlines()[0][:200] if str(exc) else ""
            reason = f"{type(exc).__name__}: {said}" if said else type(exc).__name__
            raise CredentialsError(f"OAuth2 token endpoint could not be reached ({reason})") from None
        document = _json_object(response.content)
        if not 200 <= response.status_code < 300:
            error = document.get("error") if document is not None else None
            if isinstance(error, str) and _ERROR_CODE.fullmatch(error):
                raise CredentialsError(f"OAuth2 token endpoint answered {response.status_code} ({error})")
            raise CredentialsError(f"OAuth2 token endpoint answered {response.status_code}")
        if document is None:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > len(response.content):
                raise CredentialsError(
                    f"OAuth2 token endpoint answer was cut off after {len(response.content)} bytes"
                    " (the transport keeps too little of an answer)"
                )
            raise CredentialsError("OAuth2 token endpoint answer is not a JSON object")
        token = document.get("access_token")
        if not isinstance(token, str) or not token:
            raise CredentialsError("OAuth2 token endpoint answer has no access_token")
        if not _HEADER_TOKEN.fullmatch(token):
            raise CredentialsError("OAuth2 token endpoint gave an access_token that cannot go in a header")
        token_type = document.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            shown = repr(token_type) if isinstance(token_type, str) and _ERROR_CODE.fullmatch(token_type) else "none"
            raise CredentialsError(f"OAuth2 token endpoint gave token_type {shown}, not Bearer")
        return token, _lifetime(document.get("expires_in"))


def _json_object(raw: bytes) -> dict[str, object] | None:
    try:
        document = json.loads(raw)
    except ValueError:  # JSONDecodeError keeps the whole text in .doc: never chain it
        return None
    return document if isinstance(document, dict) else None


# -- Standard Webhooks signing ---------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """One secret's HMAC-SHA256 state, keyed once: each signature copies it instead of keying anew."""

    _mac: hmac.HMAC = field(repr=False)

    @classmethod
    def from_secret(cls, secret: str) -> SigningKey:
        return cls(hmac.new(signing_key(secret), digestmod=hashlib.sha256))

    def sign(self, signed: bytes) -> str:
        mac = self._mac.copy()
        mac.update(signed)
        return "v1," + base64.b64encode(mac.digest()).decode("ascii")


class WebhookSigner:
    """Standard Webhooks headers for one subscription: one v1 signature per secret, new one first."""

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if isinstance(secrets, str):  # a lone str is a Sequence of characters: not what is meant
            raise TypeError("secrets must be a sequence of secrets, not one string")
        if not secrets:
            raise ValueError("at least one signing secret is needed")
        self._keys = tuple(SigningKey.from_secret(secret) for secret in secrets)

    def __repr__(self) -> str:
        return f"WebhookSigner({len(self._keys)} secret(s))"

    def headers(self, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        if not message_id or _CONTROL.search(message_id) or not message_id.isascii():
            raise ValueError("the message id must be non-empty ASCII without control characters")
        signed = f"{message_id}.{timestamp}.".encode() + body
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(key.sign(signed) for key in self._keys),
        }


def signing_headers(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature; keep a `WebhookSigner` to sign many."""
    return WebhookSigner(secrets).headers(message_id, timestamp, body)


def new_signing_secret() -> str:
    """A fresh secret: 32 random bytes, as the Standard Webhooks libraries make them."""
    return SIGNING_SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")
