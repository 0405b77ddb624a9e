"""Who may call the service: ZGW JWTs, scopes, the per-client rate; every refusal a problem document."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import psycopg
import pytest

from tests.service.live import CONSUME, PUBLISH, Caller, LiveService, token
from worker.store import clients as client_store

EVENT = {"specversion": "1.0", "id": "1", "source": "urn:x", "type": "nl.overheid.zaken.zaak-gekoppeld"}
CE = {"Content-Type": "application/cloudevents+json"}


def _post(service: LiveService, authorization: str | None) -> Any:
    headers = {**CE, **({"Authorization": authorization} if authorization is not None else {})}
    return service.anonymous.post("/api/v1/cloudevents", content=json.dumps(EVENT), headers=headers)


def _count(service: LiveService) -> int:
    with psycopg.connect(service.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox.events").fetchone()
    return int(row[0]) if row else -1


@pytest.mark.parametrize(
    ("make", "code", "detail"),
    [
        (lambda c: None, "not_authenticated", "Send Authorization: Bearer"),
        (lambda c: f"Basic {c.secret}", "not_authenticated", "Send Authorization: Bearer"),
        (lambda c: "Bearer not-a-jwt", "jwt-decode-error", "not a JWT"),
        (lambda c: f"Bearer {token(c.client_id, 'another secret of enough length!!!')}", "invalid-jwt-signature", ""),
        (lambda c: f"Bearer {token('nobody', c.secret)}", "invalid-client-identifier", ""),
        (lambda c: f"Bearer {token(c.client_id, c.secret, iat=time.time() - 7200)}", "jwt-expired", "too old"),
        (lambda c: f"Bearer {token(c.client_id, c.secret, iat=time.time() + 600)}", "jwt-immature", "future"),
        (lambda c: f"Bearer {token(c.client_id, c.secret, exp=int(time.time()) - 60)}", "jwt-expired", "exp"),
        (
            lambda c: "Bearer " + jwt.encode({"client_id": c.client_id}, c.secret, algorithm="HS256"),
            "jwt-missing-iat-claim",
            "iat",
        ),
        (
            lambda c: "Bearer " + jwt.encode({"iat": int(time.time())}, c.secret, algorithm="HS256"),
            "missing-client-identifier",
            "client_id",
        ),
        (
            lambda c: (
                "Bearer "
                + jwt.encode({"client_id": c.client_id, "iat": int(time.time())}, c.secret * 2, algorithm="HS512")
            ),
            "jwt-decode-error",
            "HS256",
        ),
    ],
)
def test_every_bad_token_is_a_401_problem_that_never_shows_the_secret(
    service: LiveService, make: Any, code: str, detail: str
) -> None:
    caller = service.add_client("openklant", PUBLISH)
    response = _post(service, make(caller))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem = response.json()
    assert problem["status"] == 401
    assert problem["code"] == code
    assert detail in problem["detail"]
    assert caller.secret not in response.text
    assert _count(service) == 0


def test_the_iss_claim_names_the_client_when_client_id_is_absent(service: LiveService) -> None:
    caller = service.add_client("openklant", PUBLISH)
    signed = jwt.encode({"iss": "openklant", "iat": int(time.time())}, caller.secret, algorithm="HS256")
    assert _post(service, f"Bearer {signed}").status_code == 201


def test_a_client_without_the_scope_gets_403(service: LiveService) -> None:
    consumer = service.add_client("consumer", CONSUME)
    response = consumer.post("/api/v1/cloudevents", content=json.dumps(EVENT), headers=CE)
    assert response.status_code == 403
    problem = response.json()
    assert problem["code"] == "permission_denied"
    assert "notificaties.publiceren" in problem["detail"]
    assert _count(service) == 0


def test_a_rotated_secret_replaces_the_old_one(start_service: Any) -> None:
    service = start_service(client_cache_ttl=0)
    caller = service.add_client("openklant", PUBLISH)
    old = caller.headers()["Authorization"]
    assert _post(service, old).status_code == 201
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        client_store.rotate(conn, "outbox", "openklant", "a brand new secret, long enough!!", service.settings.box)
    assert _post(service, old).json()["code"] == "invalid-jwt-signature"
    assert _post(service, f"Bearer {token('openklant', 'a brand new secret, long enough!!')}").status_code == 201
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        client_store.remove(conn, "outbox", "openklant")
    assert _post(service, f"Bearer {token('openklant', 'a brand new secret, long enough!!')}").status_code == 401


def test_over_the_request_rate_is_a_429_with_retry_after(start_service: Any) -> None:
    service = start_service(rate_limit=1, rate_burst=2)
    caller = service.add_client("openklant", PUBLISH)
    statuses = []
    for n in range(4):
        response = caller.post("/api/v1/cloudevents", content=json.dumps({**EVENT, "id": str(n)}), headers=CE)
        statuses.append(response.status_code)
    assert statuses[:2] == [201, 201]
    assert 429 in statuses[2:]
    refused = response if response.status_code == 429 else None
    assert refused is not None
    assert refused.json()["code"] == "throttled"
    assert int(refused.headers["retry-after"]) >= 1
    # Another client has its own rate.
    other = service.add_client("other", PUBLISH)
    assert other.post("/api/v1/cloudevents", content=json.dumps({**EVENT, "id": "x"}), headers=CE).status_code == 201


def test_the_rate_holds_for_all_processes_together(start_service: Any) -> None:
    """Two instances of the service on one database: a client gets its burst once, not once per instance.
    The rate is so low (one request per 100 s) that no token comes back while the test runs."""
    first = start_service(rate_limit=0.01, rate_burst=3)
    second = start_service(rate_limit=0.01, rate_burst=3)
    caller = first.add_client("openklant", PUBLISH)
    callers = [caller, Caller(caller.client_id, caller.secret, second.base_url)]
    statuses = []
    for n in range(8):
        response = callers[n % 2].post("/api/v1/cloudevents", content=json.dumps({**EVENT, "id": str(n)}), headers=CE)
        statuses.append(response.status_code)
    callers[1].http.close()
    assert statuses.count(201) == 3, statuses  # counted per process it would have been 6
    assert statuses[:3] == [201, 201, 201] and set(statuses[3:]) == {429}
    with psycopg.connect(first.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.events").fetchone() == (3,)
        row = conn.execute("SELECT taken, tokens < 1 FROM outbox.client_rates WHERE client_id = 'openklant'").fetchone()
        assert row == (False, True)
        # The bucket goes with its client.
        client_store.remove(conn, "outbox", "openklant")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM outbox.client_rates").fetchone() == (0,)


def test_secrets_are_stored_encrypted_with_a_key(start_service: Any) -> None:
    from worker.store.secret_box import new_key

    service = start_service(secret_key=new_key())
    caller = service.add_client("openklant", PUBLISH)
    with psycopg.connect(service.database_url) as conn:
        row = conn.execute("SELECT secret, secret_encrypted FROM outbox.api_clients").fetchone()
    assert row is not None
    assert row[1] is True
    assert caller.secret not in row[0]
    assert _post(service, caller.headers()["Authorization"]).status_code == 201


def test_no_cors_headers_are_sent(service: LiveService) -> None:
    """Browsers on other origins cannot call the API: nothing allows them."""
    preflight = service.anonymous.options(
        "/api/v1/cloudevents",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    caller = service.add_client("p", PUBLISH)
    post = caller.post(
        "/api/v1/cloudevents", content=json.dumps(EVENT), headers={**CE, "Origin": "https://evil.example"}
    )
    assert post.status_code == 201
    for response in (preflight, post):
        assert not any(name.lower().startswith("access-control-") for name in response.headers)


def test_a_client_added_again_under_a_removed_id_inherits_nothing(service: LiveService) -> None:
    from tests.service.conftest import agreeing
    from tests.support import Receiver

    first = service.add_client("zaaksysteem", CONSUME)
    with Receiver(agreeing).running() as callback:
        created = first.post(
            "/api/v1/abonnement", json={"callbackUrl": callback.url, "auth": "Bearer x" * 2, "types": ["*"]}
        )
    assert created.status_code == 201, created.text
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        client_store.remove(conn, "outbox", "zaaksysteem")
        assert conn.execute("SELECT owner FROM outbox.subscriptions").fetchone() == (None,)
    second = service.add_client("zaaksysteem", CONSUME)
    assert second.get("/api/v1/abonnement").json() == []
    assert second.get(created.json()["url"].removeprefix(service.base_url)).status_code == 404
