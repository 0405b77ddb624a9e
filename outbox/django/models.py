"""Unmanaged, read-only models over the outbox tables, for the admin.

Only what an operator needs is mapped: a subscription's secrets, TLS material
and claim tokens are not columns here, so no page or query can show them. The
table names carry OUTBOX_SCHEMA. Rows change only through `outbox.operations`
(the SQL `outbox retry` and `outbox subscriptions pause|resume` run).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models

from outbox._subscription import public_url
from outbox.django import conf


def table_name(name: str) -> str:
    # Django leaves a name that starts and ends with a quote as it is: "schema"."table".
    return f'"{conf.schema()}"."{name}"'


class ReadOnlyError(RuntimeError):
    """The outbox tables are written by the outbox, not through the ORM."""


class ReadOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise ReadOnlyError("the outbox tables are read-only through Django; use the admin actions or `outbox`")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ReadOnlyError("the outbox tables are read-only through Django; use the admin actions or `outbox`")

    def bulk_create(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyError("the outbox tables are read-only through Django")

    def bulk_update(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyError("the outbox tables are read-only through Django")


class ReadOnlyManager(models.Manager.from_queryset(ReadOnlyQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> ReadOnlyQuerySet:
        # The outbox's database even without the router.
        return super().get_queryset().using(self._db or conf.database())


class ReadOnly(models.Model):
    objects = ReadOnlyManager()

    class Meta:
        abstract = True
        managed = False

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise ReadOnlyError("the outbox tables are read-only through Django; use the admin actions or `outbox`")

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnlyError("the outbox tables are read-only through Django; use the admin actions or `outbox`")


class _JsonColumn(models.JSONField):
    """`events.event` is `json`, which psycopg already decodes (Django expects text, as for jsonb)."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value


class Event(ReadOnly):
    position = models.BigIntegerField(primary_key=True)
    event = _JsonColumn()
    enqueued_at = models.DateTimeField()
    routed_at = models.DateTimeField(null=True)

    class Meta(ReadOnly.Meta):
        db_table = table_name("events")
        ordering = ("-position",)

    def __str__(self) -> str:
        return f"{self.event.get('type')} {self.event.get('id')}"

    @property
    def event_id(self) -> str | None:
        return self.event.get("id")

    @property
    def event_type(self) -> str | None:
        return self.event.get("type")

    @property
    def subject(self) -> str | None:
        return self.event.get("subject")


class Subscription(ReadOnly):
    id = models.UUIDField(primary_key=True)
    callback_url = models.TextField()
    kanalen = models.JSONField()
    types = ArrayField(models.TextField())
    filters = models.JSONField()  # CloudEvents Subscriptions API filter expressions
    content_mode = models.TextField()
    status = models.TextField()
    paused_reason = models.TextField(null=True)
    ordering_key = models.TextField(null=True)
    agreement = models.TextField()
    auth_kind = models.TextField()
    batch_max = models.IntegerField()
    # The Subscriptions API's protocolsettings.headers: their names; the values are secrets (not mapped).
    header_names = ArrayField(models.TextField(), default=list)
    handshake_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta(ReadOnly.Meta):
        db_table = table_name("subscriptions")
        ordering = ("created_at",)
        permissions = [("pause_subscription", "Can pause and resume subscriptions")]

    def __str__(self) -> str:
        return f"{self.public_url} ({self.id})"

    @property
    def public_url(self) -> str:
        """The callback URL with an access token in its query hidden."""
        return public_url(self.callback_url)


class Delivery(ReadOnly):
    id = models.BigIntegerField(primary_key=True)
    event = models.ForeignKey(Event, models.DO_NOTHING, db_column="event_position", related_name="deliveries")
    subscription = models.ForeignKey(Subscription, models.DO_NOTHING, related_name="deliveries")
    status = models.TextField()
    ordering_key = models.TextField(null=True)
    attempts = models.IntegerField()
    next_attempt_at = models.DateTimeField()
    leased_until = models.DateTimeField(null=True)
    last_status_code = models.IntegerField(null=True)
    last_error = models.TextField(null=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True)
    # When it became delivered or failed: the key of its partition leaf (sql/009_partitions.sql).
    finished_at = models.DateTimeField(null=True)
    # The event's enqueued_at: the events leaf the event is in.
    event_enqueued_at = models.DateTimeField()

    class Meta(ReadOnly.Meta):
        db_table = table_name("deliveries")
        ordering = ("-id",)
        verbose_name_plural = "deliveries"
        permissions = [("retry_delivery", "Can retry failed deliveries")]

    def __str__(self) -> str:
        return f"delivery {self.id} ({self.status})"


class DeliveryAttempt(ReadOnly):
    id = models.BigIntegerField(primary_key=True)
    delivery = models.ForeignKey(Delivery, models.DO_NOTHING, related_name="attempt_rows")
    attempted_at = models.DateTimeField()
    duration_ms = models.FloatField()
    status_code = models.IntegerField(null=True)
    error = models.TextField(null=True)
    response_body = models.TextField(null=True)

    class Meta(ReadOnly.Meta):
        db_table = table_name("delivery_attempts")
        ordering = ("attempted_at", "id")

    def __str__(self) -> str:
        return f"attempt {self.id}"
