"""What every browser test shares: the system's Chromium (.ci/run installs Debian's; without it only
the browser tests are skipped, with one line), how it is launched, and the axe-core rule sets."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs Debian's chromium)")

# Headless, and quiet on a closed network (no background connections that would be refused).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's default for navigations; a loaded 2-CPU machine can outlast its 5 s default for `expect`.
NAVIGATION_MS = 30_000
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
