"""`DATABASE_ROUTERS = ["outbox.django.router.OutboxRouter"]`: the outbox tables live on OUTBOX_DATABASE.

Django never creates or alters the outbox tables (the app's one migration step
applies the project's own `sql/` files, on OUTBOX_DATABASE only) and reads them
there. Writes are refused by the models themselves (`models.ReadOnly`); the admin
changes rows only through its actions, which run the same SQL as `outbox retry`
and `outbox subscriptions pause|resume`.
"""

from __future__ import annotations

from typing import Any

from outbox.django import conf

APP_LABEL = "outbox"


class OutboxRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return conf.database() if model._meta.app_label == APP_LABEL else None

    db_for_write = db_for_read

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        if APP_LABEL in (obj1._meta.app_label, obj2._meta.app_label):
            return obj1._meta.app_label == obj2._meta.app_label
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        if app_label != APP_LABEL:
            return None
        # Model operations are for Django's state only (the models are unmanaged); the SQL step runs on one database.
        return model_name is None and db == conf.database()
