"""`outbox subscriptions add|update` with the delivery options, as a real subprocess on a real database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trustme

from tests.support import Received, Receiver

OAUTH_SECRET = "oauth-client-secret-0123456789"
ZGW_SECRET = "zgw-secret-0123456789-abcdefghijkl"
SIGNING = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="  # 32 bytes
AUTH = "Bearer static-secret-0123456789"
SECRETS = (OAUTH_SECRET, ZGW_SECRET, SIGNING, AUTH, "static-secret")


def _add(run_cli: Any, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
    return run_cli("subscriptions", "add", "--type", "*", "--skip-handshake", "--no-auth", *args, env=env, input=input)


def _show(run_cli: Any, sub: str) -> dict[str, Any]:
    shown = run_cli("subscriptions", "show", sub, "--json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert isinstance(document, dict)
    return document


def test_every_option_is_stored_and_shown_without_secrets(run_cli: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("outbox-client")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    added = _add(
        run_cli, "--callback-url", "https://hook.example.nl/in", "--content-mode", "batched", "--batch-max", "25",
        "--content-type", "application/cloudevents-batch+json", "--rate", "600",
        "--oauth2-token-url", "https://idp.example.nl/token", "--oauth2-client-id", "outbox",
        "--oauth2-client-secret", OAUTH_SECRET, "--oauth2-scope", "notificaties",
        "--signing-secret", SIGNING, "--ca-bundle", str(ca_file), "--client-cert", str(cert_file),
        "--client-key", str(key_file),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    sub = added.stdout.strip().splitlines()[-1]
    document = _show(run_cli, sub)
    assert document["contentMode"] == "batched" and document["batchMax"] == 25
    assert document["contentType"] == "application/cloudevents-batch+json"
    assert document["requestedRate"] == 600 and document["authKind"] == "oauth2"
    assert document["oauth2"] == {
        "tokenUrl": "https://idp.example.nl/token",
        "clientId": "outbox",
        "scope": "notificaties",
        "clientSecret": "(set)",
    }
    assert document["signingSecrets"] == 1
    assert document["caBundle"].startswith("1 certificate, sha256 ")
    outputs = [run_cli("subscriptions", *args) for args in (("list",), ("list", "--json"), ("show", sub))]
    outputs.append(run_cli("status", "--json"))
    for result in outputs:
        assert result.returncode == 0, result.stderr
        assert not [s for s in (OAUTH_SECRET, SIGNING, "PRIVATE KEY") if s in result.stdout + result.stderr]


def test_update_changes_only_what_is_given_and_switches_auth_kinds(run_cli: Any) -> None:
    added = _add(run_cli, "--callback-url", "https://hook.example.nl/in", "--auth", AUTH, "--rate", "60")
    assert added.returncode == 0, added.stderr
    sub = added.stdout.strip().splitlines()[-1]
    updated = run_cli(
        "subscriptions", "update", sub, "--zgw-client-id", "open-notificaties", "--zgw-secret", ZGW_SECRET,
        "--content-mode", "binary", "--skip-handshake",
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    document = _show(run_cli, sub)
    assert document["authKind"] == "zgw" and document["auth"] is None, "one auth kind replaces the other"
    assert document["contentMode"] == "binary" and document["requestedRate"] == 60, "the rest stays"
    assert document["zgw"] == {"clientId": "open-notificaties", "secret": "(set)"}
    rotated = run_cli("subscriptions", "update", sub, "--zgw-secret", ZGW_SECRET + "-new", "--skip-handshake")
    assert rotated.returncode == 0, rotated.stderr
    assert _show(run_cli, sub)["zgw"] == {"clientId": "open-notificaties", "secret": "(set)"}, "a new secret alone"
    unguarded = run_cli("subscriptions", "update", sub, "--clear", "auth", "--skip-handshake")
    assert unguarded.returncode == 1 and "MUST carry an access token" in unguarded.stderr
    cleared = run_cli(
        "subscriptions", "update", sub, "--clear", "auth", "--clear", "rate", "--skip-handshake", "--no-auth"
    )
    assert cleared.returncode == 0, cleared.stderr
    document = _show(run_cli, sub)
    assert (document["authKind"], document["requestedRate"], document["zgw"]) == ("none", None, None)
    bad = run_cli("subscriptions", "update", sub, "--batch-max", "5000")
    assert bad.returncode == 2 and "--batch-max" in bad.stderr
    refused = run_cli("subscriptions", "update", sub, "--signing-secret", "not-a-secret", "--skip-handshake")
    assert refused.returncode == 1
    assert "signingSecrets[0]: must be whsec_ followed by base64 of 24 to 64 bytes" in refused.stderr
    missing = run_cli("subscriptions", "update", "00000000-0000-0000-0000-000000000000", "--rate", "5")
    assert missing.returncode == 1 and "no subscription with id" in missing.stderr


def test_a_token_in_the_query_string_is_refused_unless_forced(run_cli: Any) -> None:
    url = "https://hook.example.nl/in?access_token=query-secret-123456"
    refused = _add(run_cli, "--callback-url", url)
    assert refused.returncode == 1
    assert "SHOULD NOT" in refused.stderr and "--allow-query-token" in refused.stderr
    assert "query-secret-123456" not in refused.stderr
    forced = _add(run_cli, "--callback-url", url, "--allow-query-token")
    assert forced.returncode == 0, forced.stderr
    sub = forced.stdout.strip().splitlines()[-1]
    assert "query-secret" not in forced.stdout
    assert _show(run_cli, sub)["callbackUrl"] == "https://hook.example.nl/in?access_token=…"
    for args in (("subscriptions", "list"), ("status",), ("status", "--json")):
        result = run_cli(*args)
        assert "query-secret" not in result.stdout + result.stderr


def test_malformed_options_are_refused_whole_naming_each_field(run_cli: Any, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello")
    result = _add(
        run_cli, "--callback-url", "https://hook.example.nl/in", "--content-type", "no media type",
        "--auth", AUTH, "--zgw-client-id", "x", "--zgw-secret", ZGW_SECRET, "--ca-bundle", str(not_pem),
        "--oauth2-token-url", "http://idp.example.nl/token", "--oauth2-client-id", "c",
        "--oauth2-client-secret", OAUTH_SECRET,
    )  # fmt: skip
    assert result.returncode == 1
    for expected in (
        "contentType: must be a media type",
        "auth: choose one of auth, oauth2 and zgw",
        "caBundle: must be PEM text with a CERTIFICATE block",
        "oauth2.tokenUrl: must use https",
    ):
        assert expected in result.stderr, result.stderr
    assert not [s for s in SECRETS if s in result.stderr]
    assert "no subscriptions" in run_cli("subscriptions", "list").stdout, "nothing stored"


def test_preflight_subscription_skips_the_handshake_at_add(run_cli: Any) -> None:
    def answer(n: int, r: Received) -> tuple[int, dict[str, str], float]:
        return (500, {}, 0.0)  # would refuse a handshake: none must be sent

    with Receiver(answer=answer).running() as receiver:
        added = run_cli(
            "subscriptions", "add", "--callback-url", receiver.url, "--type", "*", "--allow-insecure",
            "--preflight", "--origin", "outbox.example.nl", "--no-auth",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert receiver.received == []
    document = _show(run_cli, added.stdout.strip().splitlines()[-1])
    assert (document["agreement"], document["preflight"], document["handshakeAt"]) == ("preflight", True, None)


def test_verify_keeps_a_preflight_subscription_preflight(run_cli: Any) -> None:
    def answer(n: int, r: Received) -> tuple[int, dict[str, str], float]:
        return (200, {"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": "120"}, 0.0)

    with Receiver(answer=answer).running() as receiver:
        added = _add(run_cli, "--callback-url", receiver.url, "--allow-insecure", "--preflight")
        sub = added.stdout.strip().splitlines()[-1]
        verified = run_cli("subscriptions", "verify", sub, "--origin", "outbox.example.nl")
        assert verified.returncode == 0, verified.stderr
    document = _show(run_cli, sub)
    assert (document["agreement"], document["allowedRate"]) == ("preflight", "120")
    assert document["handshakeAt"] is not None


def test_urls_with_control_characters_or_upper_case_schemes(run_cli: Any) -> None:
    bad = _add(run_cli, "--from-json", "-", input=json.dumps({"callbackUrl": "https://x.example/a\u0001b"}))
    assert bad.returncode == 1 and "must not contain spaces or control characters" in bad.stderr
    upper = _add(run_cli, "--callback-url", "HTTPS://hook.example.nl/in")
    assert upper.returncode == 0, upper.stderr


def test_a_subscription_without_an_access_token_is_refused_unless_the_operator_says_so(run_cli: Any) -> None:
    args = ("subscriptions", "add", "--callback-url", "https://hook.example.nl/in", "--type", "*", "--skip-handshake")
    refused = run_cli(*args)
    assert refused.returncode == 1
    assert "auth: the webhook guideline (§3.1.2) says deliveries MUST carry an access token" in refused.stderr
    assert "no subscriptions" in run_cli("subscriptions", "list").stdout
    assert run_cli(*args, "--no-auth").returncode == 0
    assert run_cli(*args, "--auth", AUTH).returncode == 0
