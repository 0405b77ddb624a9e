"""sql/010_fast_path.sql: the subscriptions version and the event in the idle worker's NOTIFY."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0003_partitions")]

    operations = [ApplyOutboxSql(version=10)]
