"""The outbox admin in a real headless Chromium, driven by keyboard: log in, find the failed deliveries,
read one's attempts, retry it, pause its subscription; and every outbox admin page checked with axe-core
against WCAG 2.1 A and AA. Chromium comes from the system (.ci/run installs Debian's); Playwright drives it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User

from tests.browser import CHROMIUM, CHROMIUM_ARGS, NAVIGATION_MS, WCAG_21_AA, needs_chromium
from tests.with_django.conftest import QUERY_TOKEN, rows

pytestmark = [
    pytest.mark.django_db(transaction=True),
    needs_chromium,
]


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the test are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()
            # Django keeps connections per asyncio context: those opened under Playwright's loop close here.
            from django.db import connections

            connections.close_all()


@pytest.fixture
def live_url(django_db_url: str) -> Iterator[str]:
    """The example host served on 127.0.0.1 for this test (its connections closed when it stops)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    thread = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    try:
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()


def tab_to(page: Any, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching `selector` has the focus: it is reachable by keyboard."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with Tab")


def log_in(page: Any, live_url: str, next_path: str) -> None:
    """Log in by keyboard alone and land on `next_path`.

    Chromium runs `autofocus` at a rendering update, which may come after the load event that
    `goto` waits for: a key typed at once went to the page's body and was lost ("eheerder"), the
    login failed and the redirect never came. So wait for the focus to be in the username field."""
    from playwright.sync_api import expect

    User.objects.create_superuser("beheerder", password="een-lang-wachtwoord")
    page.goto(f"{live_url}/admin/login/?next={quote(next_path)}")
    # Playwright's 5 s default for `expect` is a bound a loaded 2-CPU machine can outlast before
    # Chromium's first rendering update; the bound is the same as for navigations.
    username, password = page.locator("#id_username"), page.locator("#id_password")
    expect(username).to_be_focused(timeout=NAVIGATION_MS)
    page.keyboard.type("beheerder")
    page.keyboard.press("Tab")
    expect(password).to_be_focused()
    page.keyboard.type("een-lang-wachtwoord")
    # What was typed is what is sent: a lost key fails here, by name, not as a missing redirect.
    expect(username).to_have_value("beheerder")
    expect(password).to_have_value("een-lang-wachtwoord")
    page.keyboard.press("Enter")
    page.wait_for_url(live_url + next_path, timeout=NAVIGATION_MS)


def test_an_operator_retries_a_failed_delivery_and_pauses_its_subscription_by_keyboard(
    failed: dict[str, Any], live_url: str, page: Any, django_db_url: str
) -> None:
    from playwright.sync_api import expect

    log_in(page, live_url, "/admin/outbox/delivery/?status__exact=failed")

    listing = page.content()
    assert all(event.subject in listing for event in failed["events"])
    assert "static-secret" not in listing and QUERY_TOKEN not in listing

    # Open the first failed delivery by keyboard and read its attempt.
    first = failed["deliveries"][0]["id"]
    tab_to(page, f'a[href$="/admin/outbox/delivery/{first}/change/?_changelist_filters=status__exact%3Dfailed"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/admin/outbox/delivery/{first}/change/**")
    attempts = page.locator("#attempt_rows-group")
    expect(attempts).to_contain_text("415")
    expect(attempts).to_contain_text("unsupported: use structured mode")
    page.go_back()

    # Select it, choose the retry action, run it: all by keyboard.
    tab_to(page, f'input[name="_selected_action"][value="{first}"]')
    page.keyboard.press("Space")
    tab_to(page, 'select[name="action"]')
    page.keyboard.press("ArrowDown")  # "---------" → the first action
    assert page.eval_on_selector('select[name="action"]', "s => s.value") == "retry"
    tab_to(page, 'button[name="index"]')
    page.keyboard.press("Enter")
    # Not `wait_for_load_state()`: right after the key the old page is still the loaded one, so it
    # returned at once. The message is on the page the action redirects to, written after its commit.
    expect(page.locator("ul.messagelist")).to_contain_text("1 failed delivery back to pending", timeout=NAVIGATION_MS)
    [row] = rows(django_db_url, "SELECT status, attempts FROM outbox.deliveries WHERE id = %s", first)
    assert row == {"status": "pending", "attempts": 0}

    # Pause the subscription the same way.
    page.goto(f"{live_url}/admin/outbox/subscription/")
    tab_to(page, f'input[name="_selected_action"][value="{failed["subscription"]}"]')
    page.keyboard.press("Space")
    tab_to(page, 'select[name="action"]')
    page.keyboard.press("ArrowDown")
    assert page.eval_on_selector('select[name="action"]', "s => s.value") == "pause"
    tab_to(page, 'button[name="index"]')
    page.keyboard.press("Enter")
    expect(page.locator("ul.messagelist")).to_contain_text("Paused 1 subscription", timeout=NAVIGATION_MS)
    [subscription] = rows(
        django_db_url, "SELECT status FROM outbox.subscriptions WHERE id = %s", failed["subscription"]
    )
    assert subscription["status"] == "paused"


def test_every_outbox_admin_page_meets_wcag_21_aa(
    failed: dict[str, Any], live_url: str, page: Any, django_db_url: str
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    log_in(page, live_url, "/admin/outbox/")
    delivery = failed["deliveries"][0]
    paths = [
        "/admin/outbox/",
        "/admin/outbox/delivery/",
        "/admin/outbox/delivery/?status__exact=failed",
        f"/admin/outbox/delivery/{delivery['id']}/change/",
        "/admin/outbox/subscription/",
        f"/admin/outbox/subscription/{failed['subscription']}/change/",
        "/admin/outbox/event/",
        f"/admin/outbox/event/{delivery['event_position']}/change/",
    ]
    axe = Axe()
    found = {}
    for path in paths:
        if page.url != live_url + path:
            page.goto(live_url + path)
        result = axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
        found[path] = [(v["id"], [n["target"] for n in v["nodes"]]) for v in result.response["violations"]]
    assert found == {path: [] for path in paths}
