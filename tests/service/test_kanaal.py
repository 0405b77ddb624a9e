"""/api/v1/kanaal: the kanalen of the event catalogue and of the abonnementen, read-only."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.service.live import ADMIN, CONSUME, PUBLISH, Caller, LiveService
from tests.support import Receiver


def _catalogue(service: LiveService, *types: str) -> None:
    with psycopg.connect(service.database_url) as conn:
        for n, event_type in enumerate(types):
            conn.execute(
                "INSERT INTO outbox.event_types (slug, type, name) VALUES (%s, %s, %s)",
                (f"type-{n}", event_type, event_type),
            )


def _abonnement(caller: Caller, callback: Receiver, *kanalen: dict[str, Any]) -> None:
    made = caller.post(
        "/api/v1/abonnement", json={"callbackUrl": callback.url, "auth": "Bearer abc", "kanalen": kanalen}
    )
    assert made.status_code == 201, made.text


def _kanaal(base: str, naam: str, *filters: str) -> dict[str, Any]:
    return {
        "url": f"{base}/api/v1/kanaal/{naam}",
        "naam": naam,
        "documentatieLink": f"{base}/api/v1/event-types",
        "filters": list(filters),
    }


def test_kanalen_come_from_the_catalogue_and_the_abonnementen(service: LiveService, callback: Receiver) -> None:
    _catalogue(service, "nl.overheid.zaken.zaak-gekoppeld", "nl.overheid.zaken.zaak-ontkoppeld", "com.example.x")
    consumer = service.add_client("consumer", CONSUME)
    _abonnement(
        consumer,
        callback,
        {"naam": "zaken", "filters": {"domein": "VTH", "#actie": "create"}},
        {"naam": "besluiten", "filters": {"besluittype": "x"}},
    )
    base = service.base_url
    kanalen = consumer.get("/api/v1/kanaal")
    assert kanalen.status_code == 200, kanalen.text
    assert kanalen.json() == [_kanaal(base, "besluiten", "besluittype"), _kanaal(base, "zaken", "#actie", "domein")]
    assert [k["naam"] for k in consumer.get("/api/v1/kanaal", params={"naam": "zaken"}).json()] == ["zaken"]
    assert consumer.get("/api/v1/kanaal", params={"naam": "documenten"}).json() == []
    assert consumer.get("/api/v1/kanaal/zaken").json()["filters"] == ["#actie", "domein"]
    assert consumer.get("/api/v1/kanaal/documenten").status_code == 404


def test_a_client_sees_nothing_of_other_clients_abonnementen(service: LiveService, callback: Receiver) -> None:
    _catalogue(service, "nl.overheid.zaken.zaak-gekoppeld")
    base = service.base_url
    first = service.add_client("first", CONSUME)
    second = service.add_client("second", CONSUME)
    _abonnement(first, callback, {"naam": "zaken", "filters": {"bsn": "111222333"}}, {"naam": "geheim", "filters": {}})
    _abonnement(second, callback, {"naam": "zaken", "filters": {"domein": "VTH"}})
    # The catalogue's kanaal for everyone; each client's own filter keys and kanalen, and no one else's.
    assert first.get("/api/v1/kanaal").json() == [_kanaal(base, "geheim"), _kanaal(base, "zaken", "bsn")]
    assert second.get("/api/v1/kanaal").json() == [_kanaal(base, "zaken", "domein")]
    assert second.get("/api/v1/kanaal/geheim").status_code == 404
    assert second.get("/api/v1/kanaal/zaken").json()["filters"] == ["domein"]
    producer = service.add_client("producer", PUBLISH)
    assert producer.get("/api/v1/kanaal").json() == [_kanaal(base, "zaken")]
    # outbox.beheer sees every subscription anyway, and so every kanaal and key.
    admin = service.add_client("admin", ADMIN)
    assert admin.get("/api/v1/kanaal").json() == [_kanaal(base, "geheim"), _kanaal(base, "zaken", "bsn", "domein")]


def test_kanalen_need_a_scope_and_are_read_only(service: LiveService) -> None:
    assert service.anonymous.get("/api/v1/kanaal").status_code == 401
    consumer = service.add_client("consumer", CONSUME)
    assert consumer.get("/api/v1/kanaal").json() == []
    assert consumer.post("/api/v1/kanaal", json={"naam": "zaken"}).status_code == 405
