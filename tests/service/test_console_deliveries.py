"""The console's deliveries, one delivery, failed and events pages: the real service on a real port,
a real worker, real receivers; operators and viewers signed in through the sign-in form."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.service.conftest import StartService
from tests.service.console_history import (
    EXCERPT,
    History,
    add_operator,
    csrf_of,
    delivered_to_bad,
    history,
    signed_in,
)
from tests.support import attempts, wait_until

_ROW_ID = re.compile(r'<th scope="row"><a href="/console/deliveries/(\d+)">')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">Next page</a>')


@pytest.fixture
def made(database_url: str, tmp_path: Path) -> Iterator[History]:
    with history(database_url, tmp_path) as h:
        yield h


@pytest.fixture
def clients(start_service: StartService, database_url: str, made: History) -> Iterator[dict[str, httpx.Client]]:
    live = start_service()
    add_operator(database_url, "olga", "operator")
    add_operator(database_url, "victor", "viewer")
    operator, viewer = signed_in(live.base_url, "olga"), signed_in(live.base_url, "victor")
    yield {"operator": operator, "viewer": viewer}
    operator.close()
    viewer.close()


def listed(page: httpx.Response) -> list[int]:
    return [int(n) for n in _ROW_ID.findall(page.text)]


def all_pages(client: httpx.Client, first: str) -> tuple[list[int], list[str]]:
    """Every row id, following "Next page" from `first`; and the links followed."""
    ids: list[int] = []
    links = [first]
    page = client.get(first)
    while True:
        assert page.status_code == 200, page.text
        ids += listed(page)
        found = _NEXT.search(page.text)
        if not found:
            return ids, links
        links.append(html.unescape(found.group(1)))
        page = client.get(links[-1])
        assert "First page" in page.text


def status_of(database_url: str, delivery_id: int) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM outbox.deliveries WHERE id = %s", (delivery_id,)).fetchone()
    assert row is not None
    return str(row[0])


def bad_row(made: History, subject: str) -> dict[str, Any]:
    (row,) = [r for r in made.rows(status="failed") if r["subject"] == subject]
    return row


def test_the_listing_finds_the_failed_delivery_by_its_subject(clients: dict[str, httpx.Client], made: History) -> None:
    subject = made.subjects[2]
    page = clients["viewer"].get("/console/deliveries", params={"subject": subject, "state": "failed"})
    assert page.status_code == 200
    assert listed(page) == [bad_row(made, subject)["id"]]
    assert 'class="badge badge-failed">failed<' in page.text and subject in page.text
    assert '<th scope="col">Last status</th>' in page.text and "<td>500</td>" in page.text
    everything = clients["viewer"].get("/console/deliveries", params={"subject": subject})
    assert sorted(listed(everything)) == sorted(r["id"] for r in made.rows() if r["subject"] == subject)


def test_paging_keeps_the_filter_and_shows_every_row_once(clients: dict[str, httpx.Client], made: History) -> None:
    ids, _ = all_pages(clients["viewer"], "/console/deliveries?limit=3")
    assert ids == sorted((r["id"] for r in made.rows()), reverse=True)  # 10 rows on 4 pages, newest first
    failed, links = all_pages(clients["viewer"], f"/console/deliveries?state=failed&subscription={made.bad}&limit=2")
    assert failed == sorted(made.failed_ids(), reverse=True) and len(links) == 3
    assert all("state=failed" in link and f"subscription={made.bad}" in link for link in links)
    on_failed, _ = all_pages(clients["viewer"], "/console/failed?limit=2")
    assert on_failed == failed


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({"since": "yesterday"}, "since", "neither an RFC 3339 time"),
        ({"state": "lost"}, "state", "is not a state"),
        ({"subscription": "abc"}, "subscription", "is not a subscription id"),
        ({"after": "x"}, "after", "is not a cursor"),
    ],
)
def test_a_bad_filter_names_its_field(
    clients: dict[str, httpx.Client], params: dict[str, str], field: str, rule: str
) -> None:
    for path in ("/console/deliveries", "/console/failed"):
        if path == "/console/failed" and field == "state":
            continue  # fixed there
        page = clients["viewer"].get(path, params=params)
        assert page.status_code == 400
        assert f"({field})</strong>" in page.text and rule in html.unescape(page.text)
        assert 'aria-invalid="true"' in page.text or field == "after"
        assert html.escape(params[next(iter(params))]) in page.text  # what was typed is shown back


def test_one_delivery_shows_the_event_and_its_attempts_oldest_first(
    clients: dict[str, httpx.Client], made: History
) -> None:
    row = bad_row(made, made.subjects[0])
    page = clients["viewer"].get(f"/console/deliveries/{row['id']}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert f'"id": "{row["event_id"]}"' in text and f'"subject": "{made.subjects[0]}"' in text
    assert "geheim-token" not in text  # the subscription's secret never shows
    times = re.findall(r"<li>\s*<p><strong>([^<]+)</strong>", page.text)
    stored = [a for a in attempts(made.database_url) if a["delivery_id"] == row["id"]]
    assert len(times) == len(stored) == 2
    assert times == [a["attempted_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") for a in stored]
    assert text.count(EXCERPT.decode()) == 2 and text.count("status 500") == 2
    assert clients["viewer"].get("/console/deliveries/999999").status_code == 404
    assert clients["viewer"].get("/console/deliveries/abc").status_code == 404


def test_retry_of_one_is_delivered_to_the_recovered_receiver(clients: dict[str, httpx.Client], made: History) -> None:
    row = bad_row(made, made.subjects[1])
    operator = clients["operator"]
    page = operator.get(f"/console/deliveries/{row['id']}")
    assert ">Retry</button>" in page.text
    made.recover()
    answer = operator.post(f"/console/deliveries/{row['id']}/retry", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"].endswith("?notice=retried")
    assert status_of(made.database_url, row["id"]) in ("pending", "delivering", "delivered")
    wait_until(lambda: delivered_to_bad(made, {row["event_id"]}), message="the retried delivery delivered")
    after = operator.get(answer.headers["location"])
    assert "Retried: the delivery is back in the queue" in after.text
    assert "<td>olga</td><td>retry</td>" in after.text
    wait_until(lambda: status_of(made.database_url, row["id"]) == "delivered", message="delivered")
    again = operator.post(f"/console/deliveries/{row['id']}/retry", data={"csrf": csrf_of(after.text)})
    assert again.headers["location"].endswith("?notice=not-failed")
    assert "Nothing was retried" in operator.get(again.headers["location"]).text
    assert operator.get(again.headers["location"]).text.count("<td>retry</td>") == 1  # no entry for nothing
    assert sorted(made.failed_ids()) == sorted(r["id"] for r in made.rows(status="failed"))
    assert len(made.failed_ids()) == 4  # only that one moved


def test_retry_of_the_selected(clients: dict[str, httpx.Client], made: History) -> None:
    operator = clients["operator"]
    page = operator.get("/console/failed")
    chosen = [bad_row(made, s) for s in made.subjects[:2]]
    for row in chosen:
        assert (
            f'<label for="select-{row["id"]}" class="visually-hidden">Select delivery {row["id"]}</label>' in page.text
        )
    made.recover()
    answer = operator.post(
        "/console/failed/retry", data={"csrf": csrf_of(page.text), "delivery": [str(r["id"]) for r in chosen]}
    )
    assert answer.status_code == 303
    assert "Retried: 2 deliveries moved" in operator.get(answer.headers["location"]).text
    assert "subject=" not in answer.headers["location"]  # no filter was set, none is made up
    wait_until(lambda: delivered_to_bad(made, {r["event_id"] for r in chosen}), message="both delivered")
    assert len(made.failed_ids()) == 3
    for row in chosen:
        entry = "<td>olga</td><td>retry</td><td>retry of 2 selected: 2 moved"
        assert entry in operator.get(f"/console/deliveries/{row['id']}").text


def test_retry_of_all_matching_after_the_confirmation(clients: dict[str, httpx.Client], made: History) -> None:
    operator = clients["operator"]
    # The confirmation counts what the filter matches and carries the filter.
    narrow = operator.get("/console/failed/confirm", params={"subject": made.subjects[3]})
    assert "<strong>1</strong> failed delivery matches" in narrow.text
    listing = operator.get("/console/failed", params={"subscription": made.bad, "limit": "2"})
    assert f'/console/failed/confirm?subscription={made.bad}">Retry all 5 matching…</a>' in listing.text
    confirm = operator.get("/console/failed/confirm", params={"subscription": made.bad})
    assert confirm.status_code == 200
    assert "<strong>5</strong> failed deliveries match" in confirm.text
    assert f'name="subscription" value="{made.bad}"' in confirm.text
    made.recover()
    answer = operator.post("/console/failed/retry-all", data={"csrf": csrf_of(confirm.text), "subscription": made.bad})
    assert answer.status_code == 303 and f"subscription={made.bad}" in answer.headers["location"]
    page = operator.get(answer.headers["location"])
    assert "Retried: 5 deliveries moved" in page.text
    assert f"<td>olga</td><td>retry-all</td><td>retried 5 matching subscription={made.bad}</td>" in page.text
    wait_until(lambda: delivered_to_bad(made, {e.id for e in made.events}), message="all five delivered")
    assert made.failed_ids() == []
    again = operator.get("/console/failed/confirm", params={"subscription": made.bad})
    assert "No failed delivery matches" in again.text and "retry-all" not in again.text


def test_a_viewer_sees_no_retry_and_a_forged_post_moves_nothing(
    clients: dict[str, httpx.Client], made: History
) -> None:
    viewer = clients["viewer"]
    failed = viewer.get("/console/failed")
    assert "Retry selected" not in failed.text and 'type="checkbox"' not in failed.text
    assert "Retry all" not in failed.text
    row = bad_row(made, made.subjects[0])
    page = viewer.get(f"/console/deliveries/{row['id']}")
    assert ">Retry</button>" not in page.text
    confirm = viewer.get("/console/failed/confirm")
    assert "<strong>5</strong> failed deliveries match" in confirm.text
    assert "failed/retry-all" not in confirm.text and "only operators may retry" in confirm.text
    token = csrf_of(page.text)  # the viewer's own, valid token (from the sign-out form)
    before = made.failed_ids()
    for path, data in [
        (f"/console/deliveries/{row['id']}/retry", {"csrf": token}),
        ("/console/failed/retry", {"csrf": token, "delivery": str(row["id"])}),
        ("/console/failed/retry-all", {"csrf": token}),
    ]:
        refused = viewer.post(path, data=data)
        assert refused.status_code == 403 and "Not allowed" in refused.text
    assert made.failed_ids() == before
    assert "No one has acted on this yet." in viewer.get(f"/console/deliveries/{row['id']}").text


def test_a_post_without_the_csrf_token_is_refused(clients: dict[str, httpx.Client], made: History) -> None:
    operator = clients["operator"]
    row = bad_row(made, made.subjects[0])
    before = made.failed_ids()
    for path, data in [
        (f"/console/deliveries/{row['id']}/retry", {}),
        ("/console/failed/retry", {"delivery": str(row["id"])}),
        ("/console/failed/retry-all", {"csrf": "not-the-token"}),
    ]:
        refused = operator.post(path, data=data)
        assert refused.status_code == 403 and "The form has expired" in refused.text
    foreign = operator.post(
        f"/console/deliveries/{row['id']}/retry",
        data={"csrf": csrf_of(operator.get("/console/failed").text)},
        headers={"Origin": "http://elsewhere.example"},
    )
    assert foreign.status_code == 403
    assert made.failed_ids() == before


def test_events_search_by_id_and_by_subject(clients: dict[str, httpx.Client], made: History) -> None:
    viewer = clients["viewer"]
    event = made.events[4]
    by_id = viewer.get("/console/events", params={"event_id": event.id})
    assert by_id.status_code == 200 and "1 event found" in by_id.text
    assert f'"subject": "{event.subject}"' in html.unescape(by_id.text)
    rows = [r for r in made.rows() if r["event_id"] == event.id]
    for row in rows:
        assert f'<a href="/console/deliveries/{row["id"]}">{row["id"]}</a>' in by_id.text
    assert "badge-failed" in by_id.text and "badge-delivered" in by_id.text
    assert "geheim-token" not in by_id.text
    by_source = viewer.get("/console/events", params={"event_id": event.id, "source": event.source})
    assert "1 event found" in by_source.text
    elsewhere = viewer.get("/console/events", params={"event_id": event.id, "source": "urn:other"})
    assert "No event found." in elsewhere.text
    by_subject = viewer.get("/console/events", params={"subject": event.subject})
    assert "1 event found" in by_subject.text and event.id in by_subject.text
    nothing = viewer.get("/console/events", params={"subject": str(uuid.uuid4())})
    assert "No event found." in nothing.text
    bad = viewer.get("/console/events", params={"source": event.source})
    assert bad.status_code == 400 and "give the event id with its source" in bad.text


def test_the_overview_links_its_counts(clients: dict[str, httpx.Client], made: History) -> None:
    page = clients["viewer"].get("/console/")
    assert '<a href="/console/failed">5<span class="visually-hidden"> failed</span></a>' in page.text
    assert (
        '<a href="/console/deliveries?state=delivered">5<span class="visually-hidden"> delivered</span></a>'
        in page.text
    )
