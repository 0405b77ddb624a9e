"""zaak_link_events against the examples of Open Klant's "Cloud events" documentation (seed 000)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from outbox.zaken import (
    ZAAK_GEKOPPELD,
    ZAAK_ONTKOPPELD,
    CloudEventSettings,
    Onderwerpobject,
    zaak_link_events,
)

# Seed 000, verbatim (only `id` and `time` are per event).
SEED_GEKOPPELD: dict[str, Any] = {
    "specversion": "1.0",
    "type": "nl.overheid.zaken.zaak-gekoppeld",
    "source": "urn:nld:oin:01823288444:openklant",
    "subject": "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
    "id": "f347fd1f-dac1-4870-9dd0-f6c00edf4bf7",
    "time": "2025-10-10T00:00:00Z",
    "datacontenttype": "application/json",
    "data": {
        "zaak": "urn:uuid:a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
        "linkTo": "http://open-klant.local:8000/klantinteracties/api/v1/onderwerpobjecten/5fee9673-216c-41e7-91d2-69a8d1526b9f",
        "label": "Mijn Klantcontact Onderwerp",
        "linkObjectType": "Onderwerpobject",
    },
}
SEED_ONTKOPPELD = {**SEED_GEKOPPELD, "type": "nl.overheid.zaken.zaak-ontkoppeld"}

ZAAK = "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"
OTHER_ZAAK = "0d6d2a4c-7a8f-4f61-9a43-2f0d6a3b9c11"
URL = SEED_GEKOPPELD["data"]["linkTo"]
LABEL = SEED_GEKOPPELD["data"]["label"]
ON = CloudEventSettings(enable_cloud_events=True, notifications_source="urn:nld:oin:01823288444:openklant")


def ident(
    object_id: str = ZAAK, objecttype: str = "zaak", soort: str = "uuid", register: str = "openzaak"
) -> dict[str, str]:
    return {
        "codeObjecttype": objecttype,
        "codeSoortObjectId": soort,
        "objectId": object_id,
        "codeRegister": register,
    }


def obj(identificator: dict[str, str] | None = None, url: str = URL, label: str = LABEL) -> Onderwerpobject:
    return Onderwerpobject(url=url, label=label, onderwerpobjectidentificator=identificator)


def assert_like_seed(event_dict: dict[str, Any], seed: dict[str, Any], **overrides: Any) -> None:
    expected = {**seed, **overrides}
    assert set(event_dict) == set(expected)
    for key in expected:
        if key == "id":
            assert uuid.UUID(event_dict["id"]).version == 4
        elif key == "time":
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event_dict["time"])
        else:
            assert event_dict[key] == expected[key], key


def test_created_pointing_at_a_zaak_links() -> None:
    [event] = zaak_link_events(None, obj(ident()), ON)
    assert_like_seed(event.to_dict(), SEED_GEKOPPELD)


def test_deleted_unlinks_with_the_previous_values() -> None:
    [event] = zaak_link_events(obj(ident()), None, ON)
    assert_like_seed(event.to_dict(), SEED_ONTKOPPELD)


def test_identificator_no_longer_a_zaak_unlinks() -> None:
    after = obj(ident(objecttype="klantcontact", soort="nummer", object_id="42"), label="Nieuw label")
    [event] = zaak_link_events(obj(ident()), after, ON)
    assert_like_seed(event.to_dict(), SEED_ONTKOPPELD)  # previous label and url


def test_moving_to_another_zaak_unlinks_first_then_links() -> None:
    new_label = "Ander onderwerp"
    unlink, link = zaak_link_events(obj(ident()), obj(ident(OTHER_ZAAK), label=new_label), ON)
    assert_like_seed(unlink.to_dict(), SEED_ONTKOPPELD)
    assert_like_seed(
        link.to_dict(),
        SEED_GEKOPPELD,
        subject=OTHER_ZAAK,
        data={**SEED_GEKOPPELD["data"], "zaak": f"urn:uuid:{OTHER_ZAAK}", "label": new_label},
    )
    assert unlink.id != link.id


def test_starting_to_point_at_a_zaak_links() -> None:
    [event] = zaak_link_events(obj(ident(objecttype="klantcontact")), obj(ident()), ON)
    assert_like_seed(event.to_dict(), SEED_GEKOPPELD)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (obj(ident()), obj(ident())),
        (obj(ident()), obj(ident(), label="Ander label", url=URL + "?x")),
        (None, obj(ident(objecttype="klantcontact"))),
        (obj(ident(soort="nummer")), None),
        (None, obj(None)),
        (None, None),
        (obj(ident(objecttype="Zaak")), None),  # codes are compared exactly, as Open Klant does
    ],
)
def test_no_event_when_no_zaak_relation_changes(before: Onderwerpobject | None, after: Onderwerpobject | None) -> None:
    assert zaak_link_events(before, after, ON) == []


@pytest.mark.parametrize(
    "settings",
    [
        CloudEventSettings(enable_cloud_events=False, notifications_source="urn:nld:oin:01823288444:openklant"),
        CloudEventSettings(enable_cloud_events=True, notifications_source=""),
        CloudEventSettings(enable_cloud_events=True, notifications_source="   "),
    ],
)
def test_gates_both_required(settings: CloudEventSettings) -> None:
    assert zaak_link_events(None, obj(ident()), settings) == []


def test_settings_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_CLOUD_EVENTS", "True")
    monkeypatch.setenv("NOTIFICATIONS_SOURCE", "urn:nld:oin:01823288444:openklant")
    [event] = zaak_link_events(None, obj(ident()))
    assert event.source == "urn:nld:oin:01823288444:openklant"
    assert event.type == ZAAK_GEKOPPELD
    monkeypatch.setenv("ENABLE_CLOUD_EVENTS", "false")
    assert zaak_link_events(None, obj(ident())) == []
    monkeypatch.setenv("ENABLE_CLOUD_EVENTS", "1")
    monkeypatch.delenv("NOTIFICATIONS_SOURCE")
    assert zaak_link_events(None, obj(ident())) == []


def test_event_types_are_the_seed_names() -> None:
    assert SEED_GEKOPPELD["type"] == ZAAK_GEKOPPELD
    assert SEED_ONTKOPPELD["type"] == ZAAK_ONTKOPPELD
