"""/api/v1/consumers: inbound webhook consumers over HTTP, for outbox.beheer only; every refusal names its fields,
secrets are write-only (never in an answer, kept when a change leaves them out), and the failures kept for the
operator are listed, shown and replayed once the mapping is fixed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import psycopg
import pytest

from tests.service.live import ADMIN, CONSUME, PUBLISH, Caller, LiveService
from worker.consumers.verification import Inbound, VerificationFailed, verifier_for
from worker.store import consumers as store

PATH = "/api/v1/consumers"
SCHEMA = "outbox"
SECRET = "It's a Secret to Everybody, 2026"
OTHER_SECRET = "another-secret-of-at-least-16"
TOKEN = "psp-bearer-token-8a0WWCKMgh1EIBlD2g1b6y"
TYPE = "nl.example.betalingen.betaling-ontvangen"
SOURCE = "urn:nld:oin:00000001234567890000:systeem:psp"
# The mapping leaves out type and source: the consumer's event-type target gives them.
EXPRESSION = """{
  "id": body.id,
  "subject": body.zaak,
  "time": body.paidAt,
  "data": {"betaling": body.id, "bedrag": body.bedrag, "event": headers."x-psp-event"}
}"""
PAYLOAD = {"id": "tr_000001", "zaak": "ZAAK-2026-0042", "paidAt": "2026-12-07T10:00:00Z", "bedrag": 12.5}
HMAC = {"method": "hmac", "header": "X-Hub-Signature-256", "prefix": "sha256=", "secrets": [SECRET]}


class Recording:
    """The admin's calls, each answer kept: no secret may appear in any of them, and each must be as the
    OpenAPI document says (schemathesis cannot reach a consumer: it never guesses an id)."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.answers: list[httpx.Response] = []

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.caller.request(method, path, **kwargs)
        self.answers.append(response)
        return response

    def check(self, document: dict[str, Any]) -> None:
        for response in self.answers:
            text = f"{response.headers}\n{response.text}"
            for secret in (SECRET, OTHER_SECRET, TOKEN):
                assert secret not in text, (response.request.method, response.request.url)
            conforms(document, response)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def beheer(service: LiveService) -> Iterator[Recording]:
    """An outbox.beheer caller, with a catalogue entry (a schema for the data) and a mapping to point at."""
    recording = Recording(service.add_client("beheer", ADMIN))
    entry = {
        "name": "Betaling ontvangen", "slug": "betaling-ontvangen", "type": TYPE, "source": SOURCE,
        "schema": {"type": "object", "required": ["betaling", "bedrag"],
                   "properties": {"bedrag": {"type": "number", "exclusiveMinimum": 0}}},
    }  # fmt: skip
    assert recording.post("/api/v1/event-types", json=entry).status_code == 201
    mapping = {"id": "psp-payment", "expression": EXPRESSION, "headers": ["X-PSP-Event"]}
    assert recording.post("/api/v1/mappings", json=mapping).status_code == 201
    yield recording
    recording.check(service.anonymous.get("/api/v1/schema/openapi.json").json())


def conforms(document: dict[str, Any], response: httpx.Response) -> None:
    """The answer's status, media type and body are ones its operation in the OpenAPI document declares."""
    method, path = response.request.method.lower(), response.request.url.path
    where = f"{method.upper()} {path} → {response.status_code}"
    templates = sorted(document["paths"], key=lambda template: template.count("{"))  # /mappings/try before /{id}
    template = next(
        t for t in templates if method in document["paths"][t] and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", t), path)
    )
    answer = document["paths"][template][method]["responses"].get(str(response.status_code))
    assert answer is not None, where
    if response.status_code == 204:
        assert not response.content, where
        return
    media_type = response.headers["content-type"].partition(";")[0]
    schema = answer["content"][media_type]["schema"]
    jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]}).validate(response.json())


def _consumer(**changes: Any) -> dict[str, Any]:
    return {
        "name": "PSP betalingen",
        "endpoint": "psp-payments",
        "mappingId": "psp-payment",
        "targetType": "event-type",
        "targetId": "betaling-ontvangen",
        "verification": HMAC,
        **changes,
    }


def _names(response: httpx.Response, status: int = 400) -> set[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {param["name"] for param in response.json()["invalidParams"]}


def _connect(service: LiveService) -> psycopg.Connection[Any]:
    return psycopg.connect(service.database_url, autocommit=True)


def _stored(service: LiveService) -> list[tuple[Any, ...]]:
    with _connect(service) as conn:
        return conn.execute("SELECT name, endpoint, is_enabled FROM outbox.consumers ORDER BY name").fetchall()


def _signed(body: bytes, secret: str = SECRET) -> Inbound:
    """A GitHub-style request: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Inbound.of(body, {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"})


def _verifies(service: LiveService, consumer_id: str, secret: str) -> bool:
    """Whether the stored consumer (its sealed secrets opened) verifies a request signed with `secret`."""
    with _connect(service) as conn:
        consumer = store.get(conn, SCHEMA, consumer_id)
    try:
        verifier_for(consumer.verification(service.settings.box)).verify(_signed(b'{"id": "tr_1"}', secret))
    except VerificationFailed:
        return False
    return True


def test_an_admin_creates_reads_changes_and_removes_a_consumer(service: LiveService, beheer: Recording) -> None:
    created = beheer.post(PATH, json=_consumer(rateLimit=5, rateBurst=10))
    assert created.status_code == 201, created.text
    shown = created.json()
    cid = shown["id"]
    url = f"{service.base_url}{PATH}/{cid}"
    assert created.headers["location"] == url
    assert {k: v for k, v in shown.items() if k not in ("id", "createdAt", "updatedAt")} == {
        "url": url,
        "hookUrl": f"{service.base_url}/hooks/psp-payments",
        "name": "PSP betalingen",
        "endpoint": "psp-payments",
        "mappingId": "psp-payment",
        "targetType": "event-type",
        "targetId": "betaling-ontvangen",
        "isEnabled": True,
        "verification": {
            "method": "hmac", "header": "X-Hub-Signature-256", "algorithm": "sha256", "encoding": "hex",
            "prefix": "sha256=", "timestampHeader": None, "toleranceSeconds": 300, "secretCount": 1,
        },
        "maxBodyBytes": 262144,
        "rateLimit": 5.0,
        "rateBurst": 10,
        "openFailures": 0,
    }  # fmt: skip
    assert beheer.get(f"{PATH}/{cid}").json() == shown
    assert beheer.get(PATH).json() == [shown]
    assert beheer.get("/api/v1/mappings/psp-payment").json()["consumers"] == ["PSP betalingen"]

    # PATCH: only the given fields; isEnabled alone disables it
    disabled = beheer.patch(f"{PATH}/{cid}", json={"isEnabled": False})
    assert disabled.status_code == 200, disabled.text
    assert {**disabled.json(), "updatedAt": None} == {**shown, "isEnabled": False, "updatedAt": None}
    assert _stored(service) == [("PSP betalingen", "psp-payments", False)]
    patched = beheer.patch(f"{PATH}/{cid}", json={"name": "PSP", "isEnabled": True, "rateLimit": None,
                                                 "rateBurst": None})  # fmt: skip
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["rateLimit"], patched.json()["isEnabled"]) == ("PSP", None, True)
    assert patched.json()["verification"] == shown["verification"]

    # PUT: every field as given, the left-out ones at their defaults (secrets excepted)
    replaced = beheer.put(f"{PATH}/{cid}", json=_consumer(name="PSP 2", endpoint="psp-2", maxBodyBytes=1024,
                                                         verification={**HMAC, "secrets": [OTHER_SECRET, SECRET]}))  # fmt: skip
    assert replaced.status_code == 200, replaced.text
    again = replaced.json()
    assert (again["name"], again["endpoint"], again["hookUrl"]) == ("PSP 2", "psp-2", f"{service.base_url}/hooks/psp-2")
    assert (again["maxBodyBytes"], again["rateLimit"], again["verification"]["secretCount"]) == (1024, None, 2)
    unsecret = {k: v for k, v in HMAC.items() if k != "secrets"}
    reset = beheer.put(f"{PATH}/{cid}", json=_consumer(mappingId=None, verification=unsecret)).json()
    assert (reset["mappingId"], reset["maxBodyBytes"], reset["verification"]["secretCount"]) == (None, 262144, 2)

    assert beheer.delete(f"{PATH}/{cid}").status_code == 204
    assert _stored(service) == []
    assert beheer.get(f"{PATH}/{cid}").status_code == 404
    assert beheer.delete(f"{PATH}/{cid}").status_code == 404


def test_patch_and_put_keep_the_secrets_they_leave_out(service: LiveService, beheer: Recording) -> None:
    cid = beheer.post(PATH, json=_consumer()).json()["id"]
    assert _verifies(service, cid, SECRET)

    # another field; then the verification's settings without the secret (the method stays): kept
    assert beheer.patch(f"{PATH}/{cid}", json={"name": "PSP"}).status_code == 200
    assert _verifies(service, cid, SECRET)
    changed = beheer.patch(f"{PATH}/{cid}", json={"verification": {"toleranceSeconds": 60}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["verification"]["toleranceSeconds"] == 60
    assert changed.json()["verification"]["prefix"] == "sha256="  # the given settings replace only themselves
    assert _verifies(service, cid, SECRET)
    put = beheer.put(f"{PATH}/{cid}", json=_consumer(verification={k: v for k, v in HMAC.items() if k != "secrets"}))
    assert put.status_code == 200, put.text
    assert put.json()["verification"]["secretCount"] == 1
    assert _verifies(service, cid, SECRET)

    # a new secret replaces the old one
    assert beheer.patch(f"{PATH}/{cid}", json={"verification": {"secrets": [OTHER_SECRET]}}).status_code == 200
    assert _verifies(service, cid, OTHER_SECRET) and not _verifies(service, cid, SECRET)

    # another method takes nothing of the old one: its own secrets are required
    assert _names(beheer.patch(f"{PATH}/{cid}", json={"verification": {"method": "bearer"}})) == {"verification.tokens"}
    bearer = beheer.patch(f"{PATH}/{cid}", json={"verification": {"method": "bearer", "tokens": [TOKEN]}})
    assert bearer.json()["verification"] == {"method": "bearer", "secretCount": 1}
    with _connect(service) as conn:
        sealed = conn.execute("SELECT verification::text, secrets FROM outbox.consumers").fetchone()
    assert sealed is not None and TOKEN not in sealed[0]


def test_one_400_names_every_invalid_field_and_stores_nothing(service: LiveService, beheer: Recording) -> None:
    faulty = _consumer(
        name=" padded ", endpoint="Not A Path", targetType="queue", maxBodyBytes=0, rateLimit=1, colour="red",
        verification={"method": "hmac", "header": "not a header", "secrets": ["short"], "encoding": "rot13"},
    )  # fmt: skip
    assert _names(beheer.post(PATH, json=faulty)) == {
        "name", "endpoint", "targetType", "maxBodyBytes", "colour",
        "verification.header", "verification.secrets[0]", "verification.encoding",
    }  # fmt: skip
    typed = beheer.post(PATH, json={"name": 1, "endpoint": None, "isEnabled": "yes", "verification": "none",
                                   "rateLimit": "fast", "rateBurst": 2.5})  # fmt: skip
    assert _names(typed) == {"name", "endpoint", "isEnabled", "verification", "rateLimit", "rateBurst", "targetType",
                             "targetId"}  # fmt: skip
    assert _names(beheer.post(PATH, json=_consumer(targetType="source"))) == {"targetId"}
    assert _names(beheer.post(PATH, json=_consumer(rateLimit=2))) == {"rateBurst"}
    assert _names(beheer.post(PATH, json=_consumer(name="a\x00b"))) == {"name"}
    assert _names(beheer.post(PATH, json=_consumer(verification={"method": "md5"}))) == {"verification.method"}
    # what only the database knows: the mapping and the target must exist
    missing = beheer.post(PATH, json=_consumer(mappingId="nope", targetId="nope"))
    assert _names(missing) == {"mappingId", "targetId"}
    assert {p["code"] for p in missing.json()["invalidParams"]} == {"does_not_exist"}
    # ... named with the other faults in the same 400
    assert _names(beheer.post(PATH, json=_consumer(name=" x", mappingId="nope", targetId="nope"))) == {
        "name", "mappingId", "targetId",
    }  # fmt: skip
    assert _names(beheer.post(PATH, json=_consumer(name=" x", targetType="source", targetId="s"))) == {
        "name", "targetId",
    }  # fmt: skip
    no_subscription = _consumer(targetType="source", targetId=f"urn:uuid:{uuid.uuid4()}")
    assert _names(beheer.post(PATH, json=no_subscription)) == {"targetId"}
    assert _names(beheer.post(PATH, content=b"[1]", headers={"Content-Type": "application/json"})) == {"nonFieldErrors"}
    assert beheer.post(PATH, content=json.dumps(_consumer()), headers={"Content-Type": "text/plain"}).status_code == 415
    assert _stored(service) == []

    cid = beheer.post(PATH, json=_consumer()).json()["id"]
    assert _names(beheer.patch(f"{PATH}/{cid}", json={"endpoint": "A B", "maxBodyBytes": "big", "x": 1})) == {
        "endpoint", "maxBodyBytes", "x",
    }  # fmt: skip
    assert _names(beheer.patch(f"{PATH}/{cid}", json={"targetType": "source"})) == {"targetId"}
    assert _names(beheer.patch(f"{PATH}/{cid}", json={"maxBodyBytes": -1, "targetId": "nope"})) == {
        "maxBodyBytes", "targetId",
    }  # fmt: skip
    assert _names(beheer.patch(f"{PATH}/{cid}", json={"name": None, "verification": []})) == {"name", "verification"}
    assert _names(beheer.put(f"{PATH}/{cid}", json={"name": "x"})) == {"endpoint", "targetType", "targetId",
                                                                      "verification"}  # fmt: skip
    assert _stored(service) == [("PSP betalingen", "psp-payments", True)]


def test_a_taken_name_or_endpoint_is_a_409_naming_it(service: LiveService, beheer: Recording) -> None:
    assert beheer.post(PATH, json=_consumer()).status_code == 201
    both = beheer.post(PATH, json=_consumer())
    assert _names(both, 409) == {"name", "endpoint"}
    assert both.json()["code"] == "conflict"
    assert _names(beheer.post(PATH, json=_consumer(name="other")), 409) == {"endpoint"}
    other = beheer.post(PATH, json=_consumer(name="other", endpoint="other")).json()["id"]
    assert _names(beheer.patch(f"{PATH}/{other}", json={"name": "PSP betalingen"}), 409) == {"name"}
    assert _stored(service) == [("PSP betalingen", "psp-payments", True), ("other", "other", True)]


def test_only_outbox_beheer_may_read_or_change_consumers(service: LiveService, beheer: Recording) -> None:
    cid = beheer.post(PATH, json=_consumer()).json()["id"]
    others = service.add_client("abonnee", CONSUME, PUBLISH)
    paths = [("GET", PATH), ("POST", PATH), ("GET", f"{PATH}/{cid}"), ("PUT", f"{PATH}/{cid}"),
             ("PATCH", f"{PATH}/{cid}"), ("DELETE", f"{PATH}/{cid}"), ("POST", f"{PATH}/{cid}/try"),
             ("GET", f"{PATH}/{cid}/failures"), ("GET", f"{PATH}/{cid}/failures/1"),
             ("POST", f"{PATH}/{cid}/failures/1/replay")]  # fmt: skip
    for method, path in paths:
        anonymous = service.anonymous.request(method, path, json={"isEnabled": False})
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["code"] == "not_authenticated"
        refused = others.request(method, path, json={"isEnabled": False})
        assert refused.status_code == 403, (method, path)
        assert refused.json()["code"] == "permission_denied"
    assert _stored(service) == [("PSP betalingen", "psp-payments", True)]


def test_unknown_consumers_and_failures_are_404s(service: LiveService, beheer: Recording) -> None:
    cid = beheer.post(PATH, json=_consumer()).json()["id"]
    unknown = str(uuid.uuid4())
    for method, path in (("GET", unknown), ("PUT", unknown), ("PATCH", unknown), ("DELETE", unknown),
                         ("GET", "psp-payments"), ("GET", "PSP betalingen"), ("POST", f"{unknown}/try"),
                         ("GET", f"{unknown}/failures"), ("GET", f"{cid}/failures/1"),
                         ("POST", f"{cid}/failures/1/replay")):  # fmt: skip
        answer = beheer.request(method, f"{PATH}/{path}", json=_consumer())
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["code"] == "not_found"
    assert _names(beheer.get(f"{PATH}/{cid}/failures/x")) == {"failureId"}
    assert _names(beheer.get(f"{PATH}/{cid}/failures", params={"limit": 0})) == {"limit"}


def _try(beheer: Recording, cid: str, **request: Any) -> dict[str, Any]:
    body = {"payload": PAYLOAD, "headers": {"X-PSP-Event": "payment.paid"}, **request}
    if "body" in request:
        del body["payload"]
    answer = beheer.post(f"{PATH}/{cid}/try", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _failed(result: dict[str, Any]) -> tuple[str, set[str]]:
    assert set(result) == {"code", "problems"}, result
    assert all(set(p) == {"name", "code", "reason"} for p in result["problems"])
    return result["code"], {p["name"] for p in result["problems"]}


def test_try_shows_the_event_or_why_it_is_refused_and_stores_nothing(
    service: LiveService, beheer: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTBOX_CATALOGUE_TTL", "0")  # the catalogue's changes below count at once
    cid = beheer.post(PATH, json=_consumer()).json()["id"]
    assert _try(beheer, cid) == {
        "event": {
            "specversion": "1.0", "id": "tr_000001", "source": SOURCE, "type": TYPE, "subject": "ZAAK-2026-0042",
            "time": "2026-12-07T10:00:00Z",
            "data": {"betaling": "tr_000001", "bedrag": 12.5, "event": "payment.paid"},
        }
    }  # fmt: skip
    assert _failed(_try(beheer, cid, body="{not json")) == ("malformed_json", {"body"})
    assert _failed(_try(beheer, cid, payload={**PAYLOAD, "paidAt": "gisteren"})) == ("invalid_event", {"time"})
    assert _failed(_try(beheer, cid, payload={**PAYLOAD, "bedrag": -1})) == ("schema_violation", {"data.bedrag"})
    assert _failed(_try(beheer, cid, payload=[1, 2])) == ("invalid_event", {"id", "subject", "time"})

    def with_mapping(expression: str) -> tuple[str, set[str]]:
        put = beheer.put("/api/v1/mappings/psp-payment", json={"expression": expression, "headers": ["x-psp-event"]})
        assert put.status_code == 200, put.text
        return _failed(_try(beheer, cid))

    assert with_mapping("$number('x')") == ("evaluation_error", {"expression"})
    assert with_mapping('"text"') == ("not_an_object", {"result"})
    assert with_mapping(EXPRESSION.replace('"id"', '"type": "nl.other", "id"')) == ("type_mismatch", {"type"})
    restored = {"expression": EXPRESSION, "headers": ["x-psp-event"]}
    assert beheer.put("/api/v1/mappings/psp-payment", json=restored).status_code == 200
    assert "event" in _try(beheer, cid)
    assert beheer.patch("/api/v1/event-types/betaling-ontvangen", json={"isEnabled": False}).status_code == 200
    assert _failed(_try(beheer, cid)) == ("type_disabled", {"type"})
    assert beheer.delete("/api/v1/event-types/betaling-ontvangen").status_code == 204
    assert _failed(_try(beheer, cid)) == ("target_missing", {"targetId"})

    assert _names(beheer.post(f"{PATH}/{cid}/try", json={"headers": {}})) == {"payload"}
    assert _names(beheer.post(f"{PATH}/{cid}/try", json={"payload": 1, "body": "1"})) == {"payload"}
    assert _names(beheer.post(f"{PATH}/{cid}/try", json={"payload": 1, "headers": {"a": 1}})) == {"headers.a"}
    with _connect(service) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.events").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM outbox.consumer_failures").fetchone() == (0,)


def _keep(service: LiveService, endpoint: str, body: bytes, code: str = "invalid_event") -> int:
    """A failure as /hooks keeps it (after verification: the body and the mapping's chosen headers)."""

    async def keep() -> int:
        async with await psycopg.AsyncConnection.connect(service.database_url, autocommit=True) as conn:
            consumer = await store.hook_consumer_async(conn, SCHEMA, endpoint)  # with its mapping's version
            assert consumer is not None
            problems = [{"name": "subject", "code": code, "reason": "is required"}]
            headers = {"x-psp-event": "payment.paid"}
            return await store.keep_failure_async(conn, SCHEMA, consumer, code, problems, body, headers, None)

    return asyncio.run(keep())


def test_failures_are_listed_shown_and_replayed_once_the_mapping_is_fixed(
    service: LiveService, beheer: Recording
) -> None:
    cid = beheer.post(PATH, json=_consumer()).json()["id"]
    url = f"{service.base_url}{PATH}/{cid}"
    # the mapping reads a field the sender does not send: the payloads fail until it is fixed
    broken = EXPRESSION.replace("body.zaak", "body.reference")
    assert (
        beheer.put("/api/v1/mappings/psp-payment", json={"expression": broken, "headers": ["x-psp-event"]}).json()[
            "version"
        ]
        == 2
    )
    first = _keep(service, "psp-payments", json.dumps(PAYLOAD).encode())
    binary = _keep(service, "psp-payments", b"\xff\xfe not utf-8", code="malformed_json")
    third = _keep(service, "psp-payments", json.dumps({**PAYLOAD, "id": "tr_000003"}).encode())
    assert beheer.get(f"{PATH}/{cid}").json()["openFailures"] == 3

    listed = beheer.get(f"{PATH}/{cid}/failures")
    assert listed.status_code == 200, listed.text
    assert [f["id"] for f in listed.json()] == [third, binary, first]  # newest first
    assert "link" not in listed.headers
    shown = listed.json()[2]
    assert {k: v for k, v in shown.items() if k != "receivedAt"} == {
        "url": f"{url}/failures/{first}", "id": first, "consumerId": cid, "code": "invalid_event",
        "problems": [{"name": "subject", "code": "invalid_event", "reason": "is required"}], "mappingVersion": 2,
        "bodySize": len(json.dumps(PAYLOAD)), "headers": {"x-psp-event": "payment.paid"}, "webhookId": None,
        "replayedAt": None, "eventSource": None, "eventId": None,
    }  # fmt: skip
    page = beheer.get(f"{PATH}/{cid}/failures", params={"limit": 2})
    assert [f["id"] for f in page.json()] == [third, binary]
    assert page.headers["link"] == f'<{url}/failures?before={binary}&limit=2>; rel="next"'
    assert [f["id"] for f in beheer.get(f"{PATH}/{cid}/failures", params={"before": binary}).json()] == [first]

    detail = beheer.get(f"{PATH}/{cid}/failures/{first}").json()
    assert (json.loads(detail["body"]), detail["bodyBase64"]) == (PAYLOAD, None)
    undecodable = beheer.get(f"{PATH}/{cid}/failures/{binary}").json()
    assert (undecodable["body"], undecodable["bodyBase64"]) == (None, "//4gbm90IHV0Zi04")

    # a replay with the broken mapping fails again: 422 naming the problem, and the failure says so
    again = beheer.post(f"{PATH}/{cid}/failures/{first}/replay")
    assert _names(again, 422) == {"subject"}
    assert again.json()["code"] == "unprocessable"
    assert beheer.get(f"{PATH}/{cid}/failures/{first}").json()["mappingVersion"] == 2

    fixed = beheer.put("/api/v1/mappings/psp-payment", json={"expression": EXPRESSION, "headers": ["x-psp-event"]})
    assert fixed.json()["version"] == 3
    replayed = beheer.post(f"{PATH}/{cid}/failures/{first}/replay")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == {
        "failureId": first,
        "stored": True,
        "event": {
            "specversion": "1.0", "id": "tr_000001", "source": SOURCE, "type": TYPE, "subject": "ZAAK-2026-0042",
            "time": "2026-12-07T10:00:00Z",
            "data": {"betaling": "tr_000001", "bedrag": 12.5, "event": "payment.paid"},
        },
    }  # fmt: skip
    with _connect(service) as conn:
        rows = conn.execute("SELECT event->>'id', event->>'type', target_subscription FROM outbox.events").fetchall()
    assert rows == [("tr_000001", TYPE, None)]
    done = beheer.get(f"{PATH}/{cid}/failures/{first}").json()
    assert done["replayedAt"] is not None
    assert (done["eventSource"], done["eventId"]) == (SOURCE, "tr_000001")

    once = beheer.post(f"{PATH}/{cid}/failures/{first}/replay")
    assert once.status_code == 409, once.text
    assert once.json()["code"] == "conflict"
    assert [f["id"] for f in beheer.get(f"{PATH}/{cid}/failures").json()] == [third, binary]
    everything = beheer.get(f"{PATH}/{cid}/failures", params={"all": "true", "limit": 2})
    assert [f["id"] for f in everything.json()] == [third, binary]
    assert everything.headers["link"].endswith(f'before={binary}&limit=2&all=true>; rel="next"')
    assert [f["id"] for f in beheer.get(f"{PATH}/{cid}/failures", params={"all": "true"}).json()] == [
        third, binary, first,
    ]  # fmt: skip
    assert beheer.get(f"{PATH}/{cid}").json()["openFailures"] == 2

    # another consumer's failure is not found under this one
    other = beheer.post(PATH, json=_consumer(name="other", endpoint="other")).json()["id"]
    assert beheer.get(f"{PATH}/{other}/failures/{third}").status_code == 404
    assert beheer.post(f"{PATH}/{other}/failures/{third}/replay").status_code == 404
    with _connect(service) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.events").fetchone() == (1,)


def test_the_replay_422_is_in_the_openapi_document(service: LiveService) -> None:
    document = service.anonymous.get("/api/v1/schema/openapi.json").json()
    replay = document["paths"]["/api/v1/consumers/{id}/failures/{failureId}/replay"]["post"]
    assert {"200", "404", "409", "422"} <= set(replay["responses"])
