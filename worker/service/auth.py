"""Who is calling: the ZGW JWT (HS256, signed with the client's secret), its scopes, its request rate
(counted in PostgreSQL over every process: `limits.ClientRate`).

As Open Notificaties authenticates its clients: `Authorization: Bearer <JWT>`, the client named by
the `client_id` claim (or `iss`), `iat` required and no older than OUTBOX_JWT_MAX_AGE (an `exp`, if
present, is honoured too), OUTBOX_JWT_LEEWAY for clock skew. Clients and their secrets come from
`outbox clients`; a verified token is remembered until it would expire, so a client that reuses its
token (as gemma-zds-client does for a minute) costs one dictionary look-up per request.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt.warnings import InsecureKeyLengthWarning

from worker.service.problems import ApiProblem
from worker.store.clients import ApiClient

_TOKEN_CACHE_SIZE = 10_000
_CLIENT_CACHE_SIZE = 10_000
_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="JWT-Claims",
    description="A ZGW JWT (HS256) signed with the client's secret; claims client_id (or iss) and iat.",
)

LoadClient = Callable[[str], Awaitable[ApiClient | None]]
Pace = Callable[[str], Awaitable[None]]
"""Takes one request of a client from its rate, or raises the 429 (limits.ClientRate.take)."""


def _unauthenticated(detail: str, code: str) -> ApiProblem:
    """401 (Open Notificaties answers 403 to every auth failure; 401 is what RFC 9110 asks for a
    missing or bad credential). The codes are Open Notificaties' (vng-api-common's)."""
    title = "Authentication credentials were not provided." if code == "not_authenticated" else "Invalid token."
    return ApiProblem(401, code, title, detail, headers={"WWW-Authenticate": 'Bearer realm="outbox"'})


@dataclass
class _Verified:
    client: ApiClient
    until: float  # monotonic: when the token stops being acceptable


class Authenticator:
    """Verifies tokens against the clients (cached for `client_ttl` seconds) and keeps each client's pace
    (`pace`, shared by all processes)."""

    def __init__(
        self,
        load_client: LoadClient,
        *,
        leeway: float,
        max_age: float,
        client_ttl: float,
        pace: Pace,
    ) -> None:
        self._load = load_client
        self._leeway = leeway
        self._max_age = max_age
        self._client_ttl = client_ttl
        self._clients: dict[str, tuple[ApiClient | None, float]] = {}
        self._tokens: dict[str, _Verified] = {}
        self._pace = pace

    async def _client(self, client_id: str, now: float) -> ApiClient | None:
        cached = self._clients.get(client_id)
        if cached is not None and now - cached[1] < self._client_ttl:
            return cached[0]
        client = await self._load(client_id)
        if len(self._clients) >= _CLIENT_CACHE_SIZE:  # ids come from unverified tokens: keep the memory bounded
            self._clients.clear()
        self._clients[client_id] = (client, now)
        return client

    async def authenticate(self, token: str) -> ApiClient:
        now = time.monotonic()
        known = self._tokens.get(token)
        if known is not None and now < known.until:
            # Still the same client record (not rotated or removed since)?
            current = await self._client(known.client.client_id, now)
            if current is known.client:
                return current
        try:
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _unauthenticated("The bearer token is not a JWT.", "jwt-decode-error") from None
        if header.get("alg") != "HS256":
            raise _unauthenticated("The JWT must be signed with HS256.", "jwt-decode-error")
        client_id = claims.get("client_id") or claims.get("iss")
        if not isinstance(client_id, str) or not client_id:
            raise _unauthenticated(
                "The JWT names no client: give the client_id (or iss) claim.", "missing-client-identifier"
            )
        client = await self._client(client_id, now)
        if client is None or not client.secret:  # an empty HS256 key would verify anyone's signature
            raise _unauthenticated(f"No client {client_id!r} is registered here.", "invalid-client-identifier")
        try:
            with warnings.catch_warnings():
                # Short secrets are the operator's choice (`outbox clients add --secret`): no warning per request.
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                jwt.decode(
                    token,
                    client.secret,
                    algorithms=["HS256"],
                    options={"require": ["iat"], "verify_aud": False},
                    leeway=self._leeway,
                )
        except jwt.MissingRequiredClaimError:
            raise _unauthenticated("The JWT has no iat (issued at) claim.", "jwt-missing-iat-claim") from None
        except jwt.ExpiredSignatureError:
            raise _unauthenticated("The JWT has expired (its exp has passed).", "jwt-expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthenticated(
                "The JWT is issued in the future (iat): check the client's clock.", "jwt-immature"
            ) from None
        except jwt.InvalidSignatureError:
            raise _unauthenticated(
                "The JWT's signature does not match the client's secret.", "invalid-jwt-signature"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise _unauthenticated(f"The JWT is not valid: {exc}.", "jwt-invalid") from None
        issued = claims["iat"]
        if not isinstance(issued, int | float) or isinstance(issued, bool):
            raise _unauthenticated("The JWT's iat must be a number (seconds since the epoch).", "jwt-invalid")
        age = time.time() - float(issued)
        remaining = self._max_age + self._leeway - age
        expires = claims.get("exp")
        if isinstance(expires, int | float) and not isinstance(expires, bool):
            remaining = min(remaining, float(expires) + self._leeway - time.time())
        if remaining <= 0:
            raise _unauthenticated(f"The JWT is too old: its iat is more than {self._max_age:g} s ago.", "jwt-expired")
        if len(self._tokens) >= _TOKEN_CACHE_SIZE:
            self._tokens.clear()
        self._tokens[token] = _Verified(client, now + remaining)
        return client

    async def authorize(self, authorization: str | None, scopes: tuple[str, ...]) -> ApiClient:
        """The client of an Authorization header value, if it holds one of `scopes` and is within its rate."""
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _unauthenticated(
                "Send Authorization: Bearer <JWT> (a ZGW JWT signed with your client's secret).", "not_authenticated"
            )
        client = await self.authenticate(credentials.strip())
        if not client.scopes.intersection(scopes):
            raise ApiProblem(
                403,
                "permission_denied",
                "You do not have permission to perform this action.",
                f"This operation needs the scope {' or '.join(scopes)}; client {client.client_id} has "
                f"{', '.join(sorted(client.scopes))}.",
            )
        await self._pace(client.client_id)
        return client


def require(*scopes: str) -> Callable[..., Awaitable[ApiClient]]:
    """A dependency: the calling client, which must hold one of `scopes`."""

    async def caller(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiClient:
        # `credentials` declares the security scheme in the OpenAPI; authorize reads the header itself.
        authenticator: Authenticator = request.app.state.service.authenticator
        return await authenticator.authorize(request.headers.get("authorization"), scopes)

    return caller
