"""Adaptive concurrency per subscription: what a batch of results tells the shared limit.

The limit lives on the subscription's pace row (sql/009), shared by every worker; the claim keeps to it
(`claim`, after `lock_concurrency`) and the recorder adapts it (`adapt_concurrency`), in the spirit of TCP
congestion control: slow start, then additive increase while answers are fast and healthy; a
multiplicative cut, at most once per round trip, on timeouts, connection failures, 429, 503, connects
slowed by a dropped SYN, or answers far slower than the receiver's baseline. This module only turns
results into that statement's inputs.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.daemon.settings import WorkerSettings
from worker.delivery.http import Result, Target

# Strongest first: the reason recorded when one batch holds several.
SIGNALS = ("timeout", "connection error", "503", "429", "slow connect")
# A new connection this much slower than the target's fastest (ms) lost its SYN (or handshake ACK) and
# waited for the kernel to send it again (1 s on Linux, RFC 6298's initial RTO): the receiver's listen
# backlog overflowed. It is TCP's loss, seen ~1 s after the overflow instead of at the request timeout
# (a SYN dropped three times is a 7 s connect). Loop stalls on our side stay well below it.
SLOW_CONNECT_MS = 700.0
# Transport failures that say the receiver (or the path to it) is overwhelmed; TLS verdicts, refused
# addresses, credentials and pre-flight refusals are not load and do not cut the limit.
_CONNECTION_FAILURES = (
    "ConnectError: cannot connect",
    "RemoteProtocolError: the server closed",
    "ReadError",
    "WriteError",
    "NetworkError",
)


def congestion_signal(result: Result) -> str | None:
    """Why this attempt says "send less" (one of SIGNALS), or None."""
    if result.status_code is not None:
        if result.status_code in (429, 503):
            return str(result.status_code)
        if (
            result.connect_ms is not None
            and result.usual_connect_ms is not None
            and result.connect_ms - result.usual_connect_ms >= SLOW_CONNECT_MS
        ):
            return "slow connect"
        return None
    error = result.error or ""
    if error.startswith("timeout"):
        return "timeout"
    if error.startswith(_CONNECTION_FAILURES):
        return "connection error"
    return None


def urgent(result: Result) -> bool:
    """Whether this result's signal should be judged at once rather than with the next 50 ms of
    results: a slow connect waits for them, as how many connects were slow is how far to cut."""
    signal = congestion_signal(result)
    return signal is not None and signal != "slow connect"


def maximum_requests(settings: WorkerSettings, target: Target) -> int:
    """The ceiling of a subscription's limit, in requests: OUTBOX_SUBSCRIPTION_CONCURRENCY, and no more
    than its rate can keep busy (rate x request timeout: more would only wait for tokens)."""
    ceiling = settings.subscription_concurrency
    rate = target.subscription.rate_per_minute
    if rate is not None:
        ceiling = min(ceiling, max(1, math.ceil(rate / 60.0 * settings.request_timeout)))
    return ceiling


@dataclass
class _Tally:
    ok: int = 0
    finished: int = 0
    slow_connects: int = 0
    signal: str | None = None
    signal_claimed: datetime | None = None
    durations: list[float] = field(default_factory=list)  # of the 2xx, in ms
    ok_claimed: datetime | None = None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None or (b is not None and b > a) else a


def adapt_parameters(
    batch: Iterable[Result],
    claimed_at: Callable[[uuid.UUID], datetime | None],
    maximum: Callable[[uuid.UUID], int | None],
    initial: int,
    patience_ms: float,
) -> dict[str, Any] | None:
    """`adapt_concurrency`'s parameters for a batch (None: nothing to adapt). `claimed_at(token)` is the
    database's clock at the claim (None: unknown, e.g. claimed by an earlier process: never cuts);
    `maximum(subscription)` its ceiling (None: no longer known to this worker: left alone); one answer
    slower than `patience_ms` (and far above the baseline) is a signal of its own, and a fifth of it (5%
    of the request timeout) is the slack allowed on the typical answer time (a few dropped SYNs, a
    second each, are not yet a queue). The batch's typical
    answer time is its median: a few stragglers (a dropped SYN costs a second) do not make a queue."""
    tallies: dict[uuid.UUID, _Tally] = {}
    for r in batch:
        if r.error == "abandoned":  # no request was made
            continue
        tally = tallies.setdefault(r.claimed.subscription_id, _Tally())
        tally.finished += 1
        when = claimed_at(r.claimed.token)
        signal = congestion_signal(r)
        if signal == "slow connect":
            tally.slow_connects += 1
        if signal is not None:
            if tally.signal is None or SIGNALS.index(signal) < SIGNALS.index(tally.signal):
                tally.signal = signal
            tally.signal_claimed = _later(tally.signal_claimed, when)
        elif r.outcome.kind == "delivered" and r.status_code is not None:
            tally.ok += 1
            tally.durations.append(r.duration_ms)
            tally.ok_claimed = _later(tally.ok_claimed, when)
    ids = sorted(sub_id for sub_id in tallies if maximum(sub_id) is not None)  # pace rows: id order
    if not ids:
        return None
    t = [tallies[sub_id] for sub_id in ids]
    return {
        "ids": ids, "ok": [x.ok for x in t], "finished": [x.finished for x in t],
        "slow_connects": [x.slow_connects for x in t],
        "signals": [x.signal for x in t], "signal_claimed": [x.signal_claimed for x in t],
        "typical": [statistics.median(x.durations) if x.durations else None for x in t],
        "slowest": [max(x.durations) if x.durations else None for x in t],
        "ok_claimed": [x.ok_claimed for x in t], "maxima": [float(maximum(sub_id) or 1) for sub_id in ids],
        "initial": float(initial), "patience": patience_ms, "slack": patience_ms / 5,
    }  # fmt: skip
