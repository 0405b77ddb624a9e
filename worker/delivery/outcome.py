"""What one HTTP attempt means for its delivery: the DESIGN's table, in one place.

any 2xx                       delivered
410 Gone                      retired: the subscription is paused with a reason; the delivery waits
429 Too Many Requests         retry no sooner than Retry-After (seconds or HTTP-date), capped by
                              OUTBOX_RETRY_AFTER_MAX; without the header, the normal backoff. A 429
                              never exhausts the attempts: the receiver asked us to wait, not to give up.
415 Unsupported Media Type    failed now, no retries
other 1xx/3xx/4xx/5xx,        retry after exponential backoff with full jitter, until
timeout, connection error     OUTBOX_RETRY_MAX_ATTEMPTS, then failed
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from worker.daemon.settings import WorkerSettings

Kind = Literal["delivered", "retry", "failed", "retired"]


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    delay: float = 0.0  # seconds until the next attempt, for "retry"
    reason: str | None = None  # for the record: why it failed or will be retried


def backoff(attempts: int, settings: WorkerSettings, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(max_delay, base * 2^(attempts-1))]."""
    ceiling = min(settings.retry_max_delay, settings.retry_base_delay * 2.0 ** min(max(attempts - 1, 0), 60))
    return (rng or random).uniform(0, ceiling)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date. None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _retry_or_fail(attempts: int, settings: WorkerSettings, reason: str) -> Outcome:
    if attempts >= settings.retry_max_attempts:
        return Outcome("failed", reason=f"{reason}; gave up after {attempts} attempts")
    return Outcome("retry", delay=backoff(attempts, settings), reason=reason)


def from_status(
    status: int,
    retry_after: str | None,
    attempts: int,
    settings: WorkerSettings,
    media_type: str | None = None,
    answer: str | None = None,
) -> Outcome:
    """The outcome of an HTTP answer; `attempts` counts this one. A 415's reason names the
    `media_type` sent and (the start of) the receiver's `answer`, so the fix is plain to see."""
    if 200 <= status < 300:
        return Outcome("delivered")
    if status == 410:
        return Outcome("retired", reason="the receiver answered 410 Gone: the target is retired")
    if status == 415:
        reason = "the receiver answered 415: it does not understand the format"
        if media_type:
            reason += f" (Content-Type sent: {media_type}; a subscription's contentType sends another form)"
        if answer:
            reason += f"; it answered: {answer[:200]}"
        return Outcome("failed", reason=reason)
    if status == 429:
        wait = retry_after_seconds(retry_after)
        if wait is None:
            return Outcome("retry", delay=backoff(attempts, settings), reason="429 without a usable Retry-After")
        return Outcome("retry", delay=min(wait, settings.retry_after_max), reason="429 Too Many Requests")
    if 300 <= status < 400:
        return _retry_or_fail(attempts, settings, f"HTTP {status}: redirects are not followed")
    return _retry_or_fail(attempts, settings, f"HTTP {status}")


def from_error(error: str, attempts: int, settings: WorkerSettings) -> Outcome:
    """The outcome of a request that got no answer (timeout, refused connection, TLS failure...)."""
    return _retry_or_fail(attempts, settings, error)
