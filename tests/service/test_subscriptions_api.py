"""/api/v1/subscriptions (CloudEvents Subscriptions API) over the same subscriptions as /abonnement."""

from __future__ import annotations

from typing import Any

import psycopg

from outbox import CloudEvent
from tests.service.live import ADMIN, CONSUME, LiveService
from tests.support import Receiver, WorkerFactory, count_delivered, enqueue, wait_until, zaak_event

TOKEN = "s3cr3t-access-token-value"
SOURCE = "urn:nld:oin:01823288444:openklant"


def _subscription(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "sink": receiver.url,
        "sinkcredential": {"credentialtype": "ACCESSTOKEN", "accesstoken": TOKEN},
        "protocol": "HTTP",
        **extra,
    }


def _names(response: Any) -> set[str]:
    assert response.status_code == 400, response.text
    return {p["name"] for p in response.json()["invalidParams"]}


def _count(service: LiveService) -> int:
    with psycopg.connect(service.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox.subscriptions").fetchone()
    return int(row[0]) if row else 0


def test_create_read_list_replace_delete(service: LiveService, callback: Receiver) -> None:
    client = service.add_client("consumer", CONSUME)
    created = client.post(
        "/api/v1/subscriptions",
        json=_subscription(
            callback,
            id="ignored",
            source=SOURCE,
            types=["nl.overheid.zaken.zaak-gekoppeld"],
            config={"contentMode": "binary", "rate": 60},
            filters=[{"prefix": {"subject": "a7"}}],
            protocolsettings={"headers": {"X-Tenant": "utrecht"}, "method": "POST"},
        ),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] != "ignored"
    assert created.headers["location"] == f"{service.base_url}/api/v1/subscriptions/{body['id']}"
    assert body["sink"] == callback.url
    assert body["source"] == SOURCE
    assert body["types"] == ["nl.overheid.zaken.zaak-gekoppeld"]
    assert body["filters"] == [{"prefix": {"subject": "a7"}}]
    assert body["config"]["contentMode"] == "binary" and body["config"]["rate"] == 60
    assert body["protocol"] == "HTTP"
    assert body["protocolsettings"] == {"headernames": ["X-Tenant"], "method": "POST"}, "the values are write-only"
    assert body["sinkcredential"] == {"credentialtype": "ACCESSTOKEN"}, "the token itself is write-only"
    (handshake,) = callback.received
    assert handshake.method == "OPTIONS" and handshake.headers["WebHook-Request-Rate"] == "60"

    sub_id = body["id"]
    assert client.get(f"/api/v1/subscriptions/{sub_id}").json() == body
    assert client.get("/api/v1/subscriptions").json() == [body]
    for text in (created.text, client.get("/api/v1/subscriptions").text):
        assert TOKEN not in text and "utrecht" not in text

    replaced = client.put(f"/api/v1/subscriptions/{sub_id}", json={**_subscription(callback), "id": sub_id})
    assert replaced.status_code == 200, replaced.text
    after = replaced.json()
    assert after["types"] == ["*"], "no types, kanalen or cloudeventFilters: every event (the spec: no constraint)"
    assert "source" not in after and after["filters"] == []
    assert after["protocolsettings"]["headernames"] == ["X-Tenant"], "write-only headers left out are kept"
    cleared = client.put(
        f"/api/v1/subscriptions/{sub_id}", json={**_subscription(callback), "protocolsettings": {"headers": {}}}
    )
    assert cleared.json()["protocolsettings"] == {"headernames": [], "method": "POST"}

    deleted = client.delete(f"/api/v1/subscriptions/{sub_id}")
    assert deleted.status_code == 200 and deleted.json()["id"] == sub_id
    assert _count(service) == 0
    assert client.get(f"/api/v1/subscriptions/{sub_id}").status_code == 404


def test_one_subscription_through_both_apis(service: LiveService, callback: Receiver) -> None:
    client = service.add_client("consumer", CONSUME)
    made = client.post(
        "/api/v1/abonnement",
        json={"callbackUrl": callback.url, "auth": "Bearer abc", "kanalen": [{"naam": "zaken"}], "batchMax": 9},
    ).json()
    uuid = made["url"].rsplit("/", 1)[1]
    seen = client.get(f"/api/v1/subscriptions/{uuid}").json()
    assert seen["id"] == uuid and seen["sink"] == callback.url
    assert seen["config"]["kanalen"] == [{"naam": "zaken", "filters": {}}] and seen["config"]["batchMax"] == 9
    assert seen["types"] == []

    other = client.post("/api/v1/subscriptions", json=_subscription(callback, source=SOURCE)).json()
    as_abonnement = client.get(f"/api/v1/abonnement/{other['id']}").json()
    assert as_abonnement["callbackUrl"] == callback.url and as_abonnement["types"] == ["*"]
    # A PUT through /subscriptions keeps the kanalen it cannot name; a PUT through /abonnement the source.
    assert client.put(f"/api/v1/subscriptions/{uuid}", json=_subscription(callback)).json()["config"]["kanalen"]
    client.put(f"/api/v1/abonnement/{other['id']}", json={"callbackUrl": callback.url, "types": ["*"]})
    assert client.get(f"/api/v1/subscriptions/{other['id']}").json()["source"] == SOURCE


def test_unsupported_protocol_method_credential_and_dialect_are_refused(service: LiveService) -> None:
    client = service.add_client("consumer", CONSUME)
    response = client.post(
        "/api/v1/subscriptions",
        json={
            "sink": "https://example.nl/hook",
            "protocol": "MQTT5",
            "protocolsettings": {"method": "PUT", "headers": {"Authorization": "x", "ce-type": "y"}},
            "sinkcredential": {"credentialtype": "PLAIN", "identifier": "me", "secret": "pw"},
            "filters": [{"regex": {"type": ".*"}}],
            "config": {"batchMax": 0, "colour": "blue"},
        },
    )
    assert _names(response) == {
        "protocol",
        "protocolsettings.method",
        "protocolsettings.headers.Authorization",
        "protocolsettings.headers.ce-type",
        "sinkcredential.credentialtype",
        "sinkcredential.identifier",
        "sinkcredential.secret",
        "filters[0]",
        "config.batchMax",
        "config.colour",
    }
    assert "pw" not in response.text.replace("PUT", "")
    assert _count(service) == 0
    missing = client.post("/api/v1/subscriptions", json={"types": ["*"]})
    assert _names(missing) == {"sink", "protocol"}
    expiring = client.post(
        "/api/v1/subscriptions",
        json={
            "sink": "https://example.nl/hook",
            "protocol": "HTTP",
            "sinkcredential": {"credentialtype": "ACCESSTOKEN", "accesstoken": "t", "accesstokenexpiresutc": "x"},
        },
    )
    assert _names(expiring) == {"sinkcredential.accesstokenexpiresutc"}


def test_a_refused_handshake_names_the_sink(service: LiveService) -> None:
    client = service.add_client("consumer", CONSUME)
    with Receiver(lambda n, r: (404, {}, 0.0)).running() as refusing:
        response = client.post("/api/v1/subscriptions", json=_subscription(refusing))
    assert _names(response) == {"sink"}
    assert _count(service) == 0


def test_owners_and_beheer(service: LiveService, callback: Receiver) -> None:
    alice = service.add_client("alice", CONSUME)
    bob = service.add_client("bob", CONSUME)
    admin = service.add_client("beheer", ADMIN)
    sub_id = alice.post("/api/v1/subscriptions", json=_subscription(callback)).json()["id"]
    assert bob.get("/api/v1/subscriptions").json() == []
    assert bob.get(f"/api/v1/subscriptions/{sub_id}").status_code == 404
    assert bob.put(f"/api/v1/subscriptions/{sub_id}", json=_subscription(callback)).status_code == 404
    assert bob.delete(f"/api/v1/subscriptions/{sub_id}").status_code == 404
    assert [s["id"] for s in admin.get("/api/v1/subscriptions").json()] == [sub_id]
    assert admin.delete(f"/api/v1/subscriptions/{sub_id}").status_code == 200
    assert _count(service) == 0


def test_headers_source_and_cloudevent_filters_reach_the_receiver(
    service: LiveService, start_worker: WorkerFactory
) -> None:
    client = service.add_client("consumer", CONSUME)
    with Receiver(_agree).running() as sink, Receiver(_agree).running() as groups:
        made = client.post(
            "/api/v1/subscriptions",
            json=_subscription(sink, source=SOURCE, protocolsettings={"headers": {"X-Tenant": "utrecht"}}),
        )
        assert made.status_code == 201, made.text
        abonnement = client.post(
            "/api/v1/abonnement",
            json={
                "callbackUrl": groups.url,
                "auth": "Bearer abc",
                "cloudeventFilters": [{"typeSubstring": "zaak-gekoppeld", "filters": {"n": "1"}}],
            },
        )
        assert abonnement.status_code == 201, abonnement.text
        enqueue(
            service.database_url,
            [zaak_event("a", n=1), zaak_event("b", n=2), _elsewhere("c")],
        )
        start_worker()
        wait_until(lambda: count_delivered(service.database_url) == 4, message="4 delivered")
        posts = [r for r in sink.received if r.method == "POST"]
        assert sorted(r.event["subject"] for r in posts) == ["a", "b"], "only its source"
        assert all(r.headers["X-Tenant"] == "utrecht" for r in posts)
        assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in posts)
        grouped = [r.event["subject"] for r in groups.received if r.method == "POST"]
        assert sorted(grouped) == ["a", "c"], "typeSubstring and data.n = 1, from any source"


def _agree(number: int, received: Any) -> tuple[int, dict[str, str], float]:
    if received.method == "OPTIONS":
        return 200, {"WebHook-Allowed-Origin": "*"}, 0.0
    return 204, {}, 0.0


def _elsewhere(subject: str) -> CloudEvent:
    return CloudEvent(type="nl.overheid.zaken.zaak-gekoppeld", source="urn:other", subject=subject, data={"n": 1})
