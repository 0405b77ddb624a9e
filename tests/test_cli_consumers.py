"""`outbox mappings …`, `outbox consumers …` and the receipts part of `outbox purge`, run as a real subprocess
against a real database (issue 22)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import standardwebhooks

from worker.consumers import operations
from worker.consumers.verification import Inbound, VerificationFailed, verifier_for
from worker.store import consumers as store
from worker.store.secret_box import SecretBox, new_key

KEY = new_key()
ENV = {"OUTBOX_SECRET_KEY": KEY}
BOX = SecretBox.from_setting(KEY)
HMAC_SECRET = "gh-webhook-secret-do-not-print-42"
TYPE = "nl.example.betaling.ontvangen"
SOURCE = "urn:nld:psp:example"
MAPPING = (
    '{"type": "' + TYPE + '", "source": "' + SOURCE + '", "id": body.id, "subject": body.order, '
    '"time": body.created, "data": {"amount": body.amount, "psp": headers."x-psp"}}'
)
BROKEN_MAPPING = '{"id": body.id, "subject": body.order, "data": {"amount": body.amount}}'  # no time
PAYMENT = {"id": "pay-1", "order": "order-7", "created": "2026-12-01T10:00:00Z", "amount": 1250}


def _json(text: str) -> Any:
    return json.loads(text)


def _count(reader: psycopg.Connection[Any], table: str) -> int:
    row = reader.execute(f"SELECT count(*) FROM outbox.{table}").fetchone()
    assert row is not None
    return int(row[0])


def _fails(result: Any, *words: str, code: int = 1) -> None:
    """A refusal: the exit code, one readable `Error:` line (no traceback) naming each of `words`."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error = next(line for line in lines if line.startswith("Error:"))
    for word in words:
        assert word in error, error


def _ok(result: Any) -> Any:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


@pytest.fixture
def catalogue(reader: psycopg.Connection[Any]) -> str:
    schema = {
        "type": "object",
        "required": ["amount"],
        "properties": {"amount": {"type": "integer", "minimum": 1}, "psp": {"type": ["string", "null"]}},
    }
    reader.execute(
        "INSERT INTO outbox.event_types (slug, type, name, source, schema) VALUES (%s, %s, %s, %s, %s)",
        ("betaling-ontvangen", TYPE, "Betaling ontvangen", SOURCE, json.dumps(schema)),
    )
    return "betaling-ontvangen"


@pytest.fixture
def mapping(run_cli: Any, catalogue: str) -> str:
    _ok(run_cli("mappings", "add", "psp", "--expression", MAPPING, "--header", "X-PSP", "--description", "PSP"))
    return "psp"


def _add_hmac(run_cli: Any, name: str = "GitHub", endpoint: str = "github", *extra: str) -> Any:
    verification = {"method": "hmac", "header": "X-Hub-Signature-256", "prefix": "sha256=", "secrets": [HMAC_SECRET]}
    return run_cli(
        "consumers", "add", name, "--endpoint", endpoint, "--mapping", "psp", "--target-type", "event-type",
        "--target-id", "betaling-ontvangen", "--verification", "-", *extra,
        input=json.dumps(verification), env=ENV,
    )  # fmt: skip


def _github(body: bytes, secret: str = HMAC_SECRET) -> Inbound:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Inbound.of(body, {"X-Hub-Signature-256": signature})


def _consumer(database_url: str, key: str) -> store.Consumer:
    with psycopg.connect(database_url) as conn:
        return store.get(conn, "outbox", key)


def _all_output(*results: Any) -> str:
    return "".join(r.stdout + r.stderr for r in results)


# -- mappings ---------------------------------------------------------------------------------------------


def test_mappings_add_list_show_update_history(run_cli: Any, mapping: str, tmp_path: Path) -> None:
    listed = _ok(run_cli("mappings", "list")).stdout
    assert "psp" in listed and "x-psp" in listed and "PSP" in listed
    [document] = _json(_ok(run_cli("mappings", "list", "--json")).stdout)
    assert document["id"] == "psp" and document["version"] == 1 and document["headers"] == ["x-psp"]
    assert document["expression"] == MAPPING and document["consumers"] == []

    path = tmp_path / "v2.jsonata"
    path.write_text(MAPPING.replace("body.order", "body.reference"))
    assert "now version 2" in _ok(run_cli("mappings", "update", "psp", "--expression-file", str(path))).stdout
    assert "now version 3" in _ok(run_cli("mappings", "update", "psp", "--description", "PSP, v3")).stdout
    current = _json(_ok(run_cli("mappings", "show", "psp", "--json")).stdout)
    assert (current["version"], current["currentVersion"], current["description"]) == (3, 3, "PSP, v3")
    assert "body.reference" in current["expression"] and current["headers"] == ["x-psp"]  # kept from v2
    first = _json(_ok(run_cli("mappings", "show", "psp", "--version", "1", "--json")).stdout)
    assert first["version"] == 1 and "body.order" in first["expression"]
    history = _json(_ok(run_cli("mappings", "show", "psp", "--history", "--json")).stdout)
    assert [m["version"] for m in history] == [3, 2, 1]
    text = _ok(run_cli("mappings", "show", "psp", "--version", "1")).stdout
    assert "1 (not current)" in text and "  " + MAPPING in text
    _fails(run_cli("mappings", "show", "psp", "--version", "9"), "no mapping 'psp' version 9")
    _fails(run_cli("mappings", "show", "nope"), "no mapping 'nope'")


def test_mapping_from_stdin_and_refusals_store_nothing(run_cli: Any, reader: psycopg.Connection[Any]) -> None:
    _fails(run_cli("mappings", "add", "bad", "--expression", '{"id": body.id'), "expression", "does not compile")
    _fails(run_cli("mappings", "add", "Bad Id", "--expression", "{}"), "id:", "lowercase")
    _fails(run_cli("mappings", "add", "h", "--expression", "{}", "--header", "not a header"), "headers")
    assert run_cli("mappings", "add", "x").returncode == 2  # no expression
    both = run_cli("mappings", "add", "x", "--expression", "{}", "--expression-file", "-", input="{}")
    assert both.returncode == 2 and "--expression" in both.stderr
    assert _count(reader, "mappings") == 0
    _ok(run_cli("mappings", "add", "stdin", "--expression-file", "-", input=MAPPING))
    _fails(run_cli("mappings", "add", "stdin", "--expression", "{}"), "exists already")
    _fails(run_cli("mappings", "update", "stdin", "--expression", "{"), "expression")
    _fails(run_cli("mappings", "update", "nope", "--expression", "{}"), "no mapping 'nope'")
    assert run_cli("mappings", "update", "stdin").returncode == 2  # nothing to change
    assert reader.execute("SELECT current_version FROM outbox.mappings").fetchall() == [(1,)]


def test_mappings_try(run_cli: Any, mapping: str, reader: psycopg.Connection[Any]) -> None:
    body = json.dumps(PAYMENT)
    tried = _ok(run_cli("mappings", "try", "psp", "--payload", "-", "--header", "X-PSP: mollie", input=body))
    event = _json(tried.stdout)
    assert (event["id"], event["subject"], event["type"]) == ("pay-1", "order-7", TYPE)
    assert event["data"] == {"amount": 1250, "psp": "mollie"}
    refused = run_cli("mappings", "try", "psp", "--payload", "-", input='{"id": 1}')
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[0] == "refused: invalid_event"
    assert "  - time: is required" in refused.stdout
    whole = run_cli("mappings", "try", "psp", "--payload", "-", "--json", input="not json")
    assert whole.returncode == 1 and _json(whole.stdout)["code"] == "malformed_json"
    bad_header = run_cli("mappings", "try", "psp", "--payload", "-", "--header", "no colon", input=body)
    assert bad_header.returncode == 2 and "Name: value" in bad_header.stderr
    assert _count(reader, "events") == 0


def test_mapping_remove_is_refused_while_a_consumer_uses_it(run_cli: Any, mapping: str) -> None:
    _ok(_add_hmac(run_cli))
    _fails(run_cli("mappings", "remove", "psp"), "used by consumer(s) GitHub")
    _ok(run_cli("consumers", "update", "GitHub", "--no-mapping", env=ENV))
    assert "removed mapping psp" in _ok(run_cli("mappings", "remove", "psp")).stdout
    _fails(run_cli("mappings", "remove", "psp"), "no mapping 'psp'")


# -- consumers: add, list, show ---------------------------------------------------------------------------


def test_generated_standard_webhooks_secret_is_printed_once_and_verifies(
    run_cli: Any, mapping: str, database_url: str, reader: psycopg.Connection[Any]
) -> None:
    added = _ok(
        run_cli(
            "consumers",
            "add",
            "PSP",
            "--endpoint",
            "psp-payments",
            "--mapping",
            "psp",
            "--target-type",
            "event-type",
            "--target-id",
            "betaling-ontvangen",
            "--method",
            "standard-webhooks",
            "--generate-secret",
            "--rate-limit",
            "5",
            "--rate-burst",
            "10",
            env=ENV,
        )
    )
    secret = added.stdout.strip()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert "shown once" in added.stderr and "/hooks/psp-payments" in added.stderr
    assert "unencrypted" not in added.stderr

    body = json.dumps(PAYMENT).encode()
    stamp = datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign("msg_1", stamp, body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(stamp.timestamp())), "webhook-signature": signature}
    consumer = _consumer(database_url, "PSP")
    verified = verifier_for(consumer.verification(BOX)).verify(Inbound.of(body, headers))
    assert verified.webhook_id == "msg_1"
    row = reader.execute("SELECT secrets, secrets_encrypted, verification::text FROM outbox.consumers").fetchone()
    assert row is not None and row[1] is True and secret not in row[0] + row[2]  # sealed, not in the clear config

    shown = [
        run_cli("consumers", "list", env=ENV),
        run_cli("consumers", "list", "--json", env=ENV),
        run_cli("consumers", "show", "PSP", env=ENV),
        run_cli("consumers", "show", "psp-payments", "--json", env=ENV),
    ]
    assert all(r.returncode == 0 for r in shown)
    assert secret not in _all_output(*shown) and secret.removeprefix("whsec_") not in _all_output(*shown)
    line = next(line for line in shown[0].stdout.splitlines() if line.startswith("PSP"))
    assert line.split() == ["PSP", "/hooks/psp-payments", "standard-webhooks", "event-type", "betaling-ontvangen",
                            "yes", "0"]  # fmt: skip
    [listed] = _json(shown[1].stdout)
    assert listed["verification"] == {"method": "standard-webhooks", "toleranceSeconds": 300, "secretCount": 1}
    assert (listed["rateLimit"], listed["rateBurst"], listed["isEnabled"]) == (5.0, 10, True)
    assert _json(shown[3].stdout) == listed
    assert "/hooks/psp-payments" in shown[2].stdout and '"secretCount": 1' in shown[2].stdout


def test_hmac_secret_from_stdin_is_never_printed(
    run_cli: Any, mapping: str, database_url: str, reader: psycopg.Connection[Any]
) -> None:
    added = _ok(_add_hmac(run_cli, "GitHub", "github", "--json"))
    document = _json(added.stdout)
    assert document["verification"]["secretCount"] == 1 and "secret" not in document
    body = json.dumps(PAYMENT).encode()
    consumer = _consumer(database_url, "github")
    assert verifier_for(consumer.verification(BOX)).verify(_github(body)).method == "hmac"
    outputs = [
        added,
        run_cli("consumers", "list", "--json", env=ENV),
        run_cli("consumers", "show", "GitHub", env=ENV),
        run_cli("consumers", "show", str(consumer.id), "--json", env=ENV),
        _add_hmac(run_cli, "GitHub", "github"),  # refused: taken
    ]
    assert outputs[-1].returncode == 1 and "another consumer is called 'GitHub'" in outputs[-1].stderr
    assert HMAC_SECRET not in _all_output(*outputs)
    assert HMAC_SECRET not in " ".join(
        str(v) for v in reader.execute("SELECT * FROM outbox.consumers").fetchone() or ()
    )


def test_add_from_json_with_options_overriding(
    run_cli: Any, mapping: str, tmp_path: Path, reader: psycopg.Connection[Any]
) -> None:
    definition = {
        "name": "ignored: the argument names it",
        "endpoint": "from-json",
        "mappingId": "psp",
        "targetType": "event-type",
        "targetId": "betaling-ontvangen",
        "isEnabled": True,
        "verification": {"method": "bearer", "tokens": ["a-very-long-bearer-token-0001"]},
        "maxBodyBytes": 1000,
    }
    path = tmp_path / "consumer.json"
    path.write_text(json.dumps(definition))
    added = _ok(
        run_cli(
            "consumers",
            "add",
            "Bearer",
            "--from-json",
            str(path),
            "--disabled",
            "--max-body-bytes",
            "2048",
            "--json",
        )
    )
    document = _json(added.stdout)
    assert (document["name"], document["endpoint"], document["isEnabled"], document["maxBodyBytes"]) == (
        "Bearer", "from-json", False, 2048,
    )  # fmt: skip
    assert "unencrypted" in added.stderr  # no OUTBOX_SECRET_KEY in this run
    assert "a-very-long-bearer-token-0001" not in added.stdout + added.stderr
    assert reader.execute("SELECT secrets_encrypted FROM outbox.consumers").fetchone() == (False,)


def test_source_consumer_without_mapping(run_cli: Any, reader: psycopg.Connection[Any]) -> None:
    subscription = _ok(
        run_cli(
            "subscriptions",
            "add",
            "--callback-url",
            "http://127.0.0.1:9/hook",
            "--type",
            "*",
            "--allow-insecure",
            "--no-auth",
            "--skip-handshake",
        )
    ).stdout.split()[-1]
    _ok(
        run_cli(
            "consumers",
            "add",
            "Other outbox",
            "--endpoint",
            "other",
            "--target-type",
            "source",
            "--target-id",
            subscription,
            "--method",
            "api-key",
            "--generate-secret",
        )
    )
    event = {"specversion": "1.0", "id": "e-1", "source": "urn:other", "type": "nl.other.thing", "subject": "s"}
    tried = _ok(run_cli("consumers", "try", "other", "--payload", "-", input=json.dumps(event)))
    assert _json(tried.stdout)["id"] == "e-1"
    assert _count(reader, "events") == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--endpoint", "Not A Path"), ("endpoint", "lowercase")),
        (("--mapping", "missing"), ("mappingId", "there is no mapping 'missing'")),
        (("--target-id", "no-such-type"), ("targetId", "there is no event catalogue entry")),
        (("--target-type", "source"), ("targetId", "must be a subscription id")),
        (("--rate-limit", "5"), ("rateBurst", "together")),
        (("--max-body-bytes", "0"), ("maxBodyBytes",)),
        (("--tolerance-seconds", "99999"), ("verification.toleranceSeconds",)),
        (("--verification-header", "bad header"), ("verification.header", "HTTP header name")),
    ],
)
def test_add_refusals_name_the_field_and_store_nothing(
    run_cli: Any, mapping: str, reader: psycopg.Connection[Any], args: Sequence[str], words: Sequence[str]
) -> None:
    base = {"--endpoint": "github", "--mapping": "psp", "--target-type": "event-type",
            "--target-id": "betaling-ontvangen"}  # fmt: skip
    options = dict(base)
    pairs = list(zip(args[::2], args[1::2], strict=True))
    options.update(pairs)
    flat = [part for pair in options.items() for part in pair]
    verification = {"method": "hmac", "header": "X-Sig", "secrets": [HMAC_SECRET]}
    result = run_cli("consumers", "add", "GitHub", *flat, "--verification", "-", input=json.dumps(verification))
    _fails(result, *words)
    assert HMAC_SECRET not in result.stdout + result.stderr
    assert _count(reader, "consumers") == 0


def test_add_verification_refusals(run_cli: Any, mapping: str, reader: psycopg.Connection[Any], tmp_path: Path) -> None:
    target = ("--endpoint", "x", "--mapping", "psp", "--target-type", "event-type", "--target-id", "betaling-ontvangen")
    weak = "short-secret"
    result = run_cli("consumers", "add", "X", *target, "--verification", "-",
                     input=json.dumps({"method": "bearer", "tokens": [weak]}))  # fmt: skip
    _fails(result, "verification.tokens[0]", "at least 16")
    assert weak not in result.stdout + result.stderr
    _fails(run_cli("consumers", "add", "X", *target), "verification", "required")
    _fails(run_cli("consumers", "add", "X", *target, "--method", "hmac"), "verification.secrets", "required")
    _fails(run_cli("consumers", "add", "X", *target, "--method", "mtls"), "subjects or sans")
    no_method = run_cli("consumers", "add", "X", *target, "--generate-secret")
    assert no_method.returncode == 2 and "--generate-secret: give --method" in no_method.stderr
    no_secret = run_cli("consumers", "add", "X", *target, "--method", "mtls", "--generate-secret")
    assert no_secret.returncode == 2 and "method mtls has no secret" in no_secret.stderr
    not_json = tmp_path / "v.json"
    not_json.write_text("{nope")
    _fails(
        run_cli("consumers", "add", "X", *target, "--verification", str(not_json)), "--verification", "not valid JSON"
    )
    _fails(run_cli("consumers", "add", "X", *target, "--verification", "-", input="[]"), "verification", "JSON object")
    both = run_cli("consumers", "add", "X", *target, "--verification", "-", "--from-json", "-", input="{}")
    assert both.returncode == 2 and "standard input" in both.stderr
    assert _count(reader, "consumers") == 0


# -- update, enable, disable, remove ----------------------------------------------------------------------


def test_update_changes_only_what_is_given_and_keeps_secrets(run_cli: Any, mapping: str, database_url: str) -> None:
    _ok(_add_hmac(run_cli))
    before = _consumer(database_url, "GitHub")
    body = json.dumps(PAYMENT).encode()
    _ok(run_cli("consumers", "update", "GitHub", "--max-body-bytes", "4096", "--encoding", "hex", env=ENV))
    after = _consumer(database_url, "GitHub")
    assert after.max_body_bytes == 4096 and after.verification_clear["prefix"] == "sha256="
    assert (after.name, after.endpoint, after.mapping_id, after.target_id) == (
        before.name, before.endpoint, before.mapping_id, before.target_id,
    )  # fmt: skip
    verifier_for(after.verification(BOX)).verify(_github(body))  # the secret was kept

    rotated = _ok(run_cli("consumers", "update", "github", "--generate-secret", "--keep-old-secrets", env=ENV))
    new = rotated.stdout.strip()
    both = _consumer(database_url, "GitHub")
    assert both.secret_count() == 2
    verifier = verifier_for(both.verification(BOX))
    assert verifier.verify(_github(body, new)).key_index == 0
    assert verifier.verify(_github(body)).key_index == 1

    _ok(run_cli("consumers", "update", "GitHub", "--generate-secret", env=ENV))
    only = _consumer(database_url, "GitHub")
    assert only.secret_count() == 1
    with pytest.raises(VerificationFailed):
        verifier_for(only.verification(BOX)).verify(_github(body))

    renamed = _json(
        _ok(
            run_cli(
                "consumers",
                "update",
                "GitHub",
                "--name",
                "GitHub app",
                "--endpoint",
                "gh",
                "--disabled",
                "--rate-limit",
                "2",
                "--rate-burst",
                "4",
                "--json",
                env=ENV,
            )
        ).stdout
    )
    assert (renamed["name"], renamed["endpoint"], renamed["isEnabled"], renamed["rateLimit"]) == (
        "GitHub app", "gh", False, 2.0,
    )  # fmt: skip
    cleared = _json(_ok(run_cli("consumers", "update", "gh", "--no-rate-limit", "--json", env=ENV)).stdout)
    assert (cleared["rateLimit"], cleared["rateBurst"]) == (None, None)
    assert run_cli("consumers", "update", "gh", env=ENV).returncode == 2  # nothing to change
    assert run_cli("consumers", "update", "gh", "--keep-old-secrets", env=ENV).returncode == 2
    assert run_cli("consumers", "update", "gh", "--no-mapping", "--mapping", "psp", env=ENV).returncode == 2


def test_update_with_a_verification_file_or_json_keeps_secrets_left_out(
    run_cli: Any, mapping: str, database_url: str
) -> None:
    _ok(_add_hmac(run_cli))
    config = {"method": "hmac", "header": "X-Shop-Signature", "encoding": "base64"}  # no secrets: kept
    _ok(run_cli("consumers", "update", "GitHub", "--verification", "-", input=json.dumps(config), env=ENV))
    changed = _consumer(database_url, "GitHub")
    assert changed.verification_clear["header"] == "X-Shop-Signature" and changed.secret_count() == 1
    assert changed.verification_clear["prefix"] == ""  # a whole config: what it leaves out is the default
    body = json.dumps(PAYMENT).encode()
    signature = base64.b64encode(hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    verifier_for(changed.verification(BOX)).verify(Inbound.of(body, {"X-Shop-Signature": signature}))
    change = {"maxBodyBytes": 512, "isEnabled": False}
    _ok(run_cli("consumers", "update", "GitHub", "--from-json", "-", "--max-body-bytes", "1024",
                input=json.dumps(change), env=ENV))  # fmt: skip
    after = _consumer(database_url, "GitHub")
    assert (after.max_body_bytes, after.is_enabled, after.secret_count()) == (1024, False, 1)


def test_update_refusals_change_nothing(run_cli: Any, mapping: str, database_url: str) -> None:
    _ok(_add_hmac(run_cli))
    _ok(_add_hmac(run_cli, "Shop", "shop"))
    before = _consumer(database_url, "GitHub")
    result = run_cli("consumers", "update", "GitHub", "--method", "bearer", env=ENV)
    _fails(result, "verification.tokens", "required")  # another method: its secrets must be given
    _fails(run_cli("consumers", "update", "GitHub", "--endpoint", "shop", env=ENV), "endpoint", "another consumer")
    _fails(run_cli("consumers", "update", "GitHub", "--mapping", "nope", env=ENV), "mappingId")
    _fails(run_cli("consumers", "update", "nobody", "--max-body-bytes", "5", env=ENV), "no consumer 'nobody'")
    after = _consumer(database_url, "GitHub")
    assert (after.endpoint, after.method, after.mapping_id, after.updated_at) == (
        before.endpoint, before.method, before.mapping_id, before.updated_at,
    )  # fmt: skip
    assert HMAC_SECRET not in result.stdout + result.stderr


def test_enable_disable_remove(run_cli: Any, mapping: str, reader: psycopg.Connection[Any]) -> None:
    _ok(_add_hmac(run_cli))
    assert "disabled consumer GitHub" in _ok(run_cli("consumers", "disable", "GitHub")).stdout
    assert reader.execute("SELECT is_enabled FROM outbox.consumers").fetchone() == (False,)
    assert "no" in _ok(run_cli("consumers", "list")).stdout.splitlines()[1].split()
    _ok(run_cli("consumers", "enable", "github"))
    assert reader.execute("SELECT is_enabled FROM outbox.consumers").fetchone() == (True,)
    assert "removed consumer GitHub (/hooks/github)" in _ok(run_cli("consumers", "remove", "GitHub")).stdout
    assert _count(reader, "consumers") == 0
    for command in ("remove", "enable", "disable", "show"):
        _fails(run_cli("consumers", command, "GitHub"), "no consumer 'GitHub'")
    assert "no consumers" in _ok(run_cli("consumers", "list")).stdout
    assert _json(_ok(run_cli("consumers", "list", "--json")).stdout) == []


# -- try, failures, replay --------------------------------------------------------------------------------


def test_consumers_try(run_cli: Any, mapping: str, reader: psycopg.Connection[Any]) -> None:
    _ok(_add_hmac(run_cli))
    good = _ok(run_cli("consumers", "try", "GitHub", "--payload", "-", "--header", "x-psp: adyen",
                       input=json.dumps(PAYMENT)))  # fmt: skip
    event = _json(good.stdout)
    assert (event["type"], event["source"], event["id"], event["data"]) == (
        TYPE, SOURCE, "pay-1", {"amount": 1250, "psp": "adyen"},
    )  # fmt: skip
    schema = run_cli("consumers", "try", "GitHub", "--payload", "-", input=json.dumps({**PAYMENT, "amount": 0}))
    assert schema.returncode == 1 and schema.stdout.splitlines()[0] == "refused: schema_violation"
    assert "data" in schema.stdout
    mapped = run_cli("consumers", "try", "GitHub", "--payload", "-", "--json", input='{"id": "x"}')
    assert mapped.returncode == 1
    answer = _json(mapped.stdout)
    assert (
        answer["code"] == "invalid_event"
        and {"name": "time", "code": "invalid_event", "reason": "is required"} in (answer["problems"])
    )
    assert "Traceback" not in mapped.stderr
    _fails(run_cli("consumers", "try", "GitHub", "--payload", "/no/such/file"), "--payload", "cannot read")
    _fails(run_cli("consumers", "try", "nobody", "--payload", "-", input="{}"), "no consumer 'nobody'")
    assert _count(reader, "events") == 0 and _count(reader, "consumer_failures") == 0


def _keep_failure(database_url: str, name: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    """A request the service kept (verified, failed the mapping), through the store as the service does."""
    with psycopg.connect(database_url) as conn:
        consumer = operations._with_mapping(conn, "outbox", store.get(conn, "outbox", name))
        problems = [{"name": "time", "code": "invalid_event", "reason": "is required"}]
        return store.keep_failure(conn, "outbox", consumer, "invalid_event", problems, body, headers or {}, None)


def test_failures_and_replay_after_fixing_the_mapping(
    run_cli: Any, catalogue: str, database_url: str, reader: psycopg.Connection[Any]
) -> None:
    _ok(run_cli("mappings", "add", "psp", "--expression", BROKEN_MAPPING))
    _ok(_add_hmac(run_cli))
    body = json.dumps(PAYMENT).encode()
    first = _keep_failure(database_url, "GitHub", body, {"x-psp": "mollie"})
    second = _keep_failure(database_url, "GitHub", body)  # the sender's retry of the same payment
    binary = _keep_failure(database_url, "GitHub", b"\xff\x00binary")

    listed = _ok(run_cli("consumers", "failures", "GitHub")).stdout.splitlines()
    assert [int(line.split()[0]) for line in listed[1:]] == [binary, second, first]  # newest first
    assert "invalid_event" in listed[1] and "time: is required" in listed[1]
    page = _json(_ok(run_cli("consumers", "failures", "GitHub", "--json", "--limit", "2")).stdout)
    assert [f["id"] for f in page] == [binary, second]
    assert page[1]["bodySize"] == len(body) and page[1]["mappingVersion"] == 1
    older = _json(_ok(run_cli("consumers", "failures", "GitHub", "--json", "--before", str(second))).stdout)
    assert [f["id"] for f in older] == [first]
    shown = _json(_ok(run_cli("consumers", "failures", "GitHub", "--show", str(first), "--json")).stdout)
    assert (shown["body"], shown["bodyEncoding"], shown["headers"]) == (body.decode(), "utf-8", {"x-psp": "mollie"})
    text = _ok(run_cli("consumers", "failures", "GitHub", "--show", str(binary))).stdout
    assert "body (base64)" in text and base64.b64encode(b"\xff\x00binary").decode() in text
    assert "  - time: is required (invalid_event)" in text
    assert _ok(run_cli("consumers", "list")).stdout.splitlines()[1].split()[-1] == "3"  # open failures

    again = run_cli("consumers", "replay", "GitHub", str(first))
    assert again.returncode == 1
    assert again.stdout.splitlines() == [f"failure {first}: failed again: invalid_event", "  - time: is required"]
    assert _count(reader, "events") == 0

    _ok(run_cli("mappings", "update", "psp", "--expression", MAPPING, "--header", "x-psp"))
    replayed = _ok(run_cli("consumers", "replay", "GitHub", str(first), str(second))).stdout.splitlines()
    assert replayed == [
        f"failure {first}: stored (event pay-1 from {SOURCE})",
        f"failure {second}: duplicate (event pay-1 from {SOURCE})",
    ]
    [(event,)] = reader.execute("SELECT event FROM outbox.events").fetchall()
    assert (event["id"], event["type"], event["data"]) == ("pay-1", TYPE, {"amount": 1250, "psp": "mollie"})
    twice = run_cli("consumers", "replay", "GitHub", str(first), "999999")
    assert twice.returncode == 1
    assert twice.stdout.splitlines() == [
        f"failure {first}: consumer failure {first} was replayed already",
        "failure 999999: no consumer failure 999999",
    ]
    open_now = _json(_ok(run_cli("consumers", "failures", "GitHub", "--json")).stdout)
    assert [f["id"] for f in open_now] == [binary]
    every = _json(_ok(run_cli("consumers", "failures", "GitHub", "--all", "--json")).stdout)
    assert [f["id"] for f in every] == [binary, second, first]
    assert every[2]["replayedAt"] is not None and every[2]["eventId"] == "pay-1"
    assert "replayed" in _ok(run_cli("consumers", "failures", "GitHub", "--all")).stdout

    rest = run_cli("consumers", "replay", "GitHub", "--all")
    assert rest.returncode == 1 and rest.stdout.startswith(f"failure {binary}: failed again: malformed_json")
    reader.execute("DELETE FROM outbox.consumer_failures WHERE id = %s", (binary,))
    assert "no open failures" in _ok(run_cli("consumers", "replay", "GitHub", "--all")).stdout
    assert "no open failures" in _ok(run_cli("consumers", "failures", "GitHub")).stdout
    assert _count(reader, "events") == 1
    assert run_cli("consumers", "replay", "GitHub").returncode == 2
    assert run_cli("consumers", "replay", "GitHub", "--all", str(first)).returncode == 2


def test_a_failure_of_another_consumer_is_not_shown_or_replayed(
    run_cli: Any, mapping: str, database_url: str, reader: psycopg.Connection[Any]
) -> None:
    _ok(_add_hmac(run_cli))
    _ok(_add_hmac(run_cli, "Shop", "shop"))
    theirs = _keep_failure(database_url, "Shop", json.dumps(PAYMENT).encode())
    _fails(run_cli("consumers", "failures", "GitHub", "--show", str(theirs)), f"no consumer failure {theirs}")
    result = run_cli("consumers", "replay", "GitHub", str(theirs))
    assert result.returncode == 1 and f"no consumer failure {theirs}" in result.stdout
    assert _count(reader, "events") == 0


def test_replay_to_a_source_consumer_targets_its_subscription(
    run_cli: Any, database_url: str, reader: psycopg.Connection[Any]
) -> None:
    subscription = _ok(
        run_cli(
            "subscriptions",
            "add",
            "--callback-url",
            "http://127.0.0.1:9/hook",
            "--type",
            "*",
            "--allow-insecure",
            "--no-auth",
            "--skip-handshake",
        )
    ).stdout.split()[-1]
    _ok(run_cli("consumers", "add", "Peer", "--endpoint", "peer", "--target-type", "source", "--target-id",
                subscription, "--method", "none"))  # fmt: skip
    event = {"specversion": "1.0", "id": "e-1", "source": "urn:peer", "type": "nl.peer.thing", "subject": "s"}
    failure = _keep_failure(database_url, "Peer", json.dumps(event).encode())
    _ok(run_cli("consumers", "replay", "peer", str(failure)))
    assert reader.execute("SELECT event->>'id', target_subscription::text FROM outbox.events").fetchall() == [
        ("e-1", subscription)
    ]


# -- purge ------------------------------------------------------------------------------------------------


def test_purge_deletes_receipts_older_than_twice_the_longest_tolerance(
    run_cli: Any, mapping: str, reader: psycopg.Connection[Any]
) -> None:
    _ok(_add_hmac(run_cli))
    for webhook_id, age in (("old", "3 hours"), ("older", "2 days"), ("recent", "90 minutes")):
        reader.execute(
            "INSERT INTO outbox.consumer_receipts (consumer_id, webhook_id, received_at, event_source, event_id) "
            "SELECT id, %s, now() - %s::interval, 'urn:x', %s FROM outbox.consumers",
            (webhook_id, age, webhook_id),
        )
    result = _ok(run_cli("purge", "--older-than", "30d"))
    assert "deleted 2 consumer receipts (webhook ids older than 2 h)" in result.stdout.splitlines()
    assert reader.execute("SELECT webhook_id FROM outbox.consumer_receipts").fetchall() == [("recent",)]
    again = _ok(run_cli("purge", "--older-than", "30d")).stdout
    assert "consumer receipts" not in again  # nothing to say


def test_help_lists_every_command(run_cli: Any) -> None:
    consumers = _ok(run_cli("consumers", "--help")).stdout
    for command in ("add", "list", "show", "update", "remove", "enable", "disable", "try", "failures", "replay"):
        assert f"  {command} " in consumers
    mappings = _ok(run_cli("mappings", "--help")).stdout
    for command in ("add", "update", "list", "show", "remove", "try"):
        assert f"  {command} " in mappings
