"""`outbox deliveries list|show`, `outbox events show` and `outbox retry`'s filters, end to end: real
deliveries made by a real worker to real receivers, read back through the command line."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outbox import CloudEvent
from tests.support import (
    Receiver,
    WorkerProcess,
    count_delivered,
    deliveries,
    enqueue,
    subscribe,
    wait_until,
    zaak_event,
)

UNLINKED = "nl.overheid.zaken.zaak-ontkoppeld"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def history(database_url: str, tmp_path: Path) -> Any:
    """Six events to two subscriptions: one receiver accepts (delivered), one answers 500 with a body
    (failed after 2 attempts); the fourth event is a zaak-ontkoppeld."""
    failing = Receiver(answer=lambda n, r: (500, {}, 0.0), body_for=lambda r: b"kapot: zaak onbekend bij ons")
    with failing.running() as bad, Receiver().running() as good:
        bad_id = subscribe(database_url, bad.url, auth="Bearer geheim-token")
        good_id = subscribe(database_url, good.url)
        subjects = [str(uuid.uuid4()) for _ in range(6)]
        events = [zaak_event(s, n) for n, s in enumerate(subjects)]
        events[3] = CloudEvent(
            type=UNLINKED,
            source="urn:nld:oin:01823288444:openklant",
            subject=subjects[3],
            datacontenttype="application/json",
            data={"zaak": f"urn:uuid:{subjects[3]}"},
        )
        enqueue(database_url, events)
        worker = WorkerProcess(
            database_url, tmp_path / "worker.log", {"OUTBOX_RETRY_MAX_ATTEMPTS": "2", "OUTBOX_RETRY_BASE_DELAY": "0.05"}
        )
        try:
            wait_until(
                lambda: sorted(r["status"] for r in deliveries(database_url)) == ["delivered"] * 6 + ["failed"] * 6,
                message="6 delivered, 6 failed",
            )
        finally:
            assert worker.terminate() == 0
        yield {"bad": bad_id, "good": good_id, "subjects": subjects, "events": events, "bad_receiver": bad}


def test_list_is_newest_first_with_every_field(run_cli: Any, history: dict[str, Any]) -> None:
    result = run_cli("deliveries", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert len(rows) == 12
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    failed = [r for r in rows if r["state"] == "failed"]
    assert {r["subscription"] for r in failed} == {history["bad"]}
    one = failed[0]
    assert set(one) == {
        "id", "eventId", "source", "type", "subject", "subscription", "state", "attempts", "lastStatusCode",
        "lastError", "nextAttemptAt", "enqueuedAt", "createdAt", "updatedAt", "finishedAt",
    }  # fmt: skip
    assert (one["attempts"], one["lastStatusCode"], one["nextAttemptAt"]) == (2, 500, None)
    assert one["finishedAt"] is not None and one["source"] == "urn:nld:oin:01823288444:openklant"
    by_event = {e.id: e for e in history["events"]}
    assert all(by_event[r["eventId"]].subject == r["subject"] for r in rows)
    assert all(by_event[r["eventId"]].type == r["type"] for r in rows)


def test_filters_narrow_and_combine(run_cli: Any, history: dict[str, Any]) -> None:
    def ids(*args: str) -> list[int]:
        result = run_cli("deliveries", "list", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [r["id"] for r in json_lines(result.stdout)]

    everything = json_lines(run_cli("deliveries", "list", "--json").stdout)
    failed = [r["id"] for r in everything if r["state"] == "failed"]
    assert ids("--state", "failed") == failed
    assert sorted(ids("--state", "failed,delivered")) == sorted(r["id"] for r in everything)
    assert ids("--state", "pending") == []
    subject = history["subjects"][2]
    assert sorted(ids("--subject", subject)) == sorted(r["id"] for r in everything if r["subject"] == subject)
    assert len(ids("--subject", subject)) == 2
    assert len(ids("--type", UNLINKED)) == 2
    assert len(ids("--type", UNLINKED, "--state", "delivered", "--subscription", history["good"])) == 1
    assert len(ids("--subscription", history["bad"], "--subject", subject)) == 1
    event_id = history["events"][4].id
    assert {r["eventId"] for r in everything if r["id"] in ids("--event-id", event_id)} == {event_id}
    assert len(ids("--since", "1h")) == 12
    assert ids("--until", "1h") == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ids("--since", future) == []
    assert len(ids("--until", future, "--since", "2020-01-01")) == 12
    assert ids("--source", "urn:nld:oin:00000001234567890000:elders") == []


def test_keyset_pages_cover_everything_once(run_cli: Any, history: dict[str, Any]) -> None:
    seen: list[int] = []
    after: list[str] = []
    for _ in range(5):
        result = run_cli("deliveries", "list", "--json", "--limit", "5", *after)
        assert result.returncode == 0, result.stderr
        page = [r["id"] for r in json_lines(result.stdout)]
        seen += page
        if "next page: --after" not in result.stderr:
            break
        cursor = result.stderr.split("--after", 1)[1].split()[0]
        assert cursor == str(page[-1])  # the cursor is the last id shown: scripts can page without stderr
        after = ["--after", cursor]
    assert len(seen) == 12 and len(set(seen)) == 12
    assert seen == sorted(seen, reverse=True)
    text = run_cli("deliveries", "list", "--limit", "5", "--state", "failed").stdout
    assert text.splitlines()[0].split()[:4] == ["ID", "STATE", "TRIES", "LAST"]
    assert "more: add --after" in text
    assert "failed" in text.splitlines()[1] and " 500 " in text.splitlines()[1]


def test_bad_filters_name_the_option(run_cli: Any, history: dict[str, Any]) -> None:
    cases = {
        ("--state", "lost"): "--state",
        ("--since", "yesterday"): "--since",
        ("--until", "2026-12-01T10:00"): "--until",
        ("--subscription", "nope"): "--subscription",
        ("--after", "abc"): "--after",
        ("--since", "1h", "--until", "2h"): "--until",
        ("--limit", "0"): "--limit",
    }
    for args, option in cases.items():
        result = run_cli("deliveries", "list", *args)
        assert result.returncode == 2, (args, result.stdout)
        assert option in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)


def test_show_gives_the_event_and_every_attempt_oldest_first(run_cli: Any, history: dict[str, Any]) -> None:
    row = next(
        r for r in json_lines(run_cli("deliveries", "list", "--json", "--state", "failed").stdout)
        if r["subject"] == history["subjects"][1]
    )  # fmt: skip
    result = run_cli("deliveries", "show", str(row["id"]), "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    sent = history["events"][1]
    assert (shown["event"]["id"], shown["event"]["subject"], shown["event"]["data"]) == (
        sent.id,
        sent.subject,
        sent.data,
    )
    assert shown["state"] == "failed" and shown["subscription"] == history["bad"]
    log = shown["attemptLog"]
    assert [a["statusCode"] for a in log] == [500, 500]
    assert log[0]["at"] < log[1]["at"]
    assert all(a["response"] == "kapot: zaak onbekend bij ons" and a["durationMs"] >= 0 for a in log)
    # the subscription's credentials are a secret: never shown
    assert "geheim-token" not in result.stdout and shown["callbackUrl"].startswith(history["bad_receiver"].url)

    text = run_cli("deliveries", "show", str(row["id"])).stdout
    assert f"delivery {row['id']}: failed, 2 attempts" in text
    assert text.count("HTTP 500") == 2 and "answer: kapot: zaak onbekend bij ons" in text
    assert sent.id in text and "geheim-token" not in text

    missing = run_cli("deliveries", "show", "999999999")
    assert missing.returncode == 1 and "no delivery 999999999" in missing.stderr
    assert run_cli("deliveries", "show", "x1").returncode == 2


def test_events_show_tells_where_the_event_went(run_cli: Any, history: dict[str, Any]) -> None:
    sent = history["events"][0]
    result = run_cli("events", "show", sent.id, "--json")
    assert result.returncode == 0, result.stderr
    [found] = json.loads(result.stdout)
    assert found["event"]["id"] == sent.id and found["routedAt"] is not None
    where = {d["subscription"]: d for d in found["deliveries"]}
    assert where[history["good"]]["state"] == "delivered"
    assert (where[history["bad"]]["state"], where[history["bad"]]["lastStatusCode"]) == ("failed", 500)
    assert "geheim-token" not in result.stdout

    by_source = run_cli("events", "show", "--source", sent.source, "--id", sent.id, "--json")
    assert json.loads(by_source.stdout) == [found]
    elsewhere = run_cli("events", "show", "--source", "urn:nld:oin:1:elders", "--id", sent.id)
    assert elsewhere.returncode == 1 and "no event with id" in elsewhere.stderr
    text = run_cli("events", "show", sent.id).stdout
    assert "delivered" in text and "failed" in text and "HTTP 500" in text
    assert run_cli("events", "show").returncode == 2


def test_retry_takes_the_filters_and_says_how_many(
    run_cli: Any, database_url: str, history: dict[str, Any], tmp_path: Path
) -> None:
    dry = run_cli("retry", "--type", UNLINKED, "--dry-run")
    assert dry.stdout.strip() == "1 failed delivery would go back to pending"
    assert sorted(r["status"] for r in deliveries(database_url)).count("failed") == 6  # a dry run moves nothing
    subject = history["subjects"][5]
    result = run_cli("retry", "--subject", subject)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 failed delivery back to pending"
    pending = json_lines(run_cli("deliveries", "list", "--json", "--state", "pending").stdout)
    assert [(r["subject"], r["attempts"]) for r in pending] == [(subject, 0)]
    assert run_cli("retry", "--state", "failed").returncode == 2  # a retry takes failed ones only
    assert "--all-failed or --delivery" in run_cli("retry").stderr

    # The receiver recovered: the retried one, and only it, is delivered.
    history["bad_receiver"].answer = lambda n, r: (204, {}, 0.0)
    before = len(history["bad_receiver"].received)
    worker = WorkerProcess(database_url, tmp_path / "again.log")
    try:
        wait_until(lambda: count_delivered(database_url) == 7, message="the retried delivery delivered")
    finally:
        assert worker.terminate() == 0
    assert [r.event["subject"] for r in history["bad_receiver"].received[before:]] == [subject]
    assert run_cli("retry", "--subscription", history["bad"], "--since", "1h").stdout.strip() == (
        "5 failed deliveries back to pending"
    )
