"""sql/019_delivery_search.sql: indexes for the deliveries listing and the event search."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0012_console")]

    operations = [ApplyOutboxSql(version=19)]
