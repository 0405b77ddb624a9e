"""sql/017_operational_events.sql: operational events (built-in catalogue entries) and failure streaks."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0010_callback_verification")]

    operations = [ApplyOutboxSql(version=17)]
