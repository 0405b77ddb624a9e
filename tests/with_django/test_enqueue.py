"""The outbox on Django's connection: the event shares the host's transaction."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from django.db import connection, transaction

import outbox
from outbox import CloudEvent, InvalidEventError
from outbox.django import connection as django_connection
from outbox.django import process_cloudevent
from tests.support import zaak_event
from tests.with_django.conftest import outbox_rows

pytestmark = pytest.mark.django_db(transaction=True)


def ids(url: str) -> list[str]:
    return [event["id"] for event in outbox_rows(url)]


def test_inside_atomic_the_event_commits_with_the_change(django_db_url: str) -> None:
    from onderwerpen.models import Klantcontact

    event = zaak_event(str(uuid.uuid4()))
    with transaction.atomic():
        Klantcontact.objects.create(onderwerp="vraag")
        outbox.enqueue(connection, event)
        assert ids(django_db_url) == []  # not visible before the commit
    assert ids(django_db_url) == [event.id]
    assert Klantcontact.objects.count() == 1


def test_a_rollback_takes_the_event_with_it(django_db_url: str) -> None:
    from onderwerpen.models import Klantcontact

    def change() -> None:
        with transaction.atomic():
            Klantcontact.objects.create(onderwerp="vraag")
            outbox.enqueue_many(connection, [zaak_event(str(uuid.uuid4())), zaak_event(str(uuid.uuid4()))])
            raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        change()
    assert ids(django_db_url) == []
    assert Klantcontact.objects.count() == 0


def test_a_rolled_back_savepoint_takes_its_events_and_keeps_the_outer_ones(django_db_url: str) -> None:
    kept, dropped = zaak_event(str(uuid.uuid4())), zaak_event(str(uuid.uuid4()))

    def inner() -> None:
        with transaction.atomic():
            outbox.enqueue(connection, dropped)
            raise RuntimeError("inner block failed")

    with transaction.atomic():
        outbox.enqueue(connection, kept)
        with pytest.raises(RuntimeError):
            inner()
    assert ids(django_db_url) == [kept.id]


def test_outside_atomic_the_event_is_its_own_transaction_and_says_so_once(
    django_db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(django_connection, "_warned_autocommit", False)
    first, second = zaak_event(str(uuid.uuid4())), zaak_event(str(uuid.uuid4()))
    with caplog.at_level(logging.WARNING, logger="outbox.django"):
        outbox.enqueue(connection, first)
        assert ids(django_db_url) == [first.id]  # committed at once, no atomic block around it
        outbox.enqueue(connection, second)
    assert ids(django_db_url) == [first.id, second.id]
    lines = [r.getMessage() for r in caplog.records if "outside transaction.atomic()" in r.getMessage()]
    assert len(lines) == 1
    assert "not together with your change" in lines[0]


def test_connections_by_alias_work_like_the_default(django_db_url: str) -> None:
    from django.db import connections

    event = zaak_event(str(uuid.uuid4()))
    with transaction.atomic(using="default"):
        outbox.enqueue(connections["default"], event)
    assert ids(django_db_url) == [event.id]


def test_an_invalid_event_raises_before_anything_is_written(django_db_url: str) -> None:
    with pytest.raises(InvalidEventError, match="type: must be a non-empty string"), transaction.atomic():
        process_cloudevent("")
    assert ids(django_db_url) == []


def test_a_failed_transaction_is_refused(django_db_url: str) -> None:
    from django.db import DatabaseError

    with transaction.atomic():
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT 1/0")
        except DatabaseError:
            connection.needs_rollback = True
        with pytest.raises(outbox.NoTransactionError, match="already failed"):
            outbox.enqueue(connection, zaak_event(str(uuid.uuid4())))
    assert ids(django_db_url) == []


async def test_async_enqueue_says_django_connections_are_sync() -> None:
    with pytest.raises(outbox.UnsupportedConnectionError, match="synchronous"):
        await outbox.enqueue_async(connection, zaak_event(str(uuid.uuid4())))


# -- the drop-in for notifications-api-common ---------------------------------------------


def test_process_cloudevent_writes_the_event_notifications_api_common_builds(django_db_url: str, settings: Any) -> None:
    settings.NOTIFICATIONS_SOURCE = "urn:nld:oin:01823288444:openklant"
    with transaction.atomic():
        process_cloudevent(
            "nl.overheid.zaken.zaak-gekoppeld",
            subject="a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
            dataref="https://openklant.example/onderwerpobjecten/1",
            data={"zaak": "urn:uuid:a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5", "label": "Mijn Klantcontact Onderwerp"},
        )
    [event] = outbox_rows(django_db_url)
    assert set(event) == {
        "id",
        "source",
        "specversion",
        "type",
        "subject",
        "time",
        "dataref",
        "datacontenttype",
        "data",
    }
    assert uuid.UUID(event["id"]).version == 4
    assert event["source"] == "urn:nld:oin:01823288444:openklant"
    assert event["specversion"] == "1.0"
    assert event["type"] == "nl.overheid.zaken.zaak-gekoppeld"
    assert event["subject"] == "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"
    assert event["dataref"] == "https://openklant.example/onderwerpobjecten/1"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {
        "zaak": "urn:uuid:a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
        "label": "Mijn Klantcontact Onderwerp",
    }
    # To the second, UTC, with Z, as the original's strftime("%Y-%m-%dT%H:%M:%SZ").
    assert len(event["time"]) == 20 and event["time"].endswith("Z") and event["time"][10] == "T"
    CloudEvent.from_dict(event)  # and a valid NL GOV event


def test_process_cloudevent_leaves_unset_what_is_none_or_json_null(django_db_url: str) -> None:
    import json

    document = json.loads('{"type": "nl.overheid.klantinteracties.klantcontact-geregistreerd", "subject": null}')
    with transaction.atomic():
        process_cloudevent(document["type"], subject=document["subject"])
    [event] = outbox_rows(django_db_url)
    assert "subject" not in event and "dataref" not in event and "data" not in event
    assert event["datacontenttype"] == "application/json"


def test_process_cloudevent_uses_cloudevent_specversion(django_db_url: str, settings: Any) -> None:
    settings.CLOUDEVENT_SPECVERSION = "1.0"
    with transaction.atomic():
        process_cloudevent("nl.overheid.zaken.zaak-gekoppeld")
    assert outbox_rows(django_db_url)[0]["specversion"] == "1.0"
    settings.CLOUDEVENT_SPECVERSION = "0.3"
    with pytest.raises(InvalidEventError, match="specversion"), transaction.atomic():
        process_cloudevent("nl.overheid.zaken.zaak-gekoppeld")


def test_process_cloudevent_without_a_source_writes_nothing_and_warns(
    django_db_url: str, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.NOTIFICATIONS_SOURCE = ""
    with caplog.at_level(logging.WARNING, logger="outbox.django"), transaction.atomic():
        process_cloudevent("nl.overheid.zaken.zaak-gekoppeld", subject=str(uuid.uuid4()))
    assert outbox_rows(django_db_url) == []
    assert any("no_notification_source_set" in r.getMessage() for r in caplog.records)


def test_process_cloudevent_has_the_signature_of_notifications_api_common() -> None:
    import inspect

    parameters = inspect.signature(process_cloudevent).parameters
    assert list(parameters) == ["event_type", "subject", "dataref", "data"]
    assert [p.default for p in parameters.values()][1:] == [None, None, None]


def test_zaak_links_from_open_klants_grouped_identificator(django_db_url: str, settings: Any) -> None:
    """Open Klant's model exposes the identificator as a group (a mapping with snake_case keys)."""
    from types import SimpleNamespace

    from outbox.django import enqueue_zaak_links

    settings.ENABLE_CLOUD_EVENTS = True
    zaak = str(uuid.uuid4())
    ident = {"code_objecttype": "zaak", "code_soort_object_id": "uuid", "object_id": zaak, "code_register": "openzaak"}
    before = SimpleNamespace(onderwerpobjectidentificator=ident, klantcontact="Mijn Klantcontact Onderwerp")
    after = SimpleNamespace(
        onderwerpobjectidentificator={**ident, "code_objecttype": "klantcontact"}, klantcontact=None
    )
    url = "https://openklant.example/klantinteracties/api/v1/onderwerpobjecten/5fee9673"
    with transaction.atomic():
        written = enqueue_zaak_links(before, after, url=url)
    assert [e.type for e in written] == ["nl.overheid.zaken.zaak-ontkoppeld"]
    [event] = outbox_rows(django_db_url)
    assert event["subject"] == zaak
    assert event["data"] == {
        "zaak": f"urn:uuid:{zaak}",
        "linkTo": url,
        "label": "Mijn Klantcontact Onderwerp",
        "linkObjectType": "Onderwerpobject",
    }


def test_the_event_catalogue_holds_for_the_drop_in(django_db_url: str, run_cli: Any, settings: Any) -> None:
    from pathlib import Path

    from outbox._catalogue import forget

    catalogue = Path(outbox.__file__).parent / "catalogues" / "zaak-links.json"
    assert run_cli("event-types", "import", str(catalogue), url=django_db_url).returncode == 0
    assert run_cli("event-types", "disable", "zaak-ontkoppeld", url=django_db_url).returncode == 0
    forget()
    settings.NOTIFICATIONS_SOURCE = "urn:nld:oin:01823288444:openklant"
    with pytest.raises(InvalidEventError, match=r"data\.zaak: .* \(schema of 'zaak-gekoppeld'\)"), transaction.atomic():
        process_cloudevent(
            "nl.overheid.zaken.zaak-gekoppeld", subject="s", data={"zaak": "x", "linkTo": "y", "linkObjectType": "z"}
        )
    with transaction.atomic():
        process_cloudevent("nl.overheid.zaken.zaak-ontkoppeld", subject="s", data={})  # disabled: not written
    assert outbox_rows(django_db_url) == []


def test_an_event_of_the_django_host_reaches_a_receiver_like_open_zaak(
    django_db_url: str, run_cli: Any, tmp_path: Any
) -> None:
    """Registered by `outbox subscriptions add` (verified by the probe: no handshake there), the
    host's event reaches a receiver with the SDKs' exact media type check, with no option set."""
    from onderwerpen.models import Klantcontact

    from tests.support import SdkReceiver, WorkerProcess, wait_until

    with SdkReceiver().running() as receiver:
        added = run_cli(
            "subscriptions", "add", "--callback-url", receiver.url, "--type", "nl.overheid.zaken.*",
            "--allow-insecure", "--auth", f"Bearer {receiver.token}", "--origin", "outbox.test.example",
            url=django_db_url,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        event = zaak_event(str(uuid.uuid4()))
        with transaction.atomic():
            Klantcontact.objects.create(onderwerp="vraag")
            outbox.enqueue(connection, event)
        worker = WorkerProcess(django_db_url, tmp_path / "worker.log")
        try:
            wait_until(lambda: event.id in [e["id"] for e in receiver.accepted()], message="accepted (202)")
        finally:
            worker.terminate()
