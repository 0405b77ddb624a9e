"""The idle fast path: from a NOTIFY to the POST in one round trip.

An idle worker is woken by the NOTIFY of a host's commit. When the notification carries the event
(`<position> <enqueued_at in µs since 1970> <event JSON>`, see sql/010_fast_path.sql), the worker
routes it in Python against the subscriptions its last pass read, and sends one statement, a call
of `fast_path` (sql/012_fast_path_function.sql): the deliveries are written already claimed, the
event marked routed, and the transaction committed.
Every write is conditioned in SQL on what the worker assumed (it holds the route lock, the
subscriptions are the version it read, the events are unrouted with none older waiting and stored
as the NOTIFYs said), so a wrong assumption writes nothing and the worker takes the normal
two-flight path instead.

What goes the normal path: notifications without the event (a big event, a transaction's later
events, batches, `outbox serve`'s intake, hosts on an older library), deliveries of rate-limited
subscriptions, of subscriptions held after a 429 or slowed down, and whatever does not fit the
worker's free slots or a subscription's share.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from outbox import Subscription
from worker.daemon import router

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Notices:
    """What the NOTIFYs said since the main loop last looked."""

    limit: int  # events kept at most; more make the normal path (it reads them all anyway)
    events: list[tuple[int, str, datetime]] = field(default_factory=list)  # (position, event JSON, enqueued_at)
    plain: bool = False  # a notification without a usable event: only the normal path sees it

    def add(self, payload: str) -> None:
        position, micros, text = [*payload.split(" ", 2), "", ""][:3]
        if not text or not position.isdigit() or not micros.isdigit() or len(self.events) >= self.limit:
            self.plain = True
            return
        # Integer microseconds: the exact enqueued_at, whatever the host session's DateStyle and zone.
        self.events.append((int(position), text, _EPOCH + timedelta(microseconds=int(micros))))

    def take(self) -> tuple[list[tuple[int, str, datetime]], bool]:
        events, plain = self.events, self.plain
        self.events, self.plain = [], False
        return events, plain


@dataclass(frozen=True)
class View:
    """The subscriptions as the last normal pass read them, and the version read before them."""

    version: int
    subscriptions: list[Subscription]
    units: Mapping[uuid.UUID, int]  # subscriptions the fast path may claim for -> events per request


def plan(
    current: View,
    events: list[tuple[int, str, datetime]],
    *,
    free_slots: int,
    share: Callable[[uuid.UUID], float],
    in_flight: Mapping[uuid.UUID, int],
) -> tuple[router.Routes, list[bool]]:
    """Route `events` (sorted by position) and say per route whether the fast path claims it: its
    subscription is claimable and has room (its concurrency limit as this worker last read it, in
    requests × events per request, less what this worker
    has in flight), and the process has a free slot. A route not claimed here is claimed by the
    next normal pass."""
    routes = router.plan(events, current.subscriptions)
    claim: list[bool] = []
    taken: dict[uuid.UUID, int] = {}
    slots = free_slots
    for sub_id in routes.subscription_ids:
        unit = current.units.get(sub_id)
        room = 0 if unit is None else int(share(sub_id)) * unit - in_flight.get(sub_id, 0) - taken.get(sub_id, 0)
        ok = room > 0 and slots > 0
        claim.append(ok)
        if ok:
            taken[sub_id] = taken.get(sub_id, 0) + 1
            slots -= 1
    return routes, claim


def parameters(
    current: View,
    events: list[tuple[int, str, datetime]],
    routes: router.Routes,
    claim: list[bool],
    *,
    token: uuid.UUID,
    lease: float,
    adaptive: bool,
    initial: float,
    route_lock: str,
    key_lock: str,
) -> dict[str, Any]:
    """The named parameters of the fast_path query."""
    positions = [p for p, _, _ in events]  # sorted
    enqueued = [at for _, _, at in events]
    return {
        "lock": route_lock, "version": current.version, "event_positions": positions,
        "event_texts": [text for _, text, _ in events], "event_enqueued_at": enqueued,
        "last": positions[-1], "first_enqueued_at": min(enqueued), "last_enqueued_at": max(enqueued),
        "enqueued_at": routes.enqueued_at, "token": token, "lease": lease, "key_lock": key_lock,
        "adaptive": adaptive, "initial": initial,
        "positions": routes.positions, "subscription_ids": routes.subscription_ids, "keys": routes.keys,
        "claim": claim,
    }  # fmt: skip
