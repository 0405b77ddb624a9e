"""The console's consumers pages in a real headless Chromium: an operator goes from the navigation to a
consumer by keyboard, selects a failure, replays it through the confirmation and sees it stored; a
failure replayed from its own page; axe-core (WCAG 2.1 A and AA) and a 320 px wide window on every new
page, with a screenshot of each under test-artifacts/console/. Chromium comes from the system (Debian's),
Playwright drives it; consumers, mappings and failures are made as in test_console_consumers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, NAVIGATION_MS, WCAG_21_AA, needs_chromium
from tests.service.conftest import StartService
from tests.service.console_history import PASSWORD, add_operator
from tests.service.test_console_consumers import Made, keep_failure, make

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
def made(database_url: str) -> Made:
    return make(database_url)


@pytest.fixture
def base_url(start_service: StartService, database_url: str, made: Made) -> str:
    add_operator(database_url, "olga", "operator")
    return start_service(consumer_cache_ttl=0).base_url


def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` has the focus: it is reachable by keyboard."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with Tab")


def sign_in(page: Any, base_url: str, next_path: str) -> None:
    """By keyboard alone (the focus awaited in the username field first: `autofocus` may come after load)."""
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


def test_an_operator_replays_a_selected_failure_by_keyboard_through_the_confirmation(
    page: Any, base_url: str, made: Made
) -> None:
    from playwright.sync_api import expect

    sign_in(page, base_url, "/console/")
    tab_to(page, 'nav a[href="/console/consumers"]')
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/consumers", timeout=NAVIGATION_MS)
    tab_to(page, f'a[href="/console/consumers/{made.psp.id}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/consumers/{made.psp.id}", timeout=NAVIGATION_MS)
    expect(page.locator("table:has(#failures-caption) tbody tr")).to_have_count(3)

    made.fix_mapping()
    number = made.failures[2]  # pay-2
    tab_to(page, f"#select-{number}")
    page.keyboard.press("Space")
    expect(page.locator(f"#select-{number}")).to_be_checked()
    tab_to(page, f'form[method="get"][action="/console/consumers/{made.psp.id}/replay"] button')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/consumers/{made.psp.id}/replay?failure={number}", timeout=NAVIGATION_MS)
    expect(page.locator("main")).to_contain_text("1 of the 1 selected is open and will be replayed")
    tab_to(page, f'form[method="post"][action="/console/consumers/{made.psp.id}/replay"] button')
    expect(page.locator(":focus")).to_have_text("Replay 1 failure")
    page.keyboard.press("Enter")
    expect(page.locator("p.notice")).to_contain_text("Replayed: 1 stored", timeout=NAVIGATION_MS)
    assert len(made.events("pay-2")) == 1 and made.failure(number).replayed_at is not None
    expect(page.locator(f'a[href="/console/consumers/{made.psp.id}/failures/{number}"]')).to_have_count(0)
    expect(page.locator("table:has(#audit-caption)")).to_contain_text("replay of 1 selected: 1 stored")

    # One failure from its own page: the Replay button, then the notice and the event's link.
    first = made.failures[0]
    tab_to(page, f'a[href="/console/consumers/{made.psp.id}/failures/{first}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/failures/{first}", timeout=NAVIGATION_MS)
    tab_to(page, f'form[action="/console/consumers/{made.psp.id}/failures/{first}/replay"] button')
    page.keyboard.press("Enter")
    expect(page.locator("p.notice")).to_contain_text("the event was stored", timeout=NAVIGATION_MS)
    expect(page.get_by_role("button", name="Replay", exact=True)).to_have_count(0)
    tab_to(page, 'a[href^="/console/events?event_id=pay-1"]')
    assert len(made.events("pay-1")) == 1


def test_an_operator_disables_and_enables_a_consumer_by_keyboard(page: Any, base_url: str, made: Made) -> None:
    from playwright.sync_api import expect

    sign_in(page, base_url, f"/console/consumers/{made.psp.id}")
    tab_to(page, 'form[action$="/disable"] button')
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("The consumer is disabled", timeout=NAVIGATION_MS)
    assert made.consumer("psp").is_enabled is False
    tab_to(page, 'form[action$="/enable"] button')
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("The consumer is enabled", timeout=NAVIGATION_MS)
    assert made.consumer("psp").is_enabled is True
    with psycopg.connect(made.database_url) as conn:
        audit = conn.execute("SELECT operator, action FROM outbox.console_audit ORDER BY id").fetchall()
    assert audit == [("olga", "disable"), ("olga", "enable")]


def test_every_consumers_page_meets_wcag_21_aa_and_fits_320_px(page: Any, base_url: str, made: Made) -> None:
    from axe_playwright_python.sync_playwright import Axe

    with psycopg.connect(made.database_url, autocommit=True) as conn:
        binary = keep_failure(conn, made.psp, b"\x00\x01\xfe\xffnot text", code="malformed_json")
    made.fix_mapping()  # two versions on the mapping's page
    psp = f"/console/consumers/{made.psp.id}"
    paths = {
        "consumers": "/console/consumers",
        "consumer": psp,
        "consumer-later-page": f"{psp}?limit=2&after={binary}",
        "consumer-without-mapping": f"/console/consumers/{made.basic.id}",
        "consumer-failure": f"{psp}/failures/{made.failures[0]}",
        "consumer-failure-binary": f"{psp}/failures/{binary}?notice=failed-again",
        "confirm-replay-selected": f"{psp}/replay?failure={made.failures[0]}&failure={made.failures[1]}",
        "confirm-replay-all": f"{psp}/replay?all=1",
        "confirm-replay-none": f"{psp}/replay",
        "mapping": "/console/mappings/psp-betaling",
    }
    sign_in(page, base_url, "/console/consumers")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    axe = Axe()
    found: dict[str, Any] = {}
    too_wide: dict[str, Any] = {}
    for name, path in paths.items():
        page.set_viewport_size({"width": 1280, "height": 900})
        answer = page.goto(base_url + path)
        assert answer is not None and answer.status == 200, (name, answer and answer.status)
        result = axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
        found[name] = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in result.response["violations"]]
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        page.set_viewport_size({"width": 320, "height": 900})
        width = page.evaluate("document.documentElement.scrollWidth")
        overflowing = page.evaluate(
            """() => [...document.querySelectorAll('a, button, input, label, h1, h2, h3, p, dd')]
                 .filter(e => !e.closest('.table-scroll, pre'))
                 .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                 .map(e => e.outerHTML.slice(0, 80))"""
        )
        if width > 320 or overflowing:
            too_wide[name] = (width, overflowing)
        page.screenshot(path=str(ARTIFACTS / f"{name}-320.png"), full_page=True)
    assert found == {name: [] for name in paths}
    assert too_wide == {}
