"""Traces of `outbox run` and `outbox serve` (OpenTelemetry, exported over OTLP/HTTP).

Off unless the environment asks for it (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none):
then `configure` sets up the SDK (the `otel` extra) from the standard OTEL_* variables. While off,
the SDK is never imported, `tracer` is None, and that is the one check the hot paths make.

Spans (docs/operate/tracing.md):
  * "POST /api/v1/cloudevents" (SERVER, `outbox serve`): a producer's traceparent header is its parent;
  * "outbox claim" (INTERNAL, `outbox run`): one per claim that took deliveries, linked to their events;
  * "outbox deliver" (CLIENT): one per request to a subscriber, the child of its event's traceparent
    (a batch: linked to each event), whose own context goes to the receiver as a traceparent header.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from outbox._tracing import TRACEPARENT, TRACESTATE, attributes_of, traceparent_fault

if TYPE_CHECKING:
    from worker.delivery.http import Claimed, Result, Target

# The daemon's Tracer while it exports traces; None: tracing is off (checked on every hot path).
tracer: Any = None
_provider: Any = None
_exporter: Any = None


class TracingError(Exception):
    """Tracing is asked for but cannot be set up (one line for the operator)."""


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Does the environment ask for traces?"""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Set up the SDK when the environment asks for traces (True), else nothing (False). Raises
    TracingError when it asks for what cannot be had: the extra not installed, another exporter
    or protocol than OTLP over HTTP with protobuf."""
    global tracer, _provider, _exporter
    if not wanted(environ):
        return False
    kind = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind != "otlp":
        raise TracingError(f"OTEL_TRACES_EXPORTER: only otlp (or none) is supported, got {kind!r}")
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    if protocol not in ("", "http/protobuf"):
        raise TracingError(f"OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported, got {protocol!r}")
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but exporting traces needs the otel extra: "
            f"pip install 'nlgov-outbox[otel]' (missing: {exc.name or exc})"
        ) from None
    __version__ = _version()

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our name for the daemon.
    resource = Resource.create({})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    resource = resource.merge(Resource({"service.version": __version__}))
    try:
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # the sampler: OTEL_TRACES_SAMPLER
        exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_*
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*
    except Exception as exc:  # e.g. an OTEL_* value the SDK cannot read
        raise TracingError(f"tracing: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    trace.set_tracer_provider(provider)
    _provider, _exporter = provider, exporter
    tracer = provider.get_tracer("nlgov-outbox", __version__)
    return True


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nlgov-outbox")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
        return "0"


def shutdown(timeout: float = 2.0) -> None:
    """Export what is left, then stop: at the daemon's exit, in at most `timeout` seconds (and one more
    for a hung connection), so SIGTERM still exits promptly when the collector is away: the exporter
    would retry for OTEL_EXPORTER_OTLP_TIMEOUT (10 s). What is not exported by then is dropped."""
    global tracer, _provider, _exporter
    provider, exporter = _provider, _exporter
    _provider = _exporter = tracer = None
    if provider is None:
        return

    def close() -> None:
        if not provider.force_flush(int(timeout * 1000)):
            exporter.shutdown()  # ends its retries at once
        provider.shutdown()

    closing = threading.Thread(target=close, name="tracing-shutdown", daemon=True)
    closing.start()
    closing.join(timeout + 1)


def now() -> int:
    """The time a span may start at (ns), before it is known whether it is wanted."""
    return time.time_ns() if tracer is not None else 0


# -- contexts ---------------------------------------------------------------------------------------


def context_of(traceparent: object, tracestate: object = None) -> Any:
    """The SpanContext of a traceparent (and tracestate), or None when it is not a valid one."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    if not isinstance(traceparent, str) or traceparent_fault(traceparent) is not None:
        return None
    _, trace_id, span_id, flags = traceparent.split("-")[:4]
    state = None
    if isinstance(tracestate, str) and tracestate:
        try:
            state = TraceState.from_header([tracestate])
        except ValueError:
            state = None
    context = SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(int(flags, 16)), state)
    return context if NonRecordingSpan(context).get_span_context().is_valid else None


def event_context(event: str) -> Any:
    """The SpanContext of a stored event's traceparent attribute, or None."""
    if '"traceparent"' not in event:  # most events: no parse
        return None
    try:
        document = orjson.loads(event)
    except orjson.JSONDecodeError:
        return None
    return context_of(document.get(TRACEPARENT), document.get(TRACESTATE))


def header_context(headers: Mapping[str, str]) -> Any:
    """A request's trace context (traceparent and tracestate headers, names in lowercase), or None."""
    return context_of(headers.get("traceparent"), headers.get("tracestate"))


def stamp(headers: Mapping[str, str]) -> dict[str, str] | None:
    """What events taken in over HTTP gain (unless they carry their own traceparent): the current span's
    context while tracing (the intake span, a child of the producer's), else the producer's traceparent
    and tracestate headers as they came, when valid; None without either."""
    if tracer is not None:
        from opentelemetry import trace

        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            return attributes_of(span_context)
    traceparent = headers.get("traceparent")
    if traceparent is None or traceparent_fault(traceparent) is not None:
        return None  # W3C: a malformed traceparent header is ignored
    found = {TRACEPARENT: traceparent}
    tracestate = headers.get("tracestate")
    if tracestate:
        from outbox._tracing import tracestate_fault

        if tracestate_fault(tracestate) is None:
            found[TRACESTATE] = tracestate
    return found


def log_fields() -> dict[str, str]:
    """trace_id and span_id of the active span, for a log line (nothing without one)."""
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {"trace_id": f"{span_context.trace_id:032x}", "span_id": f"{span_context.span_id:016x}"}


# -- spans of `outbox run` --------------------------------------------------------------------------


def claimed(claims: list[Claimed], started: int, path: str, worker_id: str) -> None:
    """The span of a claim that took `claims`, from `started` (ns) until now: the child of their
    events' trace when they share one, else a root span; linked to each event's context."""
    from opentelemetry import trace

    contexts = [c for c in (event_context(claim.event) for claim in claims) if c is not None]
    distinct = {(c.trace_id, c.span_id) for c in contexts}
    parent = trace.set_span_in_context(trace.NonRecordingSpan(contexts[0])) if len(distinct) == 1 else None
    links = [trace.Link(c) for c in contexts[:128]]
    attributes = {
        "outbox.claim.count": len(claims),
        "outbox.claim.path": path,
        "outbox.claim.subscriptions": len({c.subscription_id for c in claims}),
        "outbox.worker.id": worker_id,
    }
    span = tracer.start_span("outbox claim", context=parent, links=links, attributes=attributes, start_time=started)
    span.end()


class Delivery:
    """One request's span and the headers that carry its context to the receiver."""

    __slots__ = ("headers", "span")

    def __init__(self, span: Any) -> None:
        self.span = span
        carried = attributes_of(span.get_span_context())
        self.headers = [(name.encode(), value.encode()) for name, value in carried.items()]


def delivering(target: Target, claims: list[Claimed]) -> Delivery:
    """The span of one request for `claims`: a child of the event's traceparent (one event), or linked
    to each event's (a batch)."""
    from opentelemetry import trace

    contexts = [event_context(claim.event) for claim in claims]
    known = [c for c in contexts if c is not None]
    parent = None
    if len(claims) == 1 and known:
        parent = trace.set_span_in_context(trace.NonRecordingSpan(known[0]))
    else:
        parent = trace.set_span_in_context(trace.INVALID_SPAN)  # a root: never a leftover current span
    url = target.url
    attributes: dict[str, Any] = {
        "http.request.method": "POST",
        "server.address": url.host,
        "server.port": url.port or (443 if url.scheme == "https" else 80),
        "url.full": f"{url.scheme}://{url.netloc.decode()}{url.path}",  # no query: it may hold a token
        "outbox.subscription.id": str(claims[0].subscription_id),
        "outbox.delivery.attempt": max(c.attempts for c in claims),
        "outbox.content_mode": target.subscription.content_mode,
        "messaging.batch.message_count": len(claims),
    }
    if len(claims) == 1:
        attributes["outbox.delivery.id"] = claims[0].id
        try:
            event = orjson.loads(claims[0].event)
        except orjson.JSONDecodeError:
            event = {}
        for name in ("id", "type", "source", "subject"):
            value = event.get(name)
            if isinstance(value, str):
                attributes[f"cloudevents.event_{name}"] = value
    links = [trace.Link(c) for c in known[:128]] if len(claims) > 1 else []
    span = tracer.start_span(
        "outbox deliver", context=parent, kind=trace.SpanKind.CLIENT, attributes=attributes, links=links
    )
    return Delivery(span)


def delivered(delivery: Delivery, results: list[Result]) -> None:
    """End a request's span with what came of it."""
    from opentelemetry.trace import Status, StatusCode

    span = delivery.span
    first = results[0]
    if first.status_code is not None:
        span.set_attribute("http.response.status_code", first.status_code)
    kinds = sorted({r.outcome.kind for r in results})
    span.set_attribute("outbox.delivery.outcome", kinds[0] if len(kinds) == 1 else ",".join(kinds))
    if first.error is not None:
        span.set_attribute("error.type", first.error.split(":")[0][:100])
    if first.outcome.kind != "delivered":
        span.set_status(Status(StatusCode.ERROR, first.outcome.reason or first.error or first.outcome.kind))
    span.end()


# -- the intake span of `outbox serve` ---------------------------------------------------------------


class Intake:
    """The server span of one POST /cloudevents (IntakeFastPath: in front of FastAPI, whose own server
    spans cover every other route): the producer's traceparent header is its parent."""

    __slots__ = ("span", "token")

    def __init__(self, headers: Mapping[str, str], path: str, scope: Mapping[str, Any]) -> None:
        from opentelemetry import context, trace

        parent_context = header_context(headers)
        parent = trace.set_span_in_context(
            trace.NonRecordingSpan(parent_context) if parent_context is not None else trace.INVALID_SPAN
        )
        attributes: dict[str, Any] = {
            "http.request.method": "POST",
            "http.route": path,
            "url.path": path,
            "url.scheme": scope.get("scheme", "http"),
        }
        server = scope.get("server")
        if server:
            attributes["server.address"], attributes["server.port"] = server[0], server[1]
        self.span = tracer.start_span(f"POST {path}", context=parent, kind=trace.SpanKind.SERVER, attributes=attributes)
        self.token = context.attach(trace.set_span_in_context(self.span))

    def end(self, status: int | None, error: BaseException | None = None) -> None:
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        context.detach(self.token)
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
        if error is not None:
            self.span.record_exception(error)
            self.span.set_attribute("error.type", type(error).__name__)
        if error is not None or status is None or status >= 500:
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()


def took_in(events: list[Any], batched: bool) -> None:
    """What the current (intake) span took in."""
    from opentelemetry import trace

    span = trace.get_current_span()
    span.set_attribute("messaging.batch.message_count", len(events))
    if not batched and events:
        span.set_attribute("cloudevents.event_id", events[0].id)
        span.set_attribute("cloudevents.event_type", events[0].type)
        span.set_attribute("cloudevents.event_source", events[0].source)
