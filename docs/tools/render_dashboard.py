"""Render deploy/grafana/outbox-dashboard.json to a PNG (docs/operate/dashboard.png) without Grafana.

Grafana cannot be installed here (it is in neither Debian nor PyPI nor npm), so this draws the dashboard
itself, from the dashboard's own queries:

1. a short load: a fresh database (on OUTBOX_TEST_DATABASE_URL's server, else an embedded pgserver), two
   `outbox run --metrics-port` workers, receivers that answer fast, slowly, with 503 for a while (a
   subscriber in trouble) and with 410 (a retired subscription, paused), and events enqueued at a varying rate;
2. Debian's `prometheus` binary (package prometheus) on a free port, scraping both workers every second into
   a temporary data folder;
3. every panel's queries evaluated with /api/v1/query_range over the load ($job and $subscription: All,
   $__rate_interval: 10s, four scrapes plus a margin);
4. the panels drawn at their gridPos (24 columns, 30 px rows as Grafana's grid) as SVG in an HTML page, with
   their titles, units and legends, and the page screenshotted by headless Chromium (playwright, a dev
   dependency, with the system's chromium).

Run from the repository root: `.venv/bin/python docs/tools/render_dashboard.py [--seconds 150]`. The legends
name the load's subscriptions (fast, slow, flaky, gone) with the start of their id, where Grafana would show
the id. Everything else is what the queries returned.
"""

# ruff: noqa: S311, S603  (the load's random answer times; the subprocesses are this repository's own commands)
from __future__ import annotations

import argparse
import contextlib
import html
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import conninfo  # noqa: E402

from tests.support import Receiver, WorkerProcess, enqueue, free_port, subscribe, zaak_event  # noqa: E402

DASHBOARD = ROOT / "deploy" / "grafana" / "outbox-dashboard.json"
OUT = ROOT / "docs" / "operate" / "dashboard.png"
WIDTH = 1600  # px of the page; Grafana's grid: 24 columns, rows of 30 px, 8 px between panels
ROW = 30
GAP = 8
STEP = 2  # seconds between the points of a range query
RATE_INTERVAL = "10s"
LEGEND_ITEM = 250  # px per legend entry
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0", "#37872d"]
COLOURS = {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c", "yellow": "#fade2a"}


# -- the load ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def database_server() -> Iterator[str]:
    explicit = os.environ.get("OUTBOX_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        folder = tempfile.mkdtemp(prefix="outbox-render-pg-")
        server = pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    name = f"outbox_render_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = conninfo.make_conninfo(server, dbname=name)
    try:
        subprocess.run(
            [sys.executable, "-m", "worker", "--database-url", url, "migrate"], check=True, capture_output=True
        )
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Phase:
    """Where the load is, 0 to 1, for receivers that change their answers over it."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.seconds = seconds

    def __call__(self) -> float:
        return (time.monotonic() - self.started) / self.seconds


def receivers(phase: Phase) -> dict[str, Receiver]:
    def fast(n: int, r: Any) -> tuple[int, dict[str, str], float]:
        return 204, {}, random.uniform(0.003, 0.03)

    def slow(n: int, r: Any) -> tuple[int, dict[str, str], float]:
        return 204, {}, random.uniform(0.12, 0.18)

    def flaky(n: int, r: Any) -> tuple[int, dict[str, str], float]:  # in trouble from 35% to 70% of the load
        return (503, {}, 0.01) if 0.35 < phase() < 0.7 else (204, {}, random.uniform(0.01, 0.06))

    def gone(n: int, r: Any) -> tuple[int, dict[str, str], float]:
        return (410, {}, 0.005) if phase() > 0.5 else (204, {}, 0.01)

    return {"fast": Receiver(fast), "slow": Receiver(slow), "flaky": Receiver(flaky), "gone": Receiver(gone)}


def produce(database_url: str, phase: Phase, stop: threading.Event) -> None:
    """Events at 20-80 a second, rising and falling, in small transactions."""
    n = 0
    while not stop.is_set() and phase() < 1:
        rate = 50 + 30 * math.sin(2 * math.pi * phase() * 1.5)
        batch = max(1, round(rate / 4))
        enqueue(database_url, [zaak_event(f"zaak-{(n + i) % 97}", n + i) for i in range(batch)])
        n += batch
        time.sleep(0.25)


# -- Prometheus ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def prometheus(targets: list[str], folder: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is not installed: it comes from Debian's prometheus package")
    config = folder / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "outbox-worker", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"prometheus did not start: {(folder / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def query_range(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$job", ".*").replace("$subscription", ".*")
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": STEP})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=30) as answer:  # noqa: S310
        document = json.load(answer)
    if document["status"] != "success":
        raise SystemExit(f"{expr}: {document}")
    result: list[dict[str, Any]] = document["data"]["result"]
    return result


# -- drawing ---------------------------------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "–"
    if unit == "s":
        if value < 0:
            return "-" + format_value(-value, unit)
        for size, name in ((86400, "day"), (3600, "hour"), (60, "min")):
            if value >= size:
                amount = value / size
                return f"{amount:.1f} {name}{'s' if name != 'min' and amount >= 2 else ''}"
        if value >= 10:
            return f"{value:.0f} s"
        if value >= 1:
            return f"{value:.1f} s"
        if value == 0:
            return "0 s"
        return f"{value * 1000:.0f} ms" if value >= 0.001 else f"{value * 1e6:.0f} µs"
    suffix = " ops/s" if unit == "ops" else ""
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k{suffix}"
    text = (
        f"{value:.0f}"
        if value == int(value) or abs(value) >= 100
        else f"{value:.1f}"
        if abs(value) >= 10
        else f"{value:.2f}"
    )
    return text + suffix


def legend(template: str, labels: dict[str, str], names: dict[str, str]) -> str:
    def value(key: str) -> str:
        text = labels.get(key, "")
        return f"{names[text]} · {text[:8]}" if text in names else text

    out = template
    for key in labels:
        out = out.replace("{{" + key + "}}", value(key))
    return out.replace("{{instance}}", "").strip() or template


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 2) if first + i * step <= high + step * 0.999]


def timeseries(panel: dict[str, Any], series: list[tuple[str, list[tuple[float, float]]]], w: int, h: int) -> str:
    unit = panel["fieldConfig"]["defaults"].get("unit", "none")
    per_row = max(1, (w - 20) // LEGEND_ITEM)
    legend_rows = max(1, math.ceil(len(series) / per_row))
    top = 8
    plot_h = h - 32 - top - 22 - 17 * legend_rows - 4  # title, margin, time labels, legend
    left, plot_w = 70, w - 84
    values = [v for _, points in series for _, v in points if not math.isnan(v)]
    times = [t for _, points in series for t, _ in points]
    low = min([0.0, *values]) if values else 0.0
    high = max(values) if values else 1.0
    high = panel["fieldConfig"]["defaults"].get("max", high * 1.1 if high > 0 else 1.0)
    ticks = nice_ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    t0, t1 = (min(times), max(times)) if times else (0.0, 1.0)
    span = max(t1 - t0, 1)

    def x(t: float) -> float:
        return left + (t - t0) / span * plot_w

    def y(v: float) -> float:
        return top + plot_h - (v - low) / (high - low) * plot_h

    parts = []
    for tick in ticks:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" class="axis" text-anchor="end">'
            f"{format_value(tick, unit)}</text>"
        )
    every = 30 if span <= 240 else 60
    for t in range(int(math.ceil(t0 / every) * every), int(t1 - span * 0.04) + 1, every):  # none at the edge
        label = datetime.fromtimestamp(t).strftime("%H:%M:%S")
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + plot_h}" class="grid"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{top + plot_h + 15}" class="axis" text-anchor="middle">{label}</text>')
    for i, (_, points) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for t, v in points:
            if math.isnan(v):
                runs.append([])
            else:
                runs[-1].append(f"{x(t):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2"/>')
    items = []
    for i, (name, _) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        items.append(f'<span class="item"><i style="background:{colour}"></i>{html.escape(name)}</span>')
    svg = f'<svg width="{w - 8}" height="{top + plot_h + 20}">{"".join(parts)}</svg>'
    return svg + f'<div class="legend">{"".join(items) or "<span class=item>no data</span>"}</div>'


def stat(panel: dict[str, Any], series: list[tuple[str, list[tuple[float, float]]]], w: int, h: int) -> str:
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "none")
    points = [p for p in (series[0][1] if series else []) if not math.isnan(p[1])]
    if not points:
        return '<div class="stat" style="color:#ccc">No data</div>'
    last = points[-1][1]
    text = format_value(last, unit)
    for mapping in defaults.get("mappings", []):
        mapped = mapping.get("options", {}).get(format_value(last, "none"))
        if mapped:
            text = mapped["text"]
    colour = "#ccccdc"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or last >= step["value"]:
            colour = COLOURS.get(step["color"], step["color"])
    values = [v for _, v in points]
    low, high = min(values), max(values)
    t0, t1 = points[0][0], max(points[-1][0], points[0][0] + 1)
    spark = " ".join(
        f"{(t - t0) / (t1 - t0) * (w - 8):.1f},{h - 40 - ((v - low) / (high - low or 1)) * (h - 80):.1f}"
        for t, v in points
    )
    return (
        f'<svg class="spark" width="{w - 8}" height="{h - 34}"><polyline points="{spark}" fill="none" '
        f'stroke="{colour}" stroke-opacity="0.35" stroke-width="2"/></svg>'
        f'<div class="stat" style="color:{colour}">{html.escape(text)}</div>'
    )


def page(board: dict[str, Any], results: dict[int, list[tuple[str, list[tuple[float, float]]]]], when: str) -> str:
    column = WIDTH / 24
    boxes = []
    bottom = 0
    for panel in board["panels"]:
        grid = panel["gridPos"]
        left, top = grid["x"] * column + GAP / 2, grid["y"] * (ROW + GAP) + 56
        w, h = grid["w"] * column - GAP, grid["h"] * (ROW + GAP) - GAP
        bottom = max(bottom, top + h)
        draw = timeseries if panel["type"] == "timeseries" else stat
        boxes.append(
            f'<section style="left:{left:.0f}px;top:{top:.0f}px;width:{w:.0f}px;height:{h:.0f}px">'
            f"<h2>{html.escape(panel['title'])}</h2>{draw(panel, results[panel['id']], int(w), int(h))}</section>"
        )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin:0; background:#111217; color:#ccccdc; font:13px/1.3 "DejaVu Sans", Arial, sans-serif; }}
header {{ position:absolute; left:8px; top:10px; right:8px; font-size:18px; color:#fff }}
header small {{ font-size:12px; color:#8e8e99; margin-left:12px }}
section {{ position:absolute; background:#181b1f; border:1px solid #2c3235; border-radius:3px; overflow:hidden }}
h2 {{ margin:0; padding:7px 10px; font-size:13px; font-weight:600; color:#fff }}
.grid {{ stroke:#2c3235; stroke-width:1 }} .axis {{ fill:#8e8e99; font-size:11px }}
.legend {{ padding:0 10px; font-size:12px }}
.item {{ display:inline-block; width:{LEGEND_ITEM - 4}px; white-space:nowrap; overflow:hidden }}
.item i {{ display:inline-block; width:14px; height:4px; margin:0 6px 3px 0; vertical-align:middle }}
.stat {{ position:absolute; left:0; right:0; bottom:18px; text-align:center; font-size:34px; font-weight:500 }}
.spark {{ position:absolute; left:4px; top:30px }}
</style></head><body style="width:{WIDTH}px;height:{bottom + 8:.0f}px">
<header>{html.escape(board["title"])} <small>rendered by docs/tools/render_dashboard.py from the dashboard's
queries on Prometheus, not by Grafana · job: All · subscription: All · {when}</small></header>
{"".join(boxes)}</body></html>"""


def screenshot(document: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    if CHROMIUM is None:
        raise SystemExit("chromium is not installed (Debian's chromium package)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        view = browser.new_page(viewport={"width": WIDTH, "height": 800}, device_scale_factor=1)
        view.set_content(document)
        view.screenshot(path=str(out), full_page=True)
        browser.close()


# -- all together ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150, help="how long the load runs")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--html", type=Path, help="also write the HTML page here")
    options = parser.parse_args()
    board = json.loads(DASHBOARD.read_text())
    random.seed(21)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="outbox-render-")))
        database_url = stack.enter_context(fresh_database(stack.enter_context(database_server())))
        phase = Phase(options.seconds)
        names = {}
        for name, receiver in receivers(phase).items():
            stack.enter_context(receiver.running())
            names[subscribe(database_url, receiver.url)] = name
        ports = [free_port(), free_port()]
        env = {"OUTBOX_RETRY_MAX_ATTEMPTS": "5", "OUTBOX_RETRY_MAX_DELAY": "2", "OUTBOX_PARTITION_INTERVAL": "1d"}
        workers = [
            WorkerProcess(database_url, folder / f"worker-{i}.log", env, "--metrics-port", str(port))
            for i, port in enumerate(ports)
        ]
        for worker in workers:
            stack.callback(worker.stop_quietly)
            worker.wait_logged("metrics server started")
        url = stack.enter_context(prometheus([f"127.0.0.1:{port}" for port in ports], folder))
        start = time.time()
        phase.started = time.monotonic()
        stop = threading.Event()
        producer = threading.Thread(target=produce, args=(database_url, phase, stop), daemon=True)
        producer.start()
        print(f"load for {options.seconds:.0f} s …", flush=True)
        producer.join(options.seconds + 30)
        stop.set()
        time.sleep(8)
        end = time.time()
        results = {}
        for panel in board["panels"]:
            series = []
            for target in panel["targets"]:
                for result in query_range(url, target["expr"], start, end):
                    points = [(float(t), float(v)) for t, v in result["values"]]
                    series.append((legend(target.get("legendFormat", ""), result["metric"], names), points))
            results[panel["id"]] = series
        document = page(board, results, datetime.fromtimestamp(end).strftime("%Y-%m-%d %H:%M"))
        if options.html:
            options.html.write_text(document)
        screenshot(document, options.out)
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
