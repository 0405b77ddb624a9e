"""POST /hooks/{endpoint}: real senders on 127.0.0.1 call consumers of the live service; what the database holds,
what the sender is answered, what the metrics count, and what the worker then delivers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from outbox._catalogue import EventType
from tests.service.conftest import StartService
from tests.service.live import LiveService
from tests.support import WorkerFactory, conformance_receiver, free_port, subscribe, wait_until
from worker.consumers import intake, operations
from worker.receiver.server import ReceiverConfig
from worker.store import catalogue as catalogue_store
from worker.store import consumers as store
from worker.store.secret_box import SecretBox

SCHEMA = "outbox"
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
GITHUB_SECRET = "It's a Secret to Everybody, 2026"
TOKEN = "psp-bearer-token-8a0WWCKMgh1EIBlD2g1b6y"
PASSWORD = "correct horse battery staple"
TYPE = "nl.example.betalingen.betaling-ontvangen"
SOURCE = "urn:nld:oin:00000001234567890000:systeem:psp"
# A payment provider's webhook (Mollie/Adyen-like) → the event: the payment id is the sender's stable id.
EXPRESSION = """{
  "id": body.id,
  "subject": body.metadata.zaak,
  "time": body.paidAt,
  "datacontenttype": "application/json",
  "data": {"betaling": body.id, "bedrag": $number(body.amount.value), "valuta": body.amount.currency,
           "status": body.status, "event": headers."x-psp-event"}
}"""
SCHEMA_OF_DATA = {
    "type": "object",
    "required": ["betaling", "bedrag", "valuta", "status"],
    "properties": {"bedrag": {"type": "number", "exclusiveMinimum": 0}, "valuta": {"enum": ["EUR"]}},
}
ZAAK = "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"


def payment(n: int = 1, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"tr_{n:06d}",
        "status": "paid",
        "amount": {"value": "12.50", "currency": "EUR"},
        "paidAt": "2026-12-07T10:00:00Z",
        "metadata": {"zaak": ZAAK},
    }
    body.update(changes)
    return body


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture
def catalogue(database_url: str) -> None:
    with connect(database_url) as conn:
        catalogue_store.add(
            conn,
            SCHEMA,
            EventType(
                slug="betaling-ontvangen", type=TYPE, name="Betaling ontvangen", source=SOURCE, schema=SCHEMA_OF_DATA
            ),
        )
        store.add_mapping(conn, SCHEMA, "psp-payment", EXPRESSION, ["X-PSP-Event"])


def add_consumer(database_url: str, endpoint: str, verification: dict[str, Any], **fields: Any) -> store.Consumer:
    document = {
        "name": fields.pop("name", f"PSP {endpoint}"),
        "endpoint": endpoint,
        "mappingId": "psp-payment",
        "targetType": "event-type",
        "targetId": "betaling-ontvangen",
        "verification": verification,
        **fields,
    }
    with connect(database_url) as conn:
        return store.add(conn, SCHEMA, document, SecretBox())


def events(database_url: str) -> list[dict[str, Any]]:
    with connect(database_url) as conn:
        rows = conn.execute("SELECT event, target_subscription FROM outbox.events ORDER BY position").fetchall()
    return [{**row[0], "_target": row[1]} for row in rows]


def failures(database_url: str) -> list[tuple[Any, ...]]:
    with connect(database_url) as conn:
        return conn.execute("SELECT code, problems, body, headers FROM outbox.consumer_failures ORDER BY id").fetchall()


def signed(body: bytes, msg_id: str = "msg_1", at: datetime | None = None, secret: str = WHSEC) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
        "content-type": "application/json",
        "x-psp-event": "payment.paid",
    }


def github(body: bytes, secret: str = GITHUB_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "content-type": "application/json", "X-GitHub-Event": "push"}


@pytest.fixture
def metrics_service(start_service: StartService) -> tuple[LiveService, str]:
    port = free_port()
    return start_service(serve_metrics_port=port, consumer_cache_ttl=0), f"http://127.0.0.1:{port}/metrics"


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url, timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    assert wanted is not None
    return 0.0


# -- Standard Webhooks --------------------------------------------------------------------------------------


def test_a_standard_webhooks_sender_is_taken_in_once_and_its_retry_is_a_duplicate(
    catalogue: None, metrics_service: tuple[LiveService, str]
) -> None:
    service, metrics_url = metrics_service
    add_consumer(service.database_url, "psp", {"method": "standard-webhooks", "secrets": [WHSEC]})
    body = json.dumps(payment()).encode()
    first = service.anonymous.post("/hooks/psp", content=body, headers=signed(body))
    assert first.status_code == 202, first.text
    assert first.json() == {"id": "tr_000001", "source": SOURCE, "status": "accepted"}
    [stored] = events(service.database_url)
    assert stored["type"] == TYPE and stored["source"] == SOURCE  # from the catalogue entry: the mapping left them out
    assert stored["subject"] == ZAAK and stored["time"] == "2026-12-07T10:00:00Z"
    assert stored["data"] == {
        "betaling": "tr_000001",
        "bedrag": 12.5,
        "valuta": "EUR",
        "status": "paid",
        "event": "payment.paid",
    }
    assert stored["_target"] is None

    # The sender's retry: the same webhook-id (a new timestamp and signature): 202, nothing stored again.
    again = service.anonymous.post("/hooks/psp", content=body, headers=signed(body))
    assert again.status_code == 202 and again.json()["status"] == "duplicate"
    # Another webhook-id whose payload maps to the same (source, id): also a duplicate.
    other = service.anonymous.post("/hooks/psp", content=body, headers=signed(body, "msg_2"))
    assert other.json() == {"id": "tr_000001", "source": SOURCE, "status": "duplicate"}
    assert len(events(service.database_url)) == 1
    with connect(service.database_url) as conn:
        receipts = conn.execute("SELECT webhook_id, event_id FROM outbox.consumer_receipts ORDER BY 1").fetchall()
    assert receipts == [("msg_1", "tr_000001"), ("msg_2", "tr_000001")]
    assert metric(metrics_url, "outbox_consumer_requests_total", consumer="psp", outcome="accepted") == 1
    assert metric(metrics_url, "outbox_consumer_requests_total", consumer="psp", outcome="duplicate") == 2


def test_wrong_signatures_stale_timestamps_and_missing_headers_are_401_with_nothing_stored(
    catalogue: None, metrics_service: tuple[LiveService, str]
) -> None:
    service, metrics_url = metrics_service
    add_consumer(service.database_url, "psp", {"method": "standard-webhooks", "secrets": [WHSEC]})
    body = json.dumps(payment()).encode()
    other_secret = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    cases = {
        "signature_mismatch": signed(body, secret=other_secret),
        "timestamp_stale": signed(body, at=datetime.fromtimestamp(time.time() - 600, UTC)),
        "timestamp_future": signed(body, at=datetime.fromtimestamp(time.time() + 600, UTC)),
        "missing_header": {k: v for k, v in signed(body).items() if k != "webhook-signature"},
    }
    for code, headers in cases.items():
        answer = service.anonymous.post("/hooks/psp", content=body, headers=headers)
        assert answer.status_code == 401, (code, answer.text)
        problem = answer.json()
        assert problem["code"] == "webhook_unverified" and f"({code})" in problem["detail"]
        assert WHSEC not in answer.text
    # A body changed after signing.
    tampered = service.anonymous.post("/hooks/psp", content=body.replace(b"12.50", b"1250.00"), headers=signed(body))
    assert tampered.status_code == 401
    assert events(service.database_url) == [] and failures(service.database_url) == []
    with connect(service.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.consumer_receipts").fetchone() == (0,)
    assert metric(metrics_url, "outbox_consumer_requests_total", consumer="psp", outcome="unauthorized") == 5
    assert metric(metrics_url, "outbox_consumer_refusals_total", consumer="psp", code="signature_mismatch") == 2
    assert metric(metrics_url, "outbox_consumer_refusals_total", consumer="psp", code="timestamp_stale") == 1


# -- other senders ------------------------------------------------------------------------------------------


def test_github_style_hmac_bearer_basic_and_api_key_senders(catalogue: None, service: LiveService) -> None:
    add_consumer(
        service.database_url,
        "gh",
        {"method": "hmac", "header": "X-Hub-Signature-256", "prefix": "sha256=", "secrets": [GITHUB_SECRET]},
    )
    add_consumer(service.database_url, "bearer", {"method": "bearer", "tokens": [TOKEN]})
    add_consumer(service.database_url, "basic", {"method": "basic", "username": "psp", "password": PASSWORD})
    add_consumer(service.database_url, "key", {"method": "api-key", "header": "X-API-Key", "keys": [TOKEN]})
    plain = {"content-type": "application/json"}
    basic = "Basic " + base64.b64encode(f"psp:{PASSWORD}".encode()).decode()
    wrong_basic = "Basic " + base64.b64encode(b"psp:wrong password!").decode()
    for n, (endpoint, good, bad) in enumerate(
        [
            ("gh", None, {"X-Hub-Signature-256": "sha256=" + "0" * 64}),
            ("bearer", {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer not-the-token-at-all"}),
            ("basic", {"Authorization": basic}, {"Authorization": wrong_basic}),
            ("key", {"X-API-Key": TOKEN}, {"X-API-Key": "not-the-key"}),
        ],
        start=1,
    ):
        body = json.dumps(payment(n)).encode()
        headers = github(body) if good is None else {**plain, **good}
        accepted = service.anonymous.post(f"/hooks/{endpoint}", content=body, headers=headers)
        assert accepted.status_code == 202, (endpoint, accepted.text)
        refused = service.anonymous.post(f"/hooks/{endpoint}", content=body, headers={**plain, **(bad or {})})
        assert refused.status_code == 401, endpoint
        if endpoint in ("bearer", "basic"):
            assert refused.headers["WWW-Authenticate"].startswith(endpoint.capitalize())
    assert [e["id"] for e in events(service.database_url)] == ["tr_000001", "tr_000002", "tr_000003", "tr_000004"]
    # Without a webhook id, the sender's retry is told apart by the event's (source, id).
    body = json.dumps(payment(1)).encode()
    assert service.anonymous.post("/hooks/gh", content=body, headers=github(body)).json()["status"] == "duplicate"
    assert len(events(service.database_url)) == 4


# -- what is refused before verification, and what is kept after it --------------------------------------------


def test_unknown_and_disabled_consumers_answer_404_and_oversized_bodies_413(
    catalogue: None, metrics_service: tuple[LiveService, str]
) -> None:
    service, metrics_url = metrics_service
    add_consumer(service.database_url, "psp", {"method": "standard-webhooks", "secrets": [WHSEC]}, maxBodyBytes=512)
    body = json.dumps(payment()).encode()
    assert service.anonymous.post("/hooks/nobody", content=body, headers=signed(body)).status_code == 404
    assert service.anonymous.post("/hooks/Not%20a%20slug", content=body).status_code == 404
    big = json.dumps(payment(description="x" * 600)).encode()
    oversized = service.anonymous.post("/hooks/psp", content=big, headers=signed(big))
    assert oversized.status_code == 413 and "512" in oversized.json()["detail"]
    with connect(service.database_url) as conn:
        store.set_enabled(conn, SCHEMA, "psp", False)
    disabled = service.anonymous.post("/hooks/psp", content=body, headers=signed(body))
    assert disabled.status_code == 404 and disabled.json()["code"] == "not_found"
    assert events(service.database_url) == [] and failures(service.database_url) == []
    assert metric(metrics_url, "outbox_consumer_requests_total", consumer="psp", outcome="disabled") == 1
    assert metric(metrics_url, "outbox_consumer_requests_total", consumer="psp", outcome="too_large") == 1
    assert "nobody" not in httpx.get(metrics_url).text  # unknown endpoints are not labels


def test_a_consumer_over_its_rate_is_answered_429(catalogue: None, service: LiveService) -> None:
    add_consumer(service.database_url, "psp", {"method": "bearer", "tokens": [TOKEN]}, rateLimit=0.5, rateBurst=2)
    headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    answers = [
        service.anonymous.post("/hooks/psp", content=json.dumps(payment(n)).encode(), headers=headers)
        for n in range(1, 4)
    ]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert len(events(service.database_url)) == 2


def test_payloads_the_mapping_or_the_schema_refuse_are_422_kept_and_replayed_once_fixed(
    catalogue: None, service: LiveService
) -> None:
    consumer = add_consumer(service.database_url, "psp", {"method": "bearer", "tokens": [TOKEN]})
    headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json", "x-psp-event": "payment.paid"}
    sent = {
        "malformed_json": b'{"id": "tr_1", ',
        "invalid_event": json.dumps(payment(2, paidAt="yesterday")).encode(),  # time: not RFC 3339
        "schema_violation": json.dumps(payment(3, amount={"value": "-5", "currency": "EUR"})).encode(),
        "evaluation_error": json.dumps(payment(4, amount={"value": "not a number", "currency": "EUR"})).encode(),
    }
    for code, body in sent.items():
        answer = service.anonymous.post("/hooks/psp", content=body, headers=headers)
        assert answer.status_code == 422, (code, answer.text)
        problem = answer.json()
        assert problem["code"] == "unprocessable" and f"({code})" in problem["detail"]
        assert problem["invalidParams"], code
        assert TOKEN not in answer.text
    schema_problem = service.anonymous.post("/hooks/psp", content=sent["schema_violation"], headers=headers).json()
    assert [p["name"] for p in schema_problem["invalidParams"]] == ["data.bedrag"]
    time_problem = service.anonymous.post("/hooks/psp", content=sent["invalid_event"], headers=headers).json()
    assert [p["name"] for p in time_problem["invalidParams"]] == ["time"]
    assert events(service.database_url) == []
    kept = failures(service.database_url)
    assert [k[0] for k in kept] == [*sent, "schema_violation", "invalid_event"]
    assert bytes(kept[1][2]) == sent["invalid_event"]
    assert kept[1][3] == {"x-psp-event": "payment.paid"}  # only what the mapping reads; never Authorization

    # The operator fixes the mapping (a date the PSP sends as "yesterday" becomes the receipt time) and replays.
    fixed = EXPRESSION.replace(
        '"time": body.paidAt', '"time": body.paidAt = "yesterday" ? "2026-12-06T00:00:00Z" : body.paidAt'
    )
    with connect(service.database_url) as conn:
        store.update_mapping(conn, SCHEMA, "psp-payment", fixed, ["X-PSP-Event"])
        open_failures = store.failures(conn, SCHEMA, consumer, open_only=True)
        by_code = {f.code: f.id for f in open_failures}
        replayed = operations.replay(conn, SCHEMA, consumer, by_code["invalid_event"])
        with pytest.raises(operations.AlreadyReplayed):
            operations.replay(conn, SCHEMA, consumer, by_code["invalid_event"])
        with pytest.raises(intake.Refused) as still:
            operations.replay(conn, SCHEMA, consumer, by_code["schema_violation"])
    assert replayed.stored and replayed.event["time"] == "2026-12-06T00:00:00Z"
    assert still.value.code == "schema_violation"
    [stored] = events(service.database_url)
    assert stored["id"] == "tr_000002" and stored["data"]["event"] == "payment.paid"


def test_a_consumer_without_a_mapping_takes_cloudevents(service: LiveService) -> None:
    with connect(service.database_url) as conn:
        catalogue_store.add(
            conn,
            SCHEMA,
            EventType(slug="zaak-gekoppeld", type="nl.overheid.zaken.zaak-gekoppeld", name="Zaak gekoppeld"),
        )
    add_consumer(
        service.database_url,
        "outbox-b",
        {"method": "bearer", "tokens": [TOKEN]},
        mappingId=None,
        targetId="zaak-gekoppeld",
    )
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "urn:nld:oin:1:openzaak",
        "type": "nl.overheid.zaken.zaak-gekoppeld",
        "subject": ZAAK,
        "data": {"zaak": ZAAK},
    }
    headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    assert service.anonymous.post("/hooks/outbox-b", json=event, headers=headers).status_code == 202
    wrong = service.anonymous.post("/hooks/outbox-b", json={**event, "id": "e-2", "type": "nl.other"}, headers=headers)
    assert wrong.status_code == 422 and wrong.json()["invalidParams"][0]["name"] == "type"
    assert [e["id"] for e in events(service.database_url)] == ["e-1"]


def test_many_concurrent_requests_each_store_their_event_once(catalogue: None, service: LiveService) -> None:
    import concurrent.futures

    add_consumer(service.database_url, "psp", {"method": "standard-webhooks", "secrets": [WHSEC]})

    def send(n: int) -> int:
        body = json.dumps(payment(n % 40)).encode()  # every payment three times, with its own webhook ids
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            return client.post("/hooks/psp", content=body, headers=signed(body, f"msg_{n}")).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(send, range(120)))
    assert statuses == [202] * 120
    stored = events(service.database_url)
    assert sorted(e["id"] for e in stored) == sorted(f"tr_{n:06d}" for n in range(40))


# -- targets and delivery -----------------------------------------------------------------------------------


def test_what_consumers_take_in_is_delivered_by_the_worker_as_nl_gov_cloudevents(
    catalogue: None, service: LiveService, start_worker: WorkerFactory
) -> None:
    """An event-type consumer's event goes to every matching subscription; a source consumer's to its one
    subscription only, whatever the others' filters say."""
    everyone = ReceiverConfig(quiet=True)
    only = ReceiverConfig(quiet=True)
    with conformance_receiver(everyone) as everyone_url, conformance_receiver(only) as only_url:
        auth = "Bearer 8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE"
        subscribe(service.database_url, f"{everyone_url}/all", types=["*"], auth=auth)
        target = subscribe(service.database_url, f"{only_url}/psp", types=["nl.nothing.matches"], auth=auth)
        add_consumer(service.database_url, "psp", {"method": "standard-webhooks", "secrets": [WHSEC]})
        add_consumer(
            service.database_url,
            "direct",
            {"method": "bearer", "tokens": [TOKEN]},
            targetType="source",
            targetId=target,
            mappingId="psp-payment",
            name="direct",
        )
        with connect(service.database_url) as conn:  # a source consumer's event names its own source
            store.update_mapping(
                conn,
                SCHEMA,
                "psp-payment",
                EXPRESSION.replace('"id": body.id,', f'"id": body.id, "type": "{TYPE}", "source": "{SOURCE}",'),
                ["X-PSP-Event"],
            )
        body = json.dumps(payment(1)).encode()
        assert service.anonymous.post("/hooks/psp", content=body, headers=signed(body)).status_code == 202
        direct = json.dumps(payment(2)).encode()
        answer = service.anonymous.post(
            "/hooks/direct", content=direct, headers={"Authorization": f"Bearer {TOKEN}", "x-psp-event": "p"}
        )
        assert answer.status_code == 202, answer.text
        assert [e["_target"] for e in events(service.database_url)] == [None, uuid.UUID(target)]
        start_worker()
        wait_until(lambda: len(everyone.received) >= 1 and len(only.received) >= 1, message="deliveries")
        time.sleep(0.5)  # nothing more arrives
    assert [r["event"]["id"] for r in everyone.received] == ["tr_000001"]  # not the targeted one
    assert [r["event"]["id"] for r in only.received] == ["tr_000002"]
    assert everyone.violations == [] and only.violations == []  # NL GOV CloudEvents, by the reference receiver
    delivered = everyone.received[0]["event"]
    assert delivered["type"] == TYPE and delivered["source"] == SOURCE and delivered["specversion"] == "1.0"


def test_verification_secrets_are_sealed_at_rest_and_survive_a_key_rotation(
    catalogue: None, start_service: StartService, database_url: str
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with connect(database_url) as conn:
        store.add(
            conn,
            SCHEMA,
            {
                "name": "PSP",
                "endpoint": "psp",
                "mappingId": "psp-payment",
                "targetType": "event-type",
                "targetId": "betaling-ontvangen",
                "verification": {"method": "standard-webhooks", "secrets": [WHSEC]},
            },
            SecretBox.from_setting(old_key),
        )
        row = conn.execute("SELECT secrets, secrets_encrypted FROM outbox.consumers").fetchone()
        assert row is not None
        sealed, encrypted = row
        assert encrypted and WHSEC not in sealed and WHSEC.removeprefix("whsec_") not in sealed
        assert store.reseal_all(conn, SCHEMA, SecretBox.from_setting(f"{new_key},{old_key}")) == 1
        assert conn.execute("SELECT secrets FROM outbox.consumers").fetchone() != (sealed,)
    service = start_service(secret_key=new_key)
    body = json.dumps(payment()).encode()
    assert service.anonymous.post("/hooks/psp", content=body, headers=signed(body)).status_code == 202


def test_serve_sweeps_old_webhook_ids_and_purge_removes_replayed_failures(
    catalogue: None, start_service: StartService, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from worker.daemon import maintenance
    from worker.service import hooks

    consumer = add_consumer(database_url, "psp", {"method": "standard-webhooks", "secrets": [WHSEC]})
    with connect(database_url) as conn:
        for webhook_id, age in (("old", "3 hours"), ("recent", "10 minutes")):
            conn.execute(
                "INSERT INTO outbox.consumer_receipts (consumer_id, webhook_id, received_at, event_source, event_id)"
                " VALUES (%s, %s, now() - %s::interval, 'urn:x', %s)",
                (consumer.id, webhook_id, age, webhook_id),
            )
    monkeypatch.setattr(hooks, "RECEIPT_SWEEP_SECONDS", 0.1)
    service = start_service()

    def receipts() -> list[str]:
        with connect(database_url) as conn:
            return [r[0] for r in conn.execute("SELECT webhook_id FROM outbox.consumer_receipts ORDER BY 1")]

    wait_until(lambda: receipts() == ["recent"], message="the old webhook id swept")
    headers = {**signed(b"{", "msg_bad"), "content-type": "application/json"}
    assert service.anonymous.post("/hooks/psp", content=b"{", headers=headers).status_code == 422
    body = json.dumps(payment(5)).encode()
    with connect(database_url) as conn:
        conn.execute(
            "INSERT INTO outbox.consumer_failures (consumer_id, code, problems, body) VALUES (%s, 'x', '[]', %s)",
            (consumer.id, body),
        )
        replayable = conn.execute("SELECT max(id) FROM outbox.consumer_failures").fetchone()
        assert replayable is not None
        operations.replay(conn, SCHEMA, consumer, replayable[0])
        later = datetime.now(UTC) + timedelta(days=400)
        report = maintenance.purge(
            conn, SCHEMA, older_than=timedelta(days=1), failed_older_than=timedelta(days=7), now=later
        )
        left = conn.execute("SELECT code, replayed_at IS NULL FROM outbox.consumer_failures").fetchall()
    assert report.replayed == 1
    assert left == [("malformed_json", True)]  # the open one stays for the operator
