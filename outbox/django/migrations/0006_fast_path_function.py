"""sql/012_fast_path_function.sql: the idle fast path's flight as one function call."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0005_adaptive_concurrency")]

    operations = [ApplyOutboxSql(version=12)]
