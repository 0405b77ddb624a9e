"""The console in a real headless Chromium: axe-core (WCAG 2.1 A and AA) on every page, the keyboard
(skip link, sign-in, visible focus), landmarks, 320 px and 200 % zoom, pause and resume; a screenshot of
each page in test-artifacts/console/. Chromium comes from the system (Debian's); Playwright drives it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, NAVIGATION_MS, WCAG_21_AA, needs_chromium
from tests.service.console_client import OPERATOR, PASSWORDS, add_operator
from tests.service.live import LiveService
from tests.support import Receiver, subscribe

pytestmark = needs_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Any:
    return browser.new_page()


@pytest.fixture
def console(service: LiveService, database_url: str, callback: Receiver) -> dict[str, str]:
    """An operator, a subscription and the catalogue's first type: what the pages show."""
    add_operator(database_url, OPERATOR, "operator", PASSWORDS[OPERATOR])
    subscription = subscribe(database_url, f"{callback.url}/hook", auth="Bearer not-on-any-page-123")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT slug FROM outbox.event_types ORDER BY slug LIMIT 1").fetchone()
    return {"base": service.base_url, "subscription": subscription, "slug": row[0] if row else ""}


def sign_in_by_keyboard(page: Any, base: str) -> None:
    """Tab from the top: the skip link first, then to the username field; type, Tab, type, Enter."""
    from playwright.sync_api import expect

    page.goto(f"{base}/console/")
    username, password = page.locator("#username"), page.locator("#password")
    expect(username).to_be_focused(timeout=NAVIGATION_MS)  # autofocus; wait for it before typing
    page.keyboard.type(OPERATOR)
    page.keyboard.press("Tab")
    expect(password).to_be_focused()
    page.keyboard.type(PASSWORDS[OPERATOR])
    expect(username).to_have_value(OPERATOR)
    expect(password).to_have_value(PASSWORDS[OPERATOR])
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Overview", timeout=NAVIGATION_MS)


def pages_of(console: dict[str, str]) -> dict[str, str]:
    paths = {
        "overview": "/console/",
        "subscriptions": "/console/subscriptions",
        "subscription": f"/console/subscriptions/{console['subscription']}",
        "catalogue": "/console/event-types",
        "not-found": "/console/no-such-page",
    }
    if console["slug"]:
        paths["event-type"] = f"/console/event-types/{console['slug']}"
    return paths


def test_every_console_page_meets_wcag_21_aa_and_is_kept_as_a_screenshot(console: dict[str, str], page: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    axe = Axe()
    base = console["base"]
    found: dict[str, list[Any]] = {}
    # What the browser reports: a script or style the CSP blocked, a resource that failed to load.
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/console/sign-in")
    found["sign-in"] = _violations(axe, page)
    page.screenshot(path=str(ARTIFACTS / "sign-in.png"), full_page=True)
    sign_in_by_keyboard(page, base)
    for name, path in pages_of(console).items():
        page.goto(base + path)
        found[name] = _violations(axe, page)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.goto(f"{base}/console/")
    assert page.evaluate("typeof htmx") == "object"  # the vendored script runs under the CSP
    # The 404 page's own answer is the one error a browser logs ("Failed to load resource: … 404").
    assert [e for e in errors if "404" not in e] == []
    # The check itself can fail: a page with an unlabelled field and an image without text is caught.
    page.set_content('<html lang="en"><title>t</title><main><input type="text"><img src="x.png"></main></html>')
    assert {"label", "image-alt"} <= {v[0] for v in _violations(axe, page)}
    serious = {name: [v for v in found[name] if v[1] in ("serious", "critical")] for name in found}
    assert serious == {name: [] for name in found}
    # Minor and moderate findings are not allowed to creep in either (there are none today).
    assert found == {name: [] for name in found}


def _violations(axe: Any, page: Any) -> list[Any]:
    result = axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in result.response["violations"]]


def test_the_keyboard_reaches_the_skip_link_first_and_the_focus_is_visible(console: dict[str, str], page: Any) -> None:
    from playwright.sync_api import expect

    base = console["base"]
    sign_in_by_keyboard(page, base)
    for path in pages_of(console).values():
        page.goto(base + path)
        expect(page.locator("h1")).to_be_visible(timeout=NAVIGATION_MS)
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press("Tab")
        skip = page.locator("a.skip-link")
        expect(skip).to_be_focused()
        expect(skip).to_have_text("Skip to main content")
        # Visible focus: on screen and outlined (it is off screen until focused).
        box = skip.bounding_box()
        assert box is not None and box["y"] >= 0, path
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid", path
        page.keyboard.press("Enter")
        expect(page.locator("main#main")).to_be_focused()
        # Landmarks: one banner, one navigation, one main, one contentinfo, one h1.
        for role in ("banner", "navigation", "main", "contentinfo"):
            assert page.get_by_role(role).count() == 1, (path, role)
        assert page.locator("h1").count() == 1, path
        # The next Tab goes into the content, past the navigation.
        page.keyboard.press("Tab")
        assert page.evaluate("document.querySelector('main').contains(document.activeElement)"), path


def test_pages_reflow_at_320_px_and_at_200_percent_zoom(console: dict[str, str], browser: Any) -> None:
    """320 CSS px wide (WCAG 1.4.10), and 200 % zoom as a browser zooms a 1280 px window: the layout
    viewport becomes 640 CSS px and every CSS px two device pixels (device_scale_factor 2)."""
    base = console["base"]
    for label, viewport, scale in (
        ("320px", {"width": 320, "height": 640}, 1),
        ("zoom-200", {"width": 640, "height": 400}, 2),
    ):
        context = browser.new_context(viewport=viewport, device_scale_factor=scale)
        page = context.new_page()
        page.goto(f"{base}/console/sign-in")
        assert _fits(page), (label, "sign-in")
        sign_in_by_keyboard(page, base)
        for name, path in pages_of(console).items():
            page.goto(base + path)
            assert _fits(page), (label, name)
            # Nothing is cut off: every control of the page lies within the viewport's width.
            overflowing = page.evaluate(
                """() => [...document.querySelectorAll('a, button, input, label, h1, h2, p')]
                     .filter(e => !e.closest('.table-scroll, pre'))
                     .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                     .map(e => e.outerHTML.slice(0, 80))"""
            )
            assert overflowing == [], (label, name, overflowing)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
        context.close()


def _fits(page: Any) -> bool:
    return bool(page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth"))


def test_an_operator_pauses_and_resumes_a_subscription_in_the_browser(
    console: dict[str, str], page: Any, database_url: str
) -> None:
    from playwright.sync_api import expect

    base = console["base"]
    sign_in_by_keyboard(page, base)
    page.get_by_role("link", name="Subscriptions").click()
    page.locator(f'a[href="/console/subscriptions/{console["subscription"]}"]').click()
    page.get_by_label("Reason for the pause").fill("planned maintenance")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_have_text(
        "The subscription is paused: its deliveries wait.", timeout=NAVIGATION_MS
    )
    expect(page.locator("table")).to_contain_text("pause")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT status FROM outbox.subscriptions").fetchone() == ("paused",)
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text(
        "The subscription is active again: its deliveries go out in order.", timeout=NAVIGATION_MS
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT status FROM outbox.subscriptions").fetchone() == ("active",)
        audit = conn.execute("SELECT operator, action FROM outbox.console_audit ORDER BY id").fetchall()
    assert audit == [(OPERATOR, "pause"), (OPERATOR, "resume")]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "subscription-after-resume.png"), full_page=True)
