"""/api/v1/mappings: versioned JSONata mappings over HTTP, for outbox.beheer only; every refusal names its fields,
and /mappings/try shows the event a mapping makes, or why it fails, with nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.service.live import ADMIN, CONSUME, PUBLISH, LiveService
from tests.service.test_consumers_api import Recording

PATH = "/api/v1/mappings"
SOURCE = "urn:nld:oin:00000001234567890000:systeem:psp"
TYPE = "nl.example.betalingen.betaling-ontvangen"
EXPRESSION = f"""{{
  "type": "{TYPE}",
  "source": "{SOURCE}",
  "id": body.id,
  "subject": body.zaak,
  "time": body.paidAt,
  "data": {{"betaling": body.id, "event": headers."x-psp-event"}}
}}"""
PAYLOAD = {"id": "tr_000001", "zaak": "ZAAK-2026-0042", "paidAt": "2026-12-07T10:00:00Z"}


@pytest.fixture
def beheer(service: LiveService) -> Iterator[Recording]:
    """An outbox.beheer caller whose every answer is checked against the OpenAPI document afterwards."""
    recording = Recording(service.add_client("beheer", ADMIN))
    yield recording
    recording.check(service.anonymous.get("/api/v1/schema/openapi.json").json())


def _mapping(**changes: Any) -> dict[str, Any]:
    return {"id": "psp-payment", "description": "PSP betaling", "expression": EXPRESSION, "headers": ["X-PSP-Event"],
            **changes}  # fmt: skip


def _names(response: httpx.Response, status: int = 400) -> set[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {param["name"] for param in response.json()["invalidParams"]}


def _stored(service: LiveService) -> list[tuple[Any, ...]]:
    with psycopg.connect(service.database_url) as conn:
        return conn.execute(
            "SELECT m.id, m.current_version, array_agg(v.version ORDER BY v.version) FROM outbox.mappings m "
            "JOIN outbox.mapping_versions v ON v.mapping_id = m.id GROUP BY m.id ORDER BY m.id"
        ).fetchall()


def test_an_admin_creates_reads_versions_and_removes_a_mapping(service: LiveService, beheer: Recording) -> None:
    url = f"{service.base_url}{PATH}/psp-payment"

    created = beheer.post(PATH, json=_mapping())
    assert created.status_code == 201, created.text
    assert created.headers["location"] == url
    first = created.json()
    assert {k: first[k] for k in ("url", "versionUrl", "id", "description", "version", "currentVersion")} == {
        "url": url, "versionUrl": f"{url}?version=1", "id": "psp-payment", "description": "PSP betaling",
        "version": 1, "currentVersion": 1,
    }  # fmt: skip
    assert first["expression"] == EXPRESSION
    assert first["headers"] == ["x-psp-event"]  # header names are kept in lower case
    assert first["consumers"] == []
    assert beheer.get(f"{PATH}/psp-payment").json() == first
    assert beheer.get(PATH).json() == [first]

    changed = beheer.put(f"{PATH}/psp-payment", json={"expression": EXPRESSION.replace("body.zaak", "body.ref")})
    assert changed.status_code == 200, changed.text
    second = changed.json()
    assert (second["version"], second["currentVersion"], second["versionUrl"]) == (2, 2, f"{url}?version=2")
    assert second["description"] == "PSP betaling"  # left out: unchanged
    assert second["headers"] == []  # given whole: a version is the expression and its headers
    assert beheer.get(f"{PATH}/psp-payment", params={"version": 1}).json()["expression"] == EXPRESSION
    assert [v["version"] for v in beheer.get(f"{PATH}/psp-payment/versions").json()] == [2, 1]
    assert _stored(service) == [("psp-payment", 2, [1, 2])]

    described = beheer.put(f"{PATH}/psp-payment", json={"expression": "{}", "description": None})
    assert described.json()["description"] is None and described.json()["version"] == 3

    assert beheer.get(f"{PATH}/psp-payment", params={"version": 4}).status_code == 404
    assert beheer.delete(f"{PATH}/psp-payment").status_code == 204
    assert _stored(service) == []
    for method, path in (("GET", "/psp-payment"), ("DELETE", "/psp-payment"), ("GET", "/psp-payment/versions"),
                         ("GET", "/Not A Slug"), ("PUT", "/psp-payment")):  # fmt: skip
        answer = beheer.request(method, PATH + path, json={"expression": "{}"})
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["code"] == "not_found"


def test_one_400_names_every_invalid_field_and_stores_nothing(service: LiveService, beheer: Recording) -> None:
    faulty = _mapping(id="Not A Slug", expression="{ 'a': ", headers=["not a header"], colour="red")
    assert _names(beheer.post(PATH, json=faulty)) == {"id", "expression", "headers", "colour"}
    answer = beheer.post(PATH, json={"id": 7, "expression": ["x"], "headers": "x-a", "description": "a\x00b"})
    assert _names(answer) == {"id", "expression", "headers", "description"}
    assert _names(beheer.post(PATH, json={})) == {"id", "expression"}
    assert _names(beheer.post(PATH, content=b"{not json", headers={"Content-Type": "application/json"})) == {
        "nonFieldErrors"
    }
    assert beheer.post(PATH, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert _stored(service) == []

    assert beheer.post(PATH, json=_mapping()).status_code == 201
    assert _names(beheer.put(f"{PATH}/psp-payment", json={"expression": "$$$(", "id": "x"})) == {"expression", "id"}
    assert _stored(service) == [("psp-payment", 1, [1])]
    compile_error = beheer.put(f"{PATH}/psp-payment", json={"expression": "("}).json()["invalidParams"]
    assert [(p["name"], p["code"]) for p in compile_error] == [("expression", "expression_error")]


def test_a_taken_id_and_a_mapping_in_use_are_409s_naming_them(service: LiveService, beheer: Recording) -> None:
    assert beheer.post(PATH, json=_mapping()).status_code == 201
    taken = beheer.post(PATH, json=_mapping(description="again"))
    assert _names(taken, 409) == {"id"}
    assert taken.json()["code"] == "conflict"

    entry = {"name": "Betaling ontvangen", "slug": "betaling-ontvangen", "type": TYPE}
    assert beheer.post("/api/v1/event-types", json=entry).status_code == 201
    consumer = {"name": "PSP", "endpoint": "psp", "mappingId": "psp-payment", "targetType": "event-type",
                "targetId": "betaling-ontvangen", "verification": {"method": "none"}}  # fmt: skip
    assert beheer.post("/api/v1/consumers", json=consumer).status_code == 201
    assert beheer.get(f"{PATH}/psp-payment").json()["consumers"] == ["PSP"]
    in_use = beheer.delete(f"{PATH}/psp-payment")
    assert _names(in_use, 409) == {"consumers"}
    assert "PSP" in in_use.json()["detail"]
    assert _stored(service) == [("psp-payment", 1, [1])]


def test_only_outbox_beheer_may_read_or_change_mappings(service: LiveService, beheer: Recording) -> None:
    others = service.add_client("abonnee", CONSUME, PUBLISH)
    assert beheer.post(PATH, json=_mapping()).status_code == 201
    calls = [("GET", PATH), ("POST", PATH), ("GET", f"{PATH}/psp-payment"), ("PUT", f"{PATH}/psp-payment"),
             ("DELETE", f"{PATH}/psp-payment"), ("GET", f"{PATH}/psp-payment/versions"), ("POST", f"{PATH}/try")]  # fmt: skip
    for method, path in calls:
        anonymous = service.anonymous.request(method, path, json=_mapping())
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.json()["code"] == "not_authenticated"
        refused = others.request(method, path, json=_mapping())
        assert refused.status_code == 403, (method, path)
        assert refused.json()["code"] == "permission_denied"
    assert _stored(service) == [("psp-payment", 1, [1])]


def _try(beheer: Any, expression: str = EXPRESSION, **request: Any) -> dict[str, Any]:
    body = {"mapping": {"expression": expression, "headers": ["x-psp-event"]}, "payload": PAYLOAD, **request}
    if "body" in request:  # the raw body instead of the payload
        del body["payload"]
    answer = beheer.post(f"{PATH}/try", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_try_shows_the_event_or_each_kind_of_failure_and_stores_nothing(
    service: LiveService, beheer: Recording
) -> None:
    good = _try(beheer, headers={"X-PSP-Event": "payment.paid", "Authorization": "Bearer not-for-the-mapping"})
    assert good == {
        "event": {
            "specversion": "1.0", "id": "tr_000001", "source": SOURCE, "type": TYPE, "subject": "ZAAK-2026-0042",
            "time": "2026-12-07T10:00:00Z", "data": {"betaling": "tr_000001", "event": "payment.paid"},
        }
    }  # fmt: skip

    def failure(expression: str = EXPRESSION, **request: Any) -> tuple[str, set[str]]:
        result = _try(beheer, expression, **request)
        assert set(result) == {"code", "problems"}, result
        assert all(set(p) == {"name", "code", "reason"} and p["code"] == result["code"] for p in result["problems"])
        return result["code"], {p["name"] for p in result["problems"]}

    assert failure("{ 'a': ") == ("expression_error", {"expression"})
    assert failure(body='{"id": ') == ("malformed_json", {"body"})
    assert failure("$number('x')") == ("evaluation_error", {"expression"})
    assert failure("[1, 2]") == ("not_an_object", {"result"})
    assert failure(EXPRESSION.replace("body.paidAt", "'yesterday'").replace('"subject": body.zaak,', "")) == (
        "invalid_event", {"subject", "time"},
    )  # fmt: skip
    assert failure("($f := function($x) { $f($x) }; $f(1))")[0] in ("evaluation_error", "timeout")
    # the raw body as text is read as the sender's bytes
    text = _try(beheer, body='{"id": "tr_2", "zaak": "Z-1", "paidAt": "2026-12-07T10:00:00Z"}')
    assert text["event"]["id"] == "tr_2"

    both = beheer.post(f"{PATH}/try", json={"mapping": {"expression": "{}"}, "payload": {}, "body": "{}"})
    assert _names(both) == {"payload"}
    assert _names(beheer.post(f"{PATH}/try", json={"mapping": {"expression": "{}"}})) == {"payload"}
    assert _names(beheer.post(f"{PATH}/try", json={"mapping": {"headers": 1}, "payload": {}})) == {
        "mapping.expression", "mapping.headers",
    }  # fmt: skip
    assert _stored(service) == []
