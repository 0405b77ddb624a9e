"""sql/018_console.sql: operator accounts, sessions, sign-in lockout and the audit trail of `/console/`."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0011_operational_events")]

    operations = [ApplyOutboxSql(version=18)]
