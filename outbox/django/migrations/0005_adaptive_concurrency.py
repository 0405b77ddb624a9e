"""sql/011_adaptive_concurrency.sql: each subscription's adaptive concurrency limit, shared by all workers."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0004_fast_path")]

    operations = [ApplyOutboxSql(version=11)]
