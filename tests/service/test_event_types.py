"""/api/v1/event-types: the catalogue over HTTP, its scopes, and every refusal naming its fields."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.service.live import ADMIN, CONSUME, PUBLISH, LiveService

ZAAK = "nl.overheid.zaken.zaak-gekoppeld"
PATH = "/api/v1/event-types"
JSON = {"Content-Type": "application/json"}


def _entry(**changes: Any) -> dict[str, Any]:
    return {
        "name": "Zaak gekoppeld",
        "slug": "zaak-gekoppeld",
        "type": ZAAK,
        "source": "urn:nld:oin:00000001823288444000:systeem:openklant",
        "schema": {"type": "object", "required": ["zaak"]},
        "isEnabled": True,
        "description": "Een zaak is aan een object gekoppeld.",
        **changes,
    }


def _names(response: Any, status: int = 400) -> set[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {param["name"] for param in response.json()["invalidParams"]}


def _stored(service: LiveService) -> list[tuple[Any, ...]]:
    with psycopg.connect(service.database_url) as conn:
        return conn.execute(
            "SELECT slug, type, name, is_enabled FROM outbox.event_types WHERE NOT operational ORDER BY slug"
        ).fetchall()


def test_an_admin_registers_reads_changes_and_removes_an_entry(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    reader = service.add_client("abonnee", CONSUME)
    url = f"{service.base_url}{PATH}/zaak-gekoppeld"

    created = admin.post(PATH, json=_entry())
    assert created.status_code == 201, created.text
    assert created.json() == {**_entry(), "url": url, "operational": False}
    assert created.headers["location"] == url
    assert _stored(service) == [("zaak-gekoppeld", ZAAK, "Zaak gekoppeld", True)]

    assert reader.get(f"{PATH}/zaak-gekoppeld").json() == {**_entry(), "url": url, "operational": False}
    assert [e for e in reader.get(PATH).json() if not e["operational"]] == [
        {**_entry(), "url": url, "operational": False}
    ]

    patched = admin.patch(f"{PATH}/zaak-gekoppeld", json={"isEnabled": False, "description": None})
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**_entry(isEnabled=False, description=None), "url": url, "operational": False}

    replaced = admin.put(f"{PATH}/zaak-gekoppeld", json=_entry(slug="gekoppeld", schema=None, source=None))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["url"] == f"{service.base_url}{PATH}/gekoppeld"
    assert _stored(service) == [("gekoppeld", ZAAK, "Zaak gekoppeld", True)]
    assert reader.get(f"{PATH}/zaak-gekoppeld").status_code == 404

    assert admin.delete(f"{PATH}/gekoppeld").status_code == 204
    assert _stored(service) == []
    assert admin.delete(f"{PATH}/gekoppeld").status_code == 404


def test_the_list_filters_by_type_and_by_enabled(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    admin.post(PATH, json=_entry())
    admin.post(PATH, json=_entry(slug="ontkoppeld", type="nl.overheid.zaken.zaak-ontkoppeld", isEnabled=False))

    def slugs(**params: str) -> list[str]:
        response = admin.get(PATH, params=params)
        assert response.status_code == 200, response.text
        return [entry["slug"] for entry in response.json() if not entry["operational"]]

    assert slugs() == ["ontkoppeld", "zaak-gekoppeld"]
    assert slugs(type=ZAAK) == ["zaak-gekoppeld"]
    assert slugs(isEnabled="false") == ["ontkoppeld"]
    assert slugs(isEnabled="true", type="nl.overheid.zaken.zaak-ontkoppeld") == []
    assert slugs(type="no such type\x00") == []
    assert _names(admin.get(PATH, params={"isEnabled": "misschien"})) == {"isEnabled"}


def test_every_invalid_field_is_named_with_the_catalogues_rules(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    response = admin.post(
        PATH,
        json=_entry(slug="Zaak Gekoppeld", type="has spaces", name=" ", schema={"type": 5}, isEnabled="yes", extra=1),
    )
    assert _names(response) == {"slug", "type", "name", "schema", "isEnabled", "extra"}
    reasons = {param["name"]: param["reason"] for param in response.json()["invalidParams"]}
    assert "lowercase letters and digits" in reasons["slug"]
    assert "not a valid JSON Schema" in reasons["schema"]

    assert _names(admin.post(PATH, json={"slug": "x"})) == {"name", "type"}
    nul = json.dumps(_entry(name="nul\x00", description="\x00", schema={"\x00": 1}))  # \u0000 escapes
    assert _names(admin.post(PATH, content=nul, headers=JSON)) == {"name", "description", "schema"}
    surrogate = json.dumps(_entry(name="\ud800"))  # an unpaired surrogate: not JSON text
    assert _names(admin.post(PATH, content=surrogate, headers=JSON)) == {"nonFieldErrors"}
    assert _names(admin.post(PATH, json=_entry(schema={"$ref": "https://example.org/s.json"}))) == {"schema"}
    assert _names(admin.post(PATH, json=[1])) == {"nonFieldErrors"}
    assert _names(admin.post(PATH, content=b"{not json", headers=JSON)) != set()
    assert _stored(service) == []


def test_bodies_must_be_json(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    admin.post(PATH, json=_entry())
    as_text = {"content": json.dumps(_entry()), "headers": {"Content-Type": "text/plain"}}
    for response in (
        admin.post(PATH, **as_text),
        admin.put(f"{PATH}/zaak-gekoppeld", **as_text),
        admin.patch(f"{PATH}/zaak-gekoppeld", **as_text),
    ):
        assert response.status_code == 415, response.text
        assert response.json()["code"] == "unsupported_media_type"
    merge_patch = admin.patch(
        f"{PATH}/zaak-gekoppeld",
        content=b'{"isEnabled": false}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert merge_patch.json()["isEnabled"] is False


def test_a_patch_is_checked_field_by_field_and_whole(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    admin.post(PATH, json=_entry())
    assert _names(admin.patch(f"{PATH}/zaak-gekoppeld", json={"slug": "A B", "name": None})) == {"slug", "name"}
    assert _names(admin.patch(f"{PATH}/zaak-gekoppeld", json={"url": "x"})) == {"url"}
    assert admin.patch(f"{PATH}/none-such", json={"name": "x"}).status_code == 404
    assert _stored(service) == [("zaak-gekoppeld", ZAAK, "Zaak gekoppeld", True)]


def test_a_taken_slug_or_type_is_a_conflict_naming_it(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    admin.post(PATH, json=_entry())
    admin.post(PATH, json=_entry(slug="other", type="nl.other"))

    taken_slug = admin.post(PATH, json=_entry(type="nl.third"))
    assert _names(taken_slug, 409) == {"slug"}
    assert taken_slug.json()["code"] == "conflict"
    assert taken_slug.json()["invalidParams"][0]["code"] == "unique"
    assert _names(admin.post(PATH, json=_entry(slug="third")), 409) == {"type"}
    assert _names(admin.put(f"{PATH}/other", json=_entry(slug="other")), 409) == {"type"}
    assert _names(admin.patch(f"{PATH}/other", json={"slug": "zaak-gekoppeld"}), 409) == {"slug"}
    assert [entry["slug"] for entry in admin.get(PATH).json() if not entry["operational"]] == [
        "other",
        "zaak-gekoppeld",
    ]


def test_the_built_in_operational_types_may_only_be_enabled_or_disabled(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    built_in = f"{PATH}/outbox.delivery-failed"
    shown = admin.get(built_in).json()
    assert (shown["type"], shown["operational"], shown["isEnabled"]) == (
        "nl.overheid.outbox.delivery-failed",
        True,
        True,
    )
    assert shown["schema"]["required"][:2] == ["deliveryId", "subscriptionId"]
    disabled = admin.patch(built_in, json={"isEnabled": False})
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["isEnabled"] is False
    for refused in (admin.patch(built_in, json={"name": "Iets anders"}), admin.delete(built_in)):
        assert refused.status_code == 409, refused.text
        assert refused.json()["invalidParams"][0]["code"] == "built-in"
    assert admin.get(built_in).json() == {**shown, "isEnabled": False}


def test_reading_needs_a_notificaties_scope_and_changing_needs_beheer(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    admin.post(PATH, json=_entry())
    for scope in (PUBLISH, CONSUME):
        caller = service.add_client(f"client-{scope}", scope)
        assert caller.get(PATH).status_code == 200
        assert caller.get(f"{PATH}/zaak-gekoppeld").status_code == 200
        refusals = [
            caller.post(PATH, json=_entry(slug="x", type="x")),
            caller.put(f"{PATH}/zaak-gekoppeld", json=_entry()),
            caller.patch(f"{PATH}/zaak-gekoppeld", json={"isEnabled": False}),
            caller.delete(f"{PATH}/zaak-gekoppeld"),
        ]
        assert [r.status_code for r in refusals] == [403] * 4
        assert {r.json()["code"] for r in refusals} == {"permission_denied"}
    anonymous = service.anonymous.get(PATH)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert _stored(service) == [("zaak-gekoppeld", ZAAK, "Zaak gekoppeld", True)]


def test_a_disabled_type_posted_as_cloudevent_is_accepted_and_not_written(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN, PUBLISH)
    admin.post(PATH, json=_entry(isEnabled=False, schema=None, source=None))
    event = {"specversion": "1.0", "id": "1", "source": "urn:x", "type": ZAAK}
    response = admin.post("/api/v1/cloudevents", json=event, headers={"Content-Type": "application/cloudevents+json"})
    assert response.status_code == 201, response.text
    with psycopg.connect(service.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.events").fetchone() == (0,)


def test_a_method_the_path_lacks_is_405_with_every_method_it_has(service: LiveService) -> None:
    admin = service.add_client("beheer", ADMIN)
    response = admin.request("PATCH", PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert admin.request("POST", f"{PATH}/x").headers["allow"] == "DELETE, GET, PATCH, PUT"


def test_who_may_write_is_settled_before_the_body_is_read(service: LiveService) -> None:
    reader = service.add_client("abonnee", CONSUME)
    admin = service.add_client("beheer", ADMIN)
    broken = {"content": b"{not json", "headers": JSON}
    assert service.anonymous.post(PATH, **broken).status_code == 401
    assert reader.post(PATH, **broken).status_code == 403
    assert reader.patch(f"{PATH}/x", **broken).status_code == 403
    assert admin.put(f"{PATH}/x", content=b"{not json", headers={"Content-Type": "text/plain"}).status_code == 415
    assert _names(admin.put(f"{PATH}/x", **broken)) == {"nonFieldErrors"}
