"""sql/009_partitions.sql: events, deliveries and attempts partitioned (retention by dropping leaves);
the deliveries' new columns in the unmanaged model's state."""

from __future__ import annotations

from django.db import migrations, models

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0002_service")]

    operations = [
        ApplyOutboxSql(version=9),
        migrations.AddField("delivery", "finished_at", models.DateTimeField(null=True)),
        migrations.AddField("delivery", "event_enqueued_at", models.DateTimeField()),
    ]
