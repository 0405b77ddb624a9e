"""The CloudEvents Distributed Tracing extension (`traceparent`, `tracestate`): its formats, and the
host's trace context at enqueue.

The host library never sets up OpenTelemetry: a host that traces has its own TracerProvider. Only
when the host has imported `opentelemetry.trace` can a span be active, so without it enqueue costs
one dictionary look-up (`sys.modules`); with it, the current span decides:

  * a recording span (the host's SDK samples it): a child span "outbox enqueue" (kind PRODUCER)
    covers the INSERT, and its context goes into the event;
  * a valid span that does not record (no SDK, a propagated context, sampled out): its context goes
    into the event as it is;
  * no valid span: the event gains nothing.

An event that carries a `traceparent` of its own keeps it (and its `tracestate`, or none).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# W3C Trace Context §3.2: version-traceid-parentid-flags, lowercase hex; a later version may append
# fields after a dash. Version ff, an all-zero trace id or parent id are invalid.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$")
# §3.3: list members `key=value`, at most 32; keys lowercase (with an optional tenant@system), values
# printable ASCII without "," and "=" and not ending in a space.
_TRACESTATE_MEMBER = re.compile(
    r"^[a-z0-9][a-z0-9_\-*/]{0,255}(@[a-z][a-z0-9_\-*/]{0,13})?=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$"
)
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def traceparent_fault(value: str) -> str | None:
    """Why `value` is not a W3C traceparent, or None."""
    found = _TRACEPARENT.match(value)
    if found is None:
        return "must be a W3C traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lowercase"
    version, trace_id, span_id, _, rest = found.groups()
    if version == "ff":
        return "must be a W3C traceparent: version ff is invalid"
    if version == "00" and rest:
        return "must be a W3C traceparent: version 00 has exactly 55 characters"
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return "must be a W3C traceparent with a trace id and parent id that are not all zeros"
    return None


def tracestate_fault(value: str) -> str | None:
    """Why `value` is not a W3C tracestate, or None."""
    members = [m.strip(" \t") for m in value.split(",")]
    members = [m for m in members if m]
    if len(members) > 32 or len(value) > 8192:
        return "must be a W3C tracestate of at most 32 list members"
    for member in members:
        if not _TRACESTATE_MEMBER.match(member):
            return "must be a W3C tracestate: comma-separated key=value list members"
    return None


def attributes_of(span_context: Any) -> dict[str, str]:
    """The extension attributes for an OpenTelemetry SpanContext."""
    found = {
        TRACEPARENT: f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"
    }
    state = span_context.trace_state
    if state:
        found[TRACESTATE] = state.to_header()
    return found


class Enqueue:
    """The trace of one enqueue call: the attributes its events gain, and the span to end (if any)."""

    __slots__ = ("attributes", "span", "token")

    def __init__(self, attributes: dict[str, str], span: Any = None, token: Any = None) -> None:
        self.attributes = attributes
        self.span = span
        self.token = token

    def end(self, error: BaseException | None = None) -> None:
        span = self.span
        if span is None:
            return
        from opentelemetry import context, trace

        if self.token is not None:
            context.detach(self.token)
        if error is not None:
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}"))
        span.end()

    def __enter__(self) -> Enqueue:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        self.end(error)


class _Untraced:
    """`enqueueing`'s context when the host does not trace: gives None, ends nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        return None


_UNTRACED = _Untraced()
_tracer: Any = None


def enqueueing(schema: str, events: Sequence[Any]) -> Enqueue | _Untraced:
    """`begin` as a context: the trace (or None) inside, its span ended with the error that left, if any."""
    return begin(schema, events) or _UNTRACED


def begin(schema: str, events: Sequence[Any]) -> Enqueue | None:
    """The trace context for events enqueued now, or None (the fast way out: OpenTelemetry not
    imported, or no valid span active)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    current = trace.get_current_span()
    span_context = current.get_span_context()
    if not span_context.is_valid:
        return None
    if not current.is_recording():
        return Enqueue(attributes_of(span_context))
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer("nlgov-outbox")
    from opentelemetry import context

    attributes: dict[str, Any] = {
        "messaging.system": "nlgov-outbox",
        "messaging.operation.type": "send",
        "messaging.destination.name": schema,
        "messaging.batch.message_count": len(events),
    }
    if len(events) == 1:
        for name in ("id", "type", "source", "subject"):
            value = getattr(events[0], name, None)  # not yet checked to be a CloudEvent
            if isinstance(value, str):
                attributes[f"cloudevents.event_{name}"] = value
    span = _tracer.start_span("outbox enqueue", kind=trace.SpanKind.PRODUCER, attributes=attributes)
    if not span.get_span_context().is_valid:  # the host's span is from a provider that is not the global one
        return Enqueue(attributes_of(span_context))
    token = context.attach(trace.set_span_in_context(span))
    return Enqueue(attributes_of(span.get_span_context()), span, token)
