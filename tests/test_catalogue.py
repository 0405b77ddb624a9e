"""The event catalogue: the CLI, the shipped zaak catalogue, and what it does at enqueue."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

import outbox
from outbox import CloudEvent, InvalidEventError
from outbox._catalogue import EventType, InvalidEventTypeError, forget

ZAAK_LINKS = Path(outbox.__file__).parent / "catalogues" / "zaak-links.json"
ZAAK = "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"


def _own_types(listing: str) -> list[dict[str, object]]:
    """The listed event types without the built-in operational ones (tests/test_operational_events.py)."""
    return [e for e in json.loads(listing) if not e.get("operational")]


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    forget()
    monkeypatch.delenv("OUTBOX_CATALOGUE", raising=False)
    monkeypatch.delenv("OUTBOX_CATALOGUE_TTL", raising=False)


def gekoppeld(**changes: Any) -> CloudEvent:
    fields: dict[str, Any] = {
        "type": "nl.overheid.zaken.zaak-gekoppeld",
        "source": "urn:nld:oin:01823288444:openklant",
        "subject": ZAAK,
        "datacontenttype": "application/json",
        "data": {
            "zaak": f"urn:uuid:{ZAAK}",
            "linkTo": "http://open-klant.local:8000/klantinteracties/api/v1/onderwerpobjecten/5fee9673",
            "label": "Mijn Klantcontact Onderwerp",
            "linkObjectType": "Onderwerpobject",
        },
    }
    fields.update(changes)
    return CloudEvent(**fields)


def count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM outbox.events").fetchone()
    return int(row[0]) if row else 0


def load(run_cli: Any) -> None:
    result = run_cli("event-types", "import", str(ZAAK_LINKS))
    assert result.returncode == 0, result.stderr


# -- the CLI -------------------------------------------------------------------------------------------


def test_import_export_round_trip_and_idempotence(run_cli: Any, tmp_path: Path) -> None:
    first = run_cli("event-types", "import", str(ZAAK_LINKS))
    assert first.stdout.strip() == "imported 2 event types (2 added or changed)"
    again = run_cli("event-types", "import", str(ZAAK_LINKS))
    assert again.stdout.strip() == "imported 2 event types (0 added or changed)"
    exported = json.loads(run_cli("event-types", "export").stdout)
    assert exported == json.loads(ZAAK_LINKS.read_text())
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(exported))
    assert run_cli("event-types", "import", str(path)).stdout.strip().endswith("(0 added or changed)")


def test_add_show_update_enable_disable_remove(run_cli: Any, tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}))
    added = run_cli(
        "event-types", "add", "--name", "Klantcontact geregistreerd", "--slug", "klantcontact-geregistreerd",
        "--type", "nl.overheid.klantinteracties.klantcontact-geregistreerd", "--schema", str(schema),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shown = json.loads(run_cli("event-types", "show", "klantcontact-geregistreerd", "--json").stdout)
    assert shown == {
        "name": "Klantcontact geregistreerd",
        "slug": "klantcontact-geregistreerd",
        "type": "nl.overheid.klantinteracties.klantcontact-geregistreerd",
        "source": None,
        "schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        "isEnabled": True,
        "description": None,
        "operational": False,
    }
    assert (
        run_cli(
            "event-types", "update", "klantcontact-geregistreerd", "--source", "urn:s", "--clear", "schema"
        ).returncode
        == 0
    )
    assert run_cli("event-types", "disable", "klantcontact-geregistreerd").returncode == 0
    shown = json.loads(run_cli("event-types", "show", "klantcontact-geregistreerd", "--json").stdout)
    assert (shown["source"], shown["schema"], shown["isEnabled"]) == ("urn:s", None, False)
    assert "klantcontact-geregistreerd" in run_cli("event-types", "list").stdout
    assert run_cli("event-types", "enable", "klantcontact-geregistreerd").returncode == 0
    assert _own_types(run_cli("event-types", "list", "--json").stdout)[0]["isEnabled"] is True
    assert run_cli("event-types", "remove", "klantcontact-geregistreerd").returncode == 0
    gone = run_cli("event-types", "show", "klantcontact-geregistreerd")
    assert gone.returncode == 1
    assert "no event type with slug 'klantcontact-geregistreerd'" in gone.stderr


def test_from_json_on_stdin_and_every_fault_at_once(run_cli: Any) -> None:
    bad = {
        "name": "",
        "slug": "Bad Slug",
        "type": "has space",
        "schema": {"type": "strin"},
        "isEnabled": "yes",
        "extra": 1,
    }
    refused = run_cli("event-types", "add", "--from-json", "-", input=json.dumps(bad))
    assert refused.returncode == 1
    for problem in (
        "extra: is not a field of an event type",
        "slug: must be lowercase letters and digits",
        "type: must be a CloudEvents type",
        "name: must be a non-empty string",
        "isEnabled: must be true or false",
        'schema: not a valid JSON Schema: "strin" is not valid under any of the schemas',
    ):
        assert problem in refused.stderr
    assert _own_types(run_cli("event-types", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"$schema": "https://json-schema.org/draft/2019-09/schema"}, "$schema must be draft 2020-12"),
        ({"pattern": "("}, "not a valid JSON Schema"),
        ({"$ref": "https://example.com/other.json"}, "not a valid JSON Schema"),
        ("object", "must be a JSON Schema: an object"),
        ({"minLength": -1}, "not a valid JSON Schema"),
    ],
)
def test_invalid_schemas_are_refused_with_the_reason(schema: Any, reason: str) -> None:
    with pytest.raises(InvalidEventTypeError) as refused:
        EventType.from_json({"name": "x", "slug": "x", "type": "x", "schema": schema})
    assert refused.value.problems[0].startswith("schema: ")
    assert reason in refused.value.problems[0]


def test_import_refuses_a_bad_file_whole(run_cli: Any, tmp_path: Path) -> None:
    entries = json.loads(ZAAK_LINKS.read_text())
    entries.append({"name": "x", "slug": "zaak-gekoppeld", "type": "other"})
    entries.append({"name": "y", "slug": "y", "type": "t", "schema": {"type": 1}})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(entries))
    refused = run_cli("event-types", "import", str(path))
    assert refused.returncode == 1
    assert "[3].schema: not a valid JSON Schema" in refused.stderr
    assert "slug: 'zaak-gekoppeld' is in the file twice" in refused.stderr
    assert json.loads(run_cli("event-types", "export").stdout) == []
    duplicate_type = tmp_path / "dup.json"
    duplicate_type.write_text(
        json.dumps([{"name": "a", "slug": "a", "type": "t"}, {"name": "b", "slug": "b", "type": "t"}])
    )
    refused = run_cli("event-types", "import", str(duplicate_type))
    assert "two event types would have the same type" in refused.stderr
    assert json.loads(run_cli("event-types", "export").stdout) == []


# -- at enqueue ----------------------------------------------------------------------------------------


def test_the_shipped_catalogue_accepts_the_seeds_events(
    run_cli: Any, conn: psycopg.Connection[Any], database_url: str
) -> None:
    load(run_cli)
    ontkoppeld = gekoppeld(type="nl.overheid.zaken.zaak-ontkoppeld")
    assert outbox.enqueue_many(conn, [gekoppeld(), ontkoppeld]) == [1, 2]
    conn.commit()
    assert count(database_url) == 2


@pytest.mark.parametrize(
    ("data", "attribute", "rule"),
    [
        ({"linkTo": "https://x", "linkObjectType": "Onderwerpobject"}, "data", '"zaak" is a required property'),
        (
            {"zaak": "urn:uuid:nope", "linkTo": "https://x", "linkObjectType": "Onderwerpobject"},
            "data.zaak",
            "does not match",
        ),
        ({"zaak": f"urn:uuid:{ZAAK}", "linkTo": 5, "linkObjectType": "x"}, "data.linkTo", "is not of type"),
        (None, "data", "is not of type"),
    ],
)
def test_data_that_breaks_the_schema_raises_naming_the_path_and_writes_nothing(
    run_cli: Any, conn: psycopg.Connection[Any], database_url: str, data: Any, attribute: str, rule: str
) -> None:
    load(run_cli)
    with pytest.raises(InvalidEventError) as raised:
        outbox.enqueue_many(conn, [gekoppeld(subject="ok"), gekoppeld(data=data)])
    assert raised.value.attribute == attribute
    assert rule in raised.value.rule and "(schema of 'zaak-gekoppeld')" in raised.value.rule
    conn.commit()
    assert count(database_url) == 0


def test_source_must_be_the_entrys(run_cli: Any, conn: psycopg.Connection[Any]) -> None:
    load(run_cli)
    assert (
        run_cli("event-types", "update", "zaak-gekoppeld", "--source", "urn:nld:oin:01823288444:openklant").returncode
        == 0
    )
    assert outbox.enqueue(conn, gekoppeld()) is not None
    with pytest.raises(InvalidEventError, match="source: must be 'urn:nld:oin:01823288444:openklant'"):
        outbox.enqueue(conn, gekoppeld(source="urn:other"))


def test_a_disabled_type_is_not_written(run_cli: Any, conn: psycopg.Connection[Any], database_url: str) -> None:
    load(run_cli)
    assert run_cli("event-types", "disable", "zaak-ontkoppeld").returncode == 0
    other = CloudEvent(type="nl.overheid.documenten.x", source="urn:s")
    ontkoppeld = gekoppeld(type="nl.overheid.zaken.zaak-ontkoppeld")
    assert outbox.enqueue(conn, ontkoppeld) is None
    positions = outbox.enqueue_many(conn, [gekoppeld(), ontkoppeld, other])
    assert positions[0] is not None and positions[1] is None and positions[2] is not None
    assert outbox.enqueue_many(conn, [ontkoppeld]) == [None]
    conn.commit()
    with psycopg.connect(database_url) as reader:
        types = [r[0] for r in reader.execute("SELECT event->>'type' FROM outbox.events ORDER BY position")]
    assert types == ["nl.overheid.zaken.zaak-gekoppeld", "nl.overheid.documenten.x"]


def test_strict_refuses_unregistered_types(
    run_cli: Any, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    load(run_cli)
    other = CloudEvent(type="nl.overheid.documenten.x", source="urn:s")
    assert outbox.enqueue(conn, other) is not None  # open (the default): written as before
    monkeypatch.setenv("OUTBOX_CATALOGUE", "strict")
    with pytest.raises(InvalidEventError, match="type: 'nl.overheid.documenten.x' is not in the event catalogue"):
        outbox.enqueue(conn, other)
    assert outbox.enqueue(conn, gekoppeld()) is not None
    monkeypatch.setenv("OUTBOX_CATALOGUE", "lenient")
    with pytest.raises(ValueError, match="OUTBOX_CATALOGUE: must be open or strict"):
        outbox.enqueue(conn, gekoppeld())


async def test_async_connections_hold_the_catalogue_too(run_cli: Any, aconn: psycopg.AsyncConnection[Any]) -> None:
    load(run_cli)
    assert run_cli("event-types", "disable", "zaak-ontkoppeld").returncode == 0
    assert await outbox.enqueue_async(aconn, gekoppeld(type="nl.overheid.zaken.zaak-ontkoppeld")) is None
    with pytest.raises(InvalidEventError, match="data.zaak"):
        await outbox.enqueue_many_async(aconn, [gekoppeld(data={"zaak": 1, "linkTo": "x", "linkObjectType": "y"})])
    assert (await outbox.enqueue_many_async(aconn, [gekoppeld()]))[0] is not None


def test_sqlalchemy_sessions_hold_the_catalogue_too(run_cli: Any, database_url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    load(run_cli)
    url = "postgresql+psycopg:///?" + "&".join(
        f"{k}={v}" for k, v in psycopg.conninfo.conninfo_to_dict(database_url).items()
    )
    engine = create_engine(url)
    try:
        with Session(engine) as session, pytest.raises(InvalidEventError, match="data.zaak"):
            outbox.enqueue(session, gekoppeld(data={"zaak": "x", "linkTo": "x", "linkObjectType": "y"}))
    finally:
        engine.dispose()


def test_a_change_reaches_a_running_host_within_the_ttl(
    run_cli: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(run_cli)
    monkeypatch.setenv("OUTBOX_CATALOGUE_TTL", "1")
    with psycopg.connect(database_url) as host:
        assert outbox.enqueue(host, gekoppeld()) is not None
        host.commit()
        assert run_cli("event-types", "disable", "zaak-gekoppeld").returncode == 0
        disabled_at = time.monotonic()  # committed by now
        seen = None
        while time.monotonic() - disabled_at < 3:
            written = outbox.enqueue(host, gekoppeld(id=str(uuid.uuid4())))
            host.commit()
            if written is None:
                seen = time.monotonic() - disabled_at
                break
            time.sleep(0.05)
        assert seen is not None, "the host never saw the change"
        assert seen <= 1.0 + 0.5  # the TTL, and a little for the loop


def test_in_the_steady_state_no_round_trip_is_spent_on_the_catalogue(
    run_cli: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(run_cli)
    monkeypatch.setenv("OUTBOX_CATALOGUE_TTL", "60")
    with psycopg.connect(database_url) as host:
        outbox.enqueue(host, gekoppeld())  # loads the catalogue
        host.commit()
        sent: list[str] = []
        host.add_notice_handler(lambda _: None)
        original = psycopg.Cursor.execute

        def spy(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(bytes(statement).decode() if isinstance(statement, bytes) else str(statement))
            return original(self, statement, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", spy)
        for _ in range(5):
            outbox.enqueue(host, gekoppeld(id=str(uuid.uuid4())))
        host.commit()
    assert len(sent) == 5
    assert all("insert_event" in statement for statement in sent)


def test_a_change_made_meanwhile_is_not_lost(run_cli: Any, database_url: str) -> None:
    """`disable` reads, changes and writes the entry with the row locked: an edit that holds the row first
    is waited for and kept, not overwritten with what was read before it."""
    import threading

    load(run_cli)
    with psycopg.connect(database_url) as other:
        other.execute("SELECT 1 FROM outbox.event_types WHERE slug = 'zaak-gekoppeld' FOR UPDATE")
        result: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: result.update(done=run_cli("event-types", "disable", "zaak-gekoppeld"))
        )
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive()  # waiting for the row
        other.execute("UPDATE outbox.event_types SET name = 'Zaak gekoppeld (hernoemd)' WHERE slug = 'zaak-gekoppeld'")
        other.commit()
        thread.join(30)
    assert result["done"].returncode == 0, result["done"].stderr
    shown = json.loads(run_cli("event-types", "show", "zaak-gekoppeld", "--json").stdout)
    assert (shown["name"], shown["isEnabled"]) == ("Zaak gekoppeld (hernoemd)", False)
