"""The example host: an Onderwerpobject table changed with SQLAlchemy, events in the same session."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from outbox.zaken import ZAAK_GEKOPPELD, ZAAK_ONTKOPPELD, CloudEventSettings
from tests.test_enqueue import _sa_url

SOURCE = "urn:nld:oin:01823288444:openklant"
ON = CloudEventSettings(enable_cloud_events=True, notifications_source=SOURCE)


def _load_example() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "examples" / "open_klant_host.py"
    spec = importlib.util.spec_from_file_location("open_klant_host", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["open_klant_host"] = module
    spec.loader.exec_module(module)
    return module


host = _load_example()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(_sa_url(database_url))
    host.Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


def _events(reader: psycopg.Connection[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    rows = reader.execute(
        "SELECT event->>'type', event->>'subject', event FROM outbox.events ORDER BY position"
    ).fetchall()
    return [(t, s, e) for t, s, e in rows]


def _rows(reader: psycopg.Connection[Any]) -> list[tuple[str, Any]]:
    return reader.execute("SELECT label, onderwerpobjectidentificator FROM onderwerpobjecten").fetchall()


def test_link_move_and_unlink_commit_with_the_change(engine: Engine, reader: psycopg.Connection[Any]) -> None:
    zaak_a, zaak_b = "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5", "0d6d2a4c-7a8f-4f61-9a43-2f0d6a3b9c11"
    with Session(engine) as session:
        row = host.create(session, "Mijn Klantcontact Onderwerp", host.zaak_identificator(zaak_a), ON)
        session.commit()
        url = f"{host.BASE_URL}/{row.uuid}"
        host.change_identificator(session, row, host.zaak_identificator(zaak_b), ON)
        session.commit()
        host.delete(session, row, ON)
        session.commit()
    events = _events(reader)
    assert [(t, s) for t, s, _ in events] == [
        (ZAAK_GEKOPPELD, zaak_a),
        (ZAAK_ONTKOPPELD, zaak_a),
        (ZAAK_GEKOPPELD, zaak_b),
        (ZAAK_ONTKOPPELD, zaak_b),
    ]
    for _, subject, event in events:
        assert event["source"] == SOURCE
        assert event["data"] == {
            "zaak": f"urn:uuid:{subject}",
            "linkTo": url,
            "label": "Mijn Klantcontact Onderwerp",
            "linkObjectType": "Onderwerpobject",
        }
    assert _rows(reader) == []


def test_rollback_drops_change_and_events(engine: Engine, reader: psycopg.Connection[Any]) -> None:
    with Session(engine) as session:
        row = host.create(session, "Onderwerp", host.zaak_identificator("a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"), ON)
        session.rollback()
        assert _events(reader) == [] and _rows(reader) == []
        row = host.create(session, "Onderwerp", host.zaak_identificator("a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"), ON)
        session.commit()
        host.delete(session, row, ON)
        session.rollback()
    assert [t for t, _, _ in _events(reader)] == [ZAAK_GEKOPPELD]
    assert len(_rows(reader)) == 1


def test_no_events_without_the_gates(engine: Engine, reader: psycopg.Connection[Any]) -> None:
    off = CloudEventSettings(enable_cloud_events=False, notifications_source=SOURCE)
    with Session(engine) as session:
        host.create(session, "Onderwerp", host.zaak_identificator("a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5"), off)
        session.commit()
    assert _events(reader) == []
    assert len(_rows(reader)) == 1


def test_example_script_runs(
    database_url: str, reader: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENABLE_CLOUD_EVENTS", "true")
    monkeypatch.setenv("NOTIFICATIONS_SOURCE", SOURCE)
    monkeypatch.setattr(sys, "argv", ["open_klant_host.py", "--database-url", _sa_url(database_url)])
    host.main()
    assert [t for t, _, _ in _events(reader)] == [
        ZAAK_GEKOPPELD,
        ZAAK_ONTKOPPELD,
        ZAAK_GEKOPPELD,
        ZAAK_ONTKOPPELD,
    ]
