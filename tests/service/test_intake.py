"""POST /api/v1/cloudevents: the three content modes, replays, and every refusal."""

from __future__ import annotations

import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.service.live import ADMIN, PUBLISH, LiveService
from tests.support import wait_until

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


def test_the_request_of_notifications_api_common_is_taken_as_it_is_sent(service: LiveService) -> None:
    """notifications-api-common 0.13's send_cloudevent: requests' json= body (", " and ": " separators),
    nulls for unset attributes, the explicit Content-Type, a zgw-consumers JWT with exp."""
    producer = service.add_client("openzaak", PUBLISH)
    event = {
        "id": "5b0c6f1e-2f1c-4a0a-9d43-6f9d3b9a1f10",
        "source": "openzaak.maykin.nl",
        "specversion": "1.0",
        "type": "nl.overheid.zaken.zaak.create",
        "subject": None,
        "time": "2025-01-01T00:00:00Z",
        "dataref": None,
        "datacontenttype": "application/json",
        "data": {"foo": "bar"},
    }
    body = json.dumps(event, allow_nan=False).encode()
    now = int(time.time())
    signed = jwt.encode(
        {"iss": "openzaak", "iat": now, "exp": now + 43200, "client_id": "openzaak", "user_id": "",
         "user_representation": ""},
        producer.secret,
        algorithm="HS256",
    )  # fmt: skip
    headers = {
        "User-Agent": "python-requests/2.32.3",
        "Accept-Encoding": "gzip, deflate",
        "Accept": "*/*",
        "Connection": "keep-alive",
        "Content-Type": "application/cloudevents+json",
        "Authorization": f"Bearer {signed}",
    }
    response = service.anonymous.post("/api/v1/cloudevents", content=body, headers=headers)
    assert response.status_code == 201, response.text
    stored = {key: value for key, value in event.items() if value is not None}
    assert _stored(service) == [stored]


def test_binary_mode_takes_the_attributes_from_ce_headers(service: LiveService) -> None:
    producer = service.add_client("openklant", PUBLISH)
    response = producer.post(
        "/api/v1/cloudevents",
        content=b'{"zaak": "urn:uuid:1"}',
        headers={
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "bin-1",
            "ce-source": "urn:nld:oin:1:systeem:openklant",
            "ce-type": ZAAK,
            "ce-subject": "zaak%201",  # percent-encoded, as the HTTP binding says
            "ce-hop": "3",
        },
    )
    assert response.status_code == 201, response.text
    assert _stored(service) == [
        {
            "specversion": "1.0",
            "id": "bin-1",
            "source": "urn:nld:oin:1:systeem:openklant",
            "type": ZAAK,
            "subject": "zaak 1",
            "datacontenttype": "application/json",
            "hop": "3",
            "data": {"zaak": "urn:uuid:1"},
        }
    ]


def test_binary_mode_keeps_other_media_as_base64(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    response = producer.post(
        "/api/v1/cloudevents",
        content=b"\x00\x01binary",
        headers={"Content-Type": "application/octet-stream", "ce-specversion": "1.0", "ce-id": "b2",
                 "ce-source": "urn:x", "ce-type": ZAAK},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    (stored,) = _stored(service)
    assert stored["data_base64"] == "AAFiaW5hcnk="
    assert stored["datacontenttype"] == "application/octet-stream"


def test_a_batch_is_stored_whole_in_order(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    events = [_event(n) for n in range(5)]
    response = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps(events),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/cloudevents-batch+json"
    assert response.json() == events
    assert _stored(service) == events


def test_a_batch_with_one_bad_event_stores_nothing_and_names_each_fault(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    events = [_event(0), _event(1, type=""), _event(2, time="yesterday", source=None)]
    response = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps(events),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid"
    assert {(p["name"], p["reason"]) for p in problem["invalidParams"]} == {
        ("[1].type", "must be a non-empty string"),
        ("[2].source", "is required"),
        ("[2].time", "must be an RFC 3339 timestamp, e.g. 2025-10-10T00:00:00Z"),
    }
    assert _stored(service) == []


def test_a_replayed_post_stores_nothing_new_and_succeeds_again(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    headers = {"Content-Type": "application/cloudevents+json"}
    first = producer.post("/api/v1/cloudevents", content=json.dumps(_event(1)), headers=headers)
    # The same event: other member order, white space, an unset attribute sent as null.
    reordered = dict(reversed(list(_event(1, dataref=None).items())))
    again = producer.post("/api/v1/cloudevents", content=json.dumps(reordered, indent=2), headers=headers)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == _event(1)
    batch = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps([_event(1), _event(2), _event(2)]),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert batch.status_code == 201, batch.text
    assert [e["id"] for e in _stored(service)] == ["evt-1", "evt-2"]
    # The same id from another source is another event.
    other = producer.post("/api/v1/cloudevents", content=json.dumps(_event(1, source="urn:other")), headers=headers)
    assert other.status_code == 201
    assert len(_stored(service)) == 3


def test_a_replay_with_other_content_is_a_409_naming_id_and_stores_nothing(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    headers = {"Content-Type": "application/cloudevents+json"}
    assert producer.post("/api/v1/cloudevents", content=json.dumps(_event(1)), headers=headers).status_code == 201
    changed = producer.post(
        "/api/v1/cloudevents", content=json.dumps(_event(1, data={"zaak": "urn:uuid:other"})), headers=headers
    )
    assert changed.status_code == 409, changed.text
    problem = changed.json()
    assert (problem["code"], problem["type"]) == ("conflict", "/problems/conflict")
    assert [p["name"] for p in problem["invalidParams"]] == ["id"]
    # Another attribute counts as much as data.
    later = producer.post(
        "/api/v1/cloudevents", content=json.dumps(_event(1, time="2025-02-02T00:00:00Z")), headers=headers
    )
    assert later.status_code == 409
    # In a batch: the whole batch is refused, its new events too, and each conflicting event is named.
    batch = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps([_event(5), _event(1, subject="other"), _event(6)]),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert batch.status_code == 409, batch.text
    assert [p["name"] for p in batch.json()["invalidParams"]] == ["[1].id"]
    # One batch holding one id twice with different content.
    twice = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps([_event(7), _event(7, data={"other": 1})]),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert twice.status_code == 409, twice.text
    assert _stored(service) == [_event(1)]
    with psycopg.connect(service.database_url) as conn:
        assert conn.execute("SELECT id FROM outbox.intake_ids").fetchall() == [("evt-1",)]


def test_concurrent_posts_of_one_new_id_with_different_content_store_one(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    headers = producer.headers(**{"Content-Type": "application/cloudevents+json"})

    def post(n: int) -> httpx.Response:
        body = json.dumps(_event(9, data={"variant": n % 4}))
        return httpx.post(f"{service.base_url}/api/v1/cloudevents", content=body, headers=headers, timeout=10)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(32)))
    stored = _stored(service)
    assert len(stored) == 1
    winner = stored[0]["data"]["variant"]
    for n, answer in enumerate(answers):
        assert answer.status_code == (201 if n % 4 == winner else 409), (n, answer.text)


def test_a_key_committed_while_the_intake_waited_on_it_is_compared_too(service: LiveService) -> None:
    """The intake's snapshot predates a key another request commits while the intake waits on its row
    lock: the statement runs again (intake_raced) and sees the key's digest, so the answer is 409, not a
    201 for an event that was never stored."""
    producer = service.add_client("p", PUBLISH)
    event = _event(1)
    with psycopg.connect(service.database_url) as other, ThreadPoolExecutor(1) as pool:
        other.execute(  # another request's key, with another digest, not committed yet
            "INSERT INTO outbox.intake_ids (source, id, position, digest) VALUES (%s, %s, -1, '\\x00')",
            (event["source"], event["id"]),
        )
        answer = pool.submit(
            producer.post,
            "/api/v1/cloudevents",
            content=json.dumps(event),
            headers={"Content-Type": "application/cloudevents+json"},
        )
        with psycopg.connect(service.database_url, autocommit=True) as watch:
            wait_until(
                lambda: (
                    watch.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%intake_ids%%'"
                    ).fetchone()
                    == (1,)
                ),
                message="the intake waits on the key's row",
            )
        other.commit()
        response = answer.result(timeout=15)
    assert response.status_code == 409, response.text
    assert _stored(service) == []


def test_the_digest_is_that_of_the_stored_event_and_a_key_without_one_is_a_replay(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    headers = {"Content-Type": "application/cloudevents+json"}
    assert producer.post("/api/v1/cloudevents", content=json.dumps(_event(1)), headers=headers).status_code == 201
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        # What migration 014 computes for keys taken in before it: the same digest the intake writes.
        same = conn.execute(
            "SELECT k.digest = sha256(convert_to(e.event::jsonb::text, 'UTF8')) FROM outbox.intake_ids k"
            " JOIN outbox.events e ON e.position = k.position AND e.enqueued_at = k.received_at"
        ).fetchall()
        assert same == [(True,)]
        conn.execute("UPDATE outbox.intake_ids SET digest = NULL")  # a key whose event was gone at 014
    changed = producer.post("/api/v1/cloudevents", content=json.dumps(_event(1, data={"x": 1})), headers=headers)
    assert changed.status_code == 201  # nothing to compare with: a replay, as before 014
    assert _stored(service) == [_event(1)]


def test_concurrent_replays_store_the_event_once(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    body = json.dumps(_event(7))
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda _: (
                    httpx.post(
                        f"{service.base_url}/api/v1/cloudevents",
                        content=body,
                        headers=producer.headers(**{"Content-Type": "application/cloudevents+json"}),
                    ).status_code
                ),
                range(16),
            )
        )
    assert statuses == [201] * 16
    assert len(_stored(service)) == 1


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 415),  # JSON without ce- headers: neither structured nor binary
        ("text/plain", 415),
        ("application/cloudevents+json; charset=latin-1", 415),
        ("application/cloudevents+xml", 415),
    ],
)
def test_other_media_types_are_refused_with_415(service: LiveService, content_type: str, status: int) -> None:
    producer = service.add_client("p", PUBLISH)
    response = producer.post(
        "/api/v1/cloudevents", content=json.dumps(_event()), headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    assert response.json()["code"] == "unsupported_media_type"
    assert _stored(service) == []


def test_a_body_that_is_not_json_is_a_400_naming_it(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    response = producer.post(
        "/api/v1/cloudevents", content=b"{not json", headers={"Content-Type": "application/cloudevents+json"}
    )
    assert response.status_code == 400
    assert response.json()["invalidParams"][0]["name"] == "event"


def test_an_event_over_the_size_limit_is_a_413(start_service: Any) -> None:
    service = start_service(max_event_bytes=2048, max_batch_events=3, max_batch_bytes=4096)
    producer = service.add_client("p", PUBLISH)
    headers = {"Content-Type": "application/cloudevents+json"}
    big = producer.post("/api/v1/cloudevents", content=json.dumps(_event(data={"x": "y" * 3000})), headers=headers)
    assert big.status_code == 413
    assert big.json()["code"] == "too_large"
    # A batch body over OUTBOX_MAX_BATCH_BYTES is refused before it is read whole.
    huge = producer.post(
        "/api/v1/cloudevents",
        content=b"[" + b" " * 10_000 + b"]",
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert huge.status_code == 413
    assert "OUTBOX_MAX_BATCH_BYTES" in huge.json()["detail"]
    too_many = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps([_event(n) for n in range(4)]),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert too_many.status_code == 413
    assert _stored(service) == []


def test_the_catalogue_applies_to_the_intake(service: LiveService) -> None:
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO outbox.event_types (slug, type, name, schema) VALUES (%s, %s, %s, %s)",
            ("zaak-gekoppeld", ZAAK, "Zaak gekoppeld", Jsonb({"type": "object", "required": ["zaak"]})),
        )
        conn.execute(
            "INSERT INTO outbox.event_types (slug, type, name, is_enabled) VALUES ('off', 'nl.x.off', 'Off', false)"
        )
    producer = service.add_client("p", PUBLISH)
    headers = {"Content-Type": "application/cloudevents+json"}
    bad = producer.post("/api/v1/cloudevents", content=json.dumps(_event(data={"other": 1})), headers=headers)
    assert bad.status_code == 400
    assert bad.json()["invalidParams"][0]["name"].startswith("data")
    off = producer.post("/api/v1/cloudevents", content=json.dumps(_event(2, type="nl.x.off")), headers=headers)
    assert off.status_code == 201  # accepted and dropped, as enqueue drops a disabled type
    good = producer.post("/api/v1/cloudevents", content=json.dumps(_event(3)), headers=headers)
    assert good.status_code == 201
    assert [e["id"] for e in _stored(service)] == ["evt-3"]


def test_purge_forgets_an_intake_key_only_once_its_event_is_gone(service: LiveService) -> None:
    from datetime import timedelta

    from worker.daemon.maintenance import purge

    producer = service.add_client("p", PUBLISH)
    headers = {"Content-Type": "application/cloudevents+json"}
    for n in (1, 2):
        assert producer.post("/api/v1/cloudevents", content=json.dumps(_event(n)), headers=headers).status_code == 201
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        with conn.transaction():  # one now(): a key's received_at is its event's enqueued_at
            conn.execute("UPDATE outbox.intake_ids SET received_at = now() - interval '40 days'")
            conn.execute("UPDATE outbox.events SET enqueued_at = now() - interval '40 days'")  # not routed: kept
        conn.execute("DELETE FROM outbox.events WHERE event->>'id' = 'evt-1'")
        purge(conn, "outbox", timedelta(days=60))
        assert conn.execute("SELECT count(*) FROM outbox.intake_ids").fetchone() == (2,)  # not past the cutoff
        purge(conn, "outbox", timedelta(days=30))
        remaining = conn.execute("SELECT id FROM outbox.intake_ids").fetchall()
    assert remaining == [("evt-2",)]  # its event is still there
    for n in (1, 2):
        assert producer.post("/api/v1/cloudevents", content=json.dumps(_event(n)), headers=headers).status_code == 201
    assert [e["id"] for e in _stored(service)] == ["evt-2", "evt-1"]


def test_a_body_that_does_not_arrive_in_time_is_a_408(start_service: Any) -> None:
    import socket

    service = start_service(request_timeout=0.5)
    producer = service.add_client("p", PUBLISH)
    port = int(service.base_url.rsplit(":", 1)[1])
    head = (
        f"POST /api/v1/cloudevents HTTP/1.1\r\nHost: x\r\nAuthorization: {producer.headers()['Authorization']}\r\n"
        "Content-Type: application/cloudevents+json\r\nContent-Length: 500\r\n\r\n{"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):  # the service closes the connection after a 408
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"code":"request_timeout"' in answer
    assert _stored(service) == []


def test_each_content_mode_has_its_own_body_limit(start_service: Any) -> None:
    service = start_service(max_event_bytes=2048, max_batch_events=10, max_batch_bytes=6000)
    producer = service.add_client("p", PUBLISH)
    # One event's body may be OUTBOX_MAX_EVENT_BYTES: white space counts, as sent.
    padded = json.dumps(_event(1), indent=1).encode() + b" " * 2048
    one = producer.post("/api/v1/cloudevents", content=padded, headers={"Content-Type": "application/cloudevents+json"})
    assert one.status_code == 413, one.text
    assert "OUTBOX_MAX_EVENT_BYTES" in one.json()["detail"]
    binary = producer.post(
        "/api/v1/cloudevents",
        content=b"x" * 3000,
        headers={
            "ce-specversion": "1.0",
            "ce-id": "b",
            "ce-source": "urn:x",
            "ce-type": ZAAK,
            "Content-Type": "text/plain",
        },
    )
    assert binary.status_code == 413
    assert _stored(service) == []
    # A batch may be larger than one event: up to OUTBOX_MAX_BATCH_BYTES.
    batch = json.dumps([_event(n, data={"x": "y" * 900}) for n in range(4)]).encode()
    assert 2048 < len(batch) <= 6000
    taken = producer.post(
        "/api/v1/cloudevents", content=batch, headers={"Content-Type": "application/cloudevents-batch+json"}
    )
    assert taken.status_code == 201, taken.text
    assert [e["id"] for e in _stored(service)] == ["evt-0", "evt-1", "evt-2", "evt-3"]


def _send_slowly(port: int, head: bytes, body: bytes, every: float) -> bytes:
    """Sends `head`, then `body` one byte each `every` seconds until the service answers; its answer."""
    import select
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for byte in body:
            readable, _, _ = select.select([sock], [], [], every)  # the client's pace, not a wait for the service
            if readable:
                break
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):  # the service closes the connection after a 408
                answer += chunk
    return answer


def test_a_client_sending_a_byte_at_a_time_is_cut_off_at_the_body_deadline(start_service: Any) -> None:
    # Each byte comes well within OUTBOX_REQUEST_TIMEOUT; the whole body never within OUTBOX_BODY_TIMEOUT.
    service = start_service(request_timeout=5, body_timeout=1)
    producer = service.add_client("p", PUBLISH)
    port = int(service.base_url.rsplit(":", 1)[1])
    body = json.dumps(_event(1)).encode()
    head = (
        f"POST /api/v1/cloudevents HTTP/1.1\r\nHost: x\r\nAuthorization: {producer.headers()['Authorization']}\r\n"
        f"Content-Type: application/cloudevents+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    assert len(body) * 0.05 > 5  # sent whole, the body would take longer than the deadline
    answer = _send_slowly(port, head, body, every=0.05)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"OUTBOX_BODY_TIMEOUT" in answer
    assert b"connection: close" in answer.lower()
    assert _stored(service) == []
    with psycopg.connect(service.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.intake_ids").fetchone() == (0,)


def test_the_body_deadline_holds_for_the_other_routes_too(start_service: Any) -> None:
    service = start_service(request_timeout=5, body_timeout=1)
    admin = service.add_client("admin", ADMIN)
    port = int(service.base_url.rsplit(":", 1)[1])
    body = json.dumps({"name": "Slow", "slug": "slow", "type": "nl.slow", "description": "x" * 200}).encode()
    head = (
        f"POST /api/v1/event-types HTTP/1.1\r\nHost: x\r\nAuthorization: {admin.headers()['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = _send_slowly(port, head, body, every=0.05)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    with psycopg.connect(service.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.event_types WHERE NOT operational").fetchone() == (0,)


def test_without_the_database_the_answer_is_503_and_nothing_is_lost(start_service: Any, database_url: str) -> None:
    service = start_service(client_cache_ttl=60)
    producer = service.add_client("p", PUBLISH)
    headers = {"Content-Type": "application/cloudevents+json"}
    assert producer.post("/api/v1/cloudevents", content=json.dumps(_event(1)), headers=headers).status_code == 201
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(psycopg.conninfo.make_conninfo(database_url, dbname="postgres"), autocommit=True) as conn:
        # Take the service's database away: its connections end, and no new one may open.
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            refused = producer.post("/api/v1/cloudevents", content=json.dumps(_event(2)), headers=headers)
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
    assert refused.status_code == 503
    assert refused.json()["code"] == "unavailable"
    assert refused.headers["retry-after"] == "5"
    # The producer retries (as notifications-api-common does) until the pool has reconnected; stored once.
    wait_until(
        lambda: producer.post("/api/v1/cloudevents", content=json.dumps(_event(2)), headers=headers).status_code == 201,
        message="the service to reconnect",
    )
    assert [e["id"] for e in _stored(service)] == ["evt-1", "evt-2"]


def test_an_integer_beyond_64_bits_is_refused_not_rounded(service: LiveService) -> None:
    producer = service.add_client("p", PUBLISH)
    body = json.dumps(_event(1)).replace('"urn:uuid:1"', "123456789012345678901234567890")
    response = producer.post(
        "/api/v1/cloudevents", content=body, headers={"Content-Type": "application/cloudevents+json"}
    )
    assert response.status_code == 400
    assert response.json()["invalidParams"][0]["name"] == "data"
    assert _stored(service) == []
    # Long digit runs inside strings are no problem.
    fine = producer.post(
        "/api/v1/cloudevents",
        content=json.dumps(_event(2, subject="123456789012345678901234567890")),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert fine.status_code == 201
    assert _stored(service)[0]["subject"] == "123456789012345678901234567890"
