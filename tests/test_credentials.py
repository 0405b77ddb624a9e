"""worker.credentials against real HTTP servers on 127.0.0.1, and signatures against the reference library."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import httpx
import jwt
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from outbox._subscription import check_signing_secret
from worker.delivery.credentials import (
    CredentialsError,
    OAuth2ClientCredentials,
    SigningKey,
    WebhookSigner,
    ZgwJwt,
    _lifetime,
    new_signing_secret,
    signing_headers,
)
from worker.delivery.transport import WebhookTransport
from worker.runtime.asgi import AsgiServer

CLIENT_ID = "outbox client:1"
SECRET = "s3cr3t/+&=: with space"  # characters that form-urlencoding must take care of

# status, body (a dict is sent as JSON), delay in seconds before answering
Answer = tuple[int, dict[str, Any] | bytes, float]


@dataclass
class TokenServer:
    """A token endpoint: records each request, answers with `answer(request_number)`."""

    answer: Callable[[int], Answer] = lambda n: (200, {"access_token": f"token-{n}", "token_type": "Bearer"}, 0.0)
    requests: list[tuple[Headers, dict[str, list[str]], str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = (await request.body()).decode()
        number = len(self.requests)
        self.requests.append((request.headers, parse_qs(body, keep_blank_values=True), request.method, scope["path"]))
        status, document, delay = self.answer(number)
        if delay:
            await asyncio.sleep(delay)
        response: Response
        if isinstance(document, bytes):
            response = Response(document, status_code=status, headers={"Content-Type": "text/plain"})
        else:
            response = JSONResponse(document, status_code=status)
        await response(scope, receive, send)


@pytest.fixture
async def server() -> AsyncIterator[TokenServer]:
    token_server = TokenServer()
    http = AsgiServer(token_server.handle)
    await http.start("127.0.0.1", 0)
    token_server.url = f"http://127.0.0.1:{http.port}/oauth/token"
    yield token_server
    await http.stop()


@pytest.fixture
async def transport() -> AsyncIterator[WebhookTransport]:
    webhook_transport = WebhookTransport()
    yield webhook_transport
    await webhook_transport.aclose()


def credentials(
    server: TokenServer, scope: str | None = "notificaties openid", **kwargs: Any
) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(server.url, CLIENT_ID, SECRET, scope, **kwargs)


# -- OAuth 2.0 client credentials ----------------------------------------------------------------


async def test_token_request_is_a_client_credentials_grant_with_basic_auth(
    server: TokenServer, transport: WebhookTransport
) -> None:
    oauth = credentials(server)
    assert await oauth.authorization(transport.handle_async_request) == "Bearer token-0"
    [(headers, form, method, path)] = server.requests
    assert (method, path) == ("POST", "/oauth/token")
    scheme, _, encoded = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert ":" not in user and " " not in password, "id and secret are form-urlencoded before Basic (RFC 6749 §2.3.1)"
    assert (unquote_plus(user), unquote_plus(password)) == (CLIENT_ID, SECRET)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json"
    assert form == {"grant_type": ["client_credentials"], "scope": ["notificaties openid"]}
    assert "client_secret" not in form and SECRET not in str(form)


async def test_without_scope_only_the_grant_type_is_sent(server: TokenServer) -> None:
    async with httpx.AsyncClient() as client:
        assert await credentials(server, scope=None).authorization(client.send) == "Bearer token-0"
    assert server.requests[0][1] == {"grant_type": ["client_credentials"]}


async def test_a_streaming_transport_works_too(server: TokenServer) -> None:
    async with httpx.AsyncHTTPTransport() as plain:  # its answers arrive unread
        assert await credentials(server).authorization(plain.handle_async_request) == "Bearer token-0"
    assert server.requests[0][0]["Accept"] == "application/json"


async def test_the_token_is_cached_until_shortly_before_it_expires(
    server: TokenServer, transport: WebhookTransport
) -> None:
    server.answer = lambda n: (200, {"access_token": f"token-{n}", "token_type": "bearer", "expires_in": 100}, 0.0)
    oauth = credentials(server)
    send = transport.handle_async_request
    assert await oauth.authorization(send, now=1000.0) == "Bearer token-0"
    assert await oauth.authorization(send, now=1000.0) == "Bearer token-0"
    assert await oauth.authorization(send, now=1089.9) == "Bearer token-0", "kept for expires_in minus 10 %"
    assert len(server.requests) == 1
    assert await oauth.authorization(send, now=1090.1) == "Bearer token-1", "renewed before it expires"
    assert len(server.requests) == 2


async def test_a_token_that_expires_at_once_is_fetched_each_time(server: TokenServer) -> None:
    server.answer = lambda n: (200, {"access_token": f"token-{n}", "token_type": "Bearer", "expires_in": 0}, 0.0)
    oauth = credentials(server)
    async with httpx.AsyncClient() as client:
        assert await oauth.authorization(client.send) == "Bearer token-0"
        assert await oauth.authorization(client.send) == "Bearer token-1"


@pytest.mark.parametrize(
    ("expires_in", "kept"),
    [(3600, 3570.0), ("3600", 3570.0), (100, 90.0), (10, 9.0), (None, 300.0), ("soon", 300.0), (True, 300.0)],
)
def test_token_lifetime(expires_in: object, kept: float) -> None:
    assert _lifetime(expires_in) == pytest.approx(kept)


async def test_many_callers_at_once_make_one_token_request(server: TokenServer, transport: WebhookTransport) -> None:
    server.answer = lambda n: (200, {"access_token": f"token-{n}", "token_type": "Bearer"}, 0.2)
    oauth = credentials(server)
    answers = await asyncio.gather(*(oauth.authorization(transport.handle_async_request) for _ in range(50)))
    assert set(answers) == {"Bearer token-0"}
    assert len(server.requests) == 1


async def test_invalidate_after_401s_fetches_exactly_one_new_token(
    server: TokenServer, transport: WebhookTransport
) -> None:
    server.answer = lambda n: (200, {"access_token": f"token-{n}", "token_type": "Bearer"}, 0.1)
    oauth = credentials(server)
    send = transport.handle_async_request
    old = await oauth.authorization(send)

    async def refused_then_retry() -> str:  # what the sender does on a 401
        oauth.invalidate(old)
        return await oauth.authorization(send)

    assert set(await asyncio.gather(*(refused_then_retry() for _ in range(20)))) == {"Bearer token-1"}
    assert len(server.requests) == 2
    oauth.invalidate(old)  # a late 401 for the old token must not drop the new one
    oauth.invalidate("Bearer token-0")
    assert await oauth.authorization(send) == "Bearer token-1"
    oauth.invalidate("token-1")  # the bare token works as well as the header value
    assert await oauth.authorization(send) == "Bearer token-2"
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("status", "document", "message"),
    [
        (
            401,
            {"error": "invalid_client", "error_description": f"bad secret {SECRET}"},
            "OAuth2 token endpoint answered 401 (invalid_client)",
        ),
        (400, {"error": "invalid_scope"}, "OAuth2 token endpoint answered 400 (invalid_scope)"),
        (400, {"error": "bad\nerror"}, "OAuth2 token endpoint answered 400"),
        (500, b"Internal Server Error", "OAuth2 token endpoint answered 500"),
        (302, b"", "OAuth2 token endpoint answered 302"),
        (200, {"token_type": "Bearer", "expires_in": 60}, "OAuth2 token endpoint answer has no access_token"),
        (200, {"access_token": "", "token_type": "Bearer"}, "OAuth2 token endpoint answer has no access_token"),
        (
            200,
            {"access_token": "the-token", "token_type": "mac"},
            "OAuth2 token endpoint gave token_type 'mac', not Bearer",
        ),
        (200, {"access_token": "the-token"}, "OAuth2 token endpoint gave token_type none, not Bearer"),
        (
            200,
            {"access_token": "the token", "token_type": "Bearer"},
            "OAuth2 token endpoint gave an access_token that cannot go in a header",
        ),
        (200, b"access_token=the-token&token_type=bearer", "OAuth2 token endpoint answer is not a JSON object"),
        (200, ["the-token"], "OAuth2 token endpoint answer is not a JSON object"),
    ],
)
async def test_error_answers_raise_without_secret_or_token(
    server: TokenServer, transport: WebhookTransport, status: int, document: Any, message: str
) -> None:
    server.answer = lambda n: (status, document, 0.0)
    oauth = credentials(server)
    with pytest.raises(CredentialsError) as caught:
        await oauth.authorization(transport.handle_async_request)
    assert str(caught.value) == message
    chained = caught.value.__cause__ or (None if caught.value.__suppress_context__ else caught.value.__context__)
    assert chained is None, "no chained exception carrying the request or the answer text"
    assert SECRET not in str(caught.value) and "the-token" not in str(caught.value)
    assert len(server.requests) == 1


async def test_a_failure_is_shared_by_the_waiters_and_not_cached(server: TokenServer) -> None:
    server.answer = lambda n: (
        (503, {"error": "temporarily_unavailable"}, 0.1)
        if n == 0
        else (
            200,
            {"access_token": "token-after", "token_type": "Bearer"},
            0.0,
        )
    )
    oauth = credentials(server)
    async with httpx.AsyncClient() as client:
        outcomes = await asyncio.gather(*(oauth.authorization(client.send) for _ in range(10)), return_exceptions=True)
        assert all(isinstance(outcome, CredentialsError) for outcome in outcomes), outcomes
        assert {str(outcome) for outcome in outcomes} == {
            "OAuth2 token endpoint answered 503 (temporarily_unavailable)"
        }
        assert len(server.requests) == 1, "the waiters took the failure, not ten requests to a failing endpoint"
        assert await oauth.authorization(client.send) == "Bearer token-after"
    assert len(server.requests) == 2


async def test_a_cancelled_fetch_lets_the_waiters_fetch(server: TokenServer, transport: WebhookTransport) -> None:
    server.answer = lambda n: (200, {"access_token": f"token-{n}", "token_type": "Bearer"}, 0.3 if n == 0 else 0.0)
    oauth = credentials(server)
    first = asyncio.create_task(oauth.authorization(transport.handle_async_request))
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(oauth.authorization(transport.handle_async_request))
    await asyncio.sleep(0.05)
    first.cancel()
    assert await waiter == "Bearer token-1"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_bearer_is_case_insensitive(server: TokenServer, transport: WebhookTransport) -> None:
    server.answer = lambda n: (200, {"access_token": "abc.def-ghi_~+/=", "token_type": "BEARER"}, 0.0)
    assert await credentials(server).authorization(transport.handle_async_request) == "Bearer abc.def-ghi_~+/="


async def test_a_slow_token_endpoint_times_out(server: TokenServer, transport: WebhookTransport) -> None:
    server.answer = lambda n: (200, {"access_token": "late", "token_type": "Bearer"}, 2.0)
    oauth = credentials(server, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(CredentialsError, match=r"^OAuth2 token endpoint did not answer in time \(ReadTimeout\)$"):
        await oauth.authorization(transport.handle_async_request)
    assert time.monotonic() - started < 1.5


async def test_an_unreachable_token_endpoint(transport: WebhookTransport) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    oauth = OAuth2ClientCredentials(f"http://127.0.0.1:{port}/token", CLIENT_ID, SECRET, None)
    with pytest.raises(CredentialsError) as raised:
        await oauth.authorization(transport.handle_async_request)
    assert str(raised.value).startswith("OAuth2 token endpoint could not be reached (ConnectError: cannot connect")
    assert SECRET not in str(raised.value)


async def test_an_answer_cut_off_by_the_transport_says_so(server: TokenServer) -> None:
    server.answer = lambda n: (200, {"access_token": "x" * 5000, "token_type": "Bearer"}, 0.0)
    small = WebhookTransport(max_body=4096)  # what the sender keeps of a webhook answer
    try:
        with pytest.raises(CredentialsError, match=r"cut off after 4096 bytes"):
            await credentials(server).authorization(small.handle_async_request)
    finally:
        await small.aclose()
    large = WebhookTransport(max_body=64 * 1024)
    try:
        assert await credentials(server).authorization(large.handle_async_request) == "Bearer " + "x" * 5000
    finally:
        await large.aclose()


def test_oauth2_repr_has_no_secret() -> None:
    oauth = OAuth2ClientCredentials("https://auth.example.nl/token", CLIENT_ID, SECRET, "a b")
    assert SECRET not in repr(oauth) and CLIENT_ID in repr(oauth)
    assert base64.b64encode(SECRET.encode()).decode()[:8] not in repr(oauth)


# -- ZGW JWT ---------------------------------------------------------------------------------------


def decode(token: str, secret: str, **options: Any) -> dict[str, Any]:
    """PyJWT's decode, quiet about short keys (they are what ZGW APIs use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"], **options)
    return claims


def test_zgw_jwt_is_what_the_zgw_apis_check() -> None:
    zgw = ZgwJwt("open-notificaties", "short secret")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # short secrets are common: signing with one must not warn
        authorization = zgw.authorization(now=1_700_000_000.7)
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = decode(token, "short secret", options={"verify_iat": False})
    assert claims == {
        "iss": "open-notificaties",
        "iat": 1_700_000_000,
        "client_id": "open-notificaties",
        "user_id": "",
        "user_representation": "",
    }
    with pytest.raises(jwt.InvalidSignatureError):
        decode(token, "another secret", options={"verify_iat": False})


def test_zgw_jwt_now_by_default_decodes_with_iat_checks() -> None:
    token = ZgwJwt("client", "a" * 40).authorization().removeprefix("Bearer ")
    claims = decode(token, "a" * 40, leeway=5)
    assert abs(claims["iat"] - time.time()) < 5


def test_zgw_jwt_is_reused_for_a_minute_then_renewed() -> None:
    zgw = ZgwJwt("client", "secret")
    first = zgw.authorization(now=1000.0)
    assert zgw.authorization(now=1059.9) == first
    renewed = zgw.authorization(now=1060.0)
    assert renewed != first
    claims = decode(renewed.removeprefix("Bearer "), "secret", options={"verify_iat": False})
    assert claims["iat"] == 1060
    assert zgw.authorization(now=1000.0) != renewed, "a clock that went back signs anew"


def test_zgw_repr_has_no_secret() -> None:
    assert "hush" not in repr(ZgwJwt("client", "hush")) and "client" in repr(ZgwJwt("client", "hush"))


# -- Standard Webhooks signing ---------------------------------------------------------------------

BODY = json.dumps({"specversion": "1.0", "id": "e1", "data": {"naam": "Zoë"}}, ensure_ascii=False).encode()


def test_signatures_verify_with_the_reference_library_for_both_rotation_secrets() -> None:
    new, old, other = new_signing_secret(), new_signing_secret(), new_signing_secret()
    timestamp = int(time.time())
    headers = signing_headers([new, old], "msg_1", timestamp, BODY)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(timestamp)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert Webhook(new).verify(BODY, headers) == json.loads(BODY)
    assert Webhook(old).verify(BODY, headers) == json.loads(BODY)
    assert signatures[0] == signing_headers([new], "msg_1", timestamp, BODY)["webhook-signature"], "new first"
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(BODY, {**headers, "webhook-id": "msg_2"})


def test_a_signer_signs_many_messages_with_its_keys_prepared_once() -> None:
    secret = new_signing_secret()
    signer = WebhookSigner([secret])
    now = int(time.time())
    for number in range(3):
        body = BODY + str(number).encode()
        headers = signer.headers(f"msg_{number}", now, body)
        Webhook(secret).verify(body, headers, json_parse=False)
        assert headers == signing_headers([secret], f"msg_{number}", now, body)
    assert secret not in repr(signer) and secret[6:] not in repr(SigningKey.from_secret(secret))


def test_a_known_signature() -> None:
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = signing_headers([secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_unpadded_secrets_are_accepted() -> None:
    key = bytes(range(32))
    padded = "whsec_" + base64.b64encode(key).decode()
    assert padded.endswith("=")
    unpadded = padded.rstrip("=")
    assert check_signing_secret(unpadded) is None
    now = int(time.time())
    assert signing_headers([unpadded], "m", now, BODY) == signing_headers([padded], "m", now, BODY)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_",
        "whsec_" + base64.b64encode(b"k" * 23).decode(),  # too short
        "whsec_" + base64.b64encode(b"k" * 65).decode(),  # too long
        "whsec_not base64 at all!!!!!!!!!!!!!!!",
        "whsec_" + base64.urlsafe_b64encode(b"\xfb" * 30).decode(),  # the URL-safe alphabet is not base64
    ],
)
def test_bad_signing_secrets(value: str) -> None:
    problem = check_signing_secret(value)
    assert problem == "must be whsec_ followed by base64 of 24 to 64 bytes"
    with pytest.raises(ValueError, match="signing secret") as caught:
        WebhookSigner([value])
    assert not value[6:] or value[6:] not in str(caught.value)


def test_good_signing_secrets() -> None:
    assert check_signing_secret("whsec_" + base64.b64encode(b"k" * 24).decode()) is None
    assert check_signing_secret("whsec_" + base64.b64encode(b"k" * 64).decode()) is None
    made = {new_signing_secret() for _ in range(20)}
    assert len(made) == 20
    for secret in made:
        assert check_signing_secret(secret) is None
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_signer_refuses_misuse() -> None:
    with pytest.raises(TypeError):
        WebhookSigner(new_signing_secret())
    with pytest.raises(ValueError, match="at least one"):
        WebhookSigner([])
    signer = WebhookSigner([new_signing_secret()])
    for message_id in ("", "a\r\nX-Injected: 1", "zoë"):
        with pytest.raises(ValueError, match="message id"):
            signer.headers(message_id, 1, b"")
