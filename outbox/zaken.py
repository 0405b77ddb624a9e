"""Open Klant's zaak-gekoppeld / zaak-ontkoppeld events from an Onderwerpobject's change.

An Onderwerpobject points at a Zaak when its `onderwerpobjectidentificator` has
``codeObjecttype == "zaak"`` and ``codeSoortObjectId == "uuid"``; `objectId` is
then the Zaak UUID. Compare the state before and after a change:

============================  =====================================================
before → after                events
============================  =====================================================
None → points at a Zaak       zaak-gekoppeld (after)
points at a Zaak → None       zaak-ontkoppeld (before)
identificator changed         zaak-ontkoppeld (before) if it pointed at a Zaak, then
                              zaak-gekoppeld (after) if it points at one now
identificator unchanged       nothing (label or url changes are not a new relation)
============================  =====================================================

This is the behaviour of Open Klant's Onderwerpobject endpoints, with the event
shape of its documentation: `subject` is the Zaak UUID, `source` is
`NOTIFICATIONS_SOURCE`, and `data` carries `zaak` (``urn:uuid:…``), `linkTo`
(the Onderwerpobject's URL), `label` and `linkObjectType`. The unlink carries the
previous state's values so Open Zaak can find the ZaakObject to remove.

Events are made only when `ENABLE_CLOUD_EVENTS` is true and
`NOTIFICATIONS_SOURCE` is non-empty.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from outbox._event import CloudEvent

ZAAK_GEKOPPELD = "nl.overheid.zaken.zaak-gekoppeld"
ZAAK_ONTKOPPELD = "nl.overheid.zaken.zaak-ontkoppeld"
LINK_OBJECT_TYPE = "Onderwerpobject"

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})

__all__ = [
    "LINK_OBJECT_TYPE",
    "ZAAK_GEKOPPELD",
    "ZAAK_ONTKOPPELD",
    "CloudEventSettings",
    "Onderwerpobject",
    "zaak_link_events",
]


@dataclass(frozen=True)
class Onderwerpobject:
    """The parts of an Open Klant Onderwerpobject the events need."""

    url: str
    label: str
    onderwerpobjectidentificator: Mapping[str, str | None] | None

    @property
    def zaak_uuid(self) -> str | None:
        """The Zaak UUID this Onderwerpobject points at, or None."""
        ident = self.onderwerpobjectidentificator
        if not ident:
            return None
        if ident.get("codeObjecttype") == "zaak" and ident.get("codeSoortObjectId") == "uuid":
            object_id = ident.get("objectId")
            return object_id or None
        return None


@dataclass(frozen=True)
class CloudEventSettings:
    """Open Klant's two gates: ENABLE_CLOUD_EVENTS and NOTIFICATIONS_SOURCE."""

    enable_cloud_events: bool = False
    notifications_source: str = ""

    @property
    def enabled(self) -> bool:
        return self.enable_cloud_events and bool(self.notifications_source.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CloudEventSettings:
        env = os.environ if environ is None else environ
        return cls(
            enable_cloud_events=env.get("ENABLE_CLOUD_EVENTS", "").strip().lower() in _TRUE,
            notifications_source=env.get("NOTIFICATIONS_SOURCE", "").strip(),
        )


def _event(kind: str, state: Onderwerpobject, zaak_uuid: str, source: str, now: str) -> CloudEvent:
    return CloudEvent(
        type=kind,
        source=source,
        subject=zaak_uuid,
        time=now,
        datacontenttype="application/json",
        data={
            "zaak": f"urn:uuid:{zaak_uuid}",
            "linkTo": state.url,
            "label": state.label,
            "linkObjectType": LINK_OBJECT_TYPE,
        },
    )


def zaak_link_events(
    before: Onderwerpobject | None,
    after: Onderwerpobject | None,
    settings: CloudEventSettings | None = None,
) -> list[CloudEvent]:
    """The events for an Onderwerpobject going from `before` to `after` (None = absent).

    Enqueue them in the same transaction as the change: ``enqueue_many(session, events)``.
    """
    settings = CloudEventSettings.from_env() if settings is None else settings
    if not settings.enabled:
        return []
    was = before.zaak_uuid if before is not None else None
    now = after.zaak_uuid if after is not None else None
    before_ident = dict(before.onderwerpobjectidentificator or {}) if before is not None else None
    after_ident = dict(after.onderwerpobjectidentificator or {}) if after is not None else None
    if before_ident == after_ident:
        return []
    # Open Klant's own timestamp form: whole seconds, UTC, Z.
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    source = settings.notifications_source
    events = []
    if was is not None and before is not None:
        events.append(_event(ZAAK_ONTKOPPELD, before, was, source, stamp))
    if now is not None and after is not None:
        events.append(_event(ZAAK_GEKOPPELD, after, now, source, stamp))
    return events
