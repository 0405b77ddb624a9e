"""Subscription filters: the CloudEvents Subscriptions API dialects and JSON Logic (outbox._filters)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from outbox import CloudEvent, InvalidSubscriptionError, Subscription
from tests.support import WorkerFactory, enqueue, subscribe, wait_until

EVENT = CloudEvent(
    type="nl.overheid.zaken.zaak-gekoppeld",
    source="urn:nld:oin:01823288444:openklant",
    subject="a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
    id="f347fd1f-dac1-4870-9dd0-f6c00edf4bf7",
    datacontenttype="application/json",
    data={"zaak": "urn:uuid:a7b3c8d9", "label": "Mijn Klantcontact Onderwerp", "vertrouwelijk": False, "n": 3},
    kanaal="zaken",
    hop=3,
    urgent=True,
)


def wants(*filters: Any, event: CloudEvent = EVENT) -> bool:
    subscription = Subscription.create(callback_url="https://ontvanger.example/hook", types=["*"], filters=filters)
    return subscription.wants(event)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"exact": {"type": "nl.overheid.zaken.zaak-gekoppeld"}}, True),
        ({"exact": {"type": "nl.overheid.zaken.zaak-gekoppeld", "source": "urn:nld:oin:01823288444:openklant"}}, True),
        ({"exact": {"type": "nl.overheid.zaken.zaak-ontkoppeld"}}, False),
        ({"exact": {"type": "NL.OVERHEID.ZAKEN.ZAAK-GEKOPPELD"}}, False),  # case-sensitive
        ({"exact": {"missing": "x"}}, False),  # an attribute the event lacks never matches
        ({"exact": {"hop": "3"}}, True),  # an integer extension as its canonical string
        ({"exact": {"urgent": "true"}}, True),  # a boolean as true/false
        ({"prefix": {"type": "nl.overheid.zaken."}}, True),
        ({"prefix": {"type": "nl.overheid.zaken.", "subject": "b"}}, False),
        ({"suffix": {"type": ".zaak-gekoppeld"}}, True),
        ({"suffix": {"type": ".zaak-ontkoppeld"}}, False),
        ({"all": [{"prefix": {"type": "nl."}}, {"suffix": {"type": "gekoppeld"}}]}, True),
        ({"all": [{"prefix": {"type": "nl."}}, {"suffix": {"type": "ontkoppeld"}}]}, False),
        ({"any": [{"exact": {"type": "x"}}, {"exact": {"subject": "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"}}]}, True),
        ({"any": [{"exact": {"type": "x"}}, {"exact": {"type": "y"}}]}, False),
        ({"not": {"exact": {"type": "x"}}}, True),
        ({"not": {"prefix": {"type": "nl."}}}, False),
        (
            {
                "not": {
                    "any": [
                        {"exact": {"type": "x"}},
                        {"all": [{"prefix": {"source": "urn:"}}, {"not": {"exact": {"hop": "4"}}}]},
                    ]
                }
            },
            False,
        ),
        ({"sql": "type LIKE 'nl.overheid.zaken.%' AND hop < 5 AND urgent"}, True),
        ({"sql": "hop * 2 = 7"}, False),
        ({"sql": "missing = 'x' OR TRUE"}, False),  # TRUE, but with an error: the spec says no
        ({"sql": "subject"}, False),  # not a boolean
        ({"sql": "EXISTS data"}, False),  # CESQL does not see data
        ({"jsonlogic": {"==": [{"var": "data.label"}, "Mijn Klantcontact Onderwerp"]}}, True),
        ({"jsonlogic": {"and": [{"<": [{"var": "data.n"}, 5]}, {"in": ["urn:uuid", {"var": "data.zaak"}]}]}}, True),
        ({"jsonlogic": {"!": {"var": "data.vertrouwelijk"}}}, True),
        ({"jsonlogic": {"==": [{"var": "type"}, "nl.overheid.zaken.zaak-ontkoppeld"]}}, False),
        ({"jsonlogic": {">": [{"var": "data.missing.deeper"}, 1]}}, False),
    ],
)
def test_each_dialect(expression: dict[str, Any], expected: bool) -> None:
    assert wants(expression) is expected


def test_all_filters_must_hold_and_are_anded_with_types_and_kanalen() -> None:
    assert wants({"prefix": {"type": "nl."}}, {"exact": {"hop": "3"}})
    assert not wants({"prefix": {"type": "nl."}}, {"exact": {"hop": "4"}})
    narrowed = Subscription.create(
        callback_url="https://ontvanger.example/hook",
        kanalen=[{"naam": "zaken", "filters": {}}],
        types=["nl.overheid.zaken.*"],
        filters=[{"exact": {"hop": "3"}}],
    )
    assert narrowed.wants(EVENT)
    other_kanaal = Subscription.create(
        callback_url="https://ontvanger.example/hook",
        kanalen=[{"naam": "documenten", "filters": {}}],
        filters=[{"exact": {"hop": "3"}}],
    )
    assert not other_kanaal.wants(EVENT)


def test_a_jsonlogic_rule_over_binary_data_sees_no_data() -> None:
    event = CloudEvent(type="t", source="urn:s", data=b"\x00\x01")
    assert not wants({"jsonlogic": {"!!": {"var": "data"}}}, event=event)
    assert wants({"jsonlogic": {"==": [{"var": "type"}, "t"]}}, event=event)


@pytest.mark.parametrize(
    ("filters", "problem"),
    [
        ([{"regex": {"type": ".*"}}], "filters[0]: unknown filter dialect 'regex'"),
        ([{"exact": {"type": "x"}, "prefix": {"type": "y"}}], "filters[0]: must be an object with exactly one dialect"),
        ([{}], "filters[0]: must be an object with exactly one dialect"),
        (["exact"], "filters[0]: must be an object with exactly one dialect"),
        ([{"exact": {}}], "filters[0].exact: must be an object of attribute name: string value, at least one"),
        ([{"exact": {"type": ""}}], "filters[0].exact.type: must be a non-empty string"),
        ([{"prefix": {"type": 3}}], "filters[0].prefix.type: must be a non-empty string"),
        ([{"suffix": {"": "x"}}], "filters[0].suffix: attribute names must be non-empty strings"),
        ([{"all": []}], "filters[0].all: must be a list of at least one filter expression"),
        ([{"any": {"exact": {"type": "x"}}}], "filters[0].any: must be a list of at least one filter expression"),
        ([{"all": [{"exact": {"type": "x"}}, {"nope": 1}]}], "filters[0].all[1]: unknown filter dialect 'nope'"),
        ([{"not": {"any": [{"exact": {"type": ""}}]}}], "filters[0].not.any[0].exact.type: must be a non-empty string"),
        ([{"sql": 1}], "filters[0].sql: must be a CESQL expression (a string)"),
        ([{"sql": "type LIKE"}], "filters[0].sql: not a valid CESQL expression: LIKE takes a string literal"),
        ([{"jsonlogic": {"frobnicate": [1]}}], "filters[0].jsonlogic: unknown JSON Logic operation 'frobnicate'"),
        (
            [{"jsonlogic": {"and": [True, {"log": "x"}]}}],
            "filters[0].jsonlogic.and[1]: unknown JSON Logic operation 'log'",
        ),
        ([{"jsonlogic": "type"}], "filters[0].jsonlogic: must be a JSON Logic rule"),
        ({"exact": {"type": "x"}}, "filters: must be a list of filter expressions"),
    ],
)
def test_malformed_filters_are_refused_whole_with_the_path(filters: Any, problem: str) -> None:
    with pytest.raises(InvalidSubscriptionError) as refused:
        Subscription.create(callback_url="https://ontvanger.example/hook", types=["*"], filters=filters)
    assert any(p.startswith(problem) for p in refused.value.problems), refused.value.problems


def test_every_fault_is_listed_at_once() -> None:
    with pytest.raises(InvalidSubscriptionError) as refused:
        Subscription.from_abonnement(
            {
                "callbackUrl": "https://ontvanger.example/hook",
                "types": ["*"],
                "filters": [{"regex": {}}, {"sql": "("}, {"exact": {"type": "ok"}}],
            }
        )
    assert [p.split(":")[0] for p in refused.value.problems] == ["filters[0]", "filters[1].sql"]


def test_filters_round_trip_through_the_abonnement_json() -> None:
    filters = [
        {"all": [{"exact": {"type": "a"}}, {"not": {"prefix": {"subject": "b"}}}]},
        {"sql": "hop < 5"},
        {"jsonlogic": {"==": [{"var": "data.n"}, 3]}},
    ]
    subscription = Subscription.from_abonnement(
        {"callbackUrl": "https://ontvanger.example/hook", "types": ["*"], "filters": filters}
    )
    assert subscription.to_abonnement()["filters"] == filters
    assert subscription.to_public_dict()["filters"] == filters


def test_cli_add_list_update_and_clear_filters(run_cli: Any) -> None:
    added = run_cli(
        "subscriptions", "add", "--callback-url", "https://ontvanger.example/hook", "--type", "*", "--no-auth",
        "--skip-handshake", "--filter", '{"prefix": {"subject": "a7"}}', "--filter", '{"sql": "hop < 5"}',
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    subscription_id = added.stdout.strip().splitlines()[-1]
    shown = json.loads(run_cli("subscriptions", "show", subscription_id, "--json").stdout)
    assert shown["filters"] == [{"prefix": {"subject": "a7"}}, {"sql": "hop < 5"}]
    assert 'filter {"sql": "hop < 5"}' in run_cli("subscriptions", "list").stdout

    refused = run_cli("subscriptions", "update", subscription_id, "--filter", '{"sql": "hop <"}', "--filter", "{x")
    assert refused.returncode == 1
    assert "filters[1]: --filter is not valid JSON" in refused.stderr

    refused = run_cli("subscriptions", "update", subscription_id, "--filter", '{"sql": "hop <"}')
    assert "filters[0].sql: not a valid CESQL expression" in refused.stderr
    assert json.loads(run_cli("subscriptions", "show", subscription_id, "--json").stdout)["filters"] == shown["filters"]

    assert run_cli("subscriptions", "update", subscription_id, "--filter", '{"exact": {"hop": "3"}}').returncode == 0
    assert json.loads(run_cli("subscriptions", "show", subscription_id, "--json").stdout)["filters"] == [
        {"exact": {"hop": "3"}}
    ]
    assert run_cli("subscriptions", "update", subscription_id, "--clear", "filters").returncode == 0
    assert json.loads(run_cli("subscriptions", "show", subscription_id, "--json").stdout)["filters"] == []


def test_the_worker_routes_by_filters_end_to_end(database_url: str, receiver: Any, start_worker: WorkerFactory) -> None:
    subscribe(
        database_url,
        receiver.url,
        filters=[
            {"any": [{"sql": "hop >= 3"}, {"exact": {"subject": "always"}}]},
            {"jsonlogic": {"!": {"var": "data.vertrouwelijk"}}},
            {"not": {"suffix": {"type": ".ontkoppeld"}}},
        ],
    )
    events = [
        CloudEvent(
            type="nl.overheid.zaken.zaak-gekoppeld", source="urn:s", subject="s1", hop=3, data={"vertrouwelijk": False}
        ),
        CloudEvent(type="nl.overheid.zaken.zaak-gekoppeld", source="urn:s", subject="s2", hop=1, data={}),
        CloudEvent(type="nl.overheid.zaken.zaak-gekoppeld", source="urn:s", subject="always", hop=1, data={}),
        CloudEvent(
            type="nl.overheid.zaken.zaak-gekoppeld", source="urn:s", subject="s3", hop=9, data={"vertrouwelijk": True}
        ),
        CloudEvent(type="nl.overheid.zaken.zaak.ontkoppeld", source="urn:s", subject="s4", hop=9, data={}),
    ]
    enqueue(database_url, events)
    worker = start_worker()
    wait_until(lambda: len(receiver.events()) >= 2, message="two deliveries")
    worker.terminate()
    assert sorted(e["subject"] for e in receiver.events()) == ["always", "s1"]
