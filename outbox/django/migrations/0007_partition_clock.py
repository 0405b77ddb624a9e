"""sql/013_partition_clock.sql: ensure_partitions takes the instant it runs at."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0006_fast_path_function")]

    operations = [ApplyOutboxSql(version=13)]
