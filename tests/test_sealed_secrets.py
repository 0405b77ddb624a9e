"""Header values are secrets, sealed with the others; listings and reads open no secret; the upgrade
from before migration 015 leaves no header value in clear."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

import outbox
from outbox import Subscription
from outbox._subscription import SecretsNotOpened
from tests.support import Receiver, WorkerProcess, count_delivered, enqueue, wait_until, zaak_event
from worker.delivery.credentials import new_signing_secret
from worker.store import subscriptions as store
from worker.store.secret_box import SecretBox, new_key

HEADER_VALUE = "hdr-secret-4242-value"
TOKEN = "Bearer tok-secret-0123456789"
HINT = "Bearer …6789"


def stored_text(url: str) -> str:
    """Every column of every subscription, as text: what anyone who can read the table sees."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT row_to_json(s)::text FROM outbox.subscriptions s").fetchall()
    return "\n".join(text for (text,) in rows)


def columns(url: str, subscription_id: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT unsealed_headers, header_names, auth_hint, signing_secret_count, secrets, secrets_encrypted"
            " FROM outbox.subscriptions WHERE id = %s",
            (subscription_id,),
        ).fetchone()
    assert row is not None
    names = ("unsealed_headers", "header_names", "auth_hint", "signing_secret_count", "secrets", "secrets_encrypted")
    return dict(zip(names, row, strict=True))


def test_cli_stores_header_values_sealed_and_shows_only_names_without_the_key(
    database_url: str, receiver: Receiver, run_cli: Any, tmp_path: Path
) -> None:
    key = new_key()
    abonnement = {"callbackUrl": receiver.url, "auth": TOKEN, "types": ["*"], "headers": {"X-Api-Key": HEADER_VALUE}}
    added = run_cli(
        "subscriptions", "add", "--from-json", "-", "--allow-insecure", "--skip-handshake",
        input=json.dumps(abonnement), env={"OUTBOX_SECRET_KEY": key},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    sub = added.stdout.strip().splitlines()[-1]
    everything = stored_text(database_url)
    assert HEADER_VALUE not in everything and "tok-secret" not in everything
    stored = columns(database_url, sub)
    assert stored["header_names"] == ["X-Api-Key"] and stored["auth_hint"] == HINT
    assert stored["secrets_encrypted"] and stored["unsealed_headers"] is None
    opened = SecretBox([key]).open(stored["secrets"], True, "test")
    assert opened["headers"] == {"X-Api-Key": HEADER_VALUE} and opened["auth"] == TOKEN

    # list and show open nothing: no key, or a key that does not open the secrets, is enough.
    for env in ({"OUTBOX_SECRET_KEY": ""}, {"OUTBOX_SECRET_KEY": new_key()}):
        outputs = [run_cli(*args, env=env) for args in (
            ("subscriptions", "list"), ("subscriptions", "list", "--json"),
            ("subscriptions", "show", sub), ("subscriptions", "show", sub, "--json"),
        )]  # fmt: skip
        for result in outputs:
            assert result.returncode == 0, result.stderr
            assert HEADER_VALUE not in result.stdout + result.stderr and "tok-secret" not in result.stdout
        assert "X-Api-Key" in outputs[0].stdout or HINT in outputs[0].stdout
        (listed,) = json.loads(outputs[1].stdout)
        shown = json.loads(outputs[3].stdout)
        for document in (listed, shown):
            assert document["headers"] == ["X-Api-Key"]
            assert document["auth"] == HINT and document["authKind"] == "static"

    # the worker opens them to deliver
    enqueue(database_url, [zaak_event("a")])
    worker = WorkerProcess(database_url, tmp_path / "worker.log", {"OUTBOX_SECRET_KEY": key})
    try:
        wait_until(lambda: count_delivered(database_url) == 1, message="delivered")
    finally:
        worker.terminate()
    (post,) = receiver.received
    assert post.headers["X-Api-Key"] == HEADER_VALUE and post.headers["Authorization"] == TOKEN
    assert HEADER_VALUE not in worker.log_path.read_text()


def test_listing_and_reading_open_no_secret_delivery_does(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    box = SecretBox([new_key()])
    signing = new_signing_secret()
    ids = [
        store.add(
            conn,
            Subscription.create(
                callback_url=f"https://r{i}.example/hook",
                auth=f"{TOKEN}{i}",
                types=["*"],
                headers={"X-Api-Key": f"{HEADER_VALUE}{i}", "X-Tenant": "t"},
                signing_secrets=[signing],
            ),
            "outbox",
            box,
        )
        for i in range(5)
    ]
    conn.commit()
    opened: list[str] = []
    real_open = SecretBox.open

    def counting(self: SecretBox, stored: str | None, encrypted: bool, owner: str) -> dict[str, Any]:
        opened.append(owner)
        return real_open(self, stored, encrypted, owner)

    monkeypatch.setattr(SecretBox, "open", counting)
    listed = store.list_all(conn, "outbox")
    read = [store.get(conn, "outbox", sub_id, None) for sub_id in ids]
    assert opened == [], "listing and reading open no secret"
    for subscription in listed + read:
        public = subscription.to_public_dict()
        assert public["headers"] == ["X-Api-Key", "X-Tenant"] and public["signingSecrets"] == 1
        assert public["authKind"] == "static" and public["auth"].startswith("Bearer …")
        assert subscription.headers == () and subscription.auth is None, "nothing secret in it"
        assert HEADER_VALUE not in repr(subscription) + json.dumps(public)
    # one read without its secrets cannot be written back (they would be lost)
    with pytest.raises(SecretsNotOpened):
        store.update(conn, "outbox", read[0], box, read[0].updated_at)
    with pytest.raises(SecretsNotOpened):
        read[0].to_abonnement()

    full = store.get(conn, "outbox", ids[0], box)  # as the worker and the handshake read it
    assert opened == [f"subscription {ids[0]}"]
    assert full.headers == (("X-Api-Key", f"{HEADER_VALUE}0"), ("X-Tenant", "t"))
    assert full.auth == f"{TOKEN}0" and full.signing_secrets == (signing,)


def _old_row(conn: psycopg.Connection[Any], box: SecretBox, secrets: dict[str, Any] | None, kind: str) -> str:
    """A subscription as the code before 015 stored it: header values in `headers`, in clear."""
    sealed, encrypted = box.seal(secrets or {})
    row = conn.execute(
        "INSERT INTO outbox.subscriptions (callback_url, types, auth_kind, secrets, secrets_encrypted, headers,"
        " allow_insecure) VALUES ('http://127.0.0.1:9/hook', '{*}', %s, %s, %s, %s, true) RETURNING id",
        (kind, sealed, encrypted, psycopg.types.json.Jsonb({"X-Api-Key": HEADER_VALUE})),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_outbox_migrate_seals_the_header_values_of_existing_rows(empty_database_url: str, run_cli: Any) -> None:
    url = empty_database_url
    outbox.migrate(url, up_to=14)
    key = new_key()
    box = SecretBox([key])
    with psycopg.connect(url) as conn:
        with_auth = _old_row(conn, box, {"auth": TOKEN, "signing_secrets": [new_signing_secret()]}, "static")
        headers_only = _old_row(conn, box, None, "none")
    assert HEADER_VALUE in stored_text(url)

    # With a key that does not open its secrets: the schema is upgraded, that row waits (and it says
    # so); the one without secrets is sealed with the key given.
    other_key = new_key()
    wrong = run_cli("migrate", url=url, env={"OUTBOX_SECRET_KEY": other_key})
    assert wrong.returncode == 0, wrong.stderr
    assert "applied 015_sealed_headers" in wrong.stdout
    assert "sealed the header values of 1 subscription " in wrong.stdout
    assert f"subscription {with_auth}: its secrets do not open" in wrong.stderr
    assert columns(url, with_auth)["unsealed_headers"] == {"X-Api-Key": HEADER_VALUE}
    with psycopg.connect(url) as conn:  # meanwhile the worker still sends them
        waiting = store.get(conn, "outbox", with_auth, box)
    assert waiting.headers == (("X-Api-Key", HEADER_VALUE),) and waiting.auth == TOKEN

    done = run_cli("migrate", url=url, env={"OUTBOX_SECRET_KEY": key})
    assert done.returncode == 0, done.stderr
    assert "is up to date" in done.stdout
    assert "sealed the header values of 1 subscription " in done.stdout
    assert HEADER_VALUE not in stored_text(url) and "tok-secret" not in stored_text(url)
    first, second = columns(url, with_auth), columns(url, headers_only)
    assert first["unsealed_headers"] is None and second["unsealed_headers"] is None
    assert first["header_names"] == second["header_names"] == ["X-Api-Key"]
    assert (first["auth_hint"], first["signing_secret_count"]) == (HINT, 1)
    assert (second["auth_hint"], second["signing_secret_count"]) == (None, 0)
    assert first["secrets_encrypted"] and second["secrets_encrypted"]
    assert box.open(first["secrets"], True, "t")["headers"] == {"X-Api-Key": HEADER_VALUE}
    assert SecretBox([other_key]).open(second["secrets"], True, "t") == {"headers": {"X-Api-Key": HEADER_VALUE}}

    again = run_cli("migrate", url=url, env={"OUTBOX_SECRET_KEY": key})
    assert again.returncode == 0 and "sealed" not in again.stdout


def test_the_worker_seals_rows_a_migration_without_the_key_left(empty_database_url: str, tmp_path: Path) -> None:
    """`manage.py migrate` runs the SQL only (no key): the worker completes the rows when it starts."""
    url = empty_database_url
    outbox.migrate(url, up_to=14)
    key = new_key()
    box = SecretBox([key])
    with Receiver().running() as receiver:
        with psycopg.connect(url) as conn:
            sub = _old_row(conn, box, {"auth": TOKEN}, "static")
            conn.execute("UPDATE outbox.subscriptions SET callback_url = %s WHERE id = %s", (receiver.url, sub))
        outbox.migrate(url)
        assert columns(url, sub)["unsealed_headers"] == {"X-Api-Key": HEADER_VALUE}
        enqueue(url, [zaak_event("a")])
        worker = WorkerProcess(url, tmp_path / "worker.log", {"OUTBOX_SECRET_KEY": key})
        try:
            wait_until(lambda: count_delivered(url) == 1, message="delivered")
            worker.wait_logged("sealed the header values of subscriptions from before migration 015")
        finally:
            worker.terminate()
        (post,) = receiver.received
    assert post.headers["X-Api-Key"] == HEADER_VALUE and post.headers["Authorization"] == TOKEN
    assert HEADER_VALUE not in stored_text(url)
    assert columns(url, sub)["header_names"] == ["X-Api-Key"]
