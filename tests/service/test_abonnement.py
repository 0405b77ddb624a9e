"""/api/v1/abonnement: CRUD, write-only secrets, refusals naming every field, owners, the handshake."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.service.live import ADMIN, CONSUME, PUBLISH, LiveService
from tests.support import Receiver

TOKEN = "Bearer 8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE"
SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _abonnement(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "callbackUrl": receiver.url,
        "auth": TOKEN,
        "kanalen": [{"naam": "zaken", "filters": {"domein": "VTH"}}],
        **extra,
    }


def _rows(service: LiveService) -> list[dict[str, Any]]:
    with psycopg.connect(service.database_url) as conn:
        cur = conn.execute(
            "SELECT id::text, owner, callback_url, agreement, handshake_at IS NOT NULL, kanalen, send_cloudevents,"
            " cloudevent_filters, secrets FROM outbox.subscriptions ORDER BY created_at"
        )
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _names(response: Any) -> set[str]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {p["name"] for p in response.json()["invalidParams"]}


def test_create_read_list_update_patch_delete(service: LiveService, callback: Receiver) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    created = client.post("/api/v1/abonnement", json=_abonnement(callback, signingSecrets=[SIGNING]))
    assert created.status_code == 201, created.text
    body = created.json()
    uuid = body["url"].rsplit("/", 1)[1]
    assert body["url"] == f"{service.base_url}/api/v1/abonnement/{uuid}"
    assert created.headers["location"] == body["url"]
    assert body["callbackUrl"] == callback.url
    assert body["kanalen"] == [{"naam": "zaken", "filters": {"domein": "VTH"}}]
    assert body["sendCloudevents"] is True and body["cloudeventFilters"] == []
    assert body["agreement"] == "handshake" and body["handshakeAt"]
    assert [r.method for r in callback.received] == ["OPTIONS"], "the handshake ran against the callback"
    assert callback.received[0].headers["WebHook-Request-Origin"] == "127.0.0.1"
    (row,) = _rows(service)
    assert row["id"] == uuid and row["owner"] == "zaaksysteem" and row["agreement"] == "handshake"

    assert client.get(f"/api/v1/abonnement/{uuid}").json() == body
    assert client.get("/api/v1/abonnement").json() == [body]

    replaced = client.put(
        f"/api/v1/abonnement/{uuid}",
        json={"callbackUrl": callback.url, "types": ["nl.overheid.zaken.*"], "contentMode": "binary"},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["kanalen"] == [], "PUT replaces: kanalen left out are gone"
    assert replaced.json()["types"] == ["nl.overheid.zaken.*"]
    assert replaced.json()["contentMode"] == "binary"
    assert len(callback.received) == 1, "same target: no second handshake"

    patched = client.patch(f"/api/v1/abonnement/{uuid}", json={"kanalen": [{"naam": "besluiten"}], "batchMax": 7})
    assert patched.status_code == 200, patched.text
    after = patched.json()
    assert after["kanalen"] == [{"naam": "besluiten", "filters": {}}]
    assert after["types"] == ["nl.overheid.zaken.*"], "PATCH keeps what it does not name"
    assert after["contentMode"] == "binary" and after["batchMax"] == 7
    with psycopg.connect(service.database_url) as conn:
        from worker.store import subscriptions as store

        stored = store.get(conn, "outbox", uuid, service.settings.box)
    assert stored.auth == TOKEN and stored.signing_secrets == (SIGNING,), "write-only secrets kept by PUT and PATCH"

    assert client.delete(f"/api/v1/abonnement/{uuid}").status_code == 204
    assert _rows(service) == []
    assert client.get(f"/api/v1/abonnement/{uuid}").status_code == 404


def test_secrets_are_write_only(service: LiveService, callback: Receiver) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    pem_free = _abonnement(
        callback,
        auth=None,
        oauth2={
            "tokenUrl": "https://idp.example.nl/token",
            "clientId": "outbox",
            "clientSecret": "s3cr3t-oauth2-value",
        },
        signingSecrets=[SIGNING],
    )
    created = client.post("/api/v1/abonnement", json=pem_free)
    assert created.status_code == 201, created.text
    uuid = created.json()["url"].rsplit("/", 1)[1]
    texts = [
        created.text,
        client.get(f"/api/v1/abonnement/{uuid}").text,
        client.get("/api/v1/abonnement").text,
        client.patch(f"/api/v1/abonnement/{uuid}", json={"batchMax": 5}).text,
    ]
    for text in texts:
        assert "s3cr3t-oauth2-value" not in text
        assert SIGNING not in text
        assert "clientSecret" not in text and "signingSecrets" not in text
    assert created.json()["oauth2"] == {
        "tokenUrl": "https://idp.example.nl/token",
        "clientId": "outbox",
        "scope": None,
    }
    (row,) = _rows(service)
    assert "s3cr3t-oauth2-value" in str(row["secrets"]), "stored (unencrypted here: no OUTBOX_SECRET_KEY)"


def test_a_malformed_abonnement_is_refused_whole_naming_every_field(service: LiveService) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    response = client.post(
        "/api/v1/abonnement",
        json={
            "callbackUrl": "ftp://example.nl/hook",
            "auth": TOKEN,
            "kanalen": [{"naam": "", "filters": {"domein": 1}}],
            "batchMax": "x",
            "contentMode": "xml",
            "cloudeventFilters": [{"typeSubstring": "zaak"}],
            "sendCloudevents": False,
            "colour": "blue",
        },
    )
    assert _names(response) == {
        "callbackUrl",
        "kanalen[0].naam",
        "kanalen[0].filters.domein",
        "batchMax",
        "contentMode",
        "cloudeventFilters",
        "colour",
    }
    assert _rows(service) == []
    reasons = {p["name"]: p["reason"] for p in response.json()["invalidParams"]}
    assert "sendCloudevents" in reasons["cloudeventFilters"]


def test_refusals_of_auth_and_addresses(service: LiveService, start_service: Any, callback: Receiver) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    no_auth = client.post("/api/v1/abonnement", json=_abonnement(callback, auth=None))
    assert _names(no_auth) == {"auth"}
    missing = client.post("/api/v1/abonnement", json={"kanalen": [{"naam": "zaken"}]})
    assert _names(missing) == {"callbackUrl"}
    leaky = client.post("/api/v1/abonnement", json=_abonnement(callback, auth="Bearer a\nX-Evil: 1"))
    assert _names(leaky) == {"auth"}
    assert "X-Evil" not in leaky.text, "a secret is never echoed"

    strict = start_service(allow_insecure_callbacks=False, allowed_networks="")
    other = strict.add_client("strict", CONSUME)
    http = other.post("/api/v1/abonnement", json=_abonnement(callback))
    assert _names(http) == {"callbackUrl"}
    private = other.post("/api/v1/abonnement", json=_abonnement(callback, callbackUrl="https://10.1.2.3/hook"))
    assert _names(private) == {"callbackUrl"}
    assert "private" in private.json()["invalidParams"][0]["reason"]
    assert _rows(service) == []


@pytest.mark.parametrize(
    ("status", "code", "step"),
    [(403, "handshake_refused", "handshake: "), (405, "probe_refused", "probe: the target answered 405")],
    ids=["a-no", "no-handshake-and-the-probe-refused"],
)
def test_a_refused_handshake_is_a_400_naming_the_callback_and_nothing_is_stored(
    service: LiveService, status: int, code: str, step: str
) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    with Receiver(lambda n, r: (status, {}, 0.0)).running() as refusing:
        response = client.post("/api/v1/abonnement", json=_abonnement(refusing))
    assert _names(response) == {"callbackUrl"}
    (param,) = response.json()["invalidParams"]
    assert param["code"] == code and param["reason"].startswith(step)
    assert str(status) in param["reason"]
    assert _rows(service) == []


def test_preflight_skips_the_handshake_at_create(service: LiveService) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    with Receiver(lambda n, r: (405, {}, 0.0)).running() as refusing:
        response = client.post("/api/v1/abonnement", json=_abonnement(refusing, preflight=True))
        assert response.status_code == 201, response.text
        assert refusing.received == []
    assert response.json()["agreement"] == "preflight"


def test_a_changed_callback_is_handshaken_again(service: LiveService, callback: Receiver) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    uuid = client.post("/api/v1/abonnement", json=_abonnement(callback)).json()["url"].rsplit("/", 1)[1]
    with Receiver(lambda n, r: (200, {"WebHook-Allowed-Origin": "elsewhere.nl"}, 0.0)).running() as refusing:
        # Another host: the credentials come along (they never follow a target by themselves).
        response = client.patch(f"/api/v1/abonnement/{uuid}", json={"callbackUrl": refusing.url, "auth": TOKEN})
        assert [r.method for r in refusing.received] == ["OPTIONS"]
    assert _names(response) == {"callbackUrl"}
    (row,) = _rows(service)
    assert row["callback_url"] == callback.url, "a refused update changes nothing"


def test_owners_see_only_their_own_and_beheer_sees_all(service: LiveService, callback: Receiver) -> None:
    alice = service.add_client("alice", CONSUME)
    bob = service.add_client("bob", CONSUME)
    admin = service.add_client("beheer", ADMIN)
    mine = alice.post("/api/v1/abonnement", json=_abonnement(callback)).json()
    uuid = mine["url"].rsplit("/", 1)[1]
    theirs = bob.post("/api/v1/abonnement", json=_abonnement(callback)).json()

    assert [a["url"] for a in alice.get("/api/v1/abonnement").json()] == [mine["url"]]
    assert [a["url"] for a in bob.get("/api/v1/abonnement").json()] == [theirs["url"]]
    assert {a["url"] for a in admin.get("/api/v1/abonnement").json()} == {mine["url"], theirs["url"]}
    for response in (
        bob.get(f"/api/v1/abonnement/{uuid}"),
        bob.put(f"/api/v1/abonnement/{uuid}", json=_abonnement(callback)),
        bob.patch(f"/api/v1/abonnement/{uuid}", json={"batchMax": 3}),
        bob.delete(f"/api/v1/abonnement/{uuid}"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
    assert bob.get("/api/v1/abonnement/not-a-uuid").status_code == 404
    assert admin.patch(f"/api/v1/abonnement/{uuid}", json={"batchMax": 3}).status_code == 200
    assert {r["owner"] for r in _rows(service)} == {"alice", "bob"}, "beheer's change keeps the owner"
    assert admin.delete(f"/api/v1/abonnement/{uuid}").status_code == 204
    assert len(_rows(service)) == 1


def test_scopes(service: LiveService, callback: Receiver) -> None:
    publisher = service.add_client("producer", PUBLISH)
    assert service.anonymous.get("/api/v1/abonnement").status_code == 401
    assert publisher.get("/api/v1/abonnement").status_code == 403
    assert publisher.post("/api/v1/abonnement", json=_abonnement(callback)).status_code == 403
    assert _rows(service) == []


def test_cloudevent_filters_are_stored_and_returned(service: LiveService, callback: Receiver) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    groups = [{"typeSubstring": "zaak-gekoppeld", "filters": {"vertrouwelijkheidaanduiding": "openbaar"}}]
    response = client.post(
        "/api/v1/abonnement",
        json={"callbackUrl": callback.url, "auth": TOKEN, "sendCloudevents": True, "cloudeventFilters": groups},
    )
    assert response.status_code == 201, response.text
    assert response.json()["cloudeventFilters"] == groups
    (row,) = _rows(service)
    assert row["cloudevent_filters"] == groups and row["send_cloudevents"] is True


def test_an_access_token_in_the_callback_url_is_never_shown(service: LiveService, callback: Receiver) -> None:
    client = service.add_client("zaaksysteem", CONSUME)
    url = f"{callback.url}?access_token=s3cr3t-query-token"
    created = client.post(
        "/api/v1/abonnement",
        json={"callbackUrl": url, "allowQueryToken": True, "kanalen": [{"naam": "zaken"}]},
    )
    assert created.status_code == 201, created.text
    assert "s3cr3t-query-token" not in created.text
    shown = created.json()["callbackUrl"]
    uuid = created.json()["url"].rsplit("/", 1)[1]
    # Sent back as shown, the URL stays as stored (and no second handshake is needed).
    patched = client.patch(f"/api/v1/abonnement/{uuid}", json={"callbackUrl": shown, "batchMax": 2})
    assert patched.status_code == 200, patched.text
    assert "s3cr3t-query-token" not in client.get("/api/v1/subscriptions").text
    (row,) = _rows(service)
    assert row["callback_url"] == url
    assert [r.method for r in callback.received] == ["OPTIONS"]


def test_stored_credentials_do_not_follow_a_callback_to_another_host(service: LiveService, callback: Receiver) -> None:
    from tests.service.conftest import agreeing

    admin = service.add_client("beheer", ADMIN)
    created = admin.post("/api/v1/abonnement", json=_abonnement(callback, signingSecrets=[SIGNING]))
    assert created.status_code == 201, created.text
    path = created.json()["url"].removeprefix(service.base_url)
    with Receiver(agreeing).running() as elsewhere:
        moved = admin.patch(path, json={"callbackUrl": elsewhere.url})
        assert _names(moved) == {"auth", "signingSecrets"}
        assert "give it again" in moved.text
        assert TOKEN not in moved.text
        again = admin.patch(path, json={"callbackUrl": elsewhere.url, "auth": "Bearer new", "signingSecrets": []})
        assert again.status_code == 200, again.text
    # The same host keeps them: a change of path only.
    same = admin.patch(path, json={"kanalen": [{"naam": "zaken", "filters": {}}]})
    assert same.status_code == 200, same.text
