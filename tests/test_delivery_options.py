"""Per-subscription delivery options end to end: a real `outbox run`, real PostgreSQL, real HTTP.

Batched mode, rate limits shared by workers, 429 pacing, pre-flight handshakes, the auth kinds,
Standard Webhooks signatures, secrets at rest and the metrics server.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from standardwebhooks import Webhook

from outbox import CloudEvent
from tests.support import (
    Answer,
    Received,
    Receiver,
    SdkReceiver,
    WorkerFactory,
    count_delivered,
    deliveries,
    enqueue,
    free_port,
    subscribe,
    wait_until,
    zaak_event,
)

ORIGIN = "outbox.test.example"


def _pace(database_url: str, subscription_id: str) -> dict[str, Any] | None:
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "SELECT * FROM outbox.subscription_pace WHERE subscription_id = %s", (subscription_id,)
        ).fetchone()


def test_batched_mode_posts_arrays_of_at_most_batch_max_in_key_order(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscribe(database_url, receiver.url, content_mode="batched", batch_max=4)
    # Three keys, 12 events: each key's events must arrive in enqueue order, across batches.
    events = [zaak_event(f"zaak-{i % 3}", n=i) for i in range(12)]
    enqueue(database_url, events)
    start_worker({"OUTBOX_BATCH_SIZE": "50"})
    wait_until(lambda: count_delivered(database_url) == 12, message="12 delivered")
    posts = [r for r in receiver.received if r.method == "POST"]
    assert all(r.headers["Content-Type"] == "application/cloudevents-batch+json" for r in posts)
    batches = [json.loads(r.body) for r in posts]
    assert all(isinstance(b, list) and 1 <= len(b) <= 4 for b in batches)
    arrived = [e for batch in batches for e in batch]
    assert sorted(e["id"] for e in arrived) == sorted(e.id for e in events)
    for key in ("zaak-0", "zaak-1", "zaak-2"):
        ns = [e["data"]["n"] for e in arrived if e["subject"] == key]
        assert ns == sorted(ns), f"per-key order broken for {key}: {ns}"
    assert len(posts) < 12, "events shared requests"


def test_batched_answer_applies_to_the_whole_batch(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = lambda n, r: (500, {}, 0.0) if n == 0 else (204, {}, 0.0)
    subscribe(database_url, receiver.url, content_mode="batched", batch_max=10)
    enqueue(database_url, [zaak_event(f"z{i}") for i in range(3)])
    start_worker()
    wait_until(lambda: count_delivered(database_url) == 3, message="3 delivered")
    first = json.loads(receiver.received[0].body)
    rows = {r["event_id"]: r for r in deliveries(database_url)}
    for event in first:
        assert rows[event["id"]]["attempts"] == 2, "the 500 counted for every event in the batch"


def test_rate_limit_holds_across_two_workers(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscribe(database_url, receiver.url, rate=120)  # 2 per second, at most one second's worth at once
    enqueue(database_url, [zaak_event(f"z{i}") for i in range(9)])
    start_worker()
    start_worker()
    wait_until(lambda: count_delivered(database_url) == 9, timeout=30, message="9 delivered")
    times = sorted(r.arrived for r in receiver.received)
    # 2 may go at once; the other 7 need 3.5 s at 2 per second, whichever worker sends them.
    assert times[-1] - times[0] >= 3.5 * 0.85, [round(t - times[0], 2) for t in times]
    for i in range(len(times)):
        in_a_second = [t for t in times if times[i] <= t < times[i] + 1.0]
        assert len(in_a_second) <= 2 + 2 + 1, "more than the rate allows in one second"


def test_rate_is_the_smaller_of_ours_and_the_targets(database_url: str) -> None:
    from outbox import Subscription

    s = Subscription.create(callback_url="https://x.example/h", types=["*"], rate=600)
    assert s.rate_per_minute == 600
    from dataclasses import replace

    assert replace(s, allowed_rate="60").rate_per_minute == 60
    assert replace(s, allowed_rate="*").rate_per_minute == 600
    assert replace(s, requested_rate=None, allowed_rate="*").rate_per_minute is None


def test_a_429_holds_the_whole_subscription_and_lowers_its_pace(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    def answer(n: int, r: Received) -> Answer:
        return (429, {"Retry-After": "1"}, 0.0) if n == 0 else (204, {}, 0.0)

    receiver.answer = answer
    sub = subscribe(database_url, receiver.url)
    enqueue(database_url, [zaak_event("first")])
    worker = start_worker()
    wait_until(lambda: len(receiver.received) == 1, message="the 429")
    worker.wait_logged("429 Too Many Requests: subscription slowed down")
    pace = _pace(database_url, sub)
    assert pace is not None and pace["pace"] == 0.5 and pace["hold_until"] is not None
    refused_at = receiver.received[0].arrived
    enqueue(database_url, [zaak_event(f"other-{i}") for i in range(4)])  # other keys: held as well
    wait_until(lambda: count_delivered(database_url) == 5, message="all delivered after the hold")
    later = sorted(r.arrived for r in receiver.received[1:])
    assert later[0] - refused_at >= 0.9, "nothing went to the subscription before Retry-After"
    recovered = _pace(database_url, sub)
    assert recovered is not None and recovered["pace"] > 0.5, "successes raise the pace again"


def test_preflight_handshake_runs_before_deliveries_and_is_recorded(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    def answer(n: int, r: Received) -> Answer:
        if r.method == "OPTIONS":
            return (
                200,
                {"WebHook-Allowed-Origin": r.headers["WebHook-Request-Origin"], "WebHook-Allowed-Rate": "*"},
                0,
            )
        return (204, {}, 0.0)

    receiver.answer = answer
    sub = subscribe(database_url, receiver.url, preflight=True)
    enqueue(database_url, [zaak_event("a"), zaak_event("b")])
    start_worker({"OUTBOX_WEBHOOK_ORIGIN": ORIGIN})
    wait_until(lambda: count_delivered(database_url) == 2, message="2 delivered")
    methods = [r.method for r in receiver.received]
    assert methods[0] == "OPTIONS" and methods.count("POST") == 2
    assert methods.count("OPTIONS") == 1, "one pre-flight serves the next deliveries (OUTBOX_PREFLIGHT_MAX_AGE)"
    assert all(r.headers.get("WebHook-Request-Origin") == ORIGIN for r in receiver.received)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT agreement, handshake_at IS NOT NULL, allowed_rate FROM outbox.subscriptions WHERE id = %s", (sub,)
        ).fetchone()
    assert row == ("preflight", True, "*")


def test_a_refused_preflight_sends_nothing_and_retries(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = lambda n, r: (200, {"WebHook-Allowed-Origin": "someone-else.example"}, 0.0)
    subscribe(database_url, receiver.url, preflight=True)
    enqueue(database_url, [zaak_event("a")])
    start_worker({"OUTBOX_WEBHOOK_ORIGIN": ORIGIN})
    wait_until(
        lambda: any("pre-flight handshake refused" in (r["last_error"] or "") for r in deliveries(database_url)),
        message="the refusal recorded",
    )
    assert {r.method for r in receiver.received} == {"OPTIONS"}, "no POST without the target's agreement"
    [row] = deliveries(database_url)
    assert "someone-else.example" in row["last_error"] and row["status"] in ("pending", "delivering")


def test_oauth2_client_credentials_token_is_fetched_cached_and_renewed_on_401(
    database_url: str, start_worker: WorkerFactory
) -> None:
    issued: list[str] = []
    revoked = {"at": 3}

    def answer(n: int, r: Received) -> Answer:
        if r.path == "/token":
            basic = base64.b64decode(r.headers["Authorization"].split()[1]).decode()
            if basic != "outbox-client:s3cr3t-client-secret" or b"grant_type=client_credentials" not in r.body:
                return (401, {}, 0.0)
            issued.append(f"tok-{len(issued)}")
            return (200, {"Content-Type": "application/json"}, 0.0)
        posts = [x for x in receiver.received if x.path == "/hook"]
        if len(posts) == revoked["at"] and len(issued) == 1:
            return (401, {}, 0.0)  # the receiver revoked the first token early
        return (204, {}, 0.0) if r.headers.get("Authorization") == f"Bearer {issued[-1]}" else (401, {}, 0.0)

    def body(r: Received) -> bytes:
        if r.path != "/token" or not issued:
            return b""
        return json.dumps({"access_token": issued[-1], "token_type": "Bearer", "expires_in": 3600}).encode()

    receiver = Receiver(answer=answer, body_for=body)
    with receiver.running():
        base = receiver.url.rsplit("/", 1)[0]
        subscribe(
            database_url,
            receiver.url,
            oauth2={"tokenUrl": f"{base}/token", "clientId": "outbox-client", "clientSecret": "s3cr3t-client-secret"},
        )
        enqueue(database_url, [zaak_event(f"z{i}") for i in range(5)])
        worker = start_worker({"OUTBOX_CONCURRENCY": "1"})
        wait_until(lambda: count_delivered(database_url) == 5, message="5 delivered")
        worker.terminate()
        token_requests = [r for r in receiver.received if r.path == "/token"]
        assert len(token_requests) == 2, "one token, cached; one more after the 401"
        assert all(r.headers["Content-Type"] == "application/x-www-form-urlencoded" for r in token_requests)
        log = worker.log_path.read_text()
        assert "s3cr3t-client-secret" not in log and "tok-" not in log


def test_zgw_jwt_and_signatures_reach_the_receiver(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    signing = "whsec_" + base64.b64encode(b"k" * 32).decode()
    old_signing = "whsec_" + base64.b64encode(b"o" * 32).decode()
    subscribe(
        database_url,
        receiver.url,
        zgw={"clientId": "open-notificaties", "secret": "zgw-shared-secret-at-least-32-bytes"},
        signing_secrets=[signing, old_signing],
    )
    enqueue(database_url, [zaak_event("z1")])
    start_worker()
    wait_until(lambda: count_delivered(database_url) == 1, message="delivered")
    [got] = receiver.received
    scheme, token = got.headers["Authorization"].split()
    claims = jwt.decode(token, "zgw-shared-secret-at-least-32-bytes", algorithms=["HS256"])
    assert scheme == "Bearer" and claims["client_id"] == "open-notificaties" and abs(claims["iat"] - time.time()) < 60
    for secret in (signing, old_signing):  # either secret verifies during a rotation
        payload = Webhook(secret).verify(got.body, {k.lower(): v for k, v in got.headers.items()})
        assert payload["id"] == got.event["id"]
    with pytest.raises(Exception, match="(?i)signature"):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(
            got.body, {k.lower(): v for k, v in got.headers.items()}
        )


def test_metrics_health_and_readiness_are_served(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    sub = subscribe(database_url, receiver.url, auth="Bearer metrics-secret-token")
    port = free_port()
    worker = start_worker({}, "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    enqueue(database_url, [zaak_event(f"z{i}") for i in range(3)])
    wait_until(lambda: count_delivered(database_url) == 3, message="3 delivered")
    base = f"http://127.0.0.1:{port}"
    metrics = wait_until(
        lambda: (t := httpx.get(f"{base}/metrics").text) and f'subscription="{sub}"' in t and t, message="metrics"
    )
    assert f'outbox_deliveries_total{{outcome="delivered",subscription="{sub}"}} 3.0' in metrics
    assert "outbox_attempt_duration_seconds_count" in metrics
    assert "metrics-secret-token" not in metrics and receiver.url not in metrics
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200
    assert worker.terminate() == 0


def test_metrics_port_taken_is_one_line_at_start(database_url: str, run_cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: OUTBOX_METRICS_PORT: cannot listen on")


def test_secrets_are_encrypted_at_rest_rotated_and_used(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory, run_cli: Any, tmp_path: Path
) -> None:
    old_key = run_cli("secrets", "new-key").stdout.strip()
    new_key = run_cli("secrets", "new-key").stdout.strip()
    secret = "Bearer at-rest-secret-0123456789"
    added = run_cli(
        "subscriptions", "add", "--callback-url", receiver.url, "--type", "*", "--auth", secret,
        "--allow-insecure", "--skip-handshake", env={"OUTBOX_SECRET_KEY": old_key},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    sub = added.stdout.strip().splitlines()[-1]

    def stored() -> tuple[str, bool]:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT secrets, secrets_encrypted FROM outbox.subscriptions WHERE id = %s", (sub,)
            ).fetchone()
        assert row is not None
        return row[0], row[1]

    sealed, encrypted = stored()
    assert encrypted and "at-rest-secret" not in sealed
    # Rotation: new key first, old one after it; then the new key alone opens them.
    rotated = run_cli("secrets", "rotate", env={"OUTBOX_SECRET_KEY": f"{new_key},{old_key}"})
    assert rotated.returncode == 0, rotated.stderr
    assert "1 subscription" in rotated.stdout
    assert stored()[0] != sealed
    # Showing opens nothing, so it works with the old key; changing the subscription needs the new one.
    shown = run_cli("subscriptions", "show", sub, env={"OUTBOX_SECRET_KEY": old_key})
    assert shown.returncode == 0, shown.stderr
    assert "Bearer …6789" in shown.stdout
    changed = run_cli("subscriptions", "update", sub, "--rate", "60", env={"OUTBOX_SECRET_KEY": old_key})
    assert changed.returncode == 1 and "do not open with OUTBOX_SECRET_KEY" in changed.stderr
    assert "at-rest-secret" not in shown.stdout + shown.stderr + changed.stdout + changed.stderr
    enqueue(database_url, [zaak_event("z1")])
    worker = start_worker({"OUTBOX_SECRET_KEY": new_key})
    wait_until(lambda: count_delivered(database_url) == 1, message="delivered with the decrypted auth")
    assert receiver.received[0].headers["Authorization"] == secret
    worker.terminate()
    assert "at-rest-secret" not in worker.log_path.read_text()
    assert "stored unencrypted" not in worker.log_path.read_text()


def test_without_a_key_the_worker_says_so_once_and_a_bad_key_stops_it(
    database_url: str, start_worker: WorkerFactory, run_cli: Any
) -> None:
    worker = start_worker()
    worker.wait_logged("worker started")
    line = worker.wait_logged(
        "subscription secrets are stored unencrypted: set OUTBOX_SECRET_KEY (make one with "
        "`outbox secrets new-key`, then run `outbox secrets rotate`)"
    )
    assert line["level"] == "warning"
    worker.terminate()
    bad = run_cli("run", env={"OUTBOX_SECRET_KEY": "not-a-fernet-key"})
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: OUTBOX_SECRET_KEY: key 1 is not a Fernet key (32 url-safe base64-encoded bytes); "
        "make one with `outbox secrets new-key`"
    ]


def test_a_batch_answer_means_retry_or_give_up_per_event(receiver: Receiver) -> None:
    import asyncio
    import uuid

    from outbox import Subscription
    from worker.daemon.settings import WorkerSettings
    from worker.delivery.http import Claimed, Sender

    receiver.answer = lambda n, r: (503, {}, 0.0)
    settings = WorkerSettings.load(retry_max_attempts=3, allowed_networks="127.0.0.0/8")
    subscription = Subscription.create(
        callback_url=receiver.url, types=["*"], content_mode="batched", allow_insecure=True
    )
    event = zaak_event("z").to_json()
    claims = [Claimed(1, 3, uuid.uuid4(), event, uuid.uuid4()), Claimed(2, 1, uuid.uuid4(), event, uuid.uuid4())]

    async def deliver() -> list[Any]:
        sender = Sender(settings)
        try:
            return await sender.deliver(sender.target(subscription), claims)
        finally:
            await sender.aclose()

    last_try, first_try = asyncio.run(deliver())
    assert len(receiver.received) == 1, "one request for the batch"
    assert (last_try.status_code, first_try.status_code) == (503, 503)
    assert last_try.outcome.kind == "failed", "its third attempt: given up"
    assert first_try.outcome.kind == "retry", "its first attempt: retried, not failed with the other"


def test_sigterm_releases_every_event_of_a_batch_in_flight(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    receiver.answer = lambda n, r: (204, {}, 5.0)  # answers long after the grace period
    subscribe(database_url, receiver.url, content_mode="batched", batch_max=5)
    enqueue(database_url, [zaak_event(f"z{i}") for i in range(5)])
    worker = start_worker(
        {"OUTBOX_SHUTDOWN_GRACE": "0.5", "OUTBOX_REQUEST_TIMEOUT": "10", "OUTBOX_LEASE_SECONDS": "60"}
    )
    wait_until(lambda: len(receiver.received) == 1, message="the batch in flight")
    assert worker.terminate() == 0
    rows = deliveries(database_url)
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0)] * 5, "all five released, not one"


def test_side_effects_for_a_removed_or_changed_subscription_do_nothing(database_url: str) -> None:
    import uuid

    from outbox._sql import query

    sub = subscribe(database_url, "https://hook.example.nl/x")  # agreed out of band, not a pre-flight one
    with psycopg.connect(database_url) as conn:
        conn.execute(query("slow_down", "outbox"), ([uuid.uuid4()], [1.0]))  # removed meanwhile: skipped
        conn.execute(query("record_preflight", "outbox"), ("60", sub, "60"))  # no longer pre-flight: skipped
        assert conn.execute("SELECT count(*) FROM outbox.subscription_pace").fetchone() == (0,)
        row = conn.execute("SELECT agreement, allowed_rate FROM outbox.subscriptions WHERE id = %s", (sub,))
        assert row.fetchone() == ("out-of-band", None)


def test_a_rate_between_whole_tokens_per_poll_is_kept(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    # 90 per minute = 1.5 per second: a worker that only looked once per poll interval (1 s) would
    # manage 1 per second; it wakes when the next token is due instead.
    subscribe(database_url, receiver.url, rate=90)
    enqueue(database_url, [zaak_event(f"z{i}") for i in range(10)])
    start_worker({"OUTBOX_POLL_INTERVAL": "1.0"})
    wait_until(lambda: count_delivered(database_url) == 10, timeout=30, message="10 delivered")
    times = sorted(r.arrived for r in receiver.received)
    spread = times[-1] - times[0]
    assert spread >= (10 - 1.5) / 1.5 * 0.85, f"faster than the rate: {spread:.2f} s"
    assert spread <= 7.5, f"slower than the rate allows: {spread:.2f} s (1 per poll would take 8.5 s)"


def test_default_media_types_reach_an_exact_receiver_and_a_415_names_what_was_sent(
    database_url: str, start_worker: WorkerFactory
) -> None:
    # A receiver like Open Zaak's /events compares the Content-Type exactly with the bare media type.
    with SdkReceiver(accept_batch=True).running() as strict:
        auth = f"Bearer {strict.token}"
        subscribe(database_url, strict.url, auth=auth, types=["nl.overheid.zaken.zaak-gekoppeld"])
        batched_type, charset_type = "nl.overheid.zaken.zaak-batched", "nl.overheid.zaken.zaak-charset"
        subscribe(database_url, strict.url, auth=auth, content_mode="batched", batch_max=5, types=[batched_type])
        charset = "application/cloudevents+json; charset=utf-8"
        subscribe(database_url, strict.url, auth=auth, content_type=charset, types=[charset_type])
        plain = zaak_event("z1")
        batched = CloudEvent(type=batched_type, source=plain.source, subject="z2", data={"n": 2})
        refused = CloudEvent(type=charset_type, source=plain.source, subject="z3", data={"n": 3})
        enqueue(database_url, [plain, batched, refused])
        start_worker()

        # One read judges both the count and the states: two reads could pair two settled rows with a
        # third that appeared, still delivering, in between.
        def settled() -> list[dict[str, Any]] | None:
            found = deliveries(database_url)
            return found if len(found) == 3 and {r["status"] for r in found} <= {"delivered", "failed"} else None

        rows = {r["event_id"]: r for r in wait_until(settled, message="3 settled")}
        assert rows[plain.id]["status"] == rows[batched.id]["status"] == "delivered"
        assert sorted(e["id"] for e in strict.accepted()) == sorted([plain.id, batched.id])
        failed = rows[refused.id]
        assert failed["status"] == "failed" and failed["attempts"] == 1, "a 415 is not retried"
        assert charset in failed["last_error"] and "unsupported media type" in failed["last_error"]
