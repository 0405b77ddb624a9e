"""The reference receiver as a conformance checker: every rule it checks, over real HTTP on 127.0.0.1.

Conforming traffic (the three content modes as the HTTP binding writes them) records nothing; each
non-conforming request records its rule id and is answered as a normal receiver would."""

from __future__ import annotations

import base64
import json
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from worker.delivery.credentials import USER_AGENT
from worker.receiver.conformance import RULES
from worker.receiver.server import ReceiverConfig, make_app
from worker.runtime.asgi import AsgiServer

STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
UA = {"User-Agent": USER_AGENT}
AUTH = {"Authorization": "Bearer right", **UA}
JWT_SECRET = "zgw-secret-of-at-least-thirty-two-bytes!"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

Start = Callable[..., Awaitable[str]]


def event(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "specversion": "1.0",
        "type": "nl.overheid.zaken.zaak-gekoppeld",
        "source": "urn:nld:oin:00000001823288444000:systeem:openklant",
        "id": str(uuid.uuid4()),
        "time": "2025-10-10T12:00:00.123Z",
        "subject": "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
        "datacontenttype": "application/json",
        "dataref": "https://openklant.example.nl/onderwerpobjecten/1",
        "sequence": "1234",
        "sequencetype": "integer",
        "nlbrpnationaliteit": "0083",
        "data": {"zaak": "urn:uuid:a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"},
    }
    document.update(changes)
    return {k: v for k, v in document.items() if v is not ...}


def wire(mode: str, document: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The guideline's three content modes, written out here from the HTTP binding (1.0.2 percent-encoding)."""
    if mode == "structured":
        return {"Content-Type": STRUCTURED}, json.dumps(document).encode()
    if mode == "batched":
        return {"Content-Type": BATCHED}, json.dumps([document]).encode()
    attributes = dict(document)
    data = attributes.pop("data")
    headers = {f"ce-{k}": quote(str(v), safe="!#$&'()*+,/:;=?@[]^_`{|}~-.") for k, v in attributes.items()}
    headers["Content-Type"] = attributes["datacontenttype"]
    del headers["ce-datacontenttype"]
    return headers, json.dumps(data).encode()


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[AsgiServer] = []

    async def go(config: ReceiverConfig, ssl_context: ssl.SSLContext | None = None) -> str:
        config.quiet = True
        server = AsgiServer(make_app(config), ssl_context=ssl_context)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{server.port}"

    yield go
    for server in servers:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def post(
    client: httpx.AsyncClient, url: str, body: Any, content_type: str = STRUCTURED, **headers: str
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(url, content=content, headers={**AUTH, "Content-Type": content_type, **headers})


def rules_of(config: ReceiverConfig) -> list[str]:
    return [v["rule"] for v in config.violations]


# -- conforming traffic -------------------------------------------------------------------------------


async def test_the_workers_three_modes_and_handshake_record_no_violation(
    start: Start, client: httpx.AsyncClient
) -> None:
    config = ReceiverConfig(auth="Bearer right", require_handshake=True, allowed_rate="600")
    base = await start(config)
    shake = await client.options(
        f"{base}/hook", headers={"WebHook-Request-Origin": "outbox.gemeente.nl", "WebHook-Request-Rate": "120", **UA}
    )
    assert shake.status_code == 200
    assert shake.headers["WebHook-Allowed-Origin"] == "outbox.gemeente.nl"
    assert shake.headers["WebHook-Allowed-Rate"] == "600", "the configured rate, not the asked one"
    for mode in ("structured", "batched", "binary"):
        headers, body = wire(mode, event(subject='Zaak 12 "Zoë" 100%'))
        answer = await client.post(f"{base}/hook", headers={**headers, **AUTH}, content=body)
        assert answer.status_code == 204, (mode, answer.text)
    empty = await post(client, f"{base}/hook", b"[]", BATCHED)
    assert empty.status_code == 204, "a batch MAY be empty"
    assert config.violations == []
    assert [r["mode"] for r in config.received] == ["structured", "batched", "binary"]
    binary = config.received[2]["event"]
    assert binary["subject"] == 'Zaak 12 "Zoë" 100%'
    assert binary["data"] == event()["data"]
    assert (await client.get(f"{base}/violations")).json() == []


async def test_nulls_are_unset_and_data_base64_is_fine(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig()
    base = await start(config)
    document = event(subject=None, geheimnummer=None, data=..., data_base64="YWFwIG5vb3QgbWllcw==")
    answer = await post(client, f"{base}/hook", document, Authorization="Bearer any")
    assert answer.status_code == 204
    assert config.violations == []


# -- the event's attributes (structured mode) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "rule", "status"),
    [
        ({"specversion": "0.3"}, "event.specversion", 400),
        ({"id": ...}, "event.id", 400),
        ({"id": 17}, "event.id", 400),
        ({"source": ""}, "event.source", 400),
        ({"source": "urn:nld: spaced"}, "event.source", 400),
        ({"source": "openklant"}, "nlgov.source", 204),
        ({"type": ...}, "event.type", 400),
        ({"Bad_Name": "x"}, "event.attribute-name", 400),
        ({"averyveryverylongattribute": "x"}, "event.attribute-length", 204),
        ({"time": "yesterday"}, "event.time", 400),
        ({"time": "2025-13-40T00:00:00Z"}, "event.time", 400),
        ({"datacontenttype": "json please"}, "event.datacontenttype", 400),
        ({"datacontenttype": 5}, "event.datacontenttype", 400),
        ({"dataschema": "schemas/zaak.json"}, "event.dataschema", 400),
        ({"subject": ""}, "event.subject", 400),
        ({"data_base64": "YWFw"}, "event.data", 400),
        ({"data": ..., "data_base64": "not base64!"}, "event.data_base64", 400),
        ({"ext": 1.5}, "event.attribute-type", 400),
        ({"ext": 2**40}, "event.attribute-type", 400),
        ({"ext": {"nested": True}}, "event.attribute-type", 400),
        ({"sequence": 5}, "nlgov.sequence", 400),
        ({"sequence": "abc"}, "nlgov.sequence", 400),
        ({"dataref": "a b"}, "nlgov.dataref", 400),
    ],
)
async def test_each_attribute_rule_is_recorded(
    start: Start, client: httpx.AsyncClient, changes: dict[str, Any], rule: str, status: int
) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    answer = await post(client, f"{base}/zaken", event(**changes))
    assert answer.status_code == status, answer.text
    assert rules_of(config) == [rule]
    violation = config.violations[0]
    assert violation["level"] == RULES[rule].level
    assert violation["request"]["path"] == "/zaken"
    assert violation["request"]["mode"] == "structured"
    assert len(config.received) == (1 if status == 204 else 0)


@pytest.mark.parametrize(
    ("content_type", "body", "rule", "status"),
    [
        (STRUCTURED, b"{not json", "structured.body", 400),
        (STRUCTURED, b"[]", "structured.body", 400),
        (STRUCTURED, b'{"id": NaN}', "structured.body", 400),
        (STRUCTURED, b'"\xff"', "structured.body", 400),
        ("application/cloudevents+xml", b"<event/>", "structured.format", 415),
        ("application/json", json.dumps(event()).encode(), "binary.required", 415),
        ("application/cloudevents-batch+xml", b"<batch/>", "batch.content-type", 415),
        (BATCHED, json.dumps(event()).encode(), "batch.body", 400),
        (BATCHED, b"[1]", "batch.body", 400),
        (BATCHED, b"[nope", "batch.body", 400),
    ],
)
async def test_each_body_rule_is_recorded(
    start: Start, client: httpx.AsyncClient, content_type: str, body: bytes, rule: str, status: int
) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    answer = await post(client, f"{base}/hook", body, content_type)
    assert answer.status_code == status
    assert rules_of(config) == [rule]


async def test_a_batch_mixing_specversions_and_an_unsolicited_batch(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    mixed = await post(client, f"{base}/hook", [event(), event(specversion="0.3")], BATCHED)
    assert mixed.status_code == 400
    assert rules_of(config) == ["event.specversion", "batch.specversion"]
    assert config.violations[0]["text"].startswith("event 1: ")

    json_only = ReceiverConfig(auth="Bearer right", accept_batch=False)
    base = await start(json_only)
    refused = await post(client, f"{base}/hook", [event()], BATCHED)
    assert refused.status_code == 415
    assert rules_of(json_only) == ["batch.unsolicited"]


# -- binary mode ---------------------------------------------------------------------------------------


def binary_headers(**changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "urn:nld:oin:00000001823288444000:systeem:openklant",
        "ce-type": "nl.overheid.zaken.zaak-gekoppeld",
        "Content-Type": "application/json",
        **AUTH,
    }
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "rule", "status"),
    [
        ({"ce-id": None}, "binary.required", 400),
        ({"ce-specversion": None}, "binary.required", 400),
        ({"ce-datacontenttype": "application/json"}, "binary.datacontenttype", 400),
        ({"ce-subject": "100%"}, "binary.percent-encoding", 400),
        ({"ce-subject": "%C0%A0"}, "binary.percent-encoding", 400),
        ({"ce-subject": "Zaak 12"}, "binary.header-encoding", 204),
        ({"ce-subject": '"Zaak 12"'}, "binary.header-encoding", 204),
        ({"ce-Bad_Name": "x"}, "binary.header-name", 400),
        ({"ce-time": "yesterday"}, "event.time", 400),
        ({"ce-source": "openklant"}, "nlgov.source", 204),
        ({"ce-specversion": "0.3"}, "event.specversion", 400),
        ({"Content-Type": None}, "binary.content-type", 204),
    ],
)
async def test_each_binary_rule_is_recorded(
    start: Start, client: httpx.AsyncClient, changes: dict[str, str | None], rule: str, status: int
) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    answer = await client.post(f"{base}/hook", headers=binary_headers(**changes), content=b'{"zaak": 1}')
    assert answer.status_code == status, answer.text
    assert rules_of(config) == [rule]
    assert config.violations[0]["request"]["mode"] == "binary"


async def test_binary_header_values_are_percent_decoded(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    headers = binary_headers(**{"ce-subject": "Zo%c3%ab%20100%25", "ce-sequence": "7", "Content-Type": "text/plain"})
    answer = await client.post(f"{base}/hook", headers=headers, content=b"hallo")
    assert answer.status_code == 204
    assert config.violations == []
    received = config.received[0]["event"]
    assert received["subject"] == "Zoë 100%", "lower-case hex accepted, one round of decoding"
    assert received["datacontenttype"] == "text/plain"
    assert base64.b64decode(received["data_base64"]) == b"hallo"


# -- delivery: method, https, user agent, what the sender was told -------------------------------------


async def test_only_post_delivers(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    put = await client.put(f"{base}/hook", headers={**AUTH, "Content-Type": STRUCTURED}, content=json.dumps(event()))
    assert put.status_code == 405
    get = await client.get(f"{base}/hook", headers=AUTH)
    assert get.status_code == 405
    assert rules_of(config) == ["webhook.post", "webhook.post"]
    assert config.violations[0]["request"]["method"] == "PUT"


async def test_user_agent_and_https(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right", require_https=True)
    base = await start(config)
    async with httpx.AsyncClient() as bare:
        del bare.headers["User-Agent"]
        answer = await bare.post(
            f"{base}/hook", headers={"Authorization": "Bearer right", "Content-Type": STRUCTURED}, json=event()
        )
    assert answer.status_code == 204, "SHOULD/transport rules do not refuse"
    assert rules_of(config) == ["webhook.https", "http.user-agent"]


async def test_retry_after_and_gone_must_be_respected(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right", answers=[429], retry_after=30, grace=0.0)
    base = await start(config)
    first = await post(client, f"{base}/hook", event())
    assert (first.status_code, first.headers["Retry-After"]) == (429, "30")
    await post(client, f"{base}/other", event())
    assert config.violations == [], "another target was not told to wait"
    too_soon = await post(client, f"{base}/hook", event())
    assert too_soon.status_code == 204
    assert rules_of(config) == ["webhook.retry-after"]

    gone = ReceiverConfig(auth="Bearer right", answers=[410], grace=0.0)
    base = await start(gone)
    assert (await post(client, f"{base}/hook", event())).status_code == 410
    await post(client, f"{base}/hook", event())
    assert rules_of(gone) == ["webhook.gone"]


async def test_the_allowed_rate_is_checked(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right", allowed_rate="2")
    base = await start(config)
    await client.options(f"{base}/hook", headers={"WebHook-Request-Origin": "outbox.gemeente.nl", **UA})
    for _ in range(4):
        assert (await post(client, f"{base}/hook", event())).status_code == 204
    assert rules_of(config) == ["webhook.rate"], "2 per minute, and a burst of one: the 4th is too many"
    assert config.violations[0]["request"]["n"] == 5


# -- the handshake ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "rule", "status"),
    [
        ({}, "handshake.origin", 400),
        ({"WebHook-Request-Origin": "https://outbox.gemeente.nl/"}, "handshake.origin-dns", 200),
        ({"WebHook-Request-Origin": "outbox.gemeente.nl", "WebHook-Request-Rate": "0"}, "handshake.rate", 200),
        ({"WebHook-Request-Origin": "outbox.gemeente.nl", "WebHook-Request-Rate": "fast"}, "handshake.rate", 200),
        (
            {"WebHook-Request-Origin": "outbox.gemeente.nl", "WebHook-Request-Callback": "http://x.nl/ok"},
            "handshake.callback",
            200,
        ),
    ],
)
async def test_each_handshake_rule_is_recorded(
    start: Start, client: httpx.AsyncClient, headers: dict[str, str], rule: str, status: int
) -> None:
    config = ReceiverConfig()
    base = await start(config)
    answer = await client.options(f"{base}/hook", headers={**headers, **UA})
    assert answer.status_code == status
    assert rules_of(config) == [rule]
    if status == 200:
        assert answer.headers["WebHook-Allowed-Rate"] == "*", "no usable rate asked: no limit"


async def test_handshake_answers_and_is_required_when_configured(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right", allowed_origin="outbox.gemeente.nl", require_handshake=True)
    base = await start(config)
    assert (await post(client, f"{base}/hook", event())).status_code == 204
    assert rules_of(config) == ["handshake.missing"]
    other = await client.options(f"{base}/hook", headers={"WebHook-Request-Origin": "evil.example.com", **UA})
    assert other.status_code == 403
    ok = await client.options(
        f"{base}/hook", headers={"WebHook-Request-Origin": "outbox.gemeente.nl", "WebHook-Request-Rate": "60", **UA}
    )
    assert (ok.status_code, ok.headers["WebHook-Allowed-Rate"]) == (200, "60")
    assert (await post(client, f"{base}/hook", event())).status_code == 204
    assert rules_of(config) == ["handshake.missing"], "after the handshake, nothing new"
    assert [h["status"] for h in (await client.get(f"{base}/handshakes")).json()] == [403, 200]


# -- authentication ----------------------------------------------------------------------------------------


async def test_static_auth(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    assert (await post(client, f"{base}/hook", event())).status_code == 204
    assert config.violations == []
    assert (await post(client, f"{base}/hook", event(), Authorization="Bearer wrong")).status_code == 401
    assert rules_of(config) == ["auth.static"]
    config.violations.clear()
    bare = await client.post(f"{base}/hook", headers={"Content-Type": STRUCTURED, **UA}, json=event())
    assert bare.status_code == 401
    assert rules_of(config) == ["auth.present", "auth.static"]
    config.violations.clear()
    query = await client.post(
        f"{base}/hook?access_token=right", headers={"Content-Type": STRUCTURED, **UA}, json=event()
    )
    assert query.status_code == 204, "the guideline's second method works, but SHOULD NOT be used"
    assert rules_of(config) == ["auth.query-token"]
    assert len(config.received) == 2


async def test_no_credentials_at_all_is_recorded_even_without_configured_auth(
    start: Start, client: httpx.AsyncClient
) -> None:
    config = ReceiverConfig()
    base = await start(config)
    answer = await client.post(f"{base}/hook", headers={"Content-Type": STRUCTURED, **UA}, json=event())
    assert answer.status_code == 204
    assert rules_of(config) == ["auth.present"]


async def test_oauth2_token_endpoint_and_bearer_tokens(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(oauth_client_id="outbox", oauth_client_secret="s3cret", oauth_token_lifetime=300)
    base = await start(config)
    form = {"grant_type": "client_credentials"}
    issued = await client.post(f"{base}/oauth/token", data=form, auth=("outbox", "s3cret"))
    assert issued.status_code == 200
    document = issued.json()
    assert (document["token_type"], document["expires_in"]) == ("Bearer", 300)
    assert issued.headers["Cache-Control"] == "no-store"
    token = document["access_token"]
    assert (await post(client, f"{base}/hook", event(), Authorization=f"Bearer {token}")).status_code == 204
    assert config.violations == []

    wrong_secret = await client.post(f"{base}/oauth/token", data=form, auth=("outbox", "guess"))
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    no_client = await client.post(f"{base}/oauth/token", data=form)
    assert no_client.status_code == 401
    wrong_grant = await client.post(f"{base}/oauth/token", data={"grant_type": "password"}, auth=("outbox", "s3cret"))
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert rules_of(config) == ["oauth.client", "oauth.client", "oauth.grant-type"]
    config.violations.clear()

    assert (await post(client, f"{base}/hook", event(), Authorization="Bearer made-up")).status_code == 401
    assert (await post(client, f"{base}/hook", event(), Authorization=f"Token {token}")).status_code == 401
    assert rules_of(config) == ["auth.oauth2", "auth.bearer-scheme", "auth.oauth2"]
    config.violations.clear()
    config.tokens[token] = time.time() - 1
    expired = await post(client, f"{base}/hook", event(), Authorization=f"Bearer {token}")
    assert expired.status_code == 401
    assert [v["text"] for v in config.violations] == ["the bearer token expired"]


def zgw_jwt(secret: str = JWT_SECRET, **claims: Any) -> str:
    payload = {"iss": "outbox", "iat": int(time.time()), "client_id": "outbox", "user_id": "", **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not ...}, secret, algorithm="HS256")


@pytest.mark.parametrize(
    ("token", "accepted"),
    [
        # Made when the test runs, not at collection: a long suite would age the iat-relative ones.
        (lambda: zgw_jwt(), True),
        (lambda: zgw_jwt(iat=int(time.time()) - 1800), True),
        (lambda: zgw_jwt(secret="another-secret-of-at-least-32-bytes!!"), False),
        (lambda: zgw_jwt(client_id=...), False),
        (lambda: zgw_jwt(client_id="someone-else"), False),
        (lambda: zgw_jwt(iat=...), False),
        (lambda: zgw_jwt(iat=int(time.time()) - 7200), False),
        (lambda: zgw_jwt(iat=int(time.time()) + 600), False),
        (lambda: jwt.encode({"client_id": "outbox", "iat": int(time.time())}, None, algorithm="none"), False),
        (lambda: "not.a.jwt", False),
    ],
)
async def test_zgw_jwt(start: Start, client: httpx.AsyncClient, token: Callable[[], str], accepted: bool) -> None:
    config = ReceiverConfig(jwt_client_id="outbox", jwt_secret=JWT_SECRET)
    base = await start(config)
    answer = await post(client, f"{base}/hook", event(), Authorization=f"Bearer {token()}")
    assert answer.status_code == (204 if accepted else 401)
    assert rules_of(config) == ([] if accepted else ["auth.jwt"])


async def test_standard_webhooks_signature(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right", webhook_secret=WEBHOOK_SECRET)
    base = await start(config)
    body = json.dumps(event())
    now = datetime.now(UTC)
    signature = Webhook(WEBHOOK_SECRET).sign("msg_1", now, body)
    signed = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    assert (await post(client, f"{base}/hook", body.encode(), **signed)).status_code == 204
    assert config.violations == []
    tampered = await post(client, f"{base}/hook", body.replace("zaak", "Zaak").encode(), **signed)
    assert tampered.status_code == 401
    old = {**signed, "webhook-timestamp": str(int(now.timestamp()) - 3600)}
    assert (await post(client, f"{base}/hook", body.encode(), **old)).status_code == 401
    assert (await post(client, f"{base}/hook", body.encode())).status_code == 401
    assert rules_of(config) == ["auth.signature"] * 3


async def test_mtls_client_certificate_is_recorded(start: Start, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert(
        "outbox.gemeente.nl", common_name="outbox.gemeente.nl", organization_name="Gemeente Voorbeeld"
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    config = ReceiverConfig(auth="Bearer right", require_https=True)
    base = await start(config, ssl_context=server)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client_cert.configure_cert(context)
    async with httpx.AsyncClient(verify=context) as tls:
        answer = await post(tls, f"{base}/hook", event())
    assert answer.status_code == 204
    assert config.violations == []
    subject = config.received[0]["client_cert"]
    assert "CN=outbox.gemeente.nl" in subject
    assert "O=Gemeente Voorbeeld" in subject


# -- at least once, and the endpoints --------------------------------------------------------------------


async def test_redeliveries_are_counted_not_violations(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    once = event()
    for _ in range(3):
        assert (await post(client, f"{base}/hook", once)).status_code == 204
    assert config.violations == []
    assert (await client.get(f"{base}/redeliveries")).json() == [
        {"path": "/hook", "source": once["source"], "id": once["id"], "count": 2}
    ]
    assert (await post(client, f"{base}/hook", {**once, "subject": "another zaak"})).status_code == 204
    assert rules_of(config) == ["event.id-unique"]


async def test_violations_endpoint_says_which_request(start: Start, client: httpx.AsyncClient) -> None:
    config = ReceiverConfig(auth="Bearer right")
    base = await start(config)
    await post(client, f"{base}/hook", event())
    bad = event(time="gisteren")
    await post(client, f"{base}/hook", bad)
    listed = (await client.get(f"{base}/violations")).json()
    assert len(listed) == 1
    violation = listed[0]
    assert violation["rule"] == "event.time"
    assert violation["level"] == "MUST"
    assert "gisteren" in violation["text"]
    assert violation["request"] == {
        "n": 2,
        "method": "POST",
        "path": "/hook",
        "peer": "127.0.0.1",
        "mode": "structured",
        "events": [bad["id"]],
        "client_cert": None,
    }
    assert len((await client.get(f"{base}/events")).json()) == 1


def test_conformance_doc_names_every_rule() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "CONFORMANCE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z0-9]+\.[a-z0-9_-]+)`", doc))
    assert set(RULES) - named == set(), "every rule id has a row in docs/CONFORMANCE.md"
