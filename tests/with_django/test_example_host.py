"""The example Django host end to end: its views emit through the outbox; a worker started with
`manage.py outbox run` delivers what it committed; `manage.py outbox` is the `outbox` command."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.support import Receiver, WorkerProcess, subscribe, wait_until
from tests.with_django.conftest import HOST_DIR, manage, outbox_rows

pytestmark = pytest.mark.django_db(transaction=True)

AUTH = {"HTTP_AUTHORIZATION": "Token example-token"}
BASE = "/klantinteracties/api/v1"


def identificator(zaak: str) -> dict[str, str]:
    return {"codeObjecttype": "zaak", "codeSoortObjectId": "uuid", "objectId": zaak, "codeRegister": "openzaak"}


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(f"{BASE}/{path}", json.dumps(body), content_type="application/json", **AUTH)


def test_create_update_delete_emit_the_zaak_events(django_db_url: str, settings: Any) -> None:
    settings.ENABLE_CLOUD_EVENTS = True
    settings.NOTIFICATIONS_SOURCE = "urn:nld:oin:01823288444:openklant"
    client = Client()
    klantcontact = post(client, "klantcontacten", {"onderwerp": "Mijn Klantcontact Onderwerp"}).json()
    zaak_a, zaak_b = str(uuid.uuid4()), str(uuid.uuid4())

    created = post(
        client,
        "onderwerpobjecten",
        {"klantcontact": klantcontact["uuid"], "onderwerpobjectidentificator": identificator(zaak_a)},
    )
    assert created.status_code == 201
    url = created.json()["url"]
    path = url.removeprefix("http://testserver")
    changed = client.patch(
        path,
        json.dumps({"onderwerpobjectidentificator": identificator(zaak_b)}),
        content_type="application/json",
        **AUTH,
    )
    assert changed.status_code == 200
    assert client.delete(path, **AUTH).status_code == 204

    events = outbox_rows(django_db_url)
    assert [(e["type"], e.get("subject")) for e in events] == [
        ("nl.overheid.klantinteracties.klantcontact-geregistreerd", klantcontact["uuid"]),
        ("nl.overheid.zaken.zaak-gekoppeld", zaak_a),
        ("nl.overheid.zaken.zaak-ontkoppeld", zaak_a),
        ("nl.overheid.zaken.zaak-gekoppeld", zaak_b),
        ("nl.overheid.zaken.zaak-ontkoppeld", zaak_b),
    ]
    assert events[1]["data"] == {
        "zaak": f"urn:uuid:{zaak_a}",
        "linkTo": url,
        "label": "Mijn Klantcontact Onderwerp",
        "linkObjectType": "Onderwerpobject",
    }
    assert events[4]["data"]["zaak"] == f"urn:uuid:{zaak_b}"  # the unlink carries what was linked
    assert {e["source"] for e in events} == {"urn:nld:oin:01823288444:openklant"}


def test_a_change_that_fails_emits_nothing(django_db_url: str) -> None:
    client = Client()
    refused = post(
        client,
        "onderwerpobjecten",
        {"klantcontact": str(uuid.uuid4()), "onderwerpobjectidentificator": identificator(str(uuid.uuid4()))},
    )
    assert refused.status_code == 400
    assert refused.json()["invalidParams"][0]["name"] == "klantcontact"
    assert outbox_rows(django_db_url) == []


def test_the_gates_are_django_settings(django_db_url: str, settings: Any) -> None:
    client = Client()
    settings.ENABLE_CLOUD_EVENTS = False
    assert (
        post(
            client, "onderwerpobjecten", {"onderwerpobjectidentificator": identificator(str(uuid.uuid4()))}
        ).status_code
        == 201
    )
    settings.ENABLE_CLOUD_EVENTS = True
    settings.NOTIFICATIONS_SOURCE = " "
    assert (
        post(
            client, "onderwerpobjecten", {"onderwerpobjectidentificator": identificator(str(uuid.uuid4()))}
        ).status_code
        == 201
    )
    assert outbox_rows(django_db_url) == []


def test_label_or_url_changes_are_not_a_new_link(django_db_url: str, settings: Any) -> None:
    settings.ENABLE_CLOUD_EVENTS = True
    client = Client()
    zaak = str(uuid.uuid4())
    path = post(client, "onderwerpobjecten", {"onderwerpobjectidentificator": identificator(zaak)}).json()["url"]
    path = path.removeprefix("http://testserver")
    other = post(client, "klantcontacten", {"onderwerp": "ander onderwerp"}).json()["uuid"]
    assert (
        client.patch(path, json.dumps({"klantcontact": other}), content_type="application/json", **AUTH).status_code
        == 200
    )
    assert [e["type"] for e in outbox_rows(django_db_url)] == [
        "nl.overheid.zaken.zaak-gekoppeld",
        "nl.overheid.klantinteracties.klantcontact-geregistreerd",
    ]


def test_the_api_refuses_requests_without_the_token(django_db_url: str) -> None:
    response = Client().post(f"{BASE}/klantcontacten", "{}", content_type="application/json")
    assert response.status_code == 401
    assert outbox_rows(django_db_url) == []


def test_a_worker_started_by_manage_py_delivers_what_the_host_committed(
    django_db_url: str, receiver: Receiver, tmp_path: Path, settings: Any
) -> None:
    settings.ENABLE_CLOUD_EVENTS = True
    subscribe(django_db_url, receiver.url)
    client = Client()
    zaken = [str(uuid.uuid4()) for _ in range(3)]
    for zaak in zaken:
        assert (
            post(client, "onderwerpobjecten", {"onderwerpobjectidentificator": identificator(zaak)}).status_code == 201
        )
    committed = outbox_rows(django_db_url)

    worker = WorkerProcess(
        django_db_url,
        tmp_path / "worker.log",
        {"DATABASE_URL": django_db_url},
        command=[sys.executable, "manage.py", "outbox"],
        cwd=HOST_DIR,
    )
    try:
        wait_until(lambda: len(receiver.events()) >= 3, message="three deliveries")
        assert worker.terminate() == 0
    finally:
        worker.stop_quietly()
    assert sorted(receiver.ids()) == sorted(e["id"] for e in committed)
    assert sorted(e["subject"] for e in receiver.events()) == sorted(zaken)
    first = receiver.events()[0]
    assert first == next(e for e in committed if e["id"] == first["id"])  # the event as committed, whole


def test_manage_py_outbox_status_json_equals_outbox_status_json(django_db_url: str, run_cli: Any) -> None:
    subscribe(django_db_url, "https://receiver.example/hook")
    from django.db import connection, transaction

    import outbox
    from tests.support import zaak_event

    with transaction.atomic():
        outbox.enqueue_many(connection, [zaak_event(str(uuid.uuid4())) for _ in range(2)])
    ours = manage("outbox", "status", "--json", url=django_db_url)
    assert ours.returncode == 0, ours.stderr
    theirs = run_cli("status", "--json", url=django_db_url)
    assert theirs.returncode == 0, theirs.stderr
    document, expected = json.loads(ours.stdout), json.loads(theirs.stdout)
    # The one figure that moves between the two runs: the oldest pending event's age, read later.
    assert 0 < document.pop("oldestPendingSeconds") <= expected.pop("oldestPendingSeconds")
    assert document == expected


def test_manage_py_outbox_passes_exit_codes_and_help_through(django_db_url: str) -> None:
    help_text = manage("outbox", url=django_db_url)
    assert help_text.returncode == 0
    assert "subscriptions" in help_text.stdout and "manage.py outbox" in help_text.stdout
    bad = manage("outbox", "retry", url=django_db_url)
    assert bad.returncode == 2
    assert "say which: --all-failed or --delivery ID" in bad.stderr
    unknown = manage("outbox", "--database", "replica", "status", url=django_db_url)
    assert unknown.returncode != 0
    assert "'replica' is not in DATABASES" in unknown.stderr
