"""sql/014_intake_digest_client_rate.sql: intake key digests (replay or conflict) and the shared client rate."""

from __future__ import annotations

from django.db import migrations

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0007_partition_clock")]

    operations = [ApplyOutboxSql(version=14)]
