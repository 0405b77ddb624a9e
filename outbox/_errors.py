"""The exceptions of the `outbox` package.

    ValueError
     ├── InvalidEventError         an event breaks the NL GOV CloudEvents profile
     └── InvalidSubscriptionError  a subscription (abonnement) is malformed
    TypeError
     └── UnsupportedConnectionError  enqueue was given something it cannot write on
    RuntimeError
     └── NoTransactionError        enqueue was called outside a transaction

Every message starts with the attribute or field at fault and then says the
rule it breaks, e.g. ``type: must be a non-empty string``.
"""

from __future__ import annotations


class InvalidEventError(ValueError):
    """The event is not a valid CloudEvent under the NL GOV profile.

    Raised before anything is written, so a caught error leaves no trace.
    """

    def __init__(self, attribute: str, rule: str) -> None:
        super().__init__(f"{attribute}: {rule}")
        self.attribute = attribute
        self.rule = rule


class InvalidSubscriptionError(ValueError):
    """The subscription is malformed; it is refused whole.

    ``problems`` lists every fault found, each ``field: rule``.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid subscription: " + "; ".join(problems))
        self.problems = problems


class UnsupportedConnectionError(TypeError):
    """`enqueue` was handed an object that is not a supported connection."""


class NoTransactionError(RuntimeError):
    """`enqueue` needs the caller's open transaction and found none."""
