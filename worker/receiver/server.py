"""`outbox receiver`: a reference receiver for the webhook side of the NL GOV CloudEvents guideline, and
a conformance checker for whoever sends to it.

It answers like a normal receiver and, on the side, checks every rule it can see on the wire (the
catalogue is `worker.conformance.RULES`) and records each violation with the request it came from.

OPTIONS *          the abuse-protection handshake: WebHook-Allowed-Origin (and -Rate) when the request
                   carries WebHook-Request-Origin, 400 without it, 403 for an origin not allowed
POST *             a delivery: authentication (401), the three content modes (415 for what is not a
                   CloudEvent or not JSON, 400 for a broken event), then `answer` (204)
POST /oauth/token  an OAuth2 client-credentials token endpoint (when oauth_client_id is configured)
GET /events        what arrived, in order        GET /violations   what broke a rule, in order
GET /redeliveries  events seen more than once    GET /handshakes   the OPTIONS requests answered
other methods      405, recorded (deliveries are POSTs)
Bind it to 127.0.0.1: the GET endpoints are for the demo and tests.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import ssl
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.receiver import conformance as rules
from worker.receiver.conformance import Problem
from worker.runtime import asgi

REFUSED = frozenset({"auth.static", "auth.oauth2", "auth.jwt", "auth.signature", "auth.bearer-scheme"})
MAX_BODY = 1024**2  # a larger body is refused with 413 (what aiohttp, the receiver's first server, did)


@dataclass
class ReceiverConfig:
    auth: str | None = None  # the Authorization value to expect; None accepts any
    allowed_origin: str = "*"  # the origin the handshake allows; "*" allows every origin
    allowed_rate: str | None = None  # WebHook-Allowed-Rate to answer; None echoes the asked rate (or "*")
    answer: int = 204  # the status of an accepted delivery
    answers: list[int] = field(default_factory=list)  # answered first, one per delivery, before `answer`
    retry_after: int = 1  # the Retry-After (seconds) of a 429 answer
    quiet: bool = False
    accept_batch: bool = True  # False: only the JSON format is supported, a batch is refused (415)
    require_https: bool = False  # a delivery over plain HTTP is a violation
    require_handshake: bool = False  # a delivery to a path without a handshake first is a violation
    grace: float = 0.5  # requests this soon after a 429/410 were already on their way: not violations
    oauth_client_id: str | None = None  # set with oauth_client_secret: deliveries need a token of /oauth/token
    oauth_client_secret: str | None = field(default=None, repr=False)
    oauth_token_lifetime: int = 3600
    jwt_client_id: str | None = None  # ZGW JWT: the client_id claim to expect
    jwt_secret: str | None = field(default=None, repr=False)  # set: deliveries need a Bearer HS256 JWT
    jwt_leeway: float = 60.0  # clock skew allowed on iat (seconds)
    jwt_max_age: float = 3600.0  # how old iat may be (seconds)
    webhook_secret: str | None = field(default=None, repr=False)  # set: Standard Webhooks signatures required
    # what happened
    received: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    redelivered: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (path, source, id) → repeats
    tokens: dict[str, float] = field(default_factory=dict, repr=False)  # issued token → expiry (epoch)
    requests: int = 0
    _seen: dict[tuple[str, str, str], str] = field(default_factory=dict, repr=False)
    _agreed_rate: dict[str, int] = field(default_factory=dict, repr=False)  # path → allowed per minute
    _arrivals: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _told: dict[str, tuple[int, float, float]] = field(default_factory=dict, repr=False)  # 429/410, when, until

    def rule_ids(self) -> list[str]:
        """The rules violated so far, in order, each once."""
        return list(dict.fromkeys(v["rule"] for v in self.violations))


def _record(config: ReceiverConfig, request: dict[str, Any], problems: list[Problem]) -> None:
    for problem in problems:
        rule = rules.RULES[problem.rule]
        config.violations.append(
            {
                "rule": problem.rule,
                "level": rule.level,
                "section": rule.section,
                "rule_text": rule.text,
                "text": problem.text,
                "request": request,
                "at": time.time(),
            }
        )
        if not config.quiet:
            print(json.dumps({"violation": problem.rule, "text": problem.text, "request": request}), flush=True)


class RawHeaders(Headers):
    """A request's header fields as sent, repeats included, with values decoded as UTF-8 (undecodable octets
    kept as surrogates): the conformance checks judge what the sender wrote, where Starlette reads Latin-1.
    Names are lower case (as uvicorn gives them)."""

    def _decoded(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for k, v in self.raw]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return self._decoded()

    def values(self) -> list[str]:  # type: ignore[override]
        return [v for _, v in self._decoded()]

    def getlist(self, key: str) -> list[str]:
        wanted = key.lower()
        return [v for k, v in self._decoded() if k == wanted]

    def __getitem__(self, key: str) -> str:
        found = self.getlist(key)
        if not found:
            raise KeyError(key)
        return found[0]


def _headers(request: Request) -> RawHeaders:
    return RawHeaders(scope=request.scope)


def _path(request: Request) -> str:
    return str(request.scope["path"])


def _peer_subject(request: Request) -> str | None:
    """The TLS client certificate's subject as RFC 4514-ish text, e.g. "CN=outbox,O=Gemeente"."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    name = tls.get("client_cert_name")
    return str(name) if name else None


def _request_info(config: ReceiverConfig, request: Request) -> dict[str, Any]:
    config.requests += 1
    peer = request.client.host if request.client else None
    return {"n": config.requests, "method": request.method, "path": _path(request), "peer": peer}


async def _read(request: Request) -> bytes | Response:
    """The body, or a 413 answer past MAX_BODY."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) >= MAX_BODY:
            return PlainTextResponse(f"Maximum request body size {MAX_BODY} exceeded.", status_code=413)
    return bytes(body)


def _form(request: Request, body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body's fields (the first of each); {} for other types."""
    media, *params = request.headers.get("Content-Type", "").split(";")
    if media.strip().lower() != "application/x-www-form-urlencoded" or not body:
        return {}
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"') or charset
    fields = parse_qsl(body.rstrip().decode(charset), keep_blank_values=True, encoding=charset)
    return dict(reversed(fields))


def _sender_behaviour(config: ReceiverConfig, request: Request, now: float) -> list[Problem]:
    """What the sender was told before: handshake, allowed rate, 429 Retry-After, 410 Gone."""
    found: list[Problem] = []
    path = _path(request)
    if config.require_https and request.scope["scheme"] != "https":
        found.append(Problem("webhook.https", "a delivery over plain HTTP"))
    if not _headers(request).get("User-Agent"):
        found.append(Problem("http.user-agent", "no User-Agent header"))
    if config.require_handshake and not any(h["path"] == path and h["status"] == 200 for h in config.handshakes):
        found.append(Problem("handshake.missing", f"a delivery to {path} without an OPTIONS handshake before it"))
    arrivals = config._arrivals.setdefault(path, deque())
    arrivals.append(now)
    while arrivals and arrivals[0] <= now - 60.0:
        arrivals.popleft()
    rate = config._agreed_rate.get(path)
    if rate is not None and len(arrivals) > rate + max(1, rate // 60):  # one second's burst is fair pacing
        found.append(Problem("webhook.rate", f"{len(arrivals)} requests to {path} within 60 s; {rate}/min allowed"))
    status, told_at, until = config._told.get(path, (0, 0.0, 0.0))
    if status == 429 and told_at + config.grace <= now < until:
        found.append(Problem("webhook.retry-after", f"{until - now:.1f} s before the Retry-After of a 429 ended"))
    if status == 410 and told_at + config.grace <= now:
        found.append(Problem("webhook.gone", f"a delivery to {path} after it answered 410 Gone"))
    return found


def _authenticate(config: ReceiverConfig, request: Request, body: bytes, now: float) -> list[Problem]:
    found: list[Problem] = []
    tokens = request.query_params.getlist("access_token")
    header, query = _headers(request).get("Authorization"), tokens[0] if tokens else None
    if header is None and query is None:
        found.append(Problem("auth.present", "no Authorization header and no access_token query parameter"))
    if query is not None:
        found.append(Problem("auth.query-token", "the access token is in the URI query"))
    credential = header if header is not None else f"Bearer {query}" if query is not None else ""
    scheme, _, token = credential.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if config.auth is not None and not hmac.compare_digest(credential.encode(), config.auth.encode()):
        found.append(Problem("auth.static", "the Authorization value is not the agreed one"))
    if (config.oauth_client_id or config.jwt_secret) and credential and scheme.lower() != "bearer":
        found.append(Problem("auth.bearer-scheme", f"the Authorization scheme is {scheme!r}, not Bearer"))
    if config.oauth_client_id is not None:
        expiry = config.tokens.get(token)
        if expiry is None:
            found.append(Problem("auth.oauth2", "not a bearer token issued by /oauth/token"))
        elif expiry <= now:
            found.append(Problem("auth.oauth2", "the bearer token expired"))
    if config.jwt_secret is not None:
        problem = _jwt_problem(config, token, now)
        if problem:
            found.append(Problem("auth.jwt", problem))
    if config.webhook_secret is not None:
        from standardwebhooks.webhooks import Webhook  # a dev dependency: imported only when asked for

        try:
            Webhook(config.webhook_secret).verify(body, dict(_headers(request)), json_parse=False)
        except Exception as exc:  # the library raises several kinds on malformed headers
            found.append(Problem("auth.signature", f"the Standard Webhooks signature does not verify ({exc})"))
    return found


def _jwt_problem(config: ReceiverConfig, token: str, now: float) -> str | None:
    import jwt
    from jwt.warnings import InsecureKeyLengthWarning

    if not token:
        return "no Bearer JWT"
    try:
        with warnings.catch_warnings():  # ZGW secrets are often short; that is the client's choice
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            claims = jwt.decode(
                token,
                config.jwt_secret or "",
                algorithms=["HS256"],
                leeway=config.jwt_leeway,
                options={"require": ["iat"], "verify_aud": False},
            )
    except jwt.PyJWTError as exc:
        return f"the JWT does not verify ({exc})"
    client_id = claims.get("client_id")
    if not client_id:
        return "the JWT has no client_id claim"
    if config.jwt_client_id is not None and client_id != config.jwt_client_id:
        return f"the JWT's client_id {client_id!r} is not {config.jwt_client_id!r}"
    iat = claims["iat"]
    if not isinstance(iat, int | float) or iat < now - config.jwt_max_age - config.jwt_leeway:
        return f"the JWT's iat {iat!r} is too old"
    return None


def _events(
    config: ReceiverConfig, request: Request, body: bytes
) -> tuple[str, list[dict[str, Any]], int, list[Problem]]:
    """The mode, the events, the status to refuse with (0 = acceptable) and the problems seen."""
    headers = _headers(request)
    content_type = headers.get("Content-Type", "")
    mode, media = rules.mode_of(content_type), rules.media_type(content_type)
    if mode == "structured":
        if media != rules.STRUCTURED:
            return mode, [], 415, [Problem("structured.format", f"event format {media}: only JSON is supported")]
        parsed, error = rules.parse_json(body)
        if not isinstance(parsed, dict):
            return mode, [], 400, [Problem("structured.body", error or "the body is not a JSON object")]
        return mode, [parsed], 0, rules.check_event(parsed)
    if mode == "batched":
        if media != rules.BATCHED:
            return mode, [], 415, [Problem("batch.content-type", f"{media} is not {rules.BATCHED}")]
        if not config.accept_batch:
            return mode, [], 415, [Problem("batch.unsolicited", "a batch, but only the JSON format is supported")]
        parsed, error = rules.parse_json(body)
        found = [Problem("batch.body", error)] if error else rules.check_batch(parsed)
        events = [e for e in parsed if isinstance(e, dict)] if isinstance(parsed, list) else []
        return mode, events, 0, found
    event, found = rules.binary_event(headers, body)
    if event is None:
        return mode, [], 415, found
    return mode, [event], 0, found


def _remember(config: ReceiverConfig, path: str, event: dict[str, Any]) -> list[Problem]:
    """At least once: a repeat of (source, id) is a redelivery, unless the event differs."""
    key = (path, str(event.get("source")), str(event.get("id")))
    fingerprint = json.dumps(event, sort_keys=True, default=str)
    if key not in config._seen:
        config._seen[key] = fingerprint
        return []
    config.redelivered[key] = config.redelivered.get(key, 0) + 1
    if config._seen[key] != fingerprint:
        return [Problem("event.id-unique", f"source {key[1]!r} id {key[2]!r} came again with other content")]
    return []


def make_app(config: ReceiverConfig) -> ASGIApp:
    """The receiver as an ASGI app; serve it with `serve`, or `worker.runtime.asgi.AsgiServer` in a test's loop."""

    async def options(request: Request) -> Response:
        info = _request_info(config, request)
        headers = _headers(request)
        problems = rules.check_handshake(headers)
        if not headers.get("User-Agent"):
            problems.append(Problem("http.user-agent", "no User-Agent header"))
        _record(config, info, problems)
        origin = headers.get("WebHook-Request-Origin", "").strip()
        answer: dict[str, str] = {}
        path = _path(request)
        if not origin:
            status = 400
        elif config.allowed_origin not in ("*", origin):
            status = 403
        else:
            asked = headers.get("WebHook-Request-Rate", "").strip()
            rate = config.allowed_rate or (asked if asked.isdigit() and int(asked) > 0 else "*")
            status = 200
            answer = {"Allow": "POST, OPTIONS", "WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": rate}
            if rate.isdigit():
                config._agreed_rate[path] = int(rate)
            else:
                config._agreed_rate.pop(path, None)
        config.handshakes.append({"path": path, "origin": origin, "status": status, "request": info})
        if status == 200:
            return _empty(status, answer)
        return PlainTextResponse("handshake refused\n", status_code=status)

    async def post(request: Request) -> Response:
        now = time.time()
        info = _request_info(config, request)
        body = await _read(request)
        if isinstance(body, Response):
            return body
        path = _path(request)
        problems = _sender_behaviour(config, request, now)
        auth_problems = _authenticate(config, request, body, now)
        mode, events, refuse, found = _events(config, request, body)
        info.update(mode=mode, events=[e.get("id") for e in events], client_cert=_peer_subject(request))
        if any(p.rule in REFUSED for p in auth_problems):
            _record(config, info, problems + auth_problems)
            return PlainTextResponse("missing or wrong credentials\n", status_code=401)
        if not refuse and any(rules.is_must(p.rule) for p in found):
            refuse = 400
        if not refuse:
            for event in events:
                found += _remember(config, path, event)
        _record(config, info, problems + auth_problems + found)
        if refuse:
            return PlainTextResponse("".join(f"{p.text}\n" for p in found), status_code=refuse)
        status = config.answers.pop(0) if config.answers else config.answer
        headers = {"Retry-After": str(config.retry_after)} if status == 429 else {}
        if status in (429, 410):
            config._told[path] = (status, now, now + config.retry_after if status == 429 else float("inf"))
        elif 200 <= status < 300:
            config._told.pop(path, None)
        for event in events:
            entry = {"mode": mode, "arrived": now, "event": event, "status": status, "request": info["n"]}
            config.received.append({**entry, "client_cert": info["client_cert"]})
            if not config.quiet:
                line = {"received": event.get("id"), "type": event.get("type"), "subject": event.get("subject")}
                print(json.dumps({**line, "mode": mode, "status": status}), flush=True)
        return _empty(status, headers)

    async def token(request: Request) -> Response:
        info = _request_info(config, request)
        if config.oauth_client_id is None:
            return _json({"error": "no token endpoint configured"}, status=404)
        body = await _read(request)
        if isinstance(body, Response):
            return body
        form = _form(request, body)
        scheme, _, encoded = _headers(request).get("Authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
            # RFC 6749 §2.3.1: both are form-urlencoded before they are joined.
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        except (binascii.Error, UnicodeDecodeError):
            client_id = secret = ""
        wanted = f"{config.oauth_client_id}:{config.oauth_client_secret or ''}".encode()
        if scheme.lower() != "basic" or not hmac.compare_digest(f"{client_id}:{secret}".encode(), wanted):
            _record(config, info, [Problem("oauth.client", "the token request has no or wrong HTTP Basic client")])
            headers = {"WWW-Authenticate": 'Basic realm="token"'}
            return _json({"error": "invalid_client"}, status=401, headers=headers)
        if form.get("grant_type") != "client_credentials":
            _record(config, info, [Problem("oauth.grant-type", f"grant_type is {form.get('grant_type')!r}")])
            return _json({"error": "unsupported_grant_type"}, status=400)
        issued = secrets.token_urlsafe(32)
        config.tokens[issued] = time.time() + config.oauth_token_lifetime
        document = {"access_token": issued, "token_type": "Bearer", "expires_in": config.oauth_token_lifetime}
        return _json(document, headers={"Cache-Control": "no-store"})

    async def other(request: Request) -> Response:
        _record(config, _request_info(config, request), [Problem("webhook.post", f"{request.method}, not POST")])
        return _empty(405, {"Allow": "POST, OPTIONS"})

    def redeliveries() -> list[dict[str, Any]]:
        return [{"path": p, "source": s, "id": i, "count": n} for (p, s, i), n in config.redelivered.items()]

    listings: dict[str, Callable[[], Any]] = {
        "/events": lambda: config.received,
        "/violations": lambda: config.violations,
        "/handshakes": lambda: config.handshakes,
        "/redeliveries": redeliveries,
    }

    async def dispatch(request: Request) -> Response:
        method, path = request.method, _path(request)
        if method in ("GET", "HEAD") and path in listings:
            return _json(listings[path]())
        if method == "POST" and path == "/oauth/token":
            return await token(request)
        if method == "OPTIONS":
            return await options(request)
        if method == "POST":
            return await post(request)
        return await other(request)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # No router: every path takes deliveries and every method is answered (405 is recorded), so the
        # method picks the handler; only a few paths are special.
        response = await dispatch(Request(scope, receive))
        await response(scope, receive, send)

    return app


def _empty(status: int, headers: dict[str, str]) -> Response:
    return Response(status_code=status, headers=headers)


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # json.dumps' own separators, as before (JSONResponse writes compact JSON).
    body = json.dumps(document)
    return Response(body, status_code=status, headers=headers, media_type="application/json; charset=utf-8")


def tls_context(certfile: str, keyfile: str | None = None, client_ca: str | None = None) -> ssl.SSLContext:
    """A server TLS context; with client_ca, a client certificate signed by it is required (mTLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def serve(host: str, port: int, config: ReceiverConfig, ssl_context: ssl.SSLContext | None = None) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn, no access log)."""
    scheme = "https" if ssl_context else "http"
    print(f"receiver listening on {scheme}://{host}:{port}/", file=sys.stderr, flush=True)
    asgi.run(make_app(config), host, port, ssl_context=ssl_context)
