"""A transactional outbox for NL GOV CloudEvents on PostgreSQL: what host applications import.

    import outbox
    with psycopg.connect(url) as conn:          # or a SQLAlchemy Session / Connection
        conn.execute("UPDATE ...")               # the host's own change
        outbox.enqueue(conn, outbox.CloudEvent(type=..., source=..., data=...))
    # commit: the change and the event exist together, or neither does

The worker daemon (`outbox run`) delivers the events to the subscribers.
"""

from outbox._enqueue import enqueue, enqueue_async, enqueue_many, enqueue_many_async
from outbox._errors import (
    InvalidEventError,
    InvalidSubscriptionError,
    NoTransactionError,
    UnsupportedConnectionError,
)
from outbox._event import DEFAULT_MAX_EVENT_BYTES, CloudEvent
from outbox._migrate import MigrationError, migrate
from outbox._sql import DEFAULT_SCHEMA
from outbox._subscription import Kanaal, Subscription, matches

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_SCHEMA",
    "CloudEvent",
    "InvalidEventError",
    "InvalidSubscriptionError",
    "Kanaal",
    "MigrationError",
    "NoTransactionError",
    "Subscription",
    "UnsupportedConnectionError",
    "__version__",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
    "matches",
    "migrate",
]
