"""sql/020_consumers.sql: consumers (inbound webhooks), their mappings, receipts, failures and rates."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0013_delivery_search")]

    operations = [ApplyOutboxSql(version=20)]
