"""POST /api/v1/cloudevents: the three content modes, replays, and every refusal."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.service.live import PUBLISH, LiveService

ZAAK = "nl.overheid.zaken.zaak-gekoppeld"


def _event(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "urn:nld:oin:00000001823288444000:systeem:openklant",
        "type": ZAAK,
        "subject": "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
        "time": "2025-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {"zaak": f"urn:uuid:{n}"},
        **extra,
    }


def _stored(service: LiveService) -> list[dict[str, Any]]:
    with psycopg.connect(service.database_url) as conn:
        rows = conn.execute("SELECT event FROM outbox.events ORDER BY position").fetchall()
    return [row[0] for row in rows]


def test_a_structured_event_is_stored_and_echoed(service: LiveService) -> None:
    producer = service.add_client("openklant", PUBLISH)
    response = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps(_event(dataref=None)),
        headers={"Content-Type": "application/cloudevents+json; charset=utf-8"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/cloudevents+json"
    expected = _event()
    assert response.json() == expected
    assert _stored(service) == [expected]  # the null dataref is unset, not stored
