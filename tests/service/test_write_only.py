"""/subscriptions and /abonnement: header values and other secrets are write-only, sealed at rest,
and listing or reading opens none of them (a service with the wrong key still lists)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.service.conftest import StartService, agreeing
from tests.service.live import CONSUME
from tests.support import Receiver
from worker.store.secret_box import SecretBox, new_key

HEADER_VALUE = "hdr-secret-4242-value"
TOKEN = "tok-secret-0123456789"


def with_secrets(sink: str, header: str = HEADER_VALUE) -> dict[str, Any]:
    """A Subscriptions API body with a token and a header value."""
    return {
        "sink": sink,
        "sinkcredential": {"credentialtype": "ACCESSTOKEN", "accesstoken": TOKEN},
        "protocol": "HTTP",
        "protocolsettings": {"headers": {"X-Api-Key": header}},
    }


def stored_text(url: str) -> str:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT row_to_json(s)::text FROM outbox.subscriptions s").fetchall()
    return "\n".join(text for (text,) in rows)


def test_listing_and_reading_open_no_secret_and_show_header_names_only(
    start_service: StartService, callback: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    service = start_service(secret_key=key)
    client = service.add_client("consumer", CONSUME)
    made = []
    for i in range(3):
        created = client.post(
            "/api/v1/subscriptions",
            json=with_secrets(callback.url, f"{HEADER_VALUE}{i}"),
        )
        assert created.status_code == 201, created.text
        made.append(created.json()["id"])
    abonnement = client.post(
        "/api/v1/abonnement", json={"callbackUrl": callback.url, "auth": f"Bearer {TOKEN}", "types": ["*"]}
    )
    assert abonnement.status_code == 201, abonnement.text
    assert HEADER_VALUE not in stored_text(service.database_url)
    assert TOKEN not in stored_text(service.database_url)

    opened: list[str] = []
    real_open = SecretBox.open

    def counting(self: SecretBox, stored: str | None, encrypted: bool, owner: str) -> dict[str, Any]:
        if owner.startswith("subscription"):  # API clients' secrets are opened to check their JWTs
            opened.append(owner)
        return real_open(self, stored, encrypted, owner)

    monkeypatch.setattr(SecretBox, "open", counting)
    listed = client.get("/api/v1/subscriptions")
    read = [client.get(f"/api/v1/subscriptions/{sub_id}") for sub_id in made]
    as_abonnementen = client.get("/api/v1/abonnement")
    assert opened == [], "no secret opened to list or read"
    answers = [listed, as_abonnementen, *read]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert HEADER_VALUE not in answer.text and TOKEN not in answer.text
    assert [s["protocolsettings"] for s in listed.json()][:3] == [{"headernames": ["X-Api-Key"], "method": "POST"}] * 3
    assert all(r.json()["sinkcredential"] == {"credentialtype": "ACCESSTOKEN"} for r in read)

    # A replace opens the current secrets (to keep those it leaves out), and keeps the header value.
    body = {k: v for k, v in read[0].json().items() if k not in ("sinkcredential", "config")}
    replaced = client.put(f"/api/v1/subscriptions/{made[0]}", json=body)  # as read: headernames ignored
    assert replaced.status_code == 200, replaced.text
    assert opened == [f"subscription {made[0]}"]
    assert replaced.json()["protocolsettings"]["headernames"] == ["X-Api-Key"]
    assert HEADER_VALUE not in replaced.text


def test_a_service_whose_key_does_not_open_the_secrets_still_lists_and_reads(
    start_service: StartService, callback: Receiver
) -> None:
    first = start_service(secret_key=new_key())
    client = first.add_client("consumer", CONSUME)
    created = client.post(
        "/api/v1/subscriptions",
        json=with_secrets(callback.url),
    )
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    # the API client's own secret must open for its JWT: give it again under the other key
    other = start_service(secret_key=new_key())
    caller = other.add_client("consumer-2", CONSUME, "outbox.beheer")
    listed = caller.get("/api/v1/subscriptions")
    assert listed.status_code == 200, listed.text
    (shown,) = listed.json()
    assert shown["id"] == sub_id and shown["protocolsettings"]["headernames"] == ["X-Api-Key"]
    read = caller.get(f"/api/v1/subscriptions/{sub_id}")
    assert read.status_code == 200 and read.json() == shown
    assert caller.get(f"/api/v1/abonnement/{sub_id}").status_code == 200


def test_the_openapi_document_marks_secrets_write_only(service: Any) -> None:
    schemas = service.anonymous.get("/api/v1/schema/openapi.json").json()["components"]["schemas"]
    assert schemas["HttpSettings"]["properties"]["headers"]["writeOnly"] is True
    assert "headers" not in schemas["HttpSettingsRead"]["properties"]
    for model, field in (
        ("AbonnementPatch", "auth"),
        ("AbonnementPatch", "signingSecrets"),
        ("AbonnementPatch", "clientKey"),
        ("OAuth2Settings", "clientSecret"),
        ("ZgwSettings", "secret"),
    ):
        assert schemas[model]["properties"][field]["writeOnly"] is True, (model, field)
    assert not {"auth", "signingSecrets", "clientKey"} & set(schemas["AbonnementRead"]["properties"])


def test_header_values_do_not_follow_the_sink_to_another_host(service: Any, callback: Receiver) -> None:
    client = service.add_client("consumer", CONSUME)
    made = client.post(
        "/api/v1/subscriptions",
        json=with_secrets(callback.url),
    ).json()
    with Receiver(agreeing).running() as elsewhere:
        moved = {"sink": elsewhere.url, "protocol": "HTTP"}
        refused = client.put(f"/api/v1/subscriptions/{made['id']}", json=moved)
        assert refused.status_code == 400, refused.text
        names = {p["name"] for p in refused.json()["invalidParams"]}
        assert {"sinkcredential", "protocolsettings.headers"} <= names
        given = {**moved, "sinkcredential": {"credentialtype": "ACCESSTOKEN", "accesstoken": "new-token"}}
        given["protocolsettings"] = {"headers": {"X-Api-Key": "for-the-new-host"}}
        assert client.put(f"/api/v1/subscriptions/{made['id']}", json=given).status_code == 200
