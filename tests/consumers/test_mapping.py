"""worker/consumers/mapping.py: a payment provider's webhook becomes an NL GOV CloudEvent; every way it can
fail has its code and names the field; a runaway mapping stops; compiled mappings work from any thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pydantic
import pytest

from outbox import CloudEvent
from worker.consumers.mapping import (
    EVALUATION_ERROR,
    EXPRESSION_ERROR,
    INVALID_EVENT,
    INVALID_MAPPING,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    TIMEOUT,
    InvalidMapping,
    Mapping,
    MappingFailed,
    Problem,
    apply,
    parse_mapping,
    try_mapping,
)

SOURCE = "urn:nld:oin:00000001234567890000:consumer:psp"

# A Stripe-shaped payment_intent.succeeded with Mollie-like status values.
WEBHOOK: dict[str, Any] = {
    "id": "evt_3Nx8Yq2eZvKYlo2C1a2b3c4d",
    "object": "event",
    "type": "payment_intent.succeeded",
    "created": 1700000000,
    "data": {
        "object": {
            "id": "pi_3Nx8Yq2eZvKYlo2C",
            "status": "Paid",
            "currency": "eur",
            "metadata": {"zaak": "ZAAK-2026-0042"},
            "lines": {
                "data": [
                    {"sku": "leges-paspoort", "quantity": 1, "amount": 7500},
                    {"sku": "leges-id-kaart", "quantity": 2, "amount": 3000},
                ]
            },
        }
    },
}
BODY = json.dumps(WEBHOOK).encode()

PAYMENT = """(
  $o := body.data.object;
  {
    "type": "nl.example.betaling." & $lookup({"paid": "betaald", "failed": "mislukt", "canceled": "geannuleerd"},
                                             $lowercase($o.status)),
    "source": "@SOURCE@",
    "subject": $o.metadata.zaak,
    "id": body.id,
    "time": $fromMillis(body.created * 1000, "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01]Z"),
    "datacontenttype": "application/json",
    "psprequest": headers."x-request-id",
    "data": {
      "betaling": $o.id,
      "valuta": $uppercase($o.currency),
      "regels": [$o.lines.data.{"artikel": sku, "aantal": quantity, "bedrag": amount}],
      "totaal": $sum($o.lines.data.(quantity * amount))
    }
  }
)""".replace("@SOURCE@", SOURCE)


def payment(**changes: Any) -> Mapping:
    return Mapping(expression=PAYMENT, headers=("X-Request-Id",), **changes)


def failure(mapping: Mapping, payload: Any, headers: Any = None) -> MappingFailed:
    with pytest.raises(MappingFailed) as caught:
        apply(mapping, payload, headers)
    return caught.value


def test_a_payment_webhook_becomes_a_betaling_betaald_event() -> None:
    event = apply(payment(), BODY, {"X-Request-Id": "req-77", "Authorization": "Bearer secret"})

    assert isinstance(event, CloudEvent)
    assert event.type == "nl.example.betaling.betaald"
    assert event.source == SOURCE
    assert event.id == "evt_3Nx8Yq2eZvKYlo2C1a2b3c4d"  # the sender's id: its retries deduplicate
    assert event.subject == "ZAAK-2026-0042"
    assert event.time == "2023-11-14T22:13:20Z"  # epoch seconds → RFC 3339
    assert event.datacontenttype == "application/json"
    assert event.extensions == {"psprequest": "req-77"}  # from a chosen header
    assert event.data == {
        "betaling": "pi_3Nx8Yq2eZvKYlo2C",
        "valuta": "EUR",
        "regels": [
            {"artikel": "leges-paspoort", "aantal": 1, "bedrag": 7500},
            {"artikel": "leges-id-kaart", "aantal": 2, "bedrag": 3000},
        ],
        "totaal": 13500,
    }


def test_parsed_json_and_asgi_header_lists_are_accepted_too() -> None:
    event = apply(payment(), WEBHOOK, [(b"x-request-id", b"a"), (b"X-Request-ID", b"b")])
    assert event.get("psprequest") == "a, b"  # a repeated header: its values joined, in order
    assert event == apply(payment(), BODY, {"x-request-id": ("a", "b")})  # Inbound.headers' shape


def test_only_the_chosen_headers_reach_the_expression() -> None:
    mapping = Mapping(
        expression='{"type": "t", "source": "s", "id": "1", "subject": "s", "time": "2026-12-07T12:00:00Z",'
        ' "data": headers}',
        headers=("X-Request-Id", "X-Absent"),
    )
    assert mapping.headers == ("x-request-id", "x-absent")
    event = apply(mapping, b"{}", {"X-Request-Id": "1", "Authorization": "Basic c2VjcmV0", "Cookie": "a=b"})
    assert event.data == {"x-request-id": "1"}
    assert apply(Mapping(expression=mapping.expression), b"{}", {"X-Request-Id": "1"}).data == {}


def test_missing_fields_are_an_invalid_event_naming_each() -> None:
    mapping = Mapping(
        expression='{"type": "nl.example.betaling.betaald", "source": "@S@", "data": body}'.replace("@S@", SOURCE)
    )
    failed = failure(mapping, BODY)
    assert failed.code == INVALID_EVENT
    assert {problem.field for problem in failed.problems} == {"id", "subject", "time"}
    assert all(problem.rule == "is required" for problem in failed.problems)


def test_a_payload_without_the_id_the_mapping_reads_is_an_invalid_event() -> None:
    payload = {key: value for key, value in WEBHOOK.items() if key != "id"}
    failed = failure(payment(), payload)
    assert failed.code == INVALID_EVENT
    assert failed.problems == (Problem("id", "is required"),)


def test_the_cloudevent_rules_are_reported_per_attribute() -> None:
    mapping = Mapping(
        expression='{"type": "t", "source": "has space", "id": "1", "subject": "s", "time": "yesterday",'
        ' "data": {}, "Bad_Name": 1}'
    )
    failed = failure(mapping, b"{}")
    assert failed.code == INVALID_EVENT
    fields = {problem.field: problem.rule for problem in failed.problems}
    assert set(fields) == {"source", "time", "Bad_Name"}
    assert "URI" in fields["source"] and "RFC 3339" in fields["time"] and "lowercase" in fields["Bad_Name"]


def test_a_body_that_is_not_json_is_malformed_json() -> None:
    failed = failure(payment(), b'{"id": "evt_1", ')
    assert failed.code == MALFORMED_JSON
    assert [problem.field for problem in failed.problems] == ["body"]
    assert failure(payment(), b"\xff\xfe").code == MALFORMED_JSON


def test_an_expression_that_does_not_compile_is_refused_whole() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Mapping(expression='{"type": ')
    assert [error["loc"] for error in caught.value.errors()] == [("expression",)]

    with pytest.raises(InvalidMapping) as refused:
        parse_mapping({"expression": '{"type": ', "headers": ["x-request-id"], "version": 2})
    assert refused.value.code == EXPRESSION_ERROR
    assert [problem.field for problem in refused.value.problems] == ["expression"]
    assert refused.value.problems[0].rule.startswith("does not compile")

    tried = try_mapping({"expression": "(", "version": 1}, BODY)
    assert tried["code"] == EXPRESSION_ERROR and tried["problems"][0]["field"] == "expression"


def test_other_faults_of_a_definition_name_their_field() -> None:
    with pytest.raises(InvalidMapping) as refused:
        parse_mapping({"expression": "body", "headers": ["bad header"], "version": 0, "extra": 1})
    assert refused.value.code == INVALID_MAPPING
    assert {problem.field for problem in refused.value.problems} == {"headers", "version", "extra"}


def test_an_endless_recursion_times_out_quickly() -> None:
    mapping = Mapping(expression="($f := function($x) { $f($x + 1) }; $f(0))")
    started = time.monotonic()
    failed = failure(mapping, BODY)
    assert time.monotonic() - started < 1.0
    assert failed.code in (TIMEOUT, EVALUATION_ERROR)
    assert failed.code == TIMEOUT  # measured: D1012 after 50 ms


def test_deep_non_tail_recursion_is_stopped_by_the_stack_bound() -> None:
    mapping = Mapping(expression="($f := function($x) { $x > 100000 ? 0 : 1 + $f($x + 1) }; $f(0))")
    started = time.monotonic()
    assert failure(mapping, b"{}").code in (TIMEOUT, EVALUATION_ERROR)
    assert time.monotonic() - started < 1.0


def test_a_runtime_error_is_an_evaluation_error() -> None:
    failed = failure(Mapping(expression="body.id + 1"), b'{"id": "evt_1"}')
    assert failed.code == EVALUATION_ERROR
    assert failed.problems[0].field == "expression"


@pytest.mark.parametrize(
    ("expression", "gave"),
    [("body.nothing", "nothing"), ("[1, 2]", "an array"), ('"text"', "a string"), ("1 = 1", "a boolean")],
)
def test_a_result_that_is_not_an_object(expression: str, gave: str) -> None:
    failed = failure(Mapping(expression=expression), BODY)
    assert failed.code == NOT_AN_OBJECT
    assert failed.problems == (Problem("result", f"must be a JSON object, the expression gave {gave}"),)


def test_a_mapping_made_in_one_thread_is_applied_in_others() -> None:
    mapping = payment()  # compiled here, on the main thread
    expected = apply(mapping, BODY, {"x-request-id": "r"})

    def run(_: int) -> CloudEvent:
        return apply(mapping, BODY, {"x-request-id": "r"})

    with ThreadPoolExecutor(max_workers=4) as pool:  # as FastAPI runs sync endpoints
        results = list(pool.map(run, range(40)))
    assert results == [expected] * 40

    async def in_to_thread() -> CloudEvent:
        return await asyncio.to_thread(apply, mapping, BODY, {"x-request-id": "r"})

    assert asyncio.run(in_to_thread()) == expected

    seen: list[Any] = []
    worker = threading.Thread(target=lambda: seen.append(try_mapping(mapping, b"[", None)))
    worker.start()
    worker.join()
    assert seen[0]["code"] == MALFORMED_JSON


def test_a_new_version_is_compiled_anew() -> None:
    first = Mapping(expression=PAYMENT, version=1)
    second = Mapping(expression=PAYMENT.replace("betaling.", "payment."), version=2)
    assert apply(first, BODY).type == "nl.example.betaling.betaald"
    assert apply(second, BODY).type == "nl.example.payment.betaald"


def test_try_mapping_answers_with_the_event_or_the_problems() -> None:
    tried = try_mapping(payment(), BODY, {"x-request-id": "r"})
    assert set(tried) == {"event"}
    assert CloudEvent.from_dict(tried["event"]) == apply(payment(), BODY, {"x-request-id": "r"})
    assert tried["event"]["specversion"] == "1.0"

    definition = {"expression": PAYMENT, "headers": ["x-request-id"], "version": 3}
    assert try_mapping(definition, BODY, {"x-request-id": "r"}) == tried

    assert try_mapping(payment(), b"nope") == {
        "code": MALFORMED_JSON,
        "problems": [{"field": "body", "rule": failure(payment(), b"nope").problems[0].rule}],
    }
    json.dumps(try_mapping(payment(), {"id": "x"}))  # the answer is JSON as it is


def test_an_engine_panic_is_an_evaluation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled expression used from a thread other than its own makes pyo3 panic (a BaseException):
    the module never does that itself (it compiles per thread), but should the engine panic, it is a failure
    of this payload, not of the server."""
    import jsonatapy

    from worker.consumers import mapping as module

    foreign = jsonatapy.compile("body")  # bound to this thread
    monkeypatch.setattr(module, "_compile", lambda expression, version: foreign)
    seen: list[Any] = []
    worker = threading.Thread(target=lambda: seen.append(try_mapping(Mapping(expression="body"), b"{}")))
    worker.start()
    worker.join()
    assert seen[0]["code"] == EVALUATION_ERROR
    assert seen[0]["problems"][0]["field"] == "expression"


def test_other_base_exceptions_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.consumers import mapping as module

    class Compiled:
        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "_compile", lambda expression, version: Compiled())
    with pytest.raises(KeyboardInterrupt):
        apply(Mapping(expression="body"), b"{}")
