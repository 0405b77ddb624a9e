"""The migration operation that applies the outbox's `sql/` files (see migrations/0001_initial.py)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from outbox._migrate import migrate
from outbox.django import conf


class ApplyOutboxSql(migrations.RunPython):
    """Apply `sql/` up to migration `version` to OUTBOX_SCHEMA on OUTBOX_DATABASE (forward only)."""

    reduces_to_sql = False

    def __init__(self, version: int) -> None:
        self.version = version
        super().__init__(self._apply, migrations.RunPython.noop, atomic=False)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (self.__class__.__qualname__, [], {"version": self.version})

    def describe(self) -> str:
        return f"Apply the outbox's sql/ migrations up to {self.version:03d}"

    def _apply(self, apps: Any, schema_editor: Any) -> None:
        connection = schema_editor.connection
        if connection.alias != conf.database():  # `migrate --database other`: the outbox is not there
            return
        connection.ensure_connection()
        if connection.in_atomic_block:  # pragma: no cover - atomic = False on the migration
            raise RuntimeError("the outbox migration must run outside a transaction")
        migrate(connection.connection, schema=conf.schema(), up_to=self.version)
