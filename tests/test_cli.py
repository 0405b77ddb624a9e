"""The `outbox` command line, run as a real subprocess against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

import outbox
from tests.support import Answer, Received, Receiver

SECRET = "8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE"
SEED_ABONNEMENT = (
    '{\n"callbackUrl": "https://myapp.zaakgerichtwerken.nl/webhook",\n'
    f'"auth": "Bearer {SECRET}",\n'
    '"kanalen": [\n{\n"filters": {\n"domein": "VTH",\n"is_eindzaakstatus": "True"\n},\n"naam": "zaken"\n}\n]\n}'
)


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def _add_seed(run_cli: Any, tmp_path: Path) -> str:
    path = tmp_path / "abonnement.json"
    path.write_text(SEED_ABONNEMENT)
    result = run_cli("subscriptions", "add", "--from-json", str(path), "--skip-handshake")
    assert result.returncode == 0, result.stderr
    return _last_line(result.stdout)


def test_add_from_seed_json_stores_it_and_prints_the_id_last(
    run_cli: Any, tmp_path: Path, reader: psycopg.Connection[Any]
) -> None:
    new_id = _add_seed(run_cli, tmp_path)
    row = reader.execute(
        "SELECT callback_url, secrets::json->>'auth', kanalen, types, content_mode, status FROM outbox.subscriptions "
        "WHERE id = %s",
        (new_id,),
    ).fetchone()
    assert row == (
        "https://myapp.zaakgerichtwerken.nl/webhook",
        f"Bearer {SECRET}",
        [{"naam": "zaken", "filters": {"domein": "VTH", "is_eindzaakstatus": "True"}}],
        [],
        "structured",
        "active",
    )


def test_add_from_stdin_with_json_output(run_cli: Any) -> None:
    result = run_cli("subscriptions", "add", "--from-json", "-", "--json", "--skip-handshake", input=SEED_ABONNEMENT)
    assert result.returncode == 0, result.stderr
    new_id = _last_line(result.stdout)
    document = json.loads(result.stdout.strip()[: result.stdout.strip().rindex("\n")])
    assert document["id"] == new_id
    assert document["auth"] == "Bearer …gFYE"
    assert SECRET not in result.stdout + result.stderr


def test_add_with_flags(run_cli: Any, reader: psycopg.Connection[Any]) -> None:
    result = run_cli(
        "subscriptions", "add",
        "--callback-url", "http://127.0.0.1:8080/hook",
        "--auth", f"Bearer {SECRET}",
        "--type", "nl.overheid.zaken.*",
        "--type", "nl.vng.zgw.zaken.zaak.created",
        "--content-mode", "binary",
        "--allow-insecure",
        "--skip-handshake",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    new_id = _last_line(result.stdout)
    assert SECRET not in result.stdout + result.stderr
    row = reader.execute(
        "SELECT types, content_mode, allow_insecure, kanalen FROM outbox.subscriptions WHERE id = %s",
        (new_id,),
    ).fetchone()
    assert row == (["nl.overheid.zaken.*", "nl.vng.zgw.zaken.zaak.created"], "binary", True, [])


def test_add_needs_an_origin_for_the_handshake(run_cli: Any, reader: psycopg.Connection[Any]) -> None:
    result = run_cli("subscriptions", "add", "--from-json", "-", input=SEED_ABONNEMENT)
    assert result.returncode == 2
    assert "set OUTBOX_WEBHOOK_ORIGIN" in result.stderr
    assert reader.execute("SELECT count(*) FROM outbox.subscriptions").fetchone() == (0,)


def _handshake_receiver(headers: dict[str, str], status: int = 200) -> Receiver:
    def answer(n: int, r: Received) -> Answer:
        return (status, headers, 0.0) if r.method == "OPTIONS" else (204, {}, 0.0)

    return Receiver(answer=answer)


def test_handshake_accepted_is_recorded(run_cli: Any, reader: psycopg.Connection[Any]) -> None:
    with _handshake_receiver(
        {"WebHook-Allowed-Origin": "outbox.gemeente.nl", "WebHook-Allowed-Rate": "120"}
    ).running() as r:
        result = run_cli(
            "subscriptions", "add", "--callback-url", r.url, "--type", "*", "--allow-insecure", "--no-auth",
            "--origin", "outbox.gemeente.nl", "--rate", "600", "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        [options] = r.received
        assert options.method == "OPTIONS"
        assert options.headers["WebHook-Request-Origin"] == "outbox.gemeente.nl"
        assert options.headers["WebHook-Request-Rate"] == "600"
    new_id = _last_line(result.stdout)
    row = reader.execute(
        "SELECT agreement, handshake_at IS NOT NULL, requested_rate, allowed_rate FROM outbox.subscriptions WHERE id = %s",
        (new_id,),
    ).fetchone()
    assert row == ("handshake", True, 600, "120")
    shown = json.loads(result.stdout.strip()[: result.stdout.strip().rindex("\n")])
    assert (shown["agreement"], shown["allowedRate"]) == ("handshake", "120")


def test_handshake_star_origin_via_environment(run_cli: Any, reader: psycopg.Connection[Any]) -> None:
    with _handshake_receiver({"WebHook-Allowed-Origin": "*"}).running() as r:
        env_origin = {"OUTBOX_WEBHOOK_ORIGIN": "outbox.gemeente.nl"}
        result = run_cli(
            "subscriptions",
            "add",
            "--callback-url",
            r.url,
            "--type",
            "*",
            "--allow-insecure",
            "--no-auth",
            env=env_origin,
        )
    assert result.returncode == 0, result.stderr
    assert reader.execute("SELECT agreement, allowed_rate FROM outbox.subscriptions").fetchone() == ("handshake", None)


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        (
            {"WebHook-Allowed-Origin": "outbox.gemeente.nl"},
            404,
            "the target answered 404 Not Found to the OPTIONS handshake, not 2xx",
        ),
        ({}, 200, "the target answered 200 OK without WebHook-Allowed-Origin"),
        (
            {"WebHook-Allowed-Origin": "someone.else.nl"},
            200,
            "the target allows origin 'someone.else.nl', not 'outbox.gemeente.nl'",
        ),
        ({"WebHook-Allowed-Origin": "*"}, 302, "the target answered 302 Found to the OPTIONS handshake, not 2xx"),
    ],
)
def test_handshake_refused_stores_nothing(
    run_cli: Any, reader: psycopg.Connection[Any], headers: dict[str, str], status: int, message: str
) -> None:
    with _handshake_receiver(headers, status).running() as r:
        result = run_cli(
            "subscriptions", "add", "--callback-url", r.url, "--type", "*", "--allow-insecure", "--no-auth",
            "--origin", "outbox.gemeente.nl", "--auth", f"Bearer {SECRET}",
        )  # fmt: skip
    assert result.returncode == 1
    # 404 and a 2xx without WebHook-Allowed-Origin do not speak the handshake: the probe runs, and this
    # receiver takes it without credentials too. A no (another origin, a redirect) is not probed around.
    step = "probe without credentials" if status == 404 or not headers else "handshake"
    assert result.stderr.startswith(f"Error: the subscription was refused: {step}: "), result.stderr
    assert message in result.stderr
    assert reader.execute("SELECT count(*) FROM outbox.subscriptions").fetchone() == (0,)


def test_handshake_with_a_rate_needs_an_allowed_rate(run_cli: Any) -> None:
    with _handshake_receiver({"WebHook-Allowed-Origin": "*"}).running() as r:
        result = run_cli(
            "subscriptions", "add", "--callback-url", r.url, "--type", "*", "--allow-insecure", "--no-auth",
            "--origin", "outbox.gemeente.nl", "--rate", "60",
        )  # fmt: skip
    assert result.returncode == 1
    assert "did not answer WebHook-Allowed-Rate" in result.stderr


def test_handshake_unreachable_target(run_cli: Any) -> None:
    result = run_cli(
        "subscriptions", "add", "--callback-url", "http://127.0.0.1:9/hook", "--type", "*", "--allow-insecure", "--no-auth",
        "--origin", "outbox.gemeente.nl",
    )  # fmt: skip
    assert result.returncode == 1
    assert "could not reach the target (ConnectError)" in result.stderr


def test_skip_handshake_records_out_of_band(run_cli: Any, tmp_path: Path, reader: psycopg.Connection[Any]) -> None:
    new_id = _add_seed(run_cli, tmp_path)
    row = reader.execute("SELECT agreement, handshake_at FROM outbox.subscriptions WHERE id = %s", (new_id,)).fetchone()
    assert row == ("out-of-band", None)


def test_verify_runs_the_handshake_again(run_cli: Any, reader: psycopg.Connection[Any]) -> None:
    with _handshake_receiver({"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": "*"}).running() as r:
        added = run_cli(
            "subscriptions",
            "add",
            "--callback-url",
            r.url,
            "--type",
            "*",
            "--allow-insecure",
            "--no-auth",
            "--skip-handshake",
        )
        new_id = _last_line(added.stdout)
        result = run_cli("subscriptions", "verify", new_id, "--origin", "outbox.gemeente.nl", "--rate", "30")
        assert result.returncode == 0, result.stderr
        assert "allows origin '*', rate * per minute" in result.stdout
    row = reader.execute(
        "SELECT agreement, requested_rate, allowed_rate FROM outbox.subscriptions WHERE id = %s", (new_id,)
    ).fetchone()
    assert row == ("handshake", 30, "*")


def test_malformed_subscription_is_refused_whole(run_cli: Any, tmp_path: Path, reader: psycopg.Connection[Any]) -> None:
    bad = json.loads(SEED_ABONNEMENT)
    bad["callbackUrl"] = "http://127.0.0.1/hook"
    bad["kanalen"][0]["filters"]["domein"] = ["VTH"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = run_cli("subscriptions", "add", "--from-json", str(path), "--skip-handshake")
    assert result.returncode == 1
    assert "callbackUrl: must use https" in result.stderr
    assert "kanalen[0].filters.domein: the value must be a single string" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert reader.execute("SELECT count(*) FROM outbox.subscriptions").fetchone() == (0,)


def test_not_json_is_clear_and_flags_override_the_file(run_cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{nope")
    result = run_cli("subscriptions", "add", "--from-json", str(path), "--no-auth")
    assert result.returncode == 1
    assert "is not valid JSON" in result.stderr
    path.write_text(json.dumps({"callbackUrl": "https://x.nl/a", "types": ["*"], "contentMode": "binary"}))
    result = run_cli(
        "subscriptions",
        "add",
        "--from-json",
        str(path),
        "--content-mode",
        "batched",
        "--skip-handshake",
        "--json",
        "--no-auth",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.rsplit("\n", 2)[0])["contentMode"] == "batched", "a flag overrides the file"


def test_list_and_show_never_print_the_secret(run_cli: Any, tmp_path: Path) -> None:
    new_id = _add_seed(run_cli, tmp_path)
    outputs = []
    for args in (("list",), ("list", "--json"), ("show", new_id), ("show", new_id, "--json")):
        result = run_cli("subscriptions", *args)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
        assert SECRET not in result.stdout + result.stderr
        assert SECRET[-5:] not in result.stdout, "more than the last 4 characters shown"
    assert new_id in outputs[0] and "Bearer …gFYE" in outputs[0]
    [listed] = json.loads(outputs[1])
    assert listed["id"] == new_id
    assert listed["auth"] == "Bearer …gFYE"
    assert listed["kanalen"] == [{"naam": "zaken", "filters": {"domein": "VTH", "is_eindzaakstatus": "True"}}]
    assert json.loads(outputs[3]) == listed


def test_pause_resume_remove(run_cli: Any, tmp_path: Path, reader: psycopg.Connection[Any]) -> None:
    new_id = _add_seed(run_cli, tmp_path)

    def state() -> Any:
        return reader.execute(
            "SELECT status, paused_reason FROM outbox.subscriptions WHERE id = %s", (new_id,)
        ).fetchone()

    assert run_cli("subscriptions", "pause", new_id, "--reason", "onderhoud").returncode == 0
    assert state() == ("paused", "onderhoud")
    shown = json.loads(run_cli("subscriptions", "show", new_id, "--json").stdout)
    assert (shown["status"], shown["pausedReason"]) == ("paused", "onderhoud")
    assert run_cli("subscriptions", "resume", new_id).returncode == 0
    assert state() == ("active", None)
    assert run_cli("subscriptions", "remove", new_id).returncode == 0
    assert state() is None
    missing = run_cli("subscriptions", "show", new_id)
    assert missing.returncode == 1
    assert f"no subscription with id {new_id}" in missing.stderr
    assert "no subscription with id not-a-uuid" in run_cli("subscriptions", "pause", "not-a-uuid").stderr


def test_status_json_counts_events(run_cli: Any, database_url: str) -> None:
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["events"] == {"total": 0, "unrouted": 0}
    with psycopg.connect(database_url) as c:
        outbox.enqueue_many(c, [outbox.CloudEvent(type="t", source="s") for _ in range(3)])
    document = json.loads(run_cli("status", "--json").stdout)
    assert document["events"] == {"total": 3, "unrouted": 3}
    assert document["deliveries"] == {"pending": 0, "delivering": 0, "delivered": 0, "failed": 0, "blocked": 0}
    assert document["oldestPendingSeconds"] >= 0
    human = run_cli("status").stdout
    assert "3 total, 3 not yet routed" in human


def test_status_per_subscription(run_cli: Any, tmp_path: Path) -> None:
    new_id = _add_seed(run_cli, tmp_path)
    document = json.loads(run_cli("status", "--json").stdout)
    assert document["subscriptions"] == [
        {
            "id": new_id,
            "callbackUrl": "https://myapp.zaakgerichtwerken.nl/webhook",
            "status": "active",
            "pending": 0,
            "delivered": 0,
            "failed": 0,
            # Adaptive concurrency (added keys): not adapted yet, nothing in flight.
            "concurrencyLimit": None,
            "inFlight": 0,
            "limitReason": None,
            "limitChangedAt": None,
        }
    ]


def test_unmigrated_database_and_unreachable_server_give_one_line(run_cli: Any, empty_database_url: str) -> None:
    result = run_cli("status", url=empty_database_url)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "Error: the outbox schema 'outbox' is missing or incomplete: run `outbox migrate` first"
    )
    result = run_cli("status", url="postgresql://postgres@127.0.0.1:1/none")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot connect to the database:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_schema_name_is_refused(run_cli: Any) -> None:
    result = run_cli("--schema", "Robert'); DROP TABLE x;--", "status")
    assert result.returncode == 2
    assert "schema:" in result.stderr and "is not allowed" in result.stderr


def test_without_a_url_the_cli_runs_an_embedded_postgresql(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OUTBOX_DATABASE_URL", "OUTBOX_DATA_DIR", "OUTBOX_SCHEMA")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    migrated = run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 001_initial" in migrated.stdout
    assert (tmp_path / ".outbox" / "pgdata" / "PG_VERSION").is_file()
    status = run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["events"]["total"] == 0
    assert "is up to date" in run("migrate").stdout, "the data survives between commands"
