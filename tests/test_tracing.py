"""Traces (OpenTelemetry): the Distributed Tracing extension on events, the host's span at enqueue, and
`outbox run` / `outbox serve` exporting their spans over OTLP/HTTP to a real receiver on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import outbox
from outbox import CloudEvent, InvalidEventError
from outbox._event import event_problems
from tests.service.live import token
from tests.support import Receiver, WorkerFactory, free_port, subscribe, wait_until, zaak_event
from worker.service.intake import parse

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STRUCTURED = "application/cloudevents+json"


# -- an OTLP/HTTP trace receiver ---------------------------------------------------------------------


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    service: str
    status: int  # 0 unset, 1 ok, 2 error


@dataclass
class Collector:
    """POST /v1/traces (application/x-protobuf, gzip or not) → the spans, decoded with opentelemetry-proto."""

    spans: list[Span] = field(default_factory=list)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def named(self, name: str) -> list[Span]:
        return [s for s in list(self.spans) if s.name == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 20) -> list[Span]:
        return wait_until(lambda: len(self.named(name)) >= count and self.named(name), timeout, f"{count} {name!r}")

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            service = ""
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    service = attribute.value.string_value
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    attributes = {}
                    for a in s.attributes:
                        kind = a.value.WhichOneof("value")
                        attributes[a.key] = getattr(a.value, kind) if kind else None
                    self.spans.append(
                        Span(s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.kind, attributes,
                             [(link.trace_id.hex(), link.span_id.hex()) for link in s.links], service,
                             s.status.code)
                    )  # fmt: skip

    @classmethod
    def running(cls) -> Iterator[Collector]:
        collector = cls()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
                if ok:
                    collector.take(body)
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        collector.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield collector
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    yield from Collector.running()


def otel_env(collector: Collector, **extra: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **extra,
    }


def stored_events(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT event FROM outbox.events ORDER BY position")]


# -- the extension on CloudEvent ---------------------------------------------------------------------


def test_the_distributed_tracing_attributes_are_checked_by_name() -> None:
    event = CloudEvent(type="a.b", source="urn:x", traceparent=TRACEPARENT, tracestate="congo=t61rcWkgMzE,rojo=00f0")
    assert CloudEvent.from_json(event.to_json()) == event
    for bad in (
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ):
        with pytest.raises(InvalidEventError) as refused:
            CloudEvent(type="a.b", source="urn:x", traceparent=bad)
        assert refused.value.attribute == "traceparent"
    with pytest.raises(InvalidEventError, match="tracestate"):
        CloudEvent(type="a.b", source="urn:x", traceparent=TRACEPARENT, tracestate="Not Valid")
    with pytest.raises(InvalidEventError, match="tracestate: is only allowed together with traceparent"):
        CloudEvent.from_dict({"specversion": "1.0", "id": "1", "source": "x", "type": "t", "tracestate": "a=b"})
    with pytest.raises(InvalidEventError, match="traceparent: must be a string"):
        CloudEvent(type="a.b", source="urn:x", traceparent=1)
    # A later version may add fields.
    CloudEvent(type="a.b", source="urn:x", traceparent="01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-ab")
    faults = event_problems({"specversion": "1.0", "id": "1", "source": "x", "type": "t", "traceparent": "x",
                             "tracestate": "ok=1"})  # fmt: skip
    assert [f.attribute for f in faults] == ["traceparent"]


# -- the host library --------------------------------------------------------------------------------


def test_no_active_span_no_attribute(conn: psycopg.Connection[Any], database_url: str) -> None:
    outbox.enqueue(conn, zaak_event("s1"))
    outbox.enqueue_many(conn, [zaak_event("s2")])
    conn.commit()
    assert all("traceparent" not in e and "tracestate" not in e for e in stored_events(database_url))


def test_a_propagated_context_without_an_sdk_is_carried_as_it_is(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    state = trace.TraceState([("rojo", "00f067aa0ba902b7")])
    context = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1), state)
    with trace.use_span(NonRecordingSpan(context)):
        outbox.enqueue(conn, zaak_event("s1"))
    own = "00-11111111111111111111111111111111-2222222222222222-00"
    with trace.use_span(NonRecordingSpan(context)):
        outbox.enqueue(conn, zaak_event("s2", traceparent=own))  # the event's own wins
    conn.commit()
    first, second = stored_events(database_url)
    assert first["traceparent"] == TRACEPARENT
    assert first["tracestate"] == "rojo=00f067aa0ba902b7"
    assert second["traceparent"] == own
    assert "tracestate" not in second


async def test_the_async_entry_points_carry_the_context_too(
    aconn: psycopg.AsyncConnection[Any], database_url: str
) -> None:
    context = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        await outbox.enqueue_async(aconn, zaak_event("a1"))
        await outbox.enqueue_many_async(aconn, [zaak_event("a2"), zaak_event("a3")])
    await outbox.enqueue_async(aconn, zaak_event("a4"))
    await aconn.commit()
    assert [e.get("traceparent") for e in stored_events(database_url)] == [TRACEPARENT] * 3 + [None]


HOST = """
import json, sys, psycopg, outbox
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

provider = TracerProvider(resource=Resource({"service.name": "host"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[2] + "/v1/traces")))
trace.set_tracer_provider(provider)
event = outbox.CloudEvent(type="nl.overheid.zaken.zaak-gekoppeld", source="urn:nld:oin:01823288444:openklant",
                          subject="traced", data={"n": 1})
with psycopg.connect(sys.argv[1]) as conn:
    with trace.get_tracer("host").start_as_current_span("host request") as span:
        outbox.enqueue(conn, event)
        if len(sys.argv) > 3:
            try:
                outbox.enqueue(conn, outbox.CloudEvent(type="x.y", source="urn:x"), max_event_bytes=10)
            except outbox.InvalidEventError:
                pass
    conn.commit()
context = span.get_span_context()
print(json.dumps({"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}))
provider.shutdown()
"""


def run_host(database_url: str, collector: Collector, *extra: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", HOST, database_url, collector.endpoint, *extra],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_host_span_at_enqueue_goes_through_claim_and_delivery_in_one_trace(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory, collector: Collector
) -> None:
    subscribe(database_url, receiver.url)
    worker = start_worker(otel_env(collector, OTEL_SERVICE_NAME="worker-under-test"))
    worker.wait_logged("worker started")
    host = run_host(database_url, collector, "and a failing one")
    (enqueue_span,) = [s for s in collector.wait_for("outbox enqueue", 2) if s.attributes.get(
        "cloudevents.event_subject") == "traced"]  # fmt: skip
    assert enqueue_span.trace_id == host["trace_id"]
    assert enqueue_span.parent_span_id == host["span_id"]
    assert enqueue_span.kind == 4  # PRODUCER
    assert enqueue_span.service == "host"
    (stored,) = stored_events(database_url)
    assert stored["traceparent"].startswith(f"00-{host['trace_id']}-{enqueue_span.span_id}-")

    wait_until(lambda: receiver.received, message="the delivery")
    (deliver,) = collector.wait_for("outbox deliver")
    (claim,) = collector.wait_for("outbox claim")
    assert deliver.service == claim.service == "worker-under-test"
    assert deliver.trace_id == claim.trace_id == host["trace_id"]
    assert deliver.parent_span_id == claim.parent_span_id == enqueue_span.span_id
    assert claim.links == [(host["trace_id"], enqueue_span.span_id)]
    assert claim.attributes["outbox.claim.count"] == 1
    assert deliver.kind == 3  # CLIENT
    assert deliver.attributes["http.response.status_code"] == 204
    assert deliver.attributes["outbox.delivery.outcome"] == "delivered"
    assert deliver.attributes["outbox.delivery.attempt"] == 1
    assert deliver.attributes["outbox.subscription.id"]
    assert deliver.attributes["cloudevents.event_subject"] == "traced"
    got = receiver.received[0]
    assert got.headers["traceparent"].startswith(f"00-{host['trace_id']}-{deliver.span_id}-")
    assert got.event["traceparent"] == stored["traceparent"]  # structured mode: the event as stored
    (failed,) = [s for s in collector.named("outbox enqueue") if s is not enqueue_span]
    assert failed.status == 2 and failed.trace_id == host["trace_id"]  # the event was too large
    assert enqueue_span.status == 0
    assert worker.terminate() == 0


def test_an_event_without_a_trace_gains_no_attribute_but_its_delivery_is_a_root_span(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory, collector: Collector
) -> None:
    # A subscription's own traceparent header gives way to the delivery span's.
    subscribe(database_url, receiver.url, content_mode="binary", headers={"Traceparent": TRACEPARENT, "X-Tenant": "u"})
    worker = start_worker(otel_env(collector))
    worker.wait_logged("worker started")
    with psycopg.connect(database_url) as conn:
        outbox.enqueue(conn, zaak_event("plain"))
    wait_until(lambda: receiver.received, message="the delivery")
    (deliver,) = collector.wait_for("outbox deliver")
    assert deliver.parent_span_id == ""
    assert deliver.service == "outbox-run"
    (claim,) = collector.wait_for("outbox claim")
    assert claim.links == [] and claim.parent_span_id == ""
    got = receiver.received[0]
    assert "ce-traceparent" not in got.headers  # binary mode: the event's attributes, and it has none
    assert got.headers["traceparent"].startswith(f"00-{deliver.trace_id}-{deliver.span_id}-")
    assert got.headers.getlist("traceparent") == [got.headers["traceparent"]]
    assert got.headers["x-tenant"] == "u"
    assert "traceparent" not in stored_events(database_url)[0]
    started = time.monotonic()
    assert worker.terminate() == 0
    print(f"terminate with a collector took {time.monotonic() - started:.2f}s")


def test_a_failed_attempt_is_an_error_span_and_the_retry_another(
    database_url: str, start_worker: WorkerFactory, collector: Collector
) -> None:
    answers = iter([500])
    receiver = Receiver(answer=lambda n, r: (next(answers, 204), {}, 0.0))
    with receiver.running():
        subscribe(database_url, receiver.url, content_mode="batched")
        worker = start_worker(otel_env(collector))
        worker.wait_logged("worker started")
        context = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))
        with psycopg.connect(database_url) as conn, trace.use_span(NonRecordingSpan(context)):
            outbox.enqueue(conn, zaak_event("batched"))
        wait_until(lambda: len(receiver.received) >= 2, message="the retry")
        first, second = sorted(
            collector.wait_for("outbox deliver", 2), key=lambda s: s.attributes["outbox.delivery.attempt"]
        )
        assert first.attributes["http.response.status_code"] == 500
        assert first.attributes["outbox.delivery.outcome"] == "retry"
        assert second.attributes["outbox.delivery.outcome"] == "delivered"
        assert second.attributes["outbox.delivery.attempt"] == 2
        assert first.trace_id == second.trace_id == "0af7651916cd43dd8448eb211c80319c"  # one event: its child
        assert first.parent_span_id == "b7ad6b7169203331"
        assert receiver.received[1].headers["traceparent"].split("-")[2] == second.span_id
        assert worker.terminate() == 0


def test_sigterm_exits_0_promptly_when_the_collector_is_unreachable(
    database_url: str, receiver: Receiver, start_worker: WorkerFactory
) -> None:
    subscribe(database_url, receiver.url)
    worker = start_worker({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    worker.wait_logged("worker started")
    with psycopg.connect(database_url) as conn:
        outbox.enqueue(conn, zaak_event("s"))
    wait_until(lambda: receiver.received, message="the delivery")
    started = time.monotonic()
    assert worker.terminate() == 0
    took = time.monotonic() - started
    print(f"terminate took {took:.2f}s")
    assert took < 8


# -- outbox serve --------------------------------------------------------------------------------------


def _serve(database_url: str, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "OUTBOX_DATABASE_URL": database_url, **env}
    environment.pop("OUTBOX_SCHEMA", None)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "serve", "--port", str(port)], env=environment, stdout=out, stderr=out
        )


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_a_producers_traceparent_at_intake_is_the_parent_and_the_delivery_joins(
    run_cli: Any, database_url: str, receiver: Receiver, start_worker: WorkerFactory, collector: Collector,
    tmp_path: Path,
) -> None:  # fmt: skip
    secret = run_cli("clients", "add", "p", "--scope", "notificaties.publiceren").stdout.strip()
    subscribe(database_url, receiver.url)
    port = free_port()
    server = _serve(database_url, port, tmp_path / "serve.log", otel_env(collector))
    worker = start_worker(otel_env(collector))
    try:
        wait_until(lambda: _ready(port), message="outbox serve ready")
        url = f"http://127.0.0.1:{port}/api/v1/cloudevents"
        producer = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        event = {"specversion": "1.0", "id": "e1", "source": "urn:x", "type": "nl.overheid.zaken.zaak-gekoppeld"}
        headers = {"Authorization": f"Bearer {token('p', secret)}", "Content-Type": STRUCTURED}
        answer = httpx.post(url, json=event, headers={**headers, "traceparent": producer, "tracestate": "k=v"})
        assert answer.status_code == 201, answer.text
        (intake,) = collector.wait_for("POST /api/v1/cloudevents")
        assert intake.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert intake.parent_span_id == "00f067aa0ba902b7"
        assert intake.kind == 2  # SERVER
        assert intake.attributes["http.response.status_code"] == 201
        assert intake.service == "outbox-serve"
        (stored,) = stored_events(database_url)
        assert stored["traceparent"].startswith(f"00-{intake.trace_id}-{intake.span_id}-")
        assert stored["tracestate"] == "k=v"
        assert answer.json()["traceparent"] == stored["traceparent"]
        # A retry by the traced producer (a new span of its own) is a replay, not a conflict.
        again = httpx.post(url, json=event, headers={**headers, "traceparent": producer.replace("00f0", "11f0")})
        assert again.status_code == 201, again.text
        # The event's own traceparent wins over the header's; a malformed header is ignored.
        own = {**event, "id": "e2", "traceparent": TRACEPARENT}
        assert httpx.post(url, json=own, headers={**headers, "traceparent": producer}).status_code == 201
        assert (
            httpx.post(url, json={**event, "id": "e3"}, headers={**headers, "traceparent": "junk"}).status_code == 201
        )
        wait_until(lambda: len(receiver.received) >= 3, message="three deliveries")
        delivers = collector.wait_for("outbox deliver", 3)
        by_event = {s.attributes["cloudevents.event_id"]: s for s in delivers}
        assert by_event["e1"].trace_id == intake.trace_id
        assert by_event["e1"].parent_span_id == intake.span_id
        assert by_event["e2"].trace_id == "0af7651916cd43dd8448eb211c80319c"
        e3 = next(e for e in stored_events(database_url) if e["id"] == "e3")
        assert e3["traceparent"].split("-")[1] not in (intake.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736")  # own root
        # FastAPI's own server spans, for the other routes: not for the health probes (worker/service/app.py).
        listing = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/abonnement", headers={"Authorization": headers["Authorization"]}
        )
        assert listing.status_code == 403, listing.text  # a producer's client may not read abonnementen
        assert collector.wait_for("GET /api/v1/abonnement")
        assert collector.named("GET /readyz") == [] and collector.named("GET /healthz") == []
        for got in receiver.received:
            span = by_event[got.event["id"]]
            assert got.headers["traceparent"].startswith(f"00-{span.trace_id}-{span.span_id}-")
    finally:
        server.terminate()
        assert server.wait(15) == 0
        assert worker.terminate() == 0


def test_intake_stamps_events_without_their_own_trace() -> None:
    trace_of = {"traceparent": TRACEPARENT}
    own = "00-11111111111111111111111111111111-2222222222222222-00"
    base = {"specversion": "1.0", "source": "urn:x", "type": "t"}
    batch = json.dumps([{**base, "id": "1"}, {**base, "id": "2", "traceparent": own}]).encode()
    events, _, _ = parse({"content-type": "application/cloudevents-batch+json"}, batch, 10_000, 10, trace_of)
    assert [e.get("traceparent") for e in events] == [TRACEPARENT, own]
    binary = {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "1", "ce-source": "urn:x",
              "ce-type": "t", "ce-traceparent": own}  # fmt: skip
    (event,), _, _ = parse(binary, b"{}", 10_000, 10, trace_of)
    assert event.get("traceparent") == own
    del binary["ce-traceparent"]
    (event,), _, _ = parse(binary, b"{}", 10_000, 10, trace_of)
    assert event.get("traceparent") == TRACEPARENT
    (event,), _, _ = parse(binary, b"{}", 10_000, 10)
    assert event.get("traceparent") is None


# -- off: nothing imported, nothing added ----------------------------------------------------------------

PROBE = """
import atexit, os, signal, sys, threading
def report():
    sdk = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter")))
    print("SDK:" + ",".join(sdk), file=sys.stderr)
atexit.register(report)
threading.Timer(float(sys.argv[2]), os.kill, (os.getpid(), signal.SIGTERM)).start()
from worker.cli import main
sys.argv = ["outbox", *sys.argv[1].split()]
main()
"""


@pytest.mark.parametrize("command", ["run", "serve --port 0"])
def test_without_otel_variables_no_sdk_is_imported(database_url: str, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OUTBOX_DATABASE_URL"] = database_url
    done = subprocess.run([sys.executable, "-c", PROBE, command, "4"], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "SDK:\n" in done.stderr, done.stderr


BLOCKED = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("opentelemetry.sdk") or name.startswith("opentelemetry.exporter"):
            raise ImportError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from worker.cli import main
sys.argv = ["outbox", *sys.argv[1].split()]
main()
"""


@pytest.mark.parametrize("command", ["run", "serve --port 0"])
def test_tracing_asked_without_the_extra_is_one_line_and_exit_2(database_url: str, command: str) -> None:
    env = {**os.environ, "OUTBOX_DATABASE_URL": database_url, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-c", BLOCKED, command], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: OTEL_EXPORTER_OTLP_ENDPOINT is set, but exporting traces needs the otel extra")


def test_another_protocol_is_one_line_and_exit_2(database_url: str) -> None:
    env = {**os.environ, "OUTBOX_DATABASE_URL": database_url, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "worker", "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported, got 'grpc'"


def test_disabled_sdk_means_off() -> None:
    from worker.runtime import tracing

    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/v1/traces"})
    assert not tracing.wanted({})


def test_log_lines_carry_the_active_spans_ids(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from worker.runtime import logs, tracing

    context = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))
    with caplog.at_level("INFO", logger="outbox.worker"):
        with trace.use_span(NonRecordingSpan(context)):
            logs.log(20, "off")  # tracing off: nothing added
            monkeypatch.setattr(tracing, "tracer", object())
            logs.log(20, "on", n=1)
        logs.log(20, "no span")
    fields = {r.getMessage(): r.fields for r in caplog.records}  # type: ignore[attr-defined]
    assert fields["off"] == {}
    assert fields["on"] == {"n": 1, "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}
    assert fields["no span"] == {}


def test_without_tracing_in_serve_the_producers_headers_are_carried_as_they_came() -> None:
    from worker.runtime import tracing

    assert tracing.tracer is None
    assert tracing.stamp({"traceparent": TRACEPARENT, "tracestate": "k=v"}) == {
        "traceparent": TRACEPARENT,
        "tracestate": "k=v",
    }
    assert tracing.stamp({"traceparent": TRACEPARENT, "tracestate": "Bad State"}) == {"traceparent": TRACEPARENT}
    assert tracing.stamp({"traceparent": TRACEPARENT.upper()}) is None  # malformed: ignored (W3C)
    assert tracing.stamp({"tracestate": "k=v"}) is None
