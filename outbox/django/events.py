"""What Django hosts call: notifications-api-common's `process_cloudevent`, and the zaak links.

`process_cloudevent` takes the arguments of
`notifications_api_common.cloudevents.process_cloudevent` (0.13) and builds the
event that function builds, but writes it into the outbox in the caller's
transaction instead of handing it to a Celery task on the spot. A host switches
by changing one import:

    from notifications_api_common.cloudevents import process_cloudevent   # before
    from outbox.django import process_cloudevent                         # after

Wrappers of the form ``transaction.on_commit(lambda: process_cloudevent(...))``
should go with the switch: `on_commit` runs after the commit, so the event would
be written in a transaction of its own, and a crash between the two loses it.
Called directly, inside the host's `transaction.atomic()`, the event commits or
rolls back with the change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connections

from outbox._enqueue import enqueue, enqueue_many
from outbox._event import CloudEvent
from outbox.django import conf
from outbox.zaken import CloudEventSettings, Onderwerpobject, zaak_link_events

logger = logging.getLogger("outbox.django")

# notifications-api-common's setting and its default.
_SPECVERSION_DEFAULT = "1.0"


def process_cloudevent(
    event_type: str,
    subject: str | None = None,
    dataref: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Write the cloud event notifications-api-common would send into the outbox, in the current transaction.

    Nothing is written (a warning is logged) when `NOTIFICATIONS_SOURCE` is empty, as in the original.
    An invalid event raises `outbox.InvalidEventError` and writes nothing.
    """
    source = getattr(settings, "NOTIFICATIONS_SOURCE", "")
    if not source:
        logger.warning("no_notification_source_set: NOTIFICATIONS_SOURCE is empty, no cloud event written")
        return
    event = CloudEvent(
        type=event_type,
        source=source,
        specversion=getattr(settings, "CLOUDEVENT_SPECVERSION", None) or _SPECVERSION_DEFAULT,
        subject=subject,
        # The original's form: whole seconds, UTC, "Z".
        time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        dataref=dataref,
        datacontenttype="application/json",
        data=data,
    )
    enqueue(connections[conf.database()], event, schema=conf.schema())


# -- zaak-gekoppeld / zaak-ontkoppeld from Onderwerpobject model instances --------------

_IDENTIFICATOR_KEYS = {
    "codeObjecttype": "code_objecttype",
    "codeSoortObjectId": "code_soort_object_id",
    "objectId": "object_id",
    "codeRegister": "code_register",
}


def _identificator(instance: Any) -> dict[str, str | None] | None:
    """The onderwerpobjectidentificator as the API spells it (camelCase), from Open Klant's model shape:
    a mapping attribute (its GegevensGroepType, snake_case keys) or the flat `onderwerpobjectidentificator_*`
    fields."""
    value = getattr(instance, "onderwerpobjectidentificator", None)
    if isinstance(value, Mapping):
        found = {api: value.get(snake, value.get(api)) for api, snake in _IDENTIFICATOR_KEYS.items()}
    else:
        found = {
            api: getattr(instance, f"onderwerpobjectidentificator_{snake}", None)
            for api, snake in _IDENTIFICATOR_KEYS.items()
        }
    found = {key: (str(v) if v not in (None, "") else None) for key, v in found.items()}
    return found if any(found.values()) else None


def _default_label(instance: Any) -> str:
    # Open Klant labels the link with its Klantcontact.
    klantcontact = getattr(instance, "klantcontact", None)
    return str(klantcontact if klantcontact is not None else instance)


def onderwerpobject_state(
    instance: Any, url: str | Callable[[Any], str], label: Callable[[Any], str] = _default_label
) -> Onderwerpobject:
    """An Onderwerpobject model instance as `outbox.zaken` sees it."""
    return Onderwerpobject(
        url=url(instance) if callable(url) else url,
        label=label(instance),
        onderwerpobjectidentificator=_identificator(instance),
    )


def enqueue_zaak_links(
    before: Any | None,
    after: Any | None,
    *,
    url: str | Callable[[Any], str],
    label: Callable[[Any], str] = _default_label,
) -> list[CloudEvent]:
    """Enqueue, in the current transaction, the zaak-gekoppeld / zaak-ontkoppeld events of an Onderwerpobject
    going from `before` to `after` (model instances; None for "did not exist" / "deleted").

    `url` is the Onderwerpobject's API URL (`linkTo`), or a function of the instance that makes it; `label`
    makes the label (default: its Klantcontact, as Open Klant). The gates are Django settings
    `ENABLE_CLOUD_EVENTS` and `NOTIFICATIONS_SOURCE`. Returns the events written.
    """
    gates = CloudEventSettings(
        enable_cloud_events=bool(getattr(settings, "ENABLE_CLOUD_EVENTS", False)),
        notifications_source=str(getattr(settings, "NOTIFICATIONS_SOURCE", "") or "").strip(),
    )
    events = zaak_link_events(
        onderwerpobject_state(before, url, label) if before is not None else None,
        onderwerpobject_state(after, url, label) if after is not None else None,
        gates,
    )
    if events:
        enqueue_many(connections[conf.database()], events, schema=conf.schema())
    return events
