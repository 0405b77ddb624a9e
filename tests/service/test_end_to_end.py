"""The whole path over HTTP: a client registers its abonnement, a producer POSTs cloud events, the
worker delivers them to the client's receiver."""

from __future__ import annotations

import json

from tests.service.live import CONSUME, PUBLISH, LiveService
from tests.support import Receiver, WorkerFactory, deliveries, wait_until

SOURCE = "urn:nld:oin:00000001823288444000:systeem:openklant"


def _event(n: int, type_: str, zaak: str) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"e2e-{n}",
        "source": SOURCE,
        "type": type_,
        "subject": zaak,
        "time": "2026-11-29T12:00:00Z",
        "datacontenttype": "application/json",
        "dataref": None,
        "data": {"zaak": f"urn:uuid:{zaak}", "domein": "VTH"},
    }


def test_an_abonnement_made_over_http_receives_what_a_producer_posts(
    service: LiveService, callback: Receiver, start_worker: WorkerFactory
) -> None:
    consumer = service.add_client("zaakafhandelcomponent", CONSUME)
    producer = service.add_client("openklant", PUBLISH)
    created = consumer.post(
        "/api/v1/abonnement",
        json={
            "callbackUrl": callback.url,
            "auth": "Bearer 8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE",
            "kanalen": [{"naam": "zaken", "filters": {"domein": "VTH"}}],
        },
    )
    assert created.status_code == 201, created.text
    assert [r.method for r in callback.received] == ["OPTIONS"]  # the guideline's handshake at create

    zaak = "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"
    events = [
        _event(1, "nl.overheid.zaken.zaak-gekoppeld", zaak),
        _event(2, "nl.overheid.zaken.zaak-ontkoppeld", zaak),
        _event(3, "nl.overheid.documenten.document-gemaakt", zaak),  # another kanaal: not for this abonnement
    ]
    single = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps(events[0]),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    batch = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps(events[1:]),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert (single.status_code, batch.status_code) == (201, 201)

    start_worker()
    wait_until(lambda: len([r for r in callback.received if r.method == "POST"]) >= 2, message="two deliveries")
    posts = [r for r in callback.received if r.method == "POST"]
    assert [p.event["id"] for p in posts] == ["e2e-1", "e2e-2"]  # in order: one subject
    assert posts[0].headers["Authorization"] == "Bearer 8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE"
    assert posts[0].headers["Content-Type"].startswith("application/cloudevents+json")
    expected = {key: value for key, value in events[0].items() if value is not None}
    assert posts[0].event == expected  # as the producer sent it, the null dataref unset
    # The worker routed all three events; only the two of the zaken kanaal became deliveries.
    wait_until(lambda: all(d["status"] == "delivered" for d in deliveries(service.database_url)), message="recorded")
    assert len(deliveries(service.database_url)) == 2
