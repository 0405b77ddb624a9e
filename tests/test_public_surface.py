"""The public surface of `outbox` is frozen here: changing it is a decision, not an accident."""

from __future__ import annotations

import outbox
import outbox.zaken
from outbox._sql import raw_queries


def test_exported_members() -> None:
    assert outbox.__all__ == [
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
    for name in outbox.__all__:
        assert hasattr(outbox, name), name
    assert sorted(outbox.zaken.__all__) == [
        "CloudEventSettings",
        "LINK_OBJECT_TYPE",
        "Onderwerpobject",
        "ZAAK_GEKOPPELD",
        "ZAAK_ONTKOPPELD",
        "zaak_link_events",
    ]


def test_error_hierarchy() -> None:
    assert issubclass(outbox.InvalidEventError, ValueError)
    assert issubclass(outbox.InvalidSubscriptionError, ValueError)
    assert issubclass(outbox.UnsupportedConnectionError, TypeError)


def test_query_loader_reads_every_named_query_without_comments() -> None:
    queries = raw_queries()
    assert {"insert_event", "insert_events", "count_events", "migrate_lock"} <= set(queries)
    for name, body in queries.items():
        assert body, name
        assert "-- " not in body.splitlines()[0], name
        assert not body.endswith(";"), name
