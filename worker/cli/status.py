"""`outbox status`: counts per state and per subscription, and the oldest pending age.

The `--json` document is a public contract; keys are only ever added.
"""

from __future__ import annotations

from typing import Any

import psycopg

from outbox._sql import query
from outbox._subscription import public_url

DELIVERY_STATES = ("pending", "delivering", "delivered", "failed")
# "pending" counts every delivery still waiting to go out, the blocked ones (behind an earlier
# delivery of their ordering key) included; "blocked" says how many of those are blocked.


def collect(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    total, unrouted = conn.execute(query("count_events", schema)).fetchone() or (0, 0)
    deliveries = dict.fromkeys((*DELIVERY_STATES, "blocked"), 0)
    for state, n in conn.execute(query("count_deliveries", schema)).fetchall():
        deliveries[state] = int(n)
    deliveries["pending"] += deliveries["blocked"]
    subscriptions = [
        {
            "id": str(sub_id),
            "callbackUrl": public_url(url),  # an access_token in the query stays hidden
            "status": status,
            "pending": int(pending),
            "delivered": int(delivered),
            "failed": int(failed),
            **concurrency_document(limit, reason, changed_at, in_flight),
        }
        for sub_id, url, status, pending, delivered, failed, in_flight, limit, reason, changed_at in conn.execute(
            query("subscription_delivery_counts", schema)
        ).fetchall()
    ]
    oldest = conn.execute(query("oldest_pending_seconds", schema)).fetchone()
    return {
        "events": {"total": int(total), "unrouted": int(unrouted)},
        "deliveries": deliveries,
        "subscriptions": subscriptions,
        "oldestPendingSeconds": float(oldest[0]) if oldest and oldest[0] is not None else None,
    }


def concurrency_document(limit: float | None, reason: str | None, changed_at: Any, in_flight: int) -> dict[str, Any]:
    """A subscription's concurrency: its limit over all workers (None: not adapted yet, the workers'
    OUTBOX_SUBSCRIPTION_CONCURRENCY_INITIAL), why and when it last changed, what is in flight."""
    return {
        "concurrencyLimit": round(float(limit), 2) if limit is not None else None,
        "inFlight": int(in_flight),
        "limitReason": reason,
        "limitChangedAt": changed_at.isoformat() if changed_at is not None else None,
    }


def concurrency(conn: psycopg.Connection[Any], schema: str, subscription_id: str | None = None) -> dict[str, Any]:
    """`concurrency_document` per subscription id (one, or all)."""
    rows = conn.execute(query("subscription_concurrency", schema), {"id": subscription_id}).fetchall()
    return {str(sub_id): concurrency_document(limit, reason, at, n) for sub_id, limit, reason, at, n in rows}


def describe_limit(document: dict[str, Any]) -> str:
    """The limit for a person: "12.5 (growing, 2026-…), 3 in flight"."""
    limit = document["concurrencyLimit"]
    shown = "initial" if limit is None else f"{limit:g}"
    if document["limitReason"]:
        shown += f" ({document['limitReason']}, {document['limitChangedAt']})"
    return f"{shown}, {document['inFlight']} in flight"


def render(document: dict[str, Any]) -> str:
    """The same facts for a person."""
    events, deliveries = document["events"], document["deliveries"]
    lines = [
        f"events       {events['total']} total, {events['unrouted']} not yet routed",
        "deliveries   "
        + ", ".join(f"{deliveries[s]} {s}" for s in DELIVERY_STATES)
        + (f" ({deliveries['blocked']} of the pending wait behind an earlier one)" if deliveries["blocked"] else ""),
    ]
    oldest = document["oldestPendingSeconds"]
    lines.append(f"oldest pending  {oldest:.1f} s" if oldest is not None else "oldest pending  -")
    if document["subscriptions"]:
        lines.append("")
        lines.append(
            f"{'subscription':36}  {'status':6}  {'pending':>7}  {'delivered':>9}  {'failed':>6}  "
            f"{'limit':>7}  {'why':16}  callbackUrl"
        )
        for sub in document["subscriptions"]:
            limit = "initial" if sub["concurrencyLimit"] is None else f"{sub['concurrencyLimit']:g}"
            lines.append(
                f"{sub['id']:36}  {sub['status']:6}  {sub['pending']:>7}  {sub['delivered']:>9}  "
                f"{sub['failed']:>6}  {limit:>7}  {sub['limitReason'] or '-':16}  {sub['callbackUrl']}"
            )
    return "\n".join(lines)
