"""The console's consumers pages (issue 22): the list, one consumer (never a secret), its open failures in
keyset pages, one failure with its body, replay (of one, of the selected, of all open after a confirmation)
into the events table, enable/disable; viewers read but cannot act; every action needs the CSRF token and
is audited. The real service on a real port; consumers, mappings and failures made through the store."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from outbox._catalogue import EventType
from outbox._sql import query
from tests.service.conftest import StartService
from tests.service.console_client import ConsoleClient
from tests.service.console_history import PASSWORD, add_operator, csrf_of, signed_in
from worker.store import catalogue as catalogue_store
from worker.store import consumers as store
from worker.store.secret_box import SecretBox

SOURCE = "urn:nld:oin:00000001234567890000:consumer:psp"
HMAC_SECRET = "hmac-secret-never-shown-0123456789"
BASIC_PASSWORD = "basic-password-never-shown-98765"
SECRETS = (HMAC_SECRET, BASIC_PASSWORD)
# Version 1 maps the amount to a field the catalogue's schema does not know: every request fails it.
BROKEN = """{
  "type": "nl.example.betaling.ontvangen",
  "source": "@SOURCE@",
  "subject": body.zaak,
  "id": body.id,
  "time": body.time,
  "data": {"amount": body.amount}
}""".replace("@SOURCE@", SOURCE)
FIXED = BROKEN.replace('"amount": body.amount', '"bedrag": body.amount & " <EUR>"')
_FAILURE_ROW = re.compile(r'<a href="/console/consumers/[0-9a-f-]+/failures/(\d+)">')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">Next page</a>')


@dataclass
class Made:
    database_url: str
    psp: store.Consumer  # hmac, with a mapping, three open failures
    basic: store.Consumer  # basic, no mapping, no failures
    failures: list[int]  # psp's, oldest first: pay-1, pay-1 again (the sender's retry), pay-2

    def failure(self, number: int) -> store.Failure:
        with psycopg.connect(self.database_url) as conn:
            return store.failure(conn, "outbox", number)

    def consumer(self, key: str) -> store.Consumer:
        with psycopg.connect(self.database_url) as conn:
            return store.get(conn, "outbox", key)

    def events(self, event_id: str) -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT event FROM outbox.events WHERE event->>'id' = %s AND event->>'source' = %s", (event_id, SOURCE)
            ).fetchall()
        return [row[0] for row in rows]

    def fix_mapping(self) -> None:
        with psycopg.connect(self.database_url) as conn:
            store.update_mapping(conn, "outbox", "psp-betaling", FIXED)


def payment(payment_id: str, amount: int = 7500) -> bytes:
    document = {"id": payment_id, "zaak": "ZAAK-2026-0042", "time": "2026-12-07T10:00:00Z", "amount": amount}
    return json.dumps(document).encode()


def keep_failure(
    conn: psycopg.Connection[Any], consumer: store.Consumer, body: bytes, code: str = "schema_violation"
) -> int:
    """A kept failure as `outbox serve` keeps one (sql/queries.sql's insert_consumer_failure)."""
    problems = [{"name": "data", "code": code, "reason": "'bedrag' is a required property"}]
    params = {
        "consumer_id": consumer.id,
        "code": code,
        "problems": Jsonb(problems),
        "mapping_version": 1,
        "body": body,
        "headers": Jsonb({"x-request-id": "req-42"}),
        "webhook_id": None,
    }
    row = conn.execute(query("insert_consumer_failure", "outbox"), params).fetchone()
    assert row is not None
    return int(row[0])


def make(database_url: str) -> Made:
    schema = {"type": "object", "required": ["bedrag"], "properties": {"bedrag": {"type": "string"}}}
    entry = EventType.from_json(
        {"slug": "betaling-ontvangen", "type": "nl.example.betaling.ontvangen", "name": "Betaling", "schema": schema}
    )
    box = SecretBox()
    with psycopg.connect(database_url, autocommit=True) as conn:
        catalogue_store.add(conn, "outbox", entry)
        store.add_mapping(conn, "outbox", "psp-betaling", BROKEN, ["x-request-id"], description="PSP payments")
        psp = store.add(
            conn,
            "outbox",
            {
                "name": "Betaalprovider",
                "endpoint": "psp",
                "mappingId": "psp-betaling",
                "targetType": "event-type",
                "targetId": "betaling-ontvangen",
                "verification": {"method": "hmac", "secrets": [HMAC_SECRET], "header": "X-Signature",
                                 "prefix": "sha256="},
            },
            box,
        )  # fmt: skip
        basic = store.add(
            conn,
            "outbox",
            {
                "name": "Formulieren",
                "endpoint": "forms",
                "targetType": "event-type",
                "targetId": "betaling-ontvangen",
                "verification": {"method": "basic", "username": "forms-sender", "password": BASIC_PASSWORD},
                "rateLimit": 5,
                "rateBurst": 10,
            },
            box,
        )
        failures = [keep_failure(conn, psp, payment("pay-1")) for _ in range(2)]
        failures.append(keep_failure(conn, psp, payment("pay-2", 1200)))
    return Made(database_url, psp, basic, failures)


@pytest.fixture
def made(database_url: str) -> Made:
    return make(database_url)


@pytest.fixture
def clients(start_service: StartService, database_url: str, made: Made) -> Iterator[dict[str, httpx.Client]]:
    live = start_service(consumer_cache_ttl=0)
    add_operator(database_url, "olga", "operator")
    add_operator(database_url, "victor", "viewer")
    operator, viewer = signed_in(live.base_url, "olga"), signed_in(live.base_url, "victor")
    yield {"operator": operator, "viewer": viewer}
    operator.close()
    viewer.close()


def listed(page: httpx.Response) -> list[int]:
    return [int(n) for n in _FAILURE_ROW.findall(page.text)]


def test_the_list_shows_each_consumer_with_its_webhook_url_and_open_failures(
    clients: dict[str, httpx.Client], made: Made
) -> None:
    page = clients["viewer"].get("/console/consumers")
    assert page.status_code == 200
    assert '<a href="/console/consumers" aria-current="page">Consumers</a>' in page.text  # in the navigation
    assert f'<a href="/console/consumers/{made.psp.id}">Betaalprovider</a>' in page.text
    assert f'<a href="/console/consumers/{made.basic.id}">Formulieren</a>' in page.text
    base = str(clients["viewer"].base_url).rstrip("/")
    assert f"{base}/hooks/psp" in page.text and f"{base}/hooks/forms" in page.text
    assert "<td>hmac</td>" in page.text and "<td>basic</td>" in page.text
    assert "event-type: <code>betaling-ontvangen</code>" in page.text
    assert page.text.count('class="badge badge-enabled">enabled<') == 2
    assert '>3<span class="visually-hidden"> open failures of Betaalprovider</span></a>' in page.text
    assert '<a href="/console/mappings/psp-betaling">psp-betaling</a>' in page.text
    assert "<td>Betaalprovider</td>" in page.text  # the mapping's user


def test_the_consumer_page_shows_the_definition_mapping_and_failures_without_a_secret(
    clients: dict[str, httpx.Client], made: Made
) -> None:
    page = clients["viewer"].get(f"/console/consumers/{made.psp.id}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "<dt>Verification</dt><dd>hmac</dd>" in text
    assert '<dt>Verification: header</dt><dd class="wrap">X-Signature</dd>' in text
    assert '<dt>Verification: prefix</dt><dd class="wrap">sha256=</dd>' in text
    assert '<dt>Verification: timestampHeader</dt><dd class="wrap">–</dd>' in text  # not set
    assert "<dt>Secrets set</dt><dd>1 " in text
    assert '<a href="/console/event-types/betaling-ontvangen"><code>betaling-ontvangen</code></a>' in page.text
    assert "version 1 (the current one)" in text and "<code>x-request-id</code>" in text
    assert BROKEN in text  # the expression, in a <pre>
    assert '"data": {"amount": body.amount}' in text and "&#34;data&#34;" in page.text  # escaped
    assert listed(page) == sorted(made.failures, reverse=True)  # newest first
    assert "<code>schema_violation</code>" in page.text and "is a required property" in text
    assert f"{len(payment('pay-1'))} bytes" in text
    basic = clients["viewer"].get(f"/console/consumers/{made.basic.id}")
    assert '<dt>Verification: username</dt><dd class="wrap">forms-sender</dd>' in basic.text
    assert "5 per second, 10 at once" in basic.text
    assert "No mapping: the body must be a CloudEvent itself" in basic.text
    assert "No open failures." in basic.text


def test_no_page_shows_a_secret(clients: dict[str, httpx.Client], made: Made) -> None:
    for role, client in clients.items():
        pages = [
            "/console/consumers",
            f"/console/consumers/{made.psp.id}",
            f"/console/consumers/{made.basic.id}",
            f"/console/consumers/{made.psp.id}/failures/{made.failures[0]}",
            f"/console/consumers/{made.psp.id}/replay?all=1",
            f"/console/consumers/{made.psp.id}/replay?failure={made.failures[0]}",
            "/console/mappings/psp-betaling",
        ]
        for path in pages:
            page = client.get(path)
            assert page.status_code == 200, (role, path, page.text)
            assert not any(secret in page.text for secret in SECRETS), (role, path)


def test_failures_page_by_keyset_newest_first(clients: dict[str, httpx.Client], made: Made) -> None:
    viewer = clients["viewer"]
    first = viewer.get(f"/console/consumers/{made.psp.id}?limit=2")
    assert listed(first) == sorted(made.failures, reverse=True)[:2]
    found = _NEXT.search(first.text)
    assert found, "a next page"
    link = html.unescape(found.group(1))
    assert "limit=2" in link and f"after={sorted(made.failures)[1]}" in link
    second = viewer.get(link)
    assert listed(second) == [made.failures[0]] and "First page" in second.text and not _NEXT.search(second.text)
    for bad in ("limit=0", "limit=x", "after=x"):
        assert viewer.get(f"/console/consumers/{made.psp.id}?{bad}").status_code == 400


def test_a_failure_shows_its_body_escaped_headers_and_problems(clients: dict[str, httpx.Client], made: Made) -> None:
    with psycopg.connect(made.database_url, autocommit=True) as conn:
        scripted = keep_failure(conn, made.psp, b'{"note": "<script>alert(1)</script>"}', code="invalid_event")
        binary = keep_failure(conn, made.psp, b"\x00\x01\xfe\xffnot text", code="malformed_json")
    viewer = clients["viewer"]
    page = viewer.get(f"/console/consumers/{made.psp.id}/failures/{scripted}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert '<dt><code>x-request-id</code></dt><dd class="wrap">req-42</dd>' in page.text
    assert "<code>invalid_event</code>" in page.text and "is a required property" in html.unescape(page.text)
    assert "As received" in page.text and "<dd>open</dd>" in page.text
    shown = viewer.get(f"/console/consumers/{made.psp.id}/failures/{binary}")
    assert "Not UTF-8 text: shown in base64" in shown.text and "AAH+/25vdCB0ZXh0" in shown.text
    # Another consumer's failure, an unknown one, a consumer that is not there: not found.
    assert viewer.get(f"/console/consumers/{made.basic.id}/failures/{scripted}").status_code == 404
    assert viewer.get(f"/console/consumers/{made.psp.id}/failures/999999").status_code == 404
    assert viewer.get(f"/console/consumers/{made.psp.id}/failures/abc").status_code == 404
    assert viewer.get("/console/consumers/00000000-0000-0000-0000-000000000000").status_code == 404
    assert viewer.get("/console/consumers/psp").status_code == 404  # by id only
    assert viewer.get("/console/mappings/no-such-mapping").status_code == 404


def test_the_mapping_page_lists_its_versions_newest_first(clients: dict[str, httpx.Client], made: Made) -> None:
    made.fix_mapping()
    page = clients["viewer"].get("/console/mappings/psp-betaling")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert text.index('<h3 id="version-2">Version 2 (current)</h3>') < text.index('<h3 id="version-1">Version 1</h3>')
    assert FIXED in text and BROKEN in text
    assert f'<a href="/console/consumers/{made.psp.id}">Betaalprovider</a>' in page.text
    consumer = clients["viewer"].get(f"/console/consumers/{made.psp.id}")
    assert "version 2 (the current one)" in consumer.text


def test_replay_of_one_fails_again_then_stores_the_event_once_the_mapping_is_fixed(
    clients: dict[str, httpx.Client], made: Made
) -> None:
    operator = clients["operator"]
    number = made.failures[2]  # pay-2
    path = f"/console/consumers/{made.psp.id}/failures/{number}"
    page = operator.get(path)
    assert ">Replay</button>" in page.text
    again = operator.post(f"{path}/replay", data={"csrf": csrf_of(page.text)})
    assert again.status_code == 303 and again.headers["location"].endswith("?notice=failed-again")
    shown = operator.get(again.headers["location"])
    assert "The replay failed again" in shown.text and "<code>schema_violation</code>" in shown.text
    assert made.failure(number).replayed_at is None and made.events("pay-2") == []

    made.fix_mapping()
    stored = operator.post(f"{path}/replay", data={"csrf": csrf_of(shown.text)})
    assert stored.headers["location"].endswith("?notice=stored")
    (event,) = made.events("pay-2")
    assert event["type"] == "nl.example.betaling.ontvangen" and event["data"] == {"bedrag": "1200 <EUR>"}
    failure = made.failure(number)
    assert failure.replayed_at is not None and (failure.event_source, failure.event_id) == (SOURCE, "pay-2")
    after = operator.get(stored.headers["location"])
    assert "the event was stored" in after.text and ">Replay</button>" not in after.text
    assert '<a href="/console/events?event_id=pay-2&amp;source=urn' in after.text
    once_more = operator.post(f"{path}/replay", data={"csrf": csrf_of(after.text)})
    assert once_more.headers["location"].endswith("?notice=not-open")
    assert len(made.events("pay-2")) == 1
    consumer = operator.get(f"/console/consumers/{made.psp.id}")
    assert consumer.text.count("<td>olga</td><td>replay</td>") == 2  # none for the third, which did nothing
    assert f"<td>failure {number}: failed again</td>" in consumer.text
    assert f"<td>failure {number}: stored</td>" in consumer.text
    assert number not in listed(consumer) and made.consumer(str(made.psp.id)).open_failures == 2


def test_replay_of_the_selected_after_the_confirmation(clients: dict[str, httpx.Client], made: Made) -> None:
    operator = clients["operator"]
    page = operator.get(f"/console/consumers/{made.psp.id}")
    for number in made.failures:
        assert f'<label for="select-{number}" class="visually-hidden">Select failure {number}</label>' in page.text
    assert "Replay selected…</button>" in page.text
    chosen = made.failures[:2]  # pay-1 and the sender's retry of it
    confirm = operator.get(f"/console/consumers/{made.psp.id}/replay", params={"failure": [str(n) for n in chosen]})
    assert confirm.status_code == 200
    assert "<strong>2</strong> of the 2 selected are open and will be replayed" in confirm.text
    assert "version 1 (the current one)" in confirm.text
    for number in chosen:
        assert f'name="failure" value="{number}"' in confirm.text
    made.fix_mapping()
    answer = operator.post(
        f"/console/consumers/{made.psp.id}/replay", data={"csrf": csrf_of(confirm.text), "failure": chosen}
    )
    assert answer.status_code == 303
    result = operator.get(answer.headers["location"])
    assert "Replayed: 1 stored, 1 duplicate (the event was taken in before" in result.text
    assert len(made.events("pay-1")) == 1
    assert all(made.failure(n).replayed_at is not None for n in chosen)
    assert listed(result) == [made.failures[2]]
    detail = f"replay of 2 selected: 1 stored, 1 duplicate, 0 failed again (failures {chosen[0]}, {chosen[1]})"
    assert f"<td>olga</td><td>replay</td><td>{detail}</td>" in result.text
    # Selected again: none is open any more.
    stale = operator.get(f"/console/consumers/{made.psp.id}/replay", params={"failure": [str(n) for n in chosen]})
    assert "No selected failure is open" in stale.text and "Replay 0" not in stale.text
    nothing = operator.get(f"/console/consumers/{made.psp.id}/replay")
    assert "No failure was selected" in nothing.text
    none = operator.post(f"/console/consumers/{made.psp.id}/replay", data={"csrf": csrf_of(result.text)})
    assert none.headers["location"].endswith("?notice=none-selected")


def test_replay_of_all_open_after_the_confirmation(clients: dict[str, httpx.Client], made: Made) -> None:
    operator = clients["operator"]
    page = operator.get(f"/console/consumers/{made.psp.id}")
    assert f'<a href="/console/consumers/{made.psp.id}/replay?all=1">Replay all 3 open…</a>' in page.text
    confirm = operator.get(f"/console/consumers/{made.psp.id}/replay?all=1")
    assert (
        "<strong>3</strong> failures will be replayed." in confirm.text and "Replay 3 failures</button>" in confirm.text
    )
    made.fix_mapping()
    answer = operator.post(f"/console/consumers/{made.psp.id}/replay", data={"csrf": csrf_of(confirm.text), "all": "1"})
    result = operator.get(answer.headers["location"])
    assert "Replayed: 2 stored, 1 duplicate" in result.text and "No open failures." in result.text
    assert len(made.events("pay-1")) == 1 and len(made.events("pay-2")) == 1
    assert "replay of all open (3 oldest): 2 stored, 1 duplicate, 0 failed again" in result.text
    again = operator.get(f"/console/consumers/{made.psp.id}/replay?all=1")
    assert "No failure is open: there is nothing to replay." in again.text


def test_disable_and_enable_change_the_row_and_are_audited(clients: dict[str, httpx.Client], made: Made) -> None:
    operator = clients["operator"]
    page = operator.get(f"/console/consumers/{made.psp.id}")
    assert ">Disable</button>" in page.text and ">Enable</button>" not in page.text
    answer = operator.post(f"/console/consumers/{made.psp.id}/disable", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"].endswith("?notice=disabled")
    assert made.consumer("psp").is_enabled is False
    hook = operator.post("/hooks/psp", content=payment("pay-9"))
    assert hook.status_code == 404  # a disabled consumer answers 404
    disabled = operator.get(answer.headers["location"])
    assert "The consumer is disabled" in disabled.text and 'badge-disabled">disabled<' in disabled.text
    assert ">Enable</button>" in disabled.text
    assert "<td>olga</td><td>disable</td>" in disabled.text
    # Disabling a disabled one changes nothing and records nothing.
    operator.post(f"/console/consumers/{made.psp.id}/disable", data={"csrf": csrf_of(disabled.text)})
    enabled = operator.post(f"/console/consumers/{made.psp.id}/enable", data={"csrf": csrf_of(disabled.text)})
    assert enabled.headers["location"].endswith("?notice=enabled") and made.consumer("psp").is_enabled is True
    shown = operator.get(enabled.headers["location"])
    assert shown.text.count("<td>disable</td>") == 1 and "<td>olga</td><td>enable</td>" in shown.text
    with psycopg.connect(made.database_url) as conn:
        kinds = conn.execute("SELECT DISTINCT object_kind, object_id FROM outbox.console_audit").fetchall()
    assert kinds == [("consumer", str(made.psp.id))]


def test_a_viewer_sees_no_action_and_a_forged_post_changes_nothing(
    clients: dict[str, httpx.Client], made: Made
) -> None:
    viewer = clients["viewer"]
    page = viewer.get(f"/console/consumers/{made.psp.id}")
    assert ">Disable</button>" not in page.text and 'type="checkbox"' not in page.text
    assert "Replay all" not in page.text and "Replay selected" not in page.text
    failure = viewer.get(f"/console/consumers/{made.psp.id}/failures/{made.failures[0]}")
    assert ">Replay</button>" not in failure.text
    confirm = viewer.get(f"/console/consumers/{made.psp.id}/replay?all=1")
    assert "<strong>3</strong> failures will be replayed" in confirm.text
    assert (
        "only operators may replay" in confirm.text and 'method="post" action="/console/consumers/' not in confirm.text
    )
    made.fix_mapping()
    token = csrf_of(page.text)  # the viewer's own, valid token (its sign-out form's)
    for path, data in [
        (f"/console/consumers/{made.psp.id}/disable", {"csrf": token}),
        (f"/console/consumers/{made.psp.id}/enable", {"csrf": token}),
        (f"/console/consumers/{made.psp.id}/failures/{made.failures[0]}/replay", {"csrf": token}),
        (f"/console/consumers/{made.psp.id}/replay", {"csrf": token, "failure": str(made.failures[0])}),
        (f"/console/consumers/{made.psp.id}/replay", {"csrf": token, "all": "1"}),
    ]:
        refused = viewer.post(path, data=data)
        assert refused.status_code == 403 and "Not allowed" in refused.text, path
    assert made.consumer("psp").is_enabled is True and made.consumer("psp").open_failures == 3
    assert made.events("pay-1") == []
    assert "No one has acted on this yet." in viewer.get(f"/console/consumers/{made.psp.id}").text


def test_a_post_without_the_csrf_token_is_refused(clients: dict[str, httpx.Client], made: Made) -> None:
    operator = clients["operator"]
    made.fix_mapping()
    for path, data in [
        (f"/console/consumers/{made.psp.id}/disable", {}),
        (f"/console/consumers/{made.psp.id}/failures/{made.failures[0]}/replay", {"csrf": "not-the-token"}),
        (f"/console/consumers/{made.psp.id}/replay", {"all": "1"}),
    ]:
        refused = operator.post(path, data=data)
        assert refused.status_code == 403 and "The form has expired" in refused.text, path
    token = csrf_of(operator.get(f"/console/consumers/{made.psp.id}").text)
    foreign = operator.post(
        f"/console/consumers/{made.psp.id}/disable",
        data={"csrf": token},
        headers={"Origin": "http://elsewhere.example"},
    )
    assert foreign.status_code == 403
    assert made.consumer("psp").is_enabled is True and made.consumer("psp").open_failures == 3
    assert made.events("pay-1") == []


def test_replay_of_all_takes_the_oldest_when_more_are_open_than_one_replay_takes(
    clients: dict[str, httpx.Client], made: Made, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.service.console import consumers as pages

    monkeypatch.setattr(pages, "MAX_REPLAY", 2)
    monkeypatch.setattr(pages, "MAX_PAGE", 1)  # the walk over the open ones takes a page per failure
    operator = clients["operator"]
    with psycopg.connect(made.database_url, autocommit=True) as conn:
        elsewhere = keep_failure(conn, made.basic, payment("pay-3"))  # another consumer's: never counted here
    chosen = [made.failures[0], elsewhere]  # the walk down to the oldest selected passes the other two
    selected = operator.get(f"/console/consumers/{made.psp.id}/replay", params={"failure": [str(n) for n in chosen]})
    assert "<strong>1</strong> of the 2 selected is open and will be replayed; the others" in selected.text
    assert f'name="failure" value="{made.failures[0]}"' in selected.text
    assert f'name="failure" value="{elsewhere}"' not in selected.text
    confirm = operator.get(f"/console/consumers/{made.psp.id}/replay?all=1")
    assert "<strong>2</strong> failures will be replayed: the 2 oldest of the 3 open" in confirm.text
    made.fix_mapping()
    answer = operator.post(f"/console/consumers/{made.psp.id}/replay", data={"csrf": csrf_of(confirm.text), "all": "1"})
    assert "Replayed: 1 stored, 1 duplicate" in operator.get(answer.headers["location"]).text
    assert [made.failure(n).replayed_at is not None for n in made.failures] == [True, True, False]
    too_many = {"csrf": csrf_of(confirm.text), "failure": [str(n) for n in made.failures]}
    refused = operator.post(f"/console/consumers/{made.psp.id}/replay", data=too_many)
    assert refused.status_code == 400 and made.failure(made.failures[2]).replayed_at is None


def test_the_pages_work_without_javascript_and_every_form_carries_the_token(
    start_service: StartService, database_url: str, made: Made
) -> None:
    """Links and forms alone, as a browser with scripts off; nothing inline for the CSP to block."""
    live = start_service()
    add_operator(database_url, "olga", "operator")
    client = ConsoleClient(live.base_url)
    try:
        assert client.sign_in("olga", PASSWORD).status == 303
        token = client.csrf()
        listing = client.get(client.get("/console/").links["Consumers"])
        page = client.get(listing.links["Betaalprovider"])
        for shown in (listing, page):
            assert shown.inline == [] and all("src" in script for script in shown.scripts)
            assert all(f.fields.get("csrf") == token for f in shown.forms if f.method == "post")
        select = page.form("Replay selected…")
        assert select.method == "get" and select.action == f"/console/consumers/{made.psp.id}/replay"
        number = made.failures[1]
        confirm = client.get(f"{select.action}?failure={number}")
        assert confirm.inline == [] and "<strong>1</strong> of the 1 selected is open" in confirm.html
        made.fix_mapping()
        result = client.submit(confirm, "Replay 1 failure")
        assert result.status == 200 and "Replayed: 1 stored" in result.text
        failure = client.get(f"/console/consumers/{made.psp.id}/failures/{made.failures[0]}")
        assert failure.inline == [] and failure.form("Replay").fields.get("csrf") == token
        replayed = client.submit(failure, "Replay")
        assert "nothing new was stored" in replayed.text  # pay-1 was stored by the first replay
        disabled = client.submit(client.get(f"/console/consumers/{made.psp.id}"), "Disable")
        assert "The consumer is disabled" in disabled.text
        assert client.submit(disabled, "Enable").status == 200 and made.consumer("psp").is_enabled
    finally:
        client.close()
