"""sql/017_console.sql: operator accounts, sessions, sign-in lockout and the audit trail of `/console/`."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    # Chained after 0011_operational_events (and renamed 0012) once that branch is merged.
    dependencies = [("outbox", "0010_callback_verification")]

    operations = [ApplyOutboxSql(version=17)]
