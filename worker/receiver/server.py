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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from worker.receiver import conformance as rules
from worker.receiver.conformance import Problem

REFUSED = frozenset({"auth.static", "auth.oauth2", "auth.jwt", "auth.signature", "auth.bearer-scheme"})


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


def _peer_subject(request: web.Request) -> str | None:
    """The TLS client certificate's subject as RFC 4514-ish text, e.g. "CN=outbox,O=Gemeente"."""
    transport = request.transport
    peercert = transport.get_extra_info("peercert") if transport is not None else None
    if not peercert:
        return None
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    parts = [f"{short.get(k, k)}={v}" for rdn in peercert.get("subject", ()) for k, v in rdn]
    return ",".join(reversed(parts)) or None


def _request_info(config: ReceiverConfig, request: web.Request) -> dict[str, Any]:
    config.requests += 1
    return {"n": config.requests, "method": request.method, "path": request.path, "peer": request.remote}


def _sender_behaviour(config: ReceiverConfig, request: web.Request, now: float) -> list[Problem]:
    """What the sender was told before: handshake, allowed rate, 429 Retry-After, 410 Gone."""
    found: list[Problem] = []
    path = request.path
    if config.require_https and not request.secure:
        found.append(Problem("webhook.https", "a delivery over plain HTTP"))
    if not request.headers.get("User-Agent"):
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


def _authenticate(config: ReceiverConfig, request: web.Request, body: bytes, now: float) -> list[Problem]:
    found: list[Problem] = []
    header, query = request.headers.get("Authorization"), request.query.get("access_token")
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
            Webhook(config.webhook_secret).verify(body, dict(request.headers), json_parse=False)
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
    config: ReceiverConfig, request: web.Request, body: bytes
) -> tuple[str, list[dict[str, Any]], int, list[Problem]]:
    """The mode, the events, the status to refuse with (0 = acceptable) and the problems seen."""
    content_type = request.headers.get("Content-Type", "")
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
    event, found = rules.binary_event(request.headers, body)
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


def make_app(config: ReceiverConfig) -> web.Application:
    async def options(request: web.Request) -> web.Response:
        info = _request_info(config, request)
        problems = rules.check_handshake(request.headers)
        if not request.headers.get("User-Agent"):
            problems.append(Problem("http.user-agent", "no User-Agent header"))
        _record(config, info, problems)
        origin = request.headers.get("WebHook-Request-Origin", "").strip()
        headers: dict[str, str] = {}
        if not origin:
            status = 400
        elif config.allowed_origin not in ("*", origin):
            status = 403
        else:
            asked = request.headers.get("WebHook-Request-Rate", "").strip()
            rate = config.allowed_rate or (asked if asked.isdigit() and int(asked) > 0 else "*")
            status = 200
            headers = {"Allow": "POST, OPTIONS", "WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": rate}
            if rate.isdigit():
                config._agreed_rate[request.path] = int(rate)
            else:
                config._agreed_rate.pop(request.path, None)
        config.handshakes.append({"path": request.path, "origin": origin, "status": status, "request": info})
        return web.Response(status=status, headers=headers, text=None if status == 200 else "handshake refused\n")

    async def post(request: web.Request) -> web.Response:
        now = time.time()
        info = _request_info(config, request)
        body = await request.read()
        problems = _sender_behaviour(config, request, now)
        auth_problems = _authenticate(config, request, body, now)
        mode, events, refuse, found = _events(config, request, body)
        info.update(mode=mode, events=[e.get("id") for e in events], client_cert=_peer_subject(request))
        if any(p.rule in REFUSED for p in auth_problems):
            _record(config, info, problems + auth_problems)
            return web.Response(status=401, text="missing or wrong credentials\n")
        if not refuse and any(rules.is_must(p.rule) for p in found):
            refuse = 400
        if not refuse:
            for event in events:
                found += _remember(config, request.path, event)
        _record(config, info, problems + auth_problems + found)
        if refuse:
            return web.Response(status=refuse, text="".join(f"{p.text}\n" for p in found))
        status = config.answers.pop(0) if config.answers else config.answer
        headers = {"Retry-After": str(config.retry_after)} if status == 429 else {}
        if status in (429, 410):
            config._told[request.path] = (status, now, now + config.retry_after if status == 429 else float("inf"))
        elif 200 <= status < 300:
            config._told.pop(request.path, None)
        for event in events:
            entry = {"mode": mode, "arrived": now, "event": event, "status": status, "request": info["n"]}
            config.received.append({**entry, "client_cert": info["client_cert"]})
            if not config.quiet:
                line = {"received": event.get("id"), "type": event.get("type"), "subject": event.get("subject")}
                print(json.dumps({**line, "mode": mode, "status": status}), flush=True)
        return web.Response(status=status, headers=headers)

    async def token(request: web.Request) -> web.Response:
        info = _request_info(config, request)
        if config.oauth_client_id is None:
            return web.json_response({"error": "no token endpoint configured"}, status=404)
        form = await request.post()
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
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
            return web.json_response({"error": "invalid_client"}, status=401, headers=headers)
        if form.get("grant_type") != "client_credentials":
            _record(config, info, [Problem("oauth.grant-type", f"grant_type is {form.get('grant_type')!r}")])
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        issued = secrets.token_urlsafe(32)
        config.tokens[issued] = time.time() + config.oauth_token_lifetime
        document = {"access_token": issued, "token_type": "Bearer", "expires_in": config.oauth_token_lifetime}
        return web.json_response(document, headers={"Cache-Control": "no-store"})

    async def other(request: web.Request) -> web.Response:
        _record(config, _request_info(config, request), [Problem("webhook.post", f"{request.method}, not POST")])
        return web.Response(status=405, headers={"Allow": "POST, OPTIONS"})

    def listing(items: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(items() if callable(items) else items)

        return handler

    def redeliveries() -> list[dict[str, Any]]:
        return [{"path": p, "source": s, "id": i, "count": n} for (p, s, i), n in config.redelivered.items()]

    app = web.Application()
    app.router.add_get("/events", listing(config.received))
    app.router.add_get("/violations", listing(config.violations))
    app.router.add_get("/handshakes", listing(config.handshakes))
    app.router.add_get("/redeliveries", listing(redeliveries))
    app.router.add_post("/oauth/token", token)
    app.router.add_route("OPTIONS", "/{tail:.*}", options)
    app.router.add_post("/{tail:.*}", post)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


def tls_context(certfile: str, keyfile: str | None = None, client_ca: str | None = None) -> ssl.SSLContext:
    """A server TLS context; with client_ca, a client certificate signed by it is required (mTLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def serve(host: str, port: int, config: ReceiverConfig, ssl_context: ssl.SSLContext | None = None) -> None:
    scheme = "https" if ssl_context else "http"
    print(f"receiver listening on {scheme}://{host}:{port}/", file=sys.stderr, flush=True)
    web.run_app(make_app(config), host=host, port=port, ssl_context=ssl_context, access_log=None, print=None)
