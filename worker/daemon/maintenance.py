"""Operator maintenance: delete old history (`outbox purge`); `outbox retry` is `outbox._operations.retry_failed`.

Each is idempotent SQL that any process may run at any time; purge works in small batches, each its
own transaction, so it never holds long locks on a busy outbox.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from outbox._sql import query

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '12h', '30d', '2w'."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, e.g. 90s, 15m, 12h, 30d, 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def purge(conn: psycopg.Connection[Any], schema: str, older_than: timedelta, batch_size: int = 1000) -> tuple[int, int]:
    """Delete delivered deliveries (with their attempts) and fully delivered events older than
    `older_than`, `batch_size` rows per transaction, then the intake keys of events now gone.
    Returns (deliveries, events) deleted."""
    cutoff = datetime.now(UTC) - older_than
    deliveries = events = 0
    for name in ("purge_deliveries", "purge_events", "purge_intake_ids"):
        while True:
            with conn.transaction():
                deleted = conn.execute(query(name, schema), (cutoff, batch_size)).rowcount
            if name == "purge_deliveries":
                deliveries += deleted
            elif name == "purge_events":
                events += deleted
            if deleted < batch_size:
                break
    return deliveries, events
