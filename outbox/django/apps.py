from __future__ import annotations

from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox.django"
    label = "outbox"
    verbose_name = "Outbox (NL GOV CloudEvents)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from outbox.django import checks

        checks.register()
