"""The wall clock, read in one place.

Behaviour that depends on the time of day (which partition leaves exist ahead, retention cutoffs)
takes the instant as an argument whose default comes from here, so tests run it at fixed instants
(midnight, a year's last second, daylight-saving changes) instead of at whatever time they happen to
run. Instants are aware and UTC: partition bounds and cutoffs are UTC, whatever the local time zone.
Relative waits (backoff, Retry-After, leases) are durations added to the database's now() and do not
depend on the time of day.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(instant: datetime) -> datetime:
    """`instant` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{instant.isoformat()}: an instant needs a time zone (UTC bounds are compared with it)")
    return instant.astimezone(UTC)
