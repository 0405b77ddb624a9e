"""/api/v1/kanaal: the kanalen of the event catalogue and of the abonnementen, read-only."""

from __future__ import annotations

import psycopg

from tests.service.live import CONSUME, PUBLISH, LiveService
from tests.support import Receiver


def _catalogue(service: LiveService, *types: str) -> None:
    with psycopg.connect(service.database_url) as conn:
        for n, event_type in enumerate(types):
            conn.execute(
                "INSERT INTO outbox.event_types (slug, type, name) VALUES (%s, %s, %s)",
                (f"type-{n}", event_type, event_type),
            )


def test_kanalen_come_from_the_catalogue_and_the_abonnementen(service: LiveService, callback: Receiver) -> None:
    _catalogue(service, "nl.overheid.zaken.zaak-gekoppeld", "nl.overheid.zaken.zaak-ontkoppeld", "com.example.x")
    consumer = service.add_client("consumer", CONSUME)
    made = consumer.post(
        "/api/v1/abonnement",
        json={
            "callbackUrl": callback.url,
            "auth": "Bearer abc",
            "kanalen": [
                {"naam": "zaken", "filters": {"domein": "VTH", "#actie": "create"}},
                {"naam": "besluiten", "filters": {"besluittype": "x"}},
            ],
        },
    )
    assert made.status_code == 201, made.text
    producer = service.add_client("producer", PUBLISH)
    kanalen = producer.get("/api/v1/kanaal")
    assert kanalen.status_code == 200, kanalen.text
    base = service.base_url
    assert kanalen.json() == [
        {
            "url": f"{base}/api/v1/kanaal/besluiten",
            "naam": "besluiten",
            "documentatieLink": f"{base}/api/v1/event-types",
            "filters": ["besluittype"],
        },
        {
            "url": f"{base}/api/v1/kanaal/zaken",
            "naam": "zaken",
            "documentatieLink": f"{base}/api/v1/event-types",
            "filters": ["#actie", "domein"],
        },
    ]
    assert [k["naam"] for k in consumer.get("/api/v1/kanaal", params={"naam": "zaken"}).json()] == ["zaken"]
    assert consumer.get("/api/v1/kanaal", params={"naam": "documenten"}).json() == []
    assert consumer.get("/api/v1/kanaal/zaken").json()["filters"] == ["#actie", "domein"]
    assert consumer.get("/api/v1/kanaal/documenten").status_code == 404


def test_kanalen_need_a_scope_and_are_read_only(service: LiveService) -> None:
    assert service.anonymous.get("/api/v1/kanaal").status_code == 401
    consumer = service.add_client("consumer", CONSUME)
    assert consumer.get("/api/v1/kanaal").json() == []
    assert consumer.post("/api/v1/kanaal", json={"naam": "zaken"}).status_code == 405
