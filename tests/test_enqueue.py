"""Transactional enqueue on every supported connection kind, against a real PostgreSQL."""

from __future__ import annotations

import json
import select
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

import outbox
from outbox import CloudEvent, InvalidEventError, NoTransactionError, UnsupportedConnectionError


def _event(subject: str = "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5", **extra: Any) -> CloudEvent:
    return CloudEvent(
        type="nl.overheid.zaken.zaak-gekoppeld",
        source="urn:nld:oin:01823288444:openklant",
        subject=subject,
        datacontenttype="application/json",
        data={"zaak": f"urn:uuid:{subject}", "linkObjectType": "Onderwerpobject"},
        **extra,
    )


def _stored(reader: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = reader.execute(
        "SELECT position, event->>'id', event->>'source', event->>'type', event->>'subject', event"
        " FROM outbox.events ORDER BY position"
    )
    return [
        {"position": p, "id": i, "source": s, "type": t, "subject": subj, "event": e}
        for p, i, s, t, subj, e in rows.fetchall()
    ]


def _sa_url(database_url: str, driver: str = "psycopg") -> str:
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    host = params.get("host", "")
    query = f"?host={host}" if str(host).startswith("/") else ""
    netloc = "" if query else f"{host}:{params.get('port', 5432)}"
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    return f"postgresql+{driver}://{user}{password}@{netloc}/{params['dbname']}{query}"


# -- psycopg ---------------------------------------------------------------------------------


def test_commit_stores_the_event_exactly(conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]) -> None:
    event = _event()
    position = outbox.enqueue(conn, event)
    assert _stored(reader) == [], "visible before commit"
    conn.commit()
    [row] = _stored(reader)
    assert row["position"] == position
    assert (row["id"], row["source"], row["type"], row["subject"]) == (
        event.id,
        event.source,
        event.type,
        event.subject,
    )
    assert row["event"] == event.to_dict()
    assert CloudEvent.from_dict(row["event"]) == event


def test_rollback_leaves_no_trace(conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE TABLE host_change (id int)")
    conn.commit()
    conn.execute("INSERT INTO host_change VALUES (1)")
    outbox.enqueue(conn, _event())
    conn.rollback()
    assert _stored(reader) == []
    assert reader.execute("SELECT count(*) FROM host_change").fetchone() == (0,)


def test_enqueue_never_commits(conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]) -> None:
    outbox.enqueue(conn, _event())
    outbox.enqueue_many(conn, [_event(), _event()])
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert _stored(reader) == []


def test_invalid_event_raises_and_writes_nothing(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    with pytest.raises(InvalidEventError, match="^event: serialized size"):
        outbox.enqueue(conn, _event(), max_event_bytes=100)
    # No SQL was sent: the connection did not even start a transaction.
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    conn.commit()
    assert _stored(reader) == []


def test_enqueue_many_is_all_or_nothing_on_validation(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    too_big = CloudEvent(type="t", source="s", data="x" * 2000)
    with pytest.raises(InvalidEventError):
        outbox.enqueue_many(conn, [_event(), _event(), too_big], max_event_bytes=1000)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    conn.commit()
    assert _stored(reader) == []


def test_enqueue_many_keeps_order_and_returns_positions(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    events = [_event(subject=f"zaak-{i}") for i in range(50)] + [CloudEvent(type="t", source="s", data=b"\x00")]
    positions = outbox.enqueue_many(conn, events)
    conn.commit()
    stored = _stored(reader)
    assert positions == [row["position"] for row in stored]
    assert positions == sorted(positions)
    assert [row["event"] for row in stored] == [e.to_dict() for e in events]
    assert stored[-1]["subject"] is None
    assert outbox.enqueue_many(conn, []) == []


def test_enqueue_refuses_autocommit_without_transaction(database_url: str, reader: psycopg.Connection[Any]) -> None:
    with psycopg.connect(database_url, autocommit=True) as auto:
        with pytest.raises(NoTransactionError, match="autocommit"):
            outbox.enqueue(auto, _event())
        with auto.transaction():
            outbox.enqueue(auto, _event())
    assert len(_stored(reader)) == 1


def test_enqueue_refuses_a_failed_transaction(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT 1/0")
    with pytest.raises(NoTransactionError, match="already failed"):
        outbox.enqueue(conn, _event())


def test_unsupported_connection_is_a_type_error() -> None:
    with pytest.raises(UnsupportedConnectionError, match="got str"):
        outbox.enqueue("postgresql://", _event())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes an outbox.CloudEvent"):
        outbox.enqueue(None, {"type": "t"})  # type: ignore[arg-type]


def test_commit_notifies_idle_workers_once(conn: psycopg.Connection[Any], database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute('LISTEN "outbox.events"')
        listener.execute("INSERT INTO outbox.idle_workers (worker_id, listen_pid) VALUES ('w1', 1), ('w2', 2)")
        first = _event()
        position = outbox.enqueue(conn, first)
        outbox.enqueue(conn, _event())
        outbox.enqueue_many(conn, [_event(), _event()])
        assert list(listener.notifies(timeout=0.2, stop_after=1)) == [], "notified before commit"
        conn.commit()
        got = list(listener.notifies(timeout=2, stop_after=2))
        assert [n.channel for n in got] == ["outbox.events", "outbox.events"]
        # The first event rides along for the fast path, with its exact enqueued_at (its leaf, in
        # microseconds since 1970); the rest are one plain wake-up.
        head, micros, document = got[0].payload.split(" ", 2)
        assert (int(head), json.loads(document)) == (position, first.to_dict())
        stored = listener.execute(
            "SELECT (extract(epoch FROM enqueued_at) * 1000000)::bigint FROM outbox.events WHERE position = %s",
            (position,),
        ).fetchone()
        assert stored is not None and int(micros) == stored[0]
        assert got[1].payload == ""
        assert list(listener.notifies(timeout=0.3)) == [], "one transaction: its first event and one wake-up"
        outbox.enqueue(conn, _event())
        conn.rollback()
        assert list(listener.notifies(timeout=0.3)) == [], "a rolled-back transaction wakes nobody"


def test_an_event_too_big_for_a_notify_payload_wakes_with_an_empty_one(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute('LISTEN "outbox.events"')
        listener.execute("INSERT INTO outbox.idle_workers (worker_id, listen_pid) VALUES ('w1', 1)")
        big = CloudEvent(type="t", source="s", data={"text": "x" * 8000})
        outbox.enqueue(conn, big)
        conn.commit()
        assert [n.payload for n in listener.notifies(timeout=2, stop_after=1)] == [""]
        small = _event()
        position = outbox.enqueue(conn, small)  # a new transaction: its first event rides along again
        conn.commit()
        [notice] = listener.notifies(timeout=2, stop_after=1)
        head, micros, document = notice.payload.split(" ", 2)
        assert (int(head), micros.isdigit(), json.loads(document)) == (position, True, small.to_dict())


def test_another_schema(database_url: str, reader: psycopg.Connection[Any]) -> None:
    outbox.migrate(database_url, schema="tenant_b")
    with psycopg.connect(database_url) as c:
        outbox.enqueue(c, _event(), schema="tenant_b")
    assert reader.execute("SELECT count(*) FROM tenant_b.events").fetchone() == (1,)
    assert _stored(reader) == []


def test_schema_from_environment(
    database_url: str, reader: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox.migrate(database_url, schema="from_env")
    monkeypatch.setenv("OUTBOX_SCHEMA", "from_env")
    with psycopg.connect(database_url) as c:
        outbox.enqueue(c, _event())
    assert reader.execute("SELECT count(*) FROM from_env.events").fetchone() == (1,)


def test_unsafe_schema_name_is_refused(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValueError, match="^schema: 'x; DROP TABLE y' is not allowed"):
        outbox.enqueue(conn, _event(), schema="x; DROP TABLE y")


# -- async psycopg -------------------------------------------------------------------------------


async def test_async_commit_and_rollback(aconn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]) -> None:
    first = _event()
    await outbox.enqueue_async(aconn, first)
    await aconn.commit()
    await outbox.enqueue_async(aconn, _event())
    await outbox.enqueue_many_async(aconn, [_event(), _event()])
    await aconn.rollback()
    positions = await outbox.enqueue_many_async(aconn, [_event("k1"), _event("k2")])
    await aconn.commit()
    stored = _stored(reader)
    assert stored[0]["event"]["id"] == first.id
    assert [row["subject"] for row in stored] == [first.subject, "k1", "k2"]
    assert [row["position"] for row in stored][1:] == positions


async def test_async_invalid_event_writes_nothing(
    aconn: psycopg.AsyncConnection[Any], reader: psycopg.Connection[Any]
) -> None:
    with pytest.raises(InvalidEventError):
        await outbox.enqueue_async(aconn, _event(), max_event_bytes=10)
    await aconn.commit()
    assert _stored(reader) == []


async def test_async_refuses_sync_connection(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(UnsupportedConnectionError, match="use enqueue for sync"):
        await outbox.enqueue_async(conn, _event())  # type: ignore[arg-type]


# -- SQLAlchemy -------------------------------------------------------------------------------


def test_sqlalchemy_session_commit_and_rollback(database_url: str, reader: psycopg.Connection[Any]) -> None:
    engine = create_engine(_sa_url(database_url))
    try:
        with Session(engine) as session:
            session.execute(text("CREATE TABLE host_rows (id int)"))
            session.commit()
            session.execute(text("INSERT INTO host_rows VALUES (1)"))
            kept = _event("kept")
            outbox.enqueue(session, kept)
            session.commit()
            session.execute(text("INSERT INTO host_rows VALUES (2)"))
            outbox.enqueue_many(session, [_event("gone"), _event("gone")])
            session.rollback()
        assert [row["subject"] for row in _stored(reader)] == ["kept"]
        assert reader.execute("SELECT array_agg(id) FROM host_rows").fetchone() == ([1],)
    finally:
        engine.dispose()


def test_sqlalchemy_connection_commit_and_rollback(database_url: str, reader: psycopg.Connection[Any]) -> None:
    engine = create_engine(_sa_url(database_url))
    try:
        with engine.connect() as connection:
            # Nothing executed yet: enqueue must begin the transaction SQLAlchemy will commit.
            outbox.enqueue(connection, _event("first"))
            connection.commit()
            outbox.enqueue(connection, _event("dropped"))
            connection.rollback()
        with engine.begin() as connection:
            outbox.enqueue(connection, _event("second"))
        assert [row["subject"] for row in _stored(reader)] == ["first", "second"]
    finally:
        engine.dispose()


def test_sqlalchemy_other_driver_is_refused(database_url: str) -> None:
    pytest.importorskip("psycopg2")
    engine = create_engine(_sa_url(database_url, "psycopg2"))
    try:
        with engine.connect() as connection, pytest.raises(UnsupportedConnectionError, match="psycopg 3"):
            outbox.enqueue(connection, _event())
    finally:
        engine.dispose()


async def test_sqlalchemy_async_session_and_connection(database_url: str, reader: psycopg.Connection[Any]) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = create_async_engine(_sa_url(database_url))
    try:
        async with AsyncSession(engine) as session:
            await outbox.enqueue_async(session, _event("session-kept"))
            await session.commit()
            await outbox.enqueue_async(session, _event("session-dropped"))
            await session.rollback()
        async with engine.connect() as connection:
            await outbox.enqueue_many_async(connection, [_event("conn-kept")])
            await connection.commit()
            await outbox.enqueue_async(connection, _event("conn-dropped"))
            await connection.rollback()
        assert [row["subject"] for row in _stored(reader)] == ["session-kept", "conn-kept"]
    finally:
        await engine.dispose()


# -- the SQL function, for hosts not written in Python ---------------------------------------------


def test_sql_function_enqueues_with_the_same_defaults(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    document = {
        "type": "nl.overheid.zaken.zaak-gekoppeld",
        "source": "urn:nld:oin:01823288444:openklant",
        "subject": "a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5",
        "geheimnummer": None,
        "data": {"zaak": "urn:uuid:a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5", "leeg": None},
    }
    row = conn.execute("SELECT outbox.enqueue(%s::jsonb)", (json.dumps(document),)).fetchone()
    assert row is not None
    conn.commit()
    [stored] = _stored(reader)
    assert stored["position"] == row[0]
    event = CloudEvent.from_dict(stored["event"])  # valid under the Python rules too
    assert event.specversion == "1.0"
    assert event.subject == document["subject"]
    assert event.data == {"zaak": "urn:uuid:a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5", "leeg": None}
    assert "geheimnummer" not in stored["event"]
    assert event.time is not None and event.time.endswith("Z")
    assert stored["id"] == event.id


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"source": "s"}, "type: is required"),
        ({"type": "t"}, "source: is required"),
        ({"type": "", "source": "s"}, "type: must be a non-empty string"),
        ({"type": "t", "source": "s", "id": 5}, "id: must be a non-empty string"),
        ({"type": "t", "source": "s", "specversion": "0.3"}, 'specversion: must be "1.0"'),
        ({"type": "t", "source": "s", "time": "gisteren"}, "time: must be an RFC 3339 timestamp"),
        ({"type": "t", "source": "s", "data": 1, "data_base64": "YQ=="}, "data_base64: must not be present"),
        ({"type": "t", "source": "s", "Bad-Name": "x"}, "Bad-Name: extension attribute names"),
        ({"type": "t", "source": "s", "ext": {"a": 1}}, "ext: extension attribute values"),
        ({"type": "t", "source": "s", "prio": 1.5}, "prio: extension attribute values"),
        ({"type": "t", "source": "s", "prio": 3000000000}, "prio: an integer extension value must fit in 32 bits"),
        (
            {"type": "t", "source": "s", "time": "2025-02-30T00:00:00Z"},
            "time: must be an RFC 3339 timestamp with a real",
        ),
        ({"type": "t", "source": "has space"}, "source: must be a URI-reference"),
        ({"type": "t", "source": "s", "subject": "a\nb"}, "subject: must not contain control characters"),
        ({"type": "t", "source": "s", "datacontenttype": "nonsense"}, "datacontenttype: must be a media type"),
        ([1, 2], "event: must be a JSON object"),
    ],
)
def test_sql_function_refuses_invalid_events(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any], document: Any, message: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute("SELECT outbox.enqueue(%s::jsonb)", (json.dumps(document),))
    assert str(caught.value).startswith(message)
    conn.rollback()
    assert _stored(reader) == []


def test_sql_function_size_limit(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="exceeds the limit of 100 bytes"):
        conn.execute(
            "SELECT outbox.enqueue(%s::jsonb, 100)",
            (json.dumps({"type": "t", "source": "s", "data": "x" * 200}),),
        )


def test_sql_function_accepts_what_python_accepts(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    document = {"type": "t", "source": "s", "self": "x", "prio": 7, "flag": True, "time": "2025-02-28T23:59:59.5+01:00"}
    conn.execute("SELECT outbox.enqueue(%s::jsonb)", (json.dumps(document),))
    conn.commit()
    [stored] = _stored(reader)
    assert CloudEvent.from_dict(stored["event"]).extensions == {"self": "x", "prio": 7, "flag": True}


def test_sql_function_works_whatever_the_search_path(
    conn: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    conn.execute("SET search_path TO pg_catalog")
    conn.execute('SELECT outbox.enqueue(\'{"type": "t", "source": "s"}\')')
    conn.commit()
    assert len(_stored(reader)) == 1


def test_no_notify_while_no_worker_is_idle(conn: psycopg.Connection[Any], database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute('LISTEN "outbox.events"')
        outbox.enqueue(conn, _event())
        outbox.enqueue_many(conn, [_event(), _event()])
        conn.execute('SELECT outbox.enqueue(\'{"type": "t", "source": "s"}\')')
        conn.commit()
        assert list(listener.notifies(timeout=0.5)) == [], "busy workers poll: no NOTIFY, no commit lock"


def test_sql_function_notifies_idle_workers(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener, psycopg.connect(database_url) as c:
        listener.execute('LISTEN "outbox.events"')
        listener.execute("INSERT INTO outbox.idle_workers (worker_id, listen_pid) VALUES ('w1', 1)")
        c.execute('SELECT outbox.enqueue(\'{"type": "t", "source": "s"}\')')
        c.commit()
        assert select.select([listener.fileno()], [], [], 2)[0], "no wake-up from the SQL function"
        assert [n.channel for n in listener.notifies(timeout=1, stop_after=1)] == ["outbox.events"]
