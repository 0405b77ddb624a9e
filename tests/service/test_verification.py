"""Callback verification for receivers without the OPTIONS handshake: a receiver like Open Zaak's
`/events` (exact media type else 415, 202, Bearer else 401, OPTIONS → 405) is registered by a client
application over /api/v1/abonnement and by `outbox subscriptions add`, verified by the probe event,
and gets what is enqueued by SQL with no option set. A handshake answered with a no stays a no."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from outbox._subscription import PROBE_TYPE
from tests.service.live import CONSUME, LiveService
from tests.support import Receiver, SdkReceiver, WorkerFactory, wait_until

ZAAK = "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"


@pytest.fixture
def sdk() -> Iterator[SdkReceiver]:
    with SdkReceiver().running() as receiver:
        yield receiver


def _enqueue_by_sql(database_url: str) -> str:
    event_id = str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:nld:oin:00000001823288444000:systeem:openklant",
        "type": "nl.overheid.zaken.zaak-gekoppeld",
        "subject": ZAAK,
        "datacontenttype": "application/json",
        "data": {"zaak": f"urn:uuid:{ZAAK}"},
    }
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT outbox.enqueue(%s::jsonb)", (json.dumps(event),))
    return event_id


def _agreement(database_url: str) -> list[tuple[str, bool]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT agreement, handshake_at IS NOT NULL FROM outbox.subscriptions").fetchall()
    return [(r[0], r[1]) for r in rows]


def _probes(receiver: Receiver) -> list[tuple[str, str | None]]:
    return [(r.method, r.headers.get("authorization")) for r in receiver.received]


def test_a_client_registers_an_sdk_receiver_by_probe_and_its_events_arrive(
    service: LiveService, sdk: SdkReceiver, start_worker: WorkerFactory
) -> None:
    client = service.add_client("zaakafhandelcomponent", CONSUME)
    created = client.post(
        "/api/v1/abonnement",
        json={"callbackUrl": sdk.url, "auth": f"Bearer {sdk.token}", "kanalen": [{"naam": "zaken"}]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["agreement"] == "probe"
    assert body["verification"]["method"] == "probe" and body["verification"]["at"]
    assert "401/403" in body["verification"]["verified"]
    # OPTIONS (405: no handshake), the probe with the token (202), the probe without it (401).
    assert _probes(sdk) == [("OPTIONS", None), ("POST", f"Bearer {sdk.token}"), ("POST", None)]
    probe = sdk.received[1]
    assert probe.headers["content-type"] == "application/cloudevents+json"
    assert probe.event["type"] == PROBE_TYPE and probe.event["specversion"] == "1.0"
    assert _agreement(service.database_url) == [("probe", True)]
    uuid_ = body["url"].rsplit("/", 1)[1]
    assert client.get(f"/api/v1/abonnement/{uuid_}").json()["verification"] == body["verification"]

    event_id = _enqueue_by_sql(service.database_url)
    start_worker()
    wait_until(lambda: event_id in [e["id"] for e in sdk.accepted()], message="the event accepted (202)")


def test_the_probe_must_be_refused_without_credentials(service: LiveService) -> None:
    def lax(n: int, r: Any) -> tuple[int, dict[str, str], float]:
        return (405 if r.method == "OPTIONS" else 202), {}, 0.0

    client = service.add_client("zaakafhandelcomponent", CONSUME)
    with Receiver(lax).running() as receiver:
        refused = client.post(
            "/api/v1/abonnement", json={"callbackUrl": receiver.url, "auth": "Bearer x", "kanalen": [{"naam": "zaken"}]}
        )
    assert refused.status_code == 400, refused.text
    (param,) = refused.json()["invalidParams"]
    assert param["name"] == "callbackUrl" and param["code"] == "probe_refused"
    assert param["reason"].startswith("probe without credentials: the target answered 202")
    assert "405" in param["reason"], "the handshake's answer is named too"
    assert _agreement(service.database_url) == [], "nothing stored"


@pytest.mark.parametrize(
    ("status", "origin"), [(403, None), (200, "someone-else.example")], ids=["403", "another-origin"]
)
def test_a_handshake_answered_with_a_no_is_not_probed_around(
    service: LiveService, status: int, origin: str | None
) -> None:
    def refusing(n: int, r: Any) -> tuple[int, dict[str, str], float]:
        if r.method == "OPTIONS":
            return status, ({"WebHook-Allowed-Origin": origin} if origin else {}), 0.0
        return 202, {}, 0.0

    client = service.add_client("zaakafhandelcomponent", CONSUME)
    with Receiver(refusing).running() as receiver:
        refused = client.post(
            "/api/v1/abonnement", json={"callbackUrl": receiver.url, "auth": "Bearer x", "kanalen": [{"naam": "zaken"}]}
        )
        assert [r.method for r in receiver.received] == ["OPTIONS"], "no probe after a no"
    assert refused.status_code == 400, refused.text
    (param,) = refused.json()["invalidParams"]
    assert param["code"] == "handshake_refused" and param["reason"].startswith("handshake: ")
    assert _agreement(service.database_url) == []


def test_a_probe_answered_415_names_the_step_and_the_answer(service: LiveService, sdk: SdkReceiver) -> None:
    client = service.add_client("zaakafhandelcomponent", CONSUME)
    refused = client.post(
        "/api/v1/abonnement",
        json={
            "callbackUrl": sdk.url,
            "auth": f"Bearer {sdk.token}",
            "kanalen": [{"naam": "zaken"}],
            "contentType": "application/cloudevents+json; charset=utf-8",
        },
    )
    assert refused.status_code == 400, refused.text
    (param,) = refused.json()["invalidParams"]
    assert param["code"] == "probe_refused" and param["reason"].startswith("probe: the target answered 415")
    assert "unsupported media type" in param["reason"]


def test_the_subscriptions_api_and_openapi_show_the_verification(service: LiveService, sdk: SdkReceiver) -> None:
    client = service.add_client("zaakafhandelcomponent", CONSUME)
    created = client.post(
        "/api/v1/abonnement",
        json={"callbackUrl": sdk.url, "auth": f"Bearer {sdk.token}", "kanalen": [{"naam": "zaken"}]},
    )
    assert created.status_code == 201, created.text
    (listed,) = client.get("/api/v1/subscriptions").json()
    assert listed["verification"]["method"] == "probe"
    schemas = client.get("/api/v1/schema/openapi.json").json()["components"]["schemas"]
    for name in ("AbonnementRead", "SubscriptionRead"):
        assert schemas[name]["properties"]["verification"]["readOnly"] is True, name
    assert set(schemas["Verification"]["properties"]["method"]["enum"]) == {"handshake", "probe", "operator"}


def test_the_cli_registers_an_sdk_receiver_by_probe_and_its_events_arrive(
    database_url: str, run_cli: Any, sdk: SdkReceiver, start_worker: WorkerFactory
) -> None:
    result = run_cli(
        "subscriptions", "add", "--callback-url", sdk.url, "--type", "nl.overheid.zaken.*", "--allow-insecure",
        "--auth", f"Bearer {sdk.token}", "--origin", "outbox.test.example", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown, _ = json.JSONDecoder().raw_decode(result.stdout)
    assert _agreement(database_url) == [("probe", True)]
    subscription_id = shown["id"]
    show = run_cli("subscriptions", "show", subscription_id, "--json")
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["verification"]["method"] == "probe"
    event_id = _enqueue_by_sql(database_url)
    start_worker()
    wait_until(lambda: event_id in [e["id"] for e in sdk.accepted()], message="the event accepted (202)")


def test_the_cli_names_the_failed_step(run_cli: Any) -> None:
    with SdkReceiver(token="right").running() as receiver:
        result = run_cli(
            "subscriptions", "add", "--callback-url", receiver.url, "--type", "*", "--allow-insecure",
            "--auth", "Bearer wrong", "--origin", "outbox.test.example",
        )  # fmt: skip
    assert result.returncode != 0
    assert "probe: the target answered 401" in result.stderr, result.stderr


def test_cli_verify_runs_the_probe_again_for_a_receiver_without_the_handshake(
    database_url: str, run_cli: Any, sdk: SdkReceiver
) -> None:
    added = run_cli(
        "subscriptions", "add", "--callback-url", sdk.url, "--type", "*", "--allow-insecure", "--skip-handshake",
        "--auth", f"Bearer {sdk.token}",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert _agreement(database_url) == [("out-of-band", False)]
    subscription_id = added.stdout.strip().splitlines()[-1]
    result = run_cli("subscriptions", "verify", subscription_id, "--origin", "outbox.test.example")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"verified {subscription_id} by the probe: "), result.stdout
    assert _agreement(database_url) == [("probe", True)]
