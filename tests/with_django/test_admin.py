"""The outbox in the Django admin: what operators see, what they may not see, what the actions do."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.with_django.conftest import HEADER_VALUE, QUERY_TOKEN, rows

pytestmark = pytest.mark.django_db(transaction=True)


def staff(*permissions: str) -> Client:
    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:8]}", password="x", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="outbox", codename=codename))
    client = Client()
    client.force_login(user)
    return client


def text(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return str(response.content.decode())


def test_pages_render_show_attempts_and_never_a_secret(
    failed: dict[str, Any], admin_client: Client, django_db_url: str
) -> None:
    pages = [
        text(admin_client.get("/admin/outbox/subscription/")),
        text(admin_client.get(f"/admin/outbox/subscription/{failed['subscription']}/change/")),
        text(admin_client.get(f"/admin/outbox/subscription/{failed['other']}/change/")),
        text(admin_client.get("/admin/outbox/delivery/")),
        text(admin_client.get("/admin/outbox/event/")),
    ]
    delivery = failed["deliveries"][0]
    detail = text(admin_client.get(f"/admin/outbox/delivery/{delivery['id']}/change/"))
    pages.append(detail)
    for page in pages:
        assert "static-secret" not in page and QUERY_TOKEN not in page and HEADER_VALUE not in page
    assert "X-Api-Key" in pages[1], "the header names are shown, their values never"
    assert "access_token=…" in pages[0] or "access_token=%E2%80%A6" in pages[0]
    # the attempt: its status code and the receiver's answer
    assert "415" in detail
    assert "unsupported: use structured mode" in detail
    [event] = rows(
        django_db_url, "SELECT event->>'id' AS id FROM outbox.events WHERE position = %s", delivery["event_position"]
    )
    assert event["id"] in detail
    event_page = text(admin_client.get(f"/admin/outbox/event/{delivery['event_position']}/change/"))
    # the event's JSON, whole
    assert "&quot;specversion&quot;: &quot;1.0&quot;" in event_page
    assert f"&quot;id&quot;: &quot;{event['id']}&quot;" in event_page
    assert "<textarea" not in event_page and 'name="_save"' not in event_page  # read-only


def test_filters_and_search_by_event_id_and_subject(failed: dict[str, Any], admin_client: Client) -> None:
    event = failed["events"][1]
    by_id = text(admin_client.get("/admin/outbox/delivery/", {"q": event.id}))
    by_subject = text(admin_client.get("/admin/outbox/delivery/", {"q": event.subject}))
    for page in (by_id, by_subject):
        assert event.subject in page
        assert failed["events"][0].subject not in page and failed["events"][2].subject not in page
    assert "0 deliveries" in text(admin_client.get("/admin/outbox/delivery/", {"status__exact": "delivered"}))
    failed_page = text(admin_client.get("/admin/outbox/delivery/", {"status__exact": "failed"}))
    assert all(e.subject in failed_page for e in failed["events"])
    by_subscription = text(admin_client.get("/admin/outbox/delivery/", {"subscription__id__exact": failed["other"]}))
    assert "0 deliveries" in by_subscription
    events = text(admin_client.get("/admin/outbox/event/", {"q": event.id}))
    assert event.subject in events and failed["events"][0].subject not in events


def test_nothing_can_be_added_changed_or_deleted(failed: dict[str, Any], admin_client: Client) -> None:
    assert admin_client.get("/admin/outbox/subscription/add/").status_code == 403
    delivery = failed["deliveries"][0]["id"]
    assert admin_client.post(f"/admin/outbox/delivery/{delivery}/delete/").status_code == 403
    page = text(admin_client.get(f"/admin/outbox/delivery/{delivery}/change/"))
    assert 'name="_save"' not in page


def test_retry_action_does_what_outbox_retry_does(failed: dict[str, Any], django_db_url: str, run_cli: Any) -> None:
    first, second, third = (d["id"] for d in failed["deliveries"])
    client = staff("view_delivery", "retry_delivery")
    response = client.post(
        "/admin/outbox/delivery/", {"action": "retry", "_selected_action": [first, third]}, follow=True
    )
    assert "2 failed deliveries back to pending" in text(response)
    assert run_cli("retry", "--delivery", str(second), url=django_db_url).returncode == 0
    after = {
        d["id"]: d for d in rows(django_db_url, "SELECT id, status, attempts, last_status_code FROM outbox.deliveries")
    }
    # all three as `outbox retry` leaves them: pending with fresh attempts (unordered keys: each its own head)
    assert after[first] == after[second] | {"id": first} and after[third] == after[second] | {"id": third}
    assert after[second]["status"] == "pending" and after[second]["attempts"] == 0

    again = text(client.post("/admin/outbox/delivery/", {"action": "retry", "_selected_action": [first]}, follow=True))
    assert "0 failed deliveries back to pending; 1 of the selection was not failed" in again


def test_pause_and_resume_actions_do_what_the_cli_does(
    failed: dict[str, Any], django_db_url: str, run_cli: Any
) -> None:
    client = staff("view_subscription", "pause_subscription")
    subscription = failed["subscription"]
    page = text(
        client.post("/admin/outbox/subscription/", {"action": "pause", "_selected_action": [subscription]}, follow=True)
    )
    assert "Paused 1 subscription" in page
    [row] = rows(django_db_url, "SELECT status, paused_reason FROM outbox.subscriptions WHERE id = %s", subscription)
    assert row["status"] == "paused" and "in the Django admin" in row["paused_reason"]

    assert "Resumed 1 subscription" in text(
        client.post(
            "/admin/outbox/subscription/", {"action": "resume", "_selected_action": [subscription]}, follow=True
        )
    )
    [row] = rows(django_db_url, "SELECT status, paused_reason FROM outbox.subscriptions WHERE id = %s", subscription)
    assert row == {"status": "active", "paused_reason": None}
    assert run_cli("subscriptions", "pause", subscription, url=django_db_url).returncode == 0
    [cli_row] = rows(django_db_url, "SELECT status FROM outbox.subscriptions WHERE id = %s", subscription)
    assert cli_row["status"] == "paused"


def test_actions_need_their_permission(failed: dict[str, Any], django_db_url: str) -> None:
    viewer = staff("view_delivery", "view_subscription")
    listing = text(viewer.get("/admin/outbox/delivery/"))
    assert 'value="retry"' not in listing
    delivery = failed["deliveries"][0]["id"]
    viewer.post("/admin/outbox/delivery/", {"action": "retry", "_selected_action": [delivery]})
    [row] = rows(django_db_url, "SELECT status FROM outbox.deliveries WHERE id = %s", delivery)
    assert row["status"] == "failed"
    assert 'value="pause"' not in text(viewer.get("/admin/outbox/subscription/"))
    assert staff().get("/admin/outbox/delivery/").status_code == 403
    assert re.search(r'value="retry"', text(staff("view_delivery", "retry_delivery").get("/admin/outbox/delivery/")))
