"""The outbox in Django hosts: `INSTALLED_APPS += ["outbox.django"]` (app label `outbox`).

    from outbox.django import process_cloudevent      # instead of notifications_api_common.cloudevents

gives notifications-api-common's `process_cloudevent` the outbox's guarantee: the event is
written in the host's transaction. `outbox.enqueue(django.db.connection, event)` works too.
`enqueue_zaak_links` turns an Onderwerpobject's change into zaak-gekoppeld / zaak-ontkoppeld.
The app also brings the schema (`manage.py migrate`), `manage.py outbox …` (every `outbox`
command on Django's DATABASES), the outbox in the Django admin, and system checks.
"""

from __future__ import annotations

from outbox.django.events import enqueue_zaak_links, onderwerpobject_state, process_cloudevent

__all__ = ["enqueue_zaak_links", "onderwerpobject_state", "process_cloudevent"]
