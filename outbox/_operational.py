"""Operational events: CloudEvents the outbox writes about itself (issue 19 §3, sql/017).

    nl.overheid.outbox.delivery-failed        a delivery failed for good (415, attempts exhausted)
    nl.overheid.outbox.subscription-paused    a 410 Gone or an operator paused a subscription
    nl.overheid.outbox.subscription-disabled  OUTBOX_DISABLE_AFTER paused a subscription that only failed

They are written by SQL (`<schema>.announce`) in the transaction of what they tell. A subscription
receives them only when it opted in: a `types` pattern that starts with the prefix (a catch-all
`*`, or no types at all, never matches them), so adding them changed no existing subscription.
"""

from __future__ import annotations

import os

PREFIX = "nl.overheid.outbox."
DELIVERY_FAILED = PREFIX + "delivery-failed"
SUBSCRIPTION_PAUSED = PREFIX + "subscription-paused"
SUBSCRIPTION_DISABLED = PREFIX + "subscription-disabled"
TYPES = (DELIVERY_FAILED, SUBSCRIPTION_PAUSED, SUBSCRIPTION_DISABLED)
SOURCE_VARIABLE = "OUTBOX_OPERATIONAL_SOURCE"


def is_operational(event_type: str) -> bool:
    return event_type.startswith(PREFIX)


def opts_in(pattern: str) -> bool:
    """Does this `types` pattern ask for operational events? Only one that names the prefix."""
    return pattern.startswith(PREFIX)


def default_source(schema: str) -> str:
    return f"urn:nlgov-outbox:{schema}"


def operational_source(schema: str, configured: str | None = None) -> str:
    """The `source` of operational events: `configured`, else OUTBOX_OPERATIONAL_SOURCE, else
    urn:nlgov-outbox:<schema>. Every process that pauses (worker, CLI, Django admin, `outbox serve`)
    reads the same variable."""
    return configured or os.environ.get(SOURCE_VARIABLE) or default_source(schema)
