"""sql/016_callback_verification.sql: the 'probe' agreement (callbacks verified by a probe event)."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0009_sealed_headers")]

    operations = [ApplyOutboxSql(version=16)]
