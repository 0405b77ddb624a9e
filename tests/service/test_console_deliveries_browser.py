"""The console's deliveries pages in a real headless Chromium: sign in by keyboard, find a failed
delivery by its subject, read its attempts, retry it and see it delivered (a real worker, a recovered
receiver); axe-core (WCAG 2.1 A and AA) and a 320 px wide window on every page, with a screenshot of
each under test-artifacts/console/. Chromium comes from the system (Debian's), Playwright drives it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, NAVIGATION_MS, WCAG_21_AA, needs_chromium
from tests.service.conftest import StartService
from tests.service.console_history import EXCERPT, PASSWORD, History, add_operator, delivered_to_bad, history
from tests.support import wait_until

pytestmark = needs_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture
def made(database_url: str, tmp_path: Path) -> Iterator[History]:
    with history(database_url, tmp_path, count=3) as h:
        yield h


@pytest.fixture
def base_url(start_service: StartService, database_url: str, made: History) -> str:
    add_operator(database_url, "olga", "operator")
    return start_service().base_url


def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` has the focus: it is reachable by keyboard."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with Tab")


def sign_in(page: Any, base_url: str, next_path: str) -> None:
    """By keyboard alone; the focus is awaited in the username field first (`autofocus` runs at a
    rendering update, which may come after the load event `goto` waits for)."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/console/sign-in?next={quote(next_path)}")
    username, password = page.get_by_label("Username"), page.get_by_label("Password")
    expect(username).to_be_focused(timeout=NAVIGATION_MS)
    page.keyboard.type("olga")
    page.keyboard.press("Tab")
    expect(password).to_be_focused()
    page.keyboard.type(PASSWORD)
    expect(username).to_have_value("olga")
    page.keyboard.press("Enter")
    page.wait_for_url(base_url + next_path, timeout=NAVIGATION_MS)


def test_an_operator_finds_a_failed_delivery_reads_its_attempts_and_retries_it(
    page: Any, base_url: str, made: History
) -> None:
    from playwright.sync_api import expect

    sign_in(page, base_url, "/console/failed")
    subject = made.subjects[1]
    (row,) = [r for r in made.rows(status="failed") if r["subject"] == subject]
    tab_to(page, "#f-subject")
    page.keyboard.type(subject)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/failed?*subject={subject}*", timeout=NAVIGATION_MS)
    expect(page.locator("tbody tr")).to_have_count(1)

    tab_to(page, f'a[href="/console/deliveries/{row["id"]}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/deliveries/{row['id']}", timeout=NAVIGATION_MS)
    timeline = page.locator("ol.timeline > li")
    expect(timeline).to_have_count(2)
    expect(timeline.first).to_contain_text("status 500")
    expect(timeline.first).to_contain_text(EXCERPT.decode())

    made.recover()
    tab_to(page, f'form[action="/console/deliveries/{row["id"]}/retry"] button')
    page.keyboard.press("Enter")
    expect(page.locator("p.notice")).to_contain_text("back in the queue", timeout=NAVIGATION_MS)
    wait_until(lambda: delivered_to_bad(made, {row["event_id"]}), message="the retried delivery delivered")
    page.reload()
    expect(page.locator("dl.fields .badge")).to_have_text("delivered")
    expect(page.locator("table")).to_contain_text("retry")  # the audit entry, on the page


def test_every_deliveries_page_meets_wcag_21_aa_and_fits_320_px(page: Any, base_url: str, made: History) -> None:
    from axe_playwright_python.sync_playwright import Axe

    sign_in(page, base_url, "/console/")
    failed = made.rows(status="failed")[0]
    paths = {
        "overview": "/console/",
        "deliveries": "/console/deliveries",
        "deliveries-filter-error": "/console/deliveries?since=yesterday",
        "delivery": f"/console/deliveries/{failed['id']}",
        "failed": "/console/failed",
        "failed-confirm": "/console/failed/confirm",
        "events": "/console/events",
        "events-found": f"/console/events?subject={made.subjects[0]}",
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    axe = Axe()
    found: dict[str, Any] = {}
    too_wide: dict[str, int] = {}
    for name, path in paths.items():
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(base_url + path)
        result = axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
        found[name] = [
            (v["id"], [n["target"] for n in v["nodes"]])
            for v in result.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        page.set_viewport_size({"width": 320, "height": 900})
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 320:
            too_wide[name] = width
        page.screenshot(path=str(ARTIFACTS / f"{name}-320.png"), full_page=True)
    assert found == {name: [] for name in paths}
    assert too_wide == {}
