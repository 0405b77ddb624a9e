"""sql/015_sealed_headers.sql: header values sealed with the subscription secrets; the header names
(what the admin shows of them) in the unmanaged model's state."""

from __future__ import annotations

import django.contrib.postgres.fields
from django.db import migrations, models

from outbox.django.migration_ops import ApplyOutboxSql


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0008_intake_digest_client_rate")]

    operations = [
        ApplyOutboxSql(version=15),
        migrations.AddField(
            "subscription",
            "header_names",
            django.contrib.postgres.fields.ArrayField(base_field=models.TextField(), size=None, default=list),
        ),
    ]
