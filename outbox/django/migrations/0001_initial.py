"""The outbox schema through `manage.py migrate`: the project's own `sql/` files, applied as `outbox migrate`
applies them and recorded where it records them, so either may run first and the other is then a no-op.

A later `sql/` file comes with a new migration here whose `ApplyOutboxSql(version=N)` names it.
The models are unmanaged: their operations only tell Django what the tables hold.
"""

from __future__ import annotations

import django.contrib.postgres.fields
from django.db import migrations, models

import outbox.django.models
from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    initial = True
    # Each sql/ file runs in its own transaction under the migrate lock, as `outbox migrate` runs it.
    atomic = False

    dependencies: list[tuple[str, str]] = []

    operations = [
        ApplyOutboxSql(version=7),
        migrations.CreateModel(
            name="Delivery",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("status", models.TextField()),
                ("ordering_key", models.TextField(null=True)),
                ("attempts", models.IntegerField()),
                ("next_attempt_at", models.DateTimeField()),
                ("leased_until", models.DateTimeField(null=True)),
                ("last_status_code", models.IntegerField(null=True)),
                ("last_error", models.TextField(null=True)),
                ("created_at", models.DateTimeField()),
                ("updated_at", models.DateTimeField()),
                ("delivered_at", models.DateTimeField(null=True)),
            ],
            options={
                # OUTBOX_SCHEMA: the state follows the setting, as the models do.
                "db_table": outbox.django.models.table_name("deliveries"),
                "verbose_name_plural": "deliveries",
                "ordering": ("-id",),
                "permissions": [("retry_delivery", "Can retry failed deliveries")],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="DeliveryAttempt",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("attempted_at", models.DateTimeField()),
                ("duration_ms", models.FloatField()),
                ("status_code", models.IntegerField(null=True)),
                ("error", models.TextField(null=True)),
                ("response_body", models.TextField(null=True)),
            ],
            options={
                # OUTBOX_SCHEMA: the state follows the setting, as the models do.
                "db_table": outbox.django.models.table_name("delivery_attempts"),
                "ordering": ("attempted_at", "id"),
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="Event",
            fields=[
                ("position", models.BigIntegerField(primary_key=True, serialize=False)),
                ("event", outbox.django.models._JsonColumn()),
                ("enqueued_at", models.DateTimeField()),
                ("routed_at", models.DateTimeField(null=True)),
            ],
            options={
                # OUTBOX_SCHEMA: the state follows the setting, as the models do.
                "db_table": outbox.django.models.table_name("events"),
                "ordering": ("-position",),
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="Subscription",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("callback_url", models.TextField()),
                ("kanalen", models.JSONField()),
                ("types", django.contrib.postgres.fields.ArrayField(base_field=models.TextField(), size=None)),
                ("filters", models.JSONField()),
                ("content_mode", models.TextField()),
                ("status", models.TextField()),
                ("paused_reason", models.TextField(null=True)),
                ("ordering_key", models.TextField(null=True)),
                ("agreement", models.TextField()),
                ("auth_kind", models.TextField()),
                ("batch_max", models.IntegerField()),
                ("handshake_at", models.DateTimeField(null=True)),
                ("created_at", models.DateTimeField()),
                ("updated_at", models.DateTimeField()),
            ],
            options={
                # OUTBOX_SCHEMA: the state follows the setting, as the models do.
                "db_table": outbox.django.models.table_name("subscriptions"),
                "ordering": ("created_at",),
                "permissions": [("pause_subscription", "Can pause and resume subscriptions")],
                "managed": False,
            },
        ),
    ]
