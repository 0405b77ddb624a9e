"""Failures announce themselves (issue 19 §3): operational events and auto-disable, end to end through
real receivers and a real `outbox run`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema_rs
import psycopg
import pytest

from outbox._operations import set_subscription_status, set_subscription_status_async
from tests.support import Receiver, WorkerFactory, deliveries, enqueue, subscribe, wait_until, zaak_event

FAILED = "nl.overheid.outbox.delivery-failed"
PAUSED = "nl.overheid.outbox.subscription-paused"
DISABLED = "nl.overheid.outbox.subscription-disabled"
SOURCE = "urn:nlgov-outbox:outbox"  # the default source: urn:nlgov-outbox:<schema>


def _select(database_url: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _operational(database_url: str) -> list[dict[str, Any]]:
    """The operational events the outbox wrote, oldest first."""
    rows = _select(
        database_url,
        "SELECT event FROM outbox.events WHERE event->>'type' LIKE 'nl.overheid.outbox.%%' ORDER BY position",
    )
    return [row[0] for row in rows]


def _validate(database_url: str, event: dict[str, Any]) -> None:
    """`data` against the built-in catalogue entry's schema, formats (uuid, date-time) included."""
    ((schema,),) = _select(database_url, "SELECT schema FROM outbox.event_types WHERE type = %s", (event["type"],))
    jsonschema_rs.Draft202012Validator(schema, validate_formats=True).validate(event["data"])


def _status(database_url: str, subscription_id: str) -> tuple[str, str | None]:
    ((status, reason),) = _select(
        database_url, "SELECT status, paused_reason FROM outbox.subscriptions WHERE id = %s", (subscription_id,)
    )
    return status, reason


def test_a_failed_delivery_is_announced_to_the_opted_in_only(database_url: str, start_worker: WorkerFactory) -> None:
    refusing = Receiver(answer=lambda n, r: (415, {}, 0.0))
    with refusing.running() as bad, Receiver().running() as ops, Receiver().running() as everything:
        bad_id = subscribe(database_url, bad.url, types=["nl.overheid.zaken.*"])
        ops_id = subscribe(database_url, ops.url, types=["nl.overheid.outbox.*"])
        subscribe(database_url, everything.url)  # types ["*"]: a catch-all
        subject = str(uuid.uuid4())
        event = zaak_event(subject)
        enqueue(database_url, [event])
        start_worker()
        wait_until(lambda: [e["type"] for e in ops.events()] == [FAILED], message="delivery-failed arrives")
        wait_until(lambda: len(everything.events()) == 1, message="the catch-all gets the ordinary event")
        announced = ops.events()[0]
        assert announced["source"] == SOURCE
        assert announced["subject"] == bad_id
        _validate(database_url, announced)
        (failed,) = [d for d in deliveries(database_url) if d["status"] == "failed"]
        data = announced["data"]
        assert data["deliveryId"] == failed["id"]
        assert data["subscriptionId"] == bad_id
        assert data["callbackUrl"] == bad.url
        assert data["event"] == {"id": event.id, "source": event.source, "type": event.type, "subject": subject}
        assert (data["reason"], data["lastStatusCode"], data["attempts"]) == ("unsupported-media-type", 415, 1)
        # The catch-all got the ordinary event and, even after the announcement was delivered, nothing else.
        wait_until(
            lambda: all(d["status"] in ("delivered", "failed") for d in deliveries(database_url)),
            message="every delivery finished",
        )
        assert [e["type"] for e in everything.events()] == [event.type]
        assert {d["subscription_id"] for d in deliveries(database_url) if d["event_id"] == announced["id"]} == {
            uuid.UUID(ops_id)
        }


def test_exhausted_attempts_are_announced_to_an_exact_type(database_url: str, start_worker: WorkerFactory) -> None:
    with Receiver(answer=lambda n, r: (500, {}, 0.0)).running() as bad, Receiver().running() as ops:
        subscribe(database_url, bad.url, types=["nl.overheid.zaken.*"])
        subscribe(database_url, ops.url, types=[FAILED])
        enqueue(database_url, [zaak_event(str(uuid.uuid4()))])
        start_worker({"OUTBOX_RETRY_MAX_ATTEMPTS": "2"})
        wait_until(lambda: len(ops.events()) == 1, message="delivery-failed arrives")
        data = ops.events()[0]["data"]
        assert (data["reason"], data["attempts"], data["lastStatusCode"]) == ("attempts-exhausted", 2, 500)
        _validate(database_url, ops.events()[0])


def test_an_operational_event_that_fails_announces_nothing(database_url: str, start_worker: WorkerFactory) -> None:
    """No cascade: the subscription of operational events itself fails for good; no event about that."""
    with Receiver(answer=lambda n, r: (415, {}, 0.0)).running() as bad:
        subscribe(database_url, bad.url)  # ordinary events: fails
        ops_id = subscribe(database_url, bad.url + "?ops", types=["nl.overheid.outbox.*"])  # fails too
        enqueue(database_url, [zaak_event(str(uuid.uuid4()))])
        start_worker()
        wait_until(
            lambda: sorted(d["status"] for d in deliveries(database_url)) == ["failed", "failed"],
            message="the event's and the announcement's deliveries both failed",
        )
        (ops_delivery,) = [d for d in deliveries(database_url) if d["subscription_id"] == uuid.UUID(ops_id)]
        assert ops_delivery["last_status_code"] == 415
        # Written after the recorder's flight: a cascade would be in the same transaction as the failure.
        assert [e["type"] for e in _operational(database_url)] == [FAILED]
        assert _select(database_url, "SELECT count(*) FROM outbox.events") == [(2,)]


def test_no_subscriber_means_no_operational_event(database_url: str, start_worker: WorkerFactory) -> None:
    with Receiver(answer=lambda n, r: (415, {}, 0.0)).running() as bad:
        sub = subscribe(database_url, bad.url)
        paused_ops = subscribe(database_url, bad.url + "?ops", types=["nl.overheid.outbox.*"])
        with psycopg.connect(database_url) as conn:  # an opted-in subscription, but paused: nobody can receive
            set_subscription_status(conn, "outbox", paused_ops, "paused", "not now")
        enqueue(database_url, [zaak_event(str(uuid.uuid4()))])
        start_worker()
        wait_until(lambda: [d["status"] for d in deliveries(database_url)] == ["failed"], message="it failed")
        with psycopg.connect(database_url) as conn:  # an operator's pause: nobody opted in either
            set_subscription_status(conn, "outbox", sub, "paused", "by the test")
        assert _operational(database_url) == []
        assert _select(database_url, "SELECT count(*) FROM outbox.events") == [(1,)]


def test_410_and_operator_pauses_are_announced_a_resume_is_not(
    database_url: str, start_worker: WorkerFactory, run_cli: Any
) -> None:
    with Receiver(answer=lambda n, r: (410, {}, 0.0)).running() as gone, Receiver().running() as ops:
        gone_id = subscribe(database_url, gone.url, types=["nl.overheid.zaken.*"])
        subscribe(database_url, ops.url, types=["nl.overheid.outbox.subscription-*"])
        enqueue(database_url, [zaak_event(str(uuid.uuid4()))])
        start_worker()
        wait_until(lambda: len(ops.events()) == 1, message="subscription-paused (receiver) arrives")
        by_receiver = ops.events()[0]
        assert (by_receiver["type"], by_receiver["source"], by_receiver["subject"]) == (PAUSED, SOURCE, gone_id)
        _validate(database_url, by_receiver)
        assert by_receiver["data"]["pausedBy"] == "receiver"
        assert by_receiver["data"]["lastStatusCode"] == 410
        assert by_receiver["data"]["reason"] == _status(database_url, gone_id)[1]
        assert _status(database_url, gone_id)[0] == "paused"
        # A resume announces nothing (the receiver is back: its waiting delivery goes); an operator's pause does.
        gone.answer = lambda n, r: (204, {}, 0.0)
        assert run_cli("subscriptions", "resume", gone_id).returncode == 0
        wait_until(lambda: deliveries(database_url)[0]["status"] == "delivered", message="delivered")
        assert run_cli("subscriptions", "pause", gone_id, "--reason", "maintenance").returncode == 0
        wait_until(lambda: len(ops.events()) == 2, message="subscription-paused (operator) arrives")
        by_operator = ops.events()[1]
        _validate(database_url, by_operator)
        assert (by_operator["data"]["pausedBy"], by_operator["data"]["reason"]) == ("operator", "maintenance")
        # Pausing what is paused already, and resuming, write nothing.
        assert run_cli("subscriptions", "pause", gone_id).returncode == 0
        assert run_cli("subscriptions", "resume", gone_id).returncode == 0
        assert [e["type"] for e in _operational(database_url)] == [PAUSED, PAUSED]


async def test_the_console_pause_names_the_operator(database_url: str, aconn: psycopg.AsyncConnection[Any]) -> None:
    watched = subscribe(database_url, "http://127.0.0.1:9/hook", types=["nl.overheid.zaken.*"])
    subscribe(database_url, "http://127.0.0.1:9/ops", types=["nl.overheid.outbox.*"])
    assert await set_subscription_status_async(aconn, "outbox", watched, "paused", "checking", by="alice")
    assert await set_subscription_status_async(aconn, "outbox", watched, "active", None)
    (event,) = _operational(database_url)
    _validate(database_url, event)
    assert (event["data"]["pausedBy"], event["data"]["operator"], event["data"]["reason"]) == (
        "operator",
        "alice",
        "checking",
    )


def _in_order(receiver: Receiver, ids: list[str]) -> bool:
    return [i for i in receiver.ids() if i in ids] == ids


def test_a_subscription_that_only_fails_is_disabled_and_resumes_in_order(
    database_url: str, start_worker: WorkerFactory, run_cli: Any
) -> None:
    state = {"ok": False}
    flaky = Receiver(answer=lambda n, r: (204 if state["ok"] else 503, {}, 0.0))
    with flaky.running() as down, Receiver().running() as ops:
        down_id = subscribe(database_url, down.url, types=["nl.overheid.zaken.*"])
        subscribe(database_url, ops.url, types=[DISABLED])
        subject = str(uuid.uuid4())
        events = [zaak_event(subject, n) for n in range(4)]  # one key: they must arrive in this order
        enqueue(database_url, events)
        worker = start_worker({"OUTBOX_DISABLE_AFTER": "2s", "OUTBOX_RETRY_MAX_ATTEMPTS": "1000"})
        wait_until(lambda: ops.events(), message="subscription-disabled arrives")
        (announced,) = ops.events()
        _validate(database_url, announced)
        status, reason = _status(database_url, down_id)
        assert status == "paused"
        assert (
            reason is not None
            and reason.startswith("disabled after 2s of failures")
            and "OUTBOX_DISABLE_AFTER" in reason
        )
        data = announced["data"]
        assert (data["subscriptionId"], data["reason"], data["disableAfterSeconds"]) == (down_id, reason, 2.0)
        assert data["lastStatusCode"] == 503
        assert worker.wait_logged("subscription disabled")["subscription"] == down_id
        # Nothing dropped: the head waits pending, the rest blocked behind it.
        kept = sorted(d["status"] for d in deliveries(database_url) if d["subscription_id"] == uuid.UUID(down_id))
        assert kept == ["blocked", "blocked", "blocked", "pending"]
        state["ok"] = True
        assert run_cli("subscriptions", "resume", down_id).returncode == 0
        ids = [e.id for e in events]
        wait_until(lambda: set(ids) <= set(down.ids()), message="all four delivered after the resume")
        delivered = [i for i in dict.fromkeys(down.ids()) if i in ids]  # the head was tried before, in 503s
        assert delivered == ids
        assert _select(database_url, "SELECT count(*) FROM outbox.failure_streaks") == [(0,)]


def test_a_2xx_within_the_window_keeps_a_subscription(database_url: str, start_worker: WorkerFactory) -> None:
    """Two subscriptions fail all along; one of them also gets a 2xx now and then: only the other is disabled."""
    poison = str(uuid.uuid4())

    def answer(n: int, r: Any) -> tuple[int, dict[str, str], float]:
        return (500 if r.event["subject"] == poison else 204), {}, 0.0

    with (
        Receiver(answer=lambda n, r: (500, {}, 0.0)).running() as down,
        Receiver(answer=answer).running() as mixed,
    ):
        down_id = subscribe(database_url, down.url)
        mixed_id = subscribe(database_url, mixed.url)
        enqueue(database_url, [zaak_event(poison)])
        start_worker({"OUTBOX_DISABLE_AFTER": "2s", "OUTBOX_RETRY_MAX_ATTEMPTS": "1000"})
        polls = {"all": 0, "since_disabled": 0}

        def step() -> bool:
            # A fresh event every 6th poll (~0.3 s apart: wait_until polls every 0.05 s): `mixed` answers it 2xx.
            polls["all"] += 1
            if polls["all"] % 6 == 1:
                enqueue(database_url, [zaak_event(str(uuid.uuid4()))])
            if _status(database_url, down_id)[0] == "paused":
                polls["since_disabled"] += 1
            # Well past the window after `down` was disabled (both began failing at the same moment).
            return polls["since_disabled"] > 40

        wait_until(step, timeout=30, message="down disabled, mixed kept going")
        assert _status(database_url, mixed_id) == ("active", None)
        assert any(r.event["subject"] == poison for r in mixed.received[-10:])  # still failing the poison


def test_disable_after_zero_never_disables(database_url: str, start_worker: WorkerFactory) -> None:
    with Receiver(answer=lambda n, r: (500, {}, 0.0)).running() as down:
        down_id = subscribe(database_url, down.url)
        enqueue(database_url, [zaak_event(str(uuid.uuid4()))])
        worker = start_worker({"OUTBOX_DISABLE_AFTER": "0", "OUTBOX_RETRY_MAX_ATTEMPTS": "1000"})
        wait_until(
            lambda: _select(
                database_url,
                "SELECT 1 FROM outbox.failure_streaks WHERE failing_since < now() - interval '3 seconds'",
            ),
            message="a streak of more than 3 s",
        )
        attempts_then = len(down.received)
        wait_until(lambda: len(down.received) > attempts_then + 5, message="more attempts")
        assert _status(database_url, down_id) == ("active", None)
        assert not [line for line in worker.logs() if line.get("event") == "subscription disabled"]


@pytest.mark.parametrize("given", ["5 parsecs", "-1", "1e20", "5d12h"])
def test_a_bad_disable_after_stops_the_worker_at_start(run_cli: Any, given: str) -> None:
    result = run_cli("run", env={"OUTBOX_DISABLE_AFTER": given})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: OUTBOX_DISABLE_AFTER: must be seconds or a duration such as 5d, 12h or 30s, at most 3650d "
        f"(0: never) (got {given!r})"
    ]


def test_the_catalogue_lists_them_and_guards_them(run_cli: Any) -> None:
    listed = {e["type"]: e for e in json.loads(run_cli("event-types", "list", "--json").stdout)}
    for kind in (FAILED, PAUSED, DISABLED):
        assert listed[kind]["operational"] is True and listed[kind]["isEnabled"] is True
        assert listed[kind]["schema"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    changed = run_cli("event-types", "update", "outbox.delivery-failed", "--description", "mine now")
    assert changed.returncode == 1
    assert "outbox.delivery-failed: is a built-in operational event type: only isEnabled may change" in changed.stderr
    removed = run_cli("event-types", "remove", "outbox.delivery-failed")
    assert removed.returncode == 1
    assert "is a built-in operational event type" in removed.stderr
    after = {e["type"]: e for e in json.loads(run_cli("event-types", "list", "--json").stdout)}
    assert after[FAILED] == listed[FAILED]


def test_a_disabled_catalogue_entry_is_not_written(
    database_url: str, start_worker: WorkerFactory, run_cli: Any, tmp_path: Path
) -> None:
    assert run_cli("event-types", "disable", "outbox.delivery-failed").returncode == 0
    with Receiver(answer=lambda n, r: (415, {}, 0.0)).running() as bad, Receiver().running() as ops:
        bad_id = subscribe(database_url, bad.url, types=["nl.overheid.zaken.*"])
        subscribe(database_url, ops.url, types=["nl.overheid.outbox.*"])
        enqueue(database_url, [zaak_event(str(uuid.uuid4()))])
        start_worker()
        wait_until(lambda: [d["status"] for d in deliveries(database_url)] == ["failed"], message="it failed")
        # The other types still are: an operator's pause.
        assert run_cli("subscriptions", "pause", bad_id).returncode == 0
        wait_until(lambda: ops.events(), message="subscription-paused arrives")
        assert [e["type"] for e in _operational(database_url)] == [PAUSED]


def test_the_configured_source_is_used(database_url: str, start_worker: WorkerFactory) -> None:
    with Receiver(answer=lambda n, r: (415, {}, 0.0)).running() as bad, Receiver().running() as ops:
        subscribe(database_url, bad.url, types=["nl.overheid.zaken.*"])
        subscribe(database_url, ops.url, types=["nl.overheid.outbox.*"])
        enqueue(database_url, [zaak_event(str(uuid.uuid4()))])
        start_worker({"OUTBOX_OPERATIONAL_SOURCE": "urn:nld:oin:00000001823288444000:systeem:outbox"})
        wait_until(lambda: ops.events(), message="delivery-failed arrives")
        assert ops.events()[0]["source"] == "urn:nld:oin:00000001823288444000:systeem:outbox"


def test_a_bad_operational_source_stops_the_worker_at_start(run_cli: Any) -> None:
    result = run_cli("run", env={"OUTBOX_OPERATIONAL_SOURCE": "my outbox"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: OUTBOX_OPERATIONAL_SOURCE: must be a URI-reference without spaces or control characters, "
        "e.g. urn:nld:oin:… (got 'my outbox')"
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example/x?token=s3cret#frag", "https://hooks.example/x"),
        ("https://hooks.example/a/b", "https://hooks.example/a/b"),
        ("http://tok@127.0.0.1:8080/hook#x", "http://127.0.0.1:8080/hook"),
    ],
)
def test_callbacks_are_shown_without_credentials(database_url: str, url: str, shown: str) -> None:
    assert _select(database_url, "SELECT outbox.public_callback(%s)", (url,)) == [(shown,)]
