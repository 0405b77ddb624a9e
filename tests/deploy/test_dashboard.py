"""deploy/grafana/outbox-dashboard.json: a Grafana dashboard whose every query reads metrics that exist.

The dashboard's structure is checked as Grafana needs it (unique panel ids, a grid position within 24
columns, a data source and queries on every panel, the template variables). Then a real `outbox run
--metrics-port` delivers to a receiver that takes the events and one that answers 503 (so the labelled
series exist: outcomes, durations, concurrency limits and cuts), and every metric name in the dashboard's
queries and in the alert rules (deploy/prometheus/outbox-alerts.yaml) must be on its /metrics (the consumers'
alerts: on a real `outbox serve`'s), with HELP and TYPE, and every label they match on must be one of its labels.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.promql import SYNTHETIC, families, matchers, metric_names, sample_index
from tests.support import Receiver, WorkerFactory, enqueue, free_port, subscribe, wait_until, zaak_event

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "outbox-dashboard.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
RULES = ROOT / "deploy" / "prometheus" / "outbox-alerts.yaml"
# Labels Prometheus adds to every scraped series (and Grafana's histogram_quantile groups by le).
TARGET_LABELS = {"job", "instance"}


def dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text())
    assert isinstance(document, dict)
    return document


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel."""
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p["targets"]]


def variable_queries() -> list[tuple[str, str]]:
    """(variable, the metric selector of its label_values(selector, label))."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        text = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text)
        assert match, f"variable {variable['name']}: {text}"
        found.append((variable["name"], match.group(1)))
    return found


def rule_queries() -> list[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text())
    return [(r.get("alert") or r["record"], r["expr"]) for g in document["groups"] for r in g["rules"]]


# -- structure ---------------------------------------------------------------------------------------


def test_the_dashboard_is_what_grafana_provisions() -> None:
    board = dashboard()
    assert board["uid"] == "nlgov-outbox" and board["title"] and board["schemaVersion"] >= 36
    assert "id" not in board or board["id"] is None  # provisioned: Grafana gives the id
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("job", "subscription"):
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


def test_every_panel_has_an_id_a_place_a_data_source_and_queries() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in panels:
        assert p["type"] in ("timeseries", "stat"), p["title"]
        assert p["title"] and p["description"]
        grid = p["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"} and grid["w"] > 0 and grid["h"] > 0, p["title"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["expr"].strip(), p["title"]
        assert "unit" in p["fieldConfig"]["defaults"], p["title"]


def test_the_provisioning_files_point_at_the_dashboard() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "outbox.yaml").read_text())
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"]
    source = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.example.yaml").read_text())
    (prometheus,) = source["datasources"]
    assert prometheus["type"] == "prometheus" and prometheus["url"].startswith("http")


def test_the_metric_names_of_the_queries_are_found() -> None:
    """The extraction itself, on the kinds of expression used: so the test below cannot pass by finding nothing."""
    queries = dict(panel_queries())
    assert metric_names(queries["HTTP attempt duration (p50, p90, p99)"]) == {"outbox_attempt_duration_seconds_bucket"}
    assert metric_names(queries["Workers up"]) == {"up"}
    names = set().union(*(metric_names(e) for _, e in panel_queries() + rule_queries()))
    assert len(names) >= 12
    assert not names & {"by", "le", "subscription", "outcome", "rate", "sum", "histogram_quantile", "job"}


# -- against a real worker -------------------------------------------------------------------------------


@pytest.fixture
def exposed(start_worker: WorkerFactory, database_url: str) -> str:
    """/metrics of a worker that delivered to one receiver and was refused with 503 by another."""
    with Receiver().running() as fine, Receiver(answer=lambda n, r: (503, {}, 0.0)).running() as failing:
        good = subscribe(database_url, fine.url)
        bad = subscribe(database_url, failing.url)
        port = free_port()
        worker = start_worker({"OUTBOX_RETRY_MAX_ATTEMPTS": "2"}, "--metrics-port", str(port))
        worker.wait_logged("metrics server started")
        enqueue(database_url, [zaak_event(f"zaak-{n}", n) for n in range(6)])
        wanted = [
            f'outbox_deliveries_total{{outcome="delivered",subscription="{good}"}}',
            f'outbox_deliveries_total{{outcome="failed",subscription="{bad}"}}',
            f'outbox_subscription_concurrency_limit{{subscription="{good}"}}',
            f'outbox_subscription_concurrency_cuts_total{{reason="503",subscription="{bad}"}}',
            'outbox_attempt_duration_seconds_bucket{le="+Inf",subscription=',
            'outbox_partitions_ahead_seconds{table="events"}',
        ]

        def body() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            lines = text.splitlines()
            counted = all(any(line.startswith(w) and not line.endswith(" 0.0") for line in lines) for w in wanted[:2])
            return text if counted and all(any(line.startswith(w) for line in lines) for w in wanted) else None

        worker_metrics: str = wait_until(body, timeout=60, message="the labelled series on /metrics")
    return worker_metrics + _serve_metrics(database_url)


def _serve_metrics(database_url: str) -> str:
    """/metrics of an `outbox serve` (OUTBOX_SERVE_METRICS_PORT) whose consumer took one request in and
    refused one: the outbox-consumers alerts read these."""
    import psycopg

    from outbox._catalogue import EventType
    from tests.service.live import running
    from worker.store import catalogue as catalogue_store
    from worker.store import consumers as consumer_store
    from worker.store.secret_box import SecretBox

    token = "dashboard-test-token-0123456789"
    with psycopg.connect(database_url, autocommit=True) as conn:
        catalogue_store.add(conn, "outbox", EventType(slug="x", type="nl.example.x", name="x"))
        definition = {"name": "psp", "endpoint": "psp", "targetType": "event-type", "targetId": "x",
                      "verification": {"method": "bearer", "tokens": [token]}}  # fmt: skip
        consumer_store.add(conn, "outbox", definition, SecretBox())
    port = free_port()
    with running(database_url, serve_metrics_port=port) as service:
        event = {"specversion": "1.0", "id": "1", "source": "urn:x", "type": "nl.example.x"}
        for given in (token, "not-the-token"):
            service.anonymous.post("/hooks/psp", json=event, headers={"Authorization": f"Bearer {given}"})
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'outcome="accepted"' in text and 'outcome="unauthorized"' in text
    return text


def test_every_metric_the_dashboard_and_the_alerts_use_is_exported(exposed: str) -> None:
    exposition = families(exposed)
    samples = sample_index(exposition)
    queries = [("panel " + t, e) for t, e in panel_queries()]
    queries += [("variable " + v, e) for v, e in variable_queries()]
    queries += [("alert " + a, e) for a, e in rule_queries()]
    problems = []
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr}"
        for name in names - SYNTHETIC:
            family = samples.get(name)
            if family is None:
                problems.append(f"{where}: {name} is not on /metrics")
                continue
            if not (family.help and family.type):
                problems.append(f"{where}: {name} has no HELP or TYPE")
            labels = matchers(expr).get(name, set()) - TARGET_LABELS
            if labels - family.samples.get(name, set()):
                problems.append(f"{where}: {name} has no label {sorted(labels - family.samples.get(name, set()))}")
    assert not problems, "\n".join(problems)


def test_a_counter_is_read_with_rate_or_increase_and_a_gauge_never(exposed: str) -> None:
    samples = sample_index(families(exposed))
    for where, expr in panel_queries() + rule_queries():
        for name in metric_names(expr) - SYNTHETIC:
            family = samples[name]
            counted = re.search(rf"\b(?:rate|increase|irate)\(\s*{name}\b", expr) is not None
            assert counted == (family.type in ("counter", "histogram")), f"{where}: {name} ({family.type}) in {expr}"


# -- the queries as PromQL, and the picture's renderer -----------------------------------------------------

VARIABLES = {"$__rate_interval": "5m", "$job": ".*", "$subscription": ".*"}


def substituted(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable the dashboard does not define: {expr}"
    return expr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query, its variables replaced as Grafana would, as a recording rule: `promtool check rules`
    parses it (promtool: Debian's prometheus package, as for tests/deploy/test_alerts.py)."""
    from tests.deploy.test_alerts import promtool

    rules = [
        {"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": substituted(t["expr"])}
        for p in dashboard()["panels"]
        for t in p["targets"]
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_the_renderer_draws_every_panel() -> None:
    """docs/tools/render_dashboard.py's drawing, on made-up series (the load itself takes minutes)."""
    spec = importlib.util.spec_from_file_location("render_dashboard", ROOT / "docs" / "tools" / "render_dashboard.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    board = dashboard()
    series = [("a · 12345678", [(1000.0 + 2 * i, float(i % 7)) for i in range(60)]), ("b", [(1000.0, math.nan)])]
    document = render.page(board, {p["id"]: series for p in board["panels"]}, "now")
    for p in board["panels"]:
        assert f"<h2>{p['title']}</h2>" in document
    assert "not by Grafana" in document
    assert render.format_value(90, "s") == "1.5 min" and render.format_value(0.25, "s") == "250 ms"
    assert (
        render.legend("{{subscription}}", {"subscription": "abcdef0123"}, {"abcdef0123": "fast"}) == "fast · abcdef01"
    )
