"""Which deliveries an operator means: the filters shared by `outbox deliveries list`, `outbox retry`,
the console's deliveries pages and the Django admin's retry. Parsed once, at the boundary, with an
error that names the option and the rule; the queries in sql/queries.sql take `params()`."""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

STATES = ("blocked", "pending", "delivering", "delivered", "failed")

# Relative times: how long ago ("15m", "2h", "7d"); absolute ones are RFC 3339.
_AGO = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_LIMIT = 1000


class FilterError(ValueError):
    """A filter value that breaks a rule; `field` is the option (`state`, `since`, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = message


def parse_time(field: str, text: str, *, now: datetime | None = None) -> datetime:
    """RFC 3339 (`2026-12-01T09:00:00Z`, a date `2026-12-01` is its midnight UTC) or an age (`15m`, `2h`, `7d`)."""
    text = text.strip()
    match = _AGO.match(text)
    if match:
        return (now or datetime.now(UTC)) - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise FilterError(
            field, f"{text!r} is neither an RFC 3339 time (2026-12-01T09:00:00Z) nor an age (15m, 2h, 7d)"
        ) from None
    if value.tzinfo is None:
        if "T" in text.upper() or " " in text:
            raise FilterError(field, f"{text!r} has no time zone offset (add Z or +01:00)")
        value = value.replace(tzinfo=UTC)
    return value


def parse_cursor(text: str) -> int:
    """A cursor is the id of the last delivery of the previous page (printed by the listing)."""
    if not text.isdigit() or len(text) > 19:
        raise FilterError("after", f"{text!r} is not a cursor: use the `next` value a listing printed")
    return int(text)


@dataclass(frozen=True)
class DeliveryFilter:
    """Deliveries newest first, narrowed by every given field (AND). Times are the event's enqueue time."""

    states: tuple[str, ...] = ()
    subscription: uuid.UUID | None = None
    type: str | None = None
    subject: str | None = None
    event_id: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        states: str | list[str] | tuple[str, ...] | None = None,
        subscription: str | uuid.UUID | None = None,
        type: str | None = None,
        subject: str | None = None,
        event_id: str | None = None,
        source: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
    ) -> DeliveryFilter:
        """From text as people type it (CLI options, a console form). Empty strings mean "not given".
        Raises FilterError for the first field that breaks a rule."""
        return cls(
            states=_states(states),
            subscription=_subscription(subscription),
            type=_text("type", type),
            subject=_text("subject", subject),
            event_id=_text("event-id", event_id),
            source=_text("source", source),
            since=_time("since", since),
            until=_time("until", until),
        )._checked()

    def _checked(self) -> DeliveryFilter:
        if self.since and self.until and self.since >= self.until:
            raise FilterError("until", "must be later than since")
        return self

    def params(self) -> dict[str, Any]:
        """The named parameters of the filtered queries (sql/queries.sql: deliveries_page, …)."""
        return {
            "states": list(self.states or STATES),
            "subscription": self.subscription,
            "type": self.type,
            "subject": self.subject,
            "event_id": self.event_id,
            "source": self.source,
            "since": self.since,
            "until": self.until,
        }

    def with_states(self, *states: str) -> DeliveryFilter:
        return dataclasses.replace(self, states=states)

    def is_empty(self) -> bool:
        return self == DeliveryFilter()

    def query_args(self) -> dict[str, str]:
        """The filter as the console's query string (only what is set)."""
        out = {
            "state": ",".join(self.states),
            "subscription": str(self.subscription or ""),
            "type": self.type or "",
            "subject": self.subject or "",
            "event_id": self.event_id or "",
            "source": self.source or "",
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }
        return {k: v for k, v in out.items() if v}


def _states(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    states = tuple(dict.fromkeys(s.strip().lower() for s in items if s.strip()))
    for state in states:
        if state not in STATES:
            raise FilterError("state", f"{state!r} is not a state: use {', '.join(STATES)}")
    return states


def _subscription(value: str | uuid.UUID | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    if not value.strip():
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise FilterError("subscription", f"{value!r} is not a subscription id (a UUID)") from None


def _text(field: str, value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > 2048:
        raise FilterError(field, "longer than 2048 characters")
    if "\x00" in value:
        raise FilterError(field, "contains a NUL character")
    return value.strip()


def _time(field: str, value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if not value.strip():
        return None
    return parse_time(field, value)
