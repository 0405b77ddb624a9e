"""deploy/prometheus/outbox-alerts.yaml: valid for Prometheus (`promtool check rules`), each alert unit-tested
firing and not firing (`promtool test rules` on outbox-alerts.test.yaml), and each with what an operator
needs: a `for`, a severity, a summary, a description and a runbook link to a heading of docs/operate/alerts.md.

promtool comes from Debian's `prometheus` package (.ci/run installs it). Without it these tests fail rather
than skip: untested alert rules are what this file is here to prevent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "outbox-alerts.yaml"
RULE_TESTS = PROMETHEUS / "outbox-alerts.test.yaml"
RUNBOOK = ROOT / "docs" / "operate" / "alerts.md"
SEVERITIES = {"critical", "warning"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: it comes from Debian's prometheus package (apt-get install prometheus)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False)


def alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown file (lower case, punctuation dropped, spaces to -)."""
    found = set()
    for line in markdown.splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            found.add(re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-"))
    return found


def test_promtool_checks_the_rules() -> None:
    checked = run("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    tested = run("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_example_prometheus_configuration_is_valid() -> None:
    checked = run("check", "config", "prometheus.example.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text())
    assert document["rule_files"] == [RULES.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in document["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "never seen firing"
    assert names - quiet == set(), "never seen quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_each_alert_says_how_bad_what_and_where_to_read_on(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Outbox[A-Z]\w+", rule["alert"])
    assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), "a for: keeps a blip from paging"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["summary"].strip() and annotations["description"].strip()
    page, _, anchor = annotations["runbook_url"].partition("#")
    assert page == "docs/operate/alerts.md"
    assert anchor == rule["alert"].lower()
    assert anchor in anchors(RUNBOOK.read_text()), f"docs/operate/alerts.md has no heading {rule['alert']}"


def test_the_runbook_covers_exactly_the_alerts() -> None:
    documented = {a for a in anchors(RUNBOOK.read_text()) if a.startswith("outbox")}
    assert documented == {rule["alert"].lower() for rule in alerts()}
