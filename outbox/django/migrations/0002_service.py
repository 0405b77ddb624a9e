"""sql/008_service.sql: API clients, subscription owners and Subscriptions API fields, intake ids."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0001_initial")]

    operations = [ApplyOutboxSql(version=8)]
