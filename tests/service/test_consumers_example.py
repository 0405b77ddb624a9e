"""The README's worked example (examples/consumers/): a payment provider's webhook, signed as Standard Webhooks,
mapped to the catalogue's `nl.overheid.zaken.betaling-ontvangen` and delivered to a subscriber."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from standardwebhooks import Webhook

from outbox._catalogue import EventType
from tests.service.live import LiveService
from tests.support import WorkerFactory, conformance_receiver, subscribe, wait_until
from worker.receiver.server import ReceiverConfig
from worker.store import catalogue as catalogue_store
from worker.store import consumers as store
from worker.store.secret_box import SecretBox

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consumers"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_worked_example_end_to_end(service: LiveService, start_worker: WorkerFactory) -> None:
    entry = EventType.from_json(json.loads((EXAMPLE / "betaling-ontvangen.json").read_text()))
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        catalogue_store.add(conn, "outbox", entry)
        store.add_mapping(
            conn, "outbox", "psp-payment", (EXAMPLE / "psp-payment.jsonata").read_text(), ["X-PSP-Method"]
        )
        store.add(
            conn,
            "outbox",
            {
                "name": "Betaalprovider",
                "endpoint": "betaalprovider",
                "mappingId": "psp-payment",
                "targetType": "event-type",
                "targetId": "betaling-ontvangen",
                "verification": {"method": "standard-webhooks", "secrets": [SECRET]},
            },
            SecretBox(),
        )
    config = ReceiverConfig(quiet=True, auth="Bearer zaaksysteem-token-0123456789")
    with conformance_receiver(config) as url:
        subscribe(
            service.database_url,
            f"{url}/zaken",
            types=["nl.overheid.zaken.*"],
            auth="Bearer zaaksysteem-token-0123456789",
        )
        body = (EXAMPLE / "payment-paid.json").read_bytes()
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "x-psp-method": "ideal",
            "webhook-id": "msg_2Vq9Lw",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(SECRET).sign("msg_2Vq9Lw", now, body.decode()),
        }
        answer = service.anonymous.post("/hooks/betaalprovider", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"id": "tr_7UhSN1zuXS.paid", "source": entry.source, "status": "accepted"}
        start_worker()
        wait_until(lambda: config.received, message="the delivery")
    event = config.received[0]["event"]
    assert config.violations == []
    assert event["type"] == "nl.overheid.zaken.betaling-ontvangen"
    assert event["subject"] == "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"
    assert event["time"] == "2026-12-07T10:00:03+00:00"
    assert event["data"] == {
        "betaling": "tr_7UhSN1zuXS",
        "zaak": "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
        "bedrag": 45,
        "valuta": "EUR",
        "status": "paid",
        "methode": "ideal",
    }
