"""worker/consumers/verification.py: each method accepts what a real sender signs and refuses, with its code,
what it must not take; no secret shows in any error or repr."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
import trustme

from worker.consumers.verification import (
    CERTIFICATE_MISMATCH,
    CODES,
    CREDENTIALS_MISMATCH,
    MALFORMED_CERTIFICATE,
    MALFORMED_HEADER,
    METHODS,
    MISSING_CERTIFICATE,
    MISSING_HEADER,
    SECRET_FIELDS,
    SIGNATURE_MISMATCH,
    TIMESTAMP_FUTURE,
    TIMESTAMP_STALE,
    Inbound,
    InvalidVerificationConfig,
    VerificationFailed,
    Verified,
    parse_config,
    split_secrets,
    verifier_for,
    verify,
)

NOW = 1_800_000_000
BODY = b'{"id":"evt_123","type":"payment.paid","amount":1250}'
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()
GITHUB_SECRET = "It's a Secret to Everybody, 2026"
TOKEN = "tok-3f9a8c1e5b7d2a4f6c8e0b1d"
PASSWORD = "correct horse battery staple"
API_KEY = "key-9e8d7c6b5a4f3e2d1c0b"


def clock(at: float = NOW) -> Any:
    return lambda: at


def refused(config: Any, request: Inbound, *, at: float = NOW) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as caught:
        verify(config, request, clock=clock(at))
    assert caught.value.code in CODES
    return caught.value


# -- Standard Webhooks ------------------------------------------------------------------------------------


def sw_config(*secrets: str, **more: Any) -> Any:
    return parse_config({"method": "standard-webhooks", "secrets": list(secrets or (SECRET,)), **more})


def sw_headers(secret: str = SECRET, *, msg_id: str = "msg_2b9X", at: int = NOW, body: bytes = BODY) -> dict[str, str]:
    """Signed by the standardwebhooks package: the sender's side, independent of the module under test."""
    signature = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, UTC), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_standard_webhooks_accepts_what_the_reference_sender_signs_and_returns_the_id() -> None:
    verified = verify(sw_config(), Inbound.of(BODY, sw_headers()), clock=clock())
    assert verified == Verified("standard-webhooks", webhook_id="msg_2b9X", timestamp=NOW, key_index=0)


def test_standard_webhooks_header_names_any_case_and_asgi_header_lists() -> None:
    headers = {name.upper(): value for name, value in sw_headers().items()}
    assert verify(sw_config(), Inbound.of(BODY, headers), clock=clock()).webhook_id == "msg_2b9X"
    raw = [(name.encode(), value.encode()) for name, value in sw_headers().items()]
    scope = {"type": "http", "headers": [(b"content-type", b"application/json"), *raw]}
    assert verify(sw_config(), Inbound.from_scope(scope, BODY), clock=clock()).webhook_id == "msg_2b9X"


def test_standard_webhooks_verifies_bytes_as_received_not_reserialised_json() -> None:
    body = b'{ "amount" : 1250,\n "id": "evt_\xc3\xa9" }'
    assert verify(sw_config(), Inbound.of(body, sw_headers(body=body)), clock=clock()).method == "standard-webhooks"
    failure = refused(sw_config(), Inbound.of(body.replace(b" ", b""), sw_headers(body=body)))
    assert failure.code == SIGNATURE_MISMATCH


def test_standard_webhooks_wrong_secret_and_tampered_body_and_id_are_refused() -> None:
    assert refused(sw_config(), Inbound.of(BODY, sw_headers(OTHER_SECRET))).code == SIGNATURE_MISMATCH
    assert refused(sw_config(), Inbound.of(BODY + b" ", sw_headers())).code == SIGNATURE_MISMATCH
    headers = {**sw_headers(), "webhook-id": "msg_other"}
    assert refused(sw_config(), Inbound.of(BODY, headers)).code == SIGNATURE_MISMATCH
    headers = {**sw_headers(), "webhook-timestamp": str(NOW + 1)}  # the timestamp is signed too
    assert refused(sw_config(), Inbound.of(BODY, headers)).code == SIGNATURE_MISMATCH


def test_standard_webhooks_stale_and_future_timestamps_outside_the_window() -> None:
    config = sw_config()
    assert verify(config, Inbound.of(BODY, sw_headers(at=NOW - 300)), clock=clock()).timestamp == NOW - 300
    assert verify(config, Inbound.of(BODY, sw_headers(at=NOW + 300)), clock=clock()).timestamp == NOW + 300
    stale = refused(config, Inbound.of(BODY, sw_headers(at=NOW - 301)))
    assert stale.code == TIMESTAMP_STALE
    assert "301 s old" in stale.reason
    assert refused(config, Inbound.of(BODY, sw_headers(at=NOW + 301))).code == TIMESTAMP_FUTURE
    narrow = sw_config(toleranceSeconds=10)
    assert refused(narrow, Inbound.of(BODY, sw_headers(at=NOW - 11))).code == TIMESTAMP_STALE


def test_standard_webhooks_a_forged_old_request_is_a_mismatch_not_stale() -> None:
    # The signature is checked first: "stale" is only said of a request a configured secret signed.
    assert refused(sw_config(), Inbound.of(BODY, sw_headers(OTHER_SECRET, at=NOW - 3600))).code == SIGNATURE_MISMATCH


def test_standard_webhooks_rotation_either_secret_verifies_and_tells_which() -> None:
    config = sw_config(SECRET, OLD_SECRET)
    assert verify(config, Inbound.of(BODY, sw_headers(SECRET)), clock=clock()).key_index == 0
    assert verify(config, Inbound.of(BODY, sw_headers(OLD_SECRET)), clock=clock()).key_index == 1
    # a sender in the middle of its own rotation sends two signatures; ours is the second
    both = sw_headers(OTHER_SECRET)
    both["webhook-signature"] += " " + sw_headers(SECRET)["webhook-signature"]
    assert verify(sw_config(), Inbound.of(BODY, both), clock=clock()).key_index == 0
    # after the rotation the old secret is gone
    assert refused(sw_config(SECRET), Inbound.of(BODY, sw_headers(OLD_SECRET))).code == SIGNATURE_MISMATCH


def test_standard_webhooks_unpadded_secret_as_reference_libraries_accept() -> None:
    unpadded = "whsec_" + base64.b64encode(b"p" * 32).decode().rstrip("=")
    assert verify(sw_config(unpadded), Inbound.of(BODY, sw_headers(unpadded)), clock=clock()).key_index == 0


def test_standard_webhooks_other_signature_versions_are_ignored() -> None:
    headers = sw_headers()
    headers["webhook-signature"] = "v1a,c29tZWVkMjU1MTlzaWduYXR1cmU= " + headers["webhook-signature"]
    assert verify(sw_config(), Inbound.of(BODY, headers), clock=clock()).key_index == 0
    headers["webhook-signature"] = "v1a,c29tZWVkMjU1MTlzaWduYXR1cmU="
    failure = refused(sw_config(), Inbound.of(BODY, headers))
    assert (failure.code, failure.reason) == (MALFORMED_HEADER, "webhook-signature holds no v1 signature")


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_webhooks_missing_headers(missing: str) -> None:
    headers = {k: v for k, v in sw_headers().items() if k != missing}
    failure = refused(sw_config(), Inbound.of(BODY, headers))
    assert (failure.code, failure.reason) == (MISSING_HEADER, f"{missing} is missing")
    empty = {**sw_headers(), missing: "  "}
    assert refused(sw_config(), Inbound.of(BODY, empty)).code == MISSING_HEADER


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("webhook-timestamp", "2026-12-07T12:00:00Z", "webhook-timestamp must be a Unix time in seconds"),
        ("webhook-timestamp", "-5", "webhook-timestamp must be a Unix time in seconds"),
        ("webhook-timestamp", "1e9", "webhook-timestamp must be a Unix time in seconds"),
        ("webhook-signature", "v1:abc", "webhook-signature entries must be <version>,<signature>"),
        ("webhook-signature", "v1,", "webhook-signature entries must be <version>,<signature>"),
        ("webhook-signature", "v1,not*base64", "a webhook-signature v1 entry is not base64"),
        ("webhook-signature", " ".join(["v1,AAAA"] * 9), "webhook-signature holds more than 8"),
        ("webhook-id", "has space", "webhook-id must be 1 to 256 visible ASCII characters"),
        ("webhook-id", "x" * 257, "webhook-id must be 1 to 256 visible ASCII characters"),
    ],
)
def test_standard_webhooks_malformed_headers(name: str, value: str, reason: str) -> None:
    failure = refused(sw_config(), Inbound.of(BODY, {**sw_headers(), name: value}))
    assert (failure.code, failure.reason) == (MALFORMED_HEADER, reason)


def test_a_verification_header_given_twice_is_refused() -> None:
    headers = [(k.encode(), v.encode()) for k, v in sw_headers().items()]
    headers.append((b"Webhook-Signature", sw_headers(OTHER_SECRET)["webhook-signature"].encode()))
    failure = refused(sw_config(), Inbound.of(BODY, headers))
    assert (failure.code, failure.reason) == (MALFORMED_HEADER, "webhook-signature is given 2 times")


def test_the_clock_is_read_per_request() -> None:
    now = [float(NOW)]
    verifier = verifier_for(sw_config(), clock=lambda: now[0])
    request = Inbound.of(BODY, sw_headers())
    assert verifier.verify(request).timestamp == NOW
    now[0] += 301
    with pytest.raises(VerificationFailed) as caught:
        verifier.verify(request)
    assert caught.value.code == TIMESTAMP_STALE


# -- generic HMAC -----------------------------------------------------------------------------------------

GITHUB = {"method": "hmac", "secrets": [GITHUB_SECRET], "header": "X-Hub-Signature-256", "prefix": "sha256="}


def github_signature(body: bytes = BODY, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_hmac_github_style_signature_is_accepted() -> None:
    verified = verify(parse_config(GITHUB), Inbound.of(BODY, {"x-hub-signature-256": github_signature()}))
    assert verified == Verified("hmac", key_index=0)
    upper = "sha256=" + github_signature()[7:].upper()  # hex in either case
    assert verify(parse_config(GITHUB), Inbound.of(BODY, {"X-Hub-Signature-256": upper})).key_index == 0


def test_hmac_the_documented_github_example() -> None:
    # docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody", payload "Hello, World!"
    config = parse_config({**GITHUB, "secrets": ["It's a Secret to Everybody"]})
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify(config, Inbound.of(b"Hello, World!", {"X-Hub-Signature-256": expected})).method == "hmac"


def test_hmac_wrong_signature_wrong_secret_tampered_body() -> None:
    config = parse_config(GITHUB)
    failure = refused(config, Inbound.of(BODY, {"X-Hub-Signature-256": github_signature(secret="another secret 123")}))
    assert (failure.code, failure.reason) == (
        SIGNATURE_MISMATCH,
        "X-Hub-Signature-256 does not match a configured secret",
    )
    assert refused(config, Inbound.of(BODY + b"\n", {"X-Hub-Signature-256": github_signature()})).code == (
        SIGNATURE_MISMATCH
    )


def test_hmac_missing_and_malformed_headers() -> None:
    config = parse_config(GITHUB)
    failure = refused(config, Inbound.of(BODY, {"X-Hub-Signature": "sha1=" + "0" * 40}))
    assert (failure.code, failure.reason) == (MISSING_HEADER, "X-Hub-Signature-256 is missing")
    failure = refused(config, Inbound.of(BODY, {"X-Hub-Signature-256": github_signature()[7:]}))
    assert (failure.code, failure.reason) == (MALFORMED_HEADER, "X-Hub-Signature-256 must start with sha256=")
    for bad in ("sha256=zz" + "0" * 62, "sha256=" + "0" * 40, "sha256=é" + "0" * 63):
        failure = refused(config, Inbound.of(BODY, {"X-Hub-Signature-256": bad}))
        assert failure.code == MALFORMED_HEADER
        assert failure.reason == "X-Hub-Signature-256 must hold hex of 32 bytes after sha256="


def test_hmac_base64_sha512_without_prefix_and_rotation() -> None:
    secrets = ["new-shared-secret-0001", "old-shared-secret-0000"]
    config = parse_config(
        {"method": "hmac", "secrets": secrets, "header": "X-Signature", "encoding": "base64", "algorithm": "sha512"}
    )
    for index, secret in enumerate(secrets):
        signature = base64.b64encode(hmac.new(secret.encode(), BODY, hashlib.sha512).digest()).decode()
        assert verify(config, Inbound.of(BODY, {"x-signature": signature})).key_index == index
    sha256 = base64.b64encode(hmac.new(secrets[0].encode(), BODY, hashlib.sha256).digest()).decode()
    failure = refused(config, Inbound.of(BODY, {"x-signature": sha256}))
    assert (failure.code, failure.reason) == (MALFORMED_HEADER, "X-Signature must hold base64 of 64 bytes")
    assert refused(config, Inbound.of(BODY, {"x-signature": "!!not base64!!"})).code == MALFORMED_HEADER


def slack_headers(secret: str, at: int, body: bytes = BODY) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"v0:{at}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(at), "X-Slack-Signature": "v0=" + digest}


def test_hmac_with_a_signed_timestamp_as_slack_and_zoom_send() -> None:
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    config = parse_config(
        {
            "method": "hmac",
            "secrets": [secret],
            "header": "X-Slack-Signature",
            "prefix": "v0=",
            "timestampHeader": "X-Slack-Request-Timestamp",
        }
    )
    verified = verify(config, Inbound.of(BODY, slack_headers(secret, NOW - 60)), clock=clock())
    assert verified == Verified("hmac", timestamp=NOW - 60, key_index=0)
    assert refused(config, Inbound.of(BODY, slack_headers(secret, NOW - 301))).code == TIMESTAMP_STALE
    assert refused(config, Inbound.of(BODY, slack_headers(secret, NOW + 301))).code == TIMESTAMP_FUTURE
    moved = {**slack_headers(secret, NOW), "X-Slack-Request-Timestamp": str(NOW - 1)}
    assert refused(config, Inbound.of(BODY, moved)).code == SIGNATURE_MISMATCH
    no_stamp = {"X-Slack-Signature": slack_headers(secret, NOW)["X-Slack-Signature"]}
    assert refused(config, Inbound.of(BODY, no_stamp)).code == MISSING_HEADER
    bad_stamp = {**slack_headers(secret, NOW), "X-Slack-Request-Timestamp": "yesterday"}
    assert refused(config, Inbound.of(BODY, bad_stamp)).code == MALFORMED_HEADER


# -- Bearer, Basic, API key -------------------------------------------------------------------------------


def test_bearer_right_wrong_rotated_and_malformed() -> None:
    config = parse_config({"method": "bearer", "tokens": [TOKEN, TOKEN + "-old"]})
    assert verify(config, Inbound.of(BODY, {"authorization": f"Bearer {TOKEN}"})) == Verified("bearer", key_index=0)
    assert verify(config, Inbound.of(BODY, {"Authorization": f"bearer {TOKEN}-old"})).key_index == 1
    failure = refused(config, Inbound.of(BODY, {"Authorization": f"Bearer {TOKEN}x"}))
    assert (failure.code, failure.reason) == (CREDENTIALS_MISMATCH, "the bearer token is not a configured one")
    assert refused(config, Inbound.of(BODY, {"Authorization": f"Bearer {TOKEN[:-1]}"})).code == CREDENTIALS_MISMATCH
    assert refused(config, Inbound.of(BODY, {})).code == MISSING_HEADER
    for malformed in (f"Token {TOKEN}", "Bearer", "Bearer   ", TOKEN):
        assert refused(config, Inbound.of(BODY, {"Authorization": malformed})).code == MALFORMED_HEADER


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_right_and_wrong_user_or_password() -> None:
    config = parse_config({"method": "basic", "username": "psp-webhooks", "password": PASSWORD})
    assert verify(config, Inbound.of(BODY, basic("psp-webhooks", PASSWORD))) == Verified(
        "basic", principal="psp-webhooks"
    )
    for user, password in (("psp-webhooks", PASSWORD + "!"), ("someone", PASSWORD), ("", "")):
        failure = refused(config, Inbound.of(BODY, basic(user, password)))
        assert (failure.code, failure.reason) == (
            CREDENTIALS_MISMATCH,
            "the user name or password is not the configured one",
        )
    assert refused(config, Inbound.of(BODY, {})).code == MISSING_HEADER
    assert refused(config, Inbound.of(BODY, {"Authorization": f"Bearer {TOKEN}"})).code == MALFORMED_HEADER
    assert refused(config, Inbound.of(BODY, {"Authorization": "Basic %%%"})).code == MALFORMED_HEADER
    no_colon = {"Authorization": "Basic " + base64.b64encode(b"psp-webhooks").decode()}
    assert refused(config, Inbound.of(BODY, no_colon)).code == MALFORMED_HEADER
    not_utf8 = {"Authorization": "Basic " + base64.b64encode(b"psp:\xff\xfe").decode()}
    assert refused(config, Inbound.of(BODY, not_utf8)).code == MALFORMED_HEADER


def test_basic_password_may_hold_colons_and_non_ascii() -> None:
    password = "pass:wörd:with-colons-2026"
    config = parse_config({"method": "basic", "username": "gemeente", "password": password})
    assert verify(config, Inbound.of(BODY, basic("gemeente", password))).principal == "gemeente"


def test_api_key_default_and_configured_header() -> None:
    config = parse_config({"method": "api-key", "keys": [API_KEY]})
    assert verify(config, Inbound.of(BODY, {"x-api-key": API_KEY})) == Verified("api-key", key_index=0)
    failure = refused(config, Inbound.of(BODY, {"X-API-Key": API_KEY + "0"}))
    assert (failure.code, failure.reason) == (CREDENTIALS_MISMATCH, "X-API-Key is not a configured key")
    failure = refused(config, Inbound.of(BODY, {"Authorization": f"Bearer {API_KEY}"}))
    assert (failure.code, failure.reason) == (MISSING_HEADER, "X-API-Key is missing")
    custom = parse_config({"method": "api-key", "header": "X-Mollie-Key", "keys": [API_KEY, API_KEY + "-next"]})
    assert verify(custom, Inbound.of(BODY, {"x-mollie-key": API_KEY + "-next"})).key_index == 1
    assert refused(custom, Inbound.of(BODY, {"x-api-key": API_KEY})).code == MISSING_HEADER


# -- mTLS -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates() -> dict[str, str]:
    ca = trustme.CA()
    psp = ca.issue_cert(
        "psp.example.com",
        "webhooks@psp.example.com",
        "192.0.2.7",
        common_name="psp.example.com",
        organization_name="PSP B.V.",
        organization_unit_name="Webhooks",
    )
    other = ca.issue_cert(
        "other.example.org", common_name="other.example.org", organization_name="Other", organization_unit_name="X"
    )
    return {"psp": psp.cert_chain_pems[0].bytes().decode(), "other": other.cert_chain_pems[0].bytes().decode()}


def tls(pem: str | None, error: str | None = None) -> dict[str, Any]:
    """The ASGI TLS extension as worker/runtime/asgi.py fills it in."""
    return {
        "server_cert": None,
        "client_cert_chain": [pem] if pem else [],
        "client_cert_name": None,
        "client_cert_error": error,
        "tls_version": 0x0304,
        "cipher_suite": None,
    }


def test_mtls_subject_dn_right_wrong_missing(certificates: dict[str, str]) -> None:
    config = parse_config({"method": "mtls", "subjects": ["CN=psp.example.com,OU=Webhooks,O=PSP B.V."]})
    verified = verify(config, Inbound.of(BODY, {}, tls(certificates["psp"])))
    assert verified == Verified("mtls", principal="CN=psp.example.com,OU=Webhooks,O=PSP B.V.")
    failure = refused(config, Inbound.of(BODY, {}, tls(certificates["other"])))
    assert failure.code == CERTIFICATE_MISMATCH
    assert "CN=other.example.org,OU=X,O=Other" in failure.reason
    assert refused(config, Inbound.of(BODY, {}, tls(None))).code == MISSING_CERTIFICATE
    assert refused(config, Inbound.of(BODY, {})).code == MISSING_CERTIFICATE  # plain HTTP: no TLS extension
    # another attribute set (or one more or fewer) is another subject
    partial = parse_config({"method": "mtls", "subjects": ["CN=psp.example.com"]})
    assert refused(partial, Inbound.of(BODY, {}, tls(certificates["psp"]))).code == CERTIFICATE_MISMATCH


def test_mtls_subject_alternative_names(certificates: dict[str, str]) -> None:
    config = parse_config({"method": "mtls", "sans": ["DNS:PSP.example.com"]})
    assert verify(config, Inbound.of(BODY, {}, tls(certificates["psp"]))).principal == "DNS:psp.example.com"
    email = parse_config({"method": "mtls", "sans": ["URI:https://psp.example.com/", "email:webhooks@psp.example.com"]})
    assert verify(email, Inbound.of(BODY, {}, tls(certificates["psp"]))).principal == "email:webhooks@psp.example.com"
    address = parse_config({"method": "mtls", "sans": ["IP:192.0.2.7"]})
    assert verify(address, Inbound.of(BODY, {}, tls(certificates["psp"]))).principal == "IP:192.0.2.7"
    assert refused(config, Inbound.of(BODY, {}, tls(certificates["other"]))).code == CERTIFICATE_MISMATCH


def test_mtls_certificate_the_server_flagged_or_unreadable(certificates: dict[str, str]) -> None:
    config = parse_config({"method": "mtls", "sans": ["DNS:psp.example.com"]})
    flagged = refused(config, Inbound.of(BODY, {}, tls(certificates["psp"], error="unknown ca")))
    assert flagged.code == MALFORMED_CERTIFICATE
    assert refused(config, Inbound.of(BODY, {}, tls("not a pem"))).code == MALFORMED_CERTIFICATE


def test_mtls_from_a_scope_with_the_tls_extension(certificates: dict[str, str]) -> None:
    config = parse_config({"method": "mtls", "sans": ["DNS:psp.example.com"]})
    scope = {"type": "http", "headers": [], "extensions": {"tls": tls(certificates["psp"])}}
    assert verify(config, Inbound.from_scope(scope, BODY)).principal == "DNS:psp.example.com"


def test_mtls_the_pem_asgi_py_makes_from_der(certificates: dict[str, str]) -> None:
    pem = ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(certificates["psp"]))  # as asgi.py converts it
    config = parse_config({"method": "mtls", "subjects": ["CN=psp.example.com,OU=Webhooks,O=PSP B.V."]})
    assert verify(config, Inbound.of(BODY, {}, tls(pem))).method == "mtls"


def pkioverheid_like_certificate() -> str:
    """A self-signed certificate with a subject as PKIoverheid issues them: C, O with a comma, the OIN."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gemeente Voorbeeld, afdeling ICT"),
            x509.NameAttribute(x509.ObjectIdentifier("2.5.4.97"), "NTRNL-00000001234567890000"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "00000001234567890000"),
            x509.NameAttribute(NameOID.COMMON_NAME, "webhooks.voorbeeld.nl"),
        ]
    )
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_mtls_a_dutch_government_subject_with_oin_and_escaped_comma() -> None:
    pem = pkioverheid_like_certificate()
    dn = (
        "CN=webhooks.voorbeeld.nl,serialNumber=00000001234567890000,"
        "organizationIdentifier=NTRNL-00000001234567890000,O=Gemeente Voorbeeld\\, afdeling ICT,C=NL"
    )
    assert verify(parse_config({"method": "mtls", "subjects": [dn]}), Inbound.of(BODY, {}, tls(pem))).principal == dn
    other_oin = dn.replace("serialNumber=00000001234567890000", "serialNumber=00000009999999990000")
    failure = refused(parse_config({"method": "mtls", "subjects": [other_oin]}), Inbound.of(BODY, {}, tls(pem)))
    assert failure.code == CERTIFICATE_MISMATCH
    assert "serialNumber=00000001234567890000" in failure.reason  # the operator sees whom it refused


# -- none -------------------------------------------------------------------------------------------------


def test_none_only_when_chosen() -> None:
    assert verify(parse_config({"method": "none"}), Inbound.of(BODY, {})) == Verified("none")
    with pytest.raises(InvalidVerificationConfig) as caught:
        parse_config({})
    assert caught.value.problems[0].startswith("method: is required")
    with pytest.raises(InvalidVerificationConfig):
        parse_config({"method": None})


# -- configs ----------------------------------------------------------------------------------------------


def problems(document: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(InvalidVerificationConfig) as caught:
        parse_config(document)
    return caught.value.problems


def test_config_faults_are_all_named_by_field() -> None:
    assert problems(
        {
            "method": "hmac",
            "secrets": ["short"],
            "header": "X Sig",
            "encoding": "base32",
            "algorithm": "sha1",
            "unknown": 1,
        }
    ) == (
        "secrets[0]: must be at least 16 characters, without control characters",
        "header: must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
        "algorithm: Input should be 'sha256' or 'sha512'",
        "encoding: Input should be 'hex' or 'base64'",
        "unknown: Extra inputs are not permitted",
    )
    assert problems({"method": "standard-webhooks", "secrets": [SECRET, "whsec_***"], "toleranceSeconds": 0}) == (
        "secrets[1]: a signing secret must be whsec_ followed by base64",
        "toleranceSeconds: Input should be greater than or equal to 1",
    )
    short_key = "whsec_" + base64.b64encode(b"k" * 8).decode()
    assert problems({"method": "standard-webhooks", "secrets": [short_key]}) == (
        "secrets[0]: a signing secret's key must be 24 to 64 bytes, not 8",
    )
    assert problems({"method": "standard-webhooks", "secrets": [SECRET] * 2}) == (
        "secrets: holds the same value twice",
    )
    assert problems({"method": "bearer", "tokens": [TOKEN] * 4}) == (
        "tokens: must hold 1 to 3 values (more than one during a rotation)",
    )
    assert problems({"method": "hmac", "secrets": [GITHUB_SECRET], "header": "X-S", "timestampHeader": "X-T"}) == (
        "prefix: with timestampHeader it must be the scheme and '=' (such as v0=)",
    )
    assert problems({"method": "mtls"}) == (
        "subjects or sans: at least one subject DN or subject alternative name is needed",
    )
    assert problems({"method": "mtls", "subjects": ["not a dn"], "sans": ["IP:999.1.1.1", "host"]}) == (
        "subjects: each must be a distinguished name as RFC 4514 writes it (CN=…,O=…,C=NL)",
        "sans: each must be DNS:<name>, URI:<uri>, email:<address> or IP:<address>",
    )
    assert problems({"method": "basic", "username": "a:b", "password": "short"}) == (
        "username: must be non-empty, without ':' or control characters",
        "password: must be at least 16 characters, without control characters",
    )
    assert problems({"method": "sha1-hmac"})[0].startswith("method: must be one of standard-webhooks, hmac")
    assert problems({"method": ["hmac"]})[0].startswith("method: must be one of")
    assert problems(["method", "none"]) == ("verification: must be a JSON object",)  # type: ignore[arg-type]


def test_config_types_are_strict() -> None:
    assert problems({"method": "api-key", "keys": API_KEY}) == ("keys: Input should be a valid list",)
    assert problems({"method": "standard-webhooks", "secrets": [SECRET], "toleranceSeconds": "300"}) == (
        "toleranceSeconds: Input should be a valid integer",
    )


def test_secret_fields_and_split_for_sealing() -> None:
    assert set(SECRET_FIELDS) == set(METHODS)
    assert SECRET_FIELDS["standard-webhooks"] == ("secrets",)
    assert SECRET_FIELDS["hmac"] == ("secrets",)
    assert SECRET_FIELDS["bearer"] == ("tokens",)
    assert SECRET_FIELDS["basic"] == ("password",)
    assert SECRET_FIELDS["api-key"] == ("keys",)
    assert SECRET_FIELDS["mtls"] == SECRET_FIELDS["none"] == ()
    config = parse_config(GITHUB)
    clear, sealed = split_secrets(config)
    assert sealed == {"secrets": [GITHUB_SECRET]}
    assert clear == {
        "method": "hmac",
        "header": "X-Hub-Signature-256",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "sha256=",
        "timestampHeader": None,
        "toleranceSeconds": 300,
    }
    assert parse_config({**clear, **sealed}) == config  # what is stored gives the config back
    clear, sealed = split_secrets(parse_config({"method": "basic", "username": "u", "password": PASSWORD}))
    assert (clear, sealed) == ({"method": "basic", "username": "u"}, {"password": PASSWORD})


def test_no_secret_in_any_error_or_repr(certificates: dict[str, str]) -> None:
    secrets = [SECRET, OLD_SECRET, GITHUB_SECRET, TOKEN, PASSWORD, API_KEY]
    configs = [
        sw_config(SECRET, OLD_SECRET),
        parse_config(GITHUB),
        parse_config({"method": "bearer", "tokens": [TOKEN]}),
        parse_config({"method": "basic", "username": "u", "password": PASSWORD}),
        parse_config({"method": "api-key", "keys": [API_KEY]}),
    ]
    texts = [repr(c) for c in configs] + [str(c) for c in configs] + [repr(verifier_for(c)) for c in configs]
    # refusals, including those whose header carries a secret or a near miss of one
    attempts = [
        (configs[0], {**sw_headers(OTHER_SECRET)}),
        (configs[0], {**sw_headers(), "webhook-signature": "v1," + SECRET}),
        (configs[1], {"X-Hub-Signature-256": "sha256=" + GITHUB_SECRET}),
        (configs[1], {"X-Hub-Signature-256": github_signature(secret=GITHUB_SECRET + "x")}),
        (configs[2], {"Authorization": f"Bearer {TOKEN}x"}),
        (configs[2], {"Authorization": f"Token {TOKEN}"}),
        (configs[3], basic("u", PASSWORD + "x")),
        (configs[4], {"X-API-Key": API_KEY + "x"}),
    ]
    for config, headers in attempts:
        failure = refused(config, Inbound.of(BODY, headers))
        texts += [str(failure), repr(failure), failure.reason]
        assert failure.__cause__ is None
        assert failure.__context__ is None or not any(s in str(failure.__context__) for s in secrets)
    texts.append(repr(Inbound.of(BODY, {"Authorization": f"Bearer {TOKEN}"})))
    # faulty configs that hold (near) secrets in some field
    for document in (
        {"method": "standard-webhooks", "secrets": [SECRET, SECRET[:-3] + "!!!"]},
        {"method": "bearer", "tokens": [TOKEN, "short"], "unknown": TOKEN},
        {"method": "basic", "username": 5, "password": PASSWORD + "\n"},
        {"method": "hmac", "secrets": GITHUB_SECRET, "header": GITHUB_SECRET},
        {"method": "api-key", "keys": [API_KEY, API_KEY]},
    ):
        with pytest.raises(InvalidVerificationConfig) as caught:
            parse_config(document)
        texts += [str(caught.value), repr(caught.value), *caught.value.problems]
    # the models used directly (as a FastAPI body model would be): pydantic's own errors hide the input
    from pydantic import BaseModel, ValidationError

    from worker.consumers.verification import BearerConfig, StandardWebhooksConfig

    documents: tuple[tuple[type[BaseModel], dict[str, Any]], ...] = (
        (StandardWebhooksConfig, {"method": "standard-webhooks", "secrets": [SECRET, SECRET], "x": OLD_SECRET}),
        (BearerConfig, {"method": "bearer", "tokens": [TOKEN, 5]}),
    )
    for model, document in documents:
        with pytest.raises(ValidationError) as raised:
            model.model_validate(document)
        texts.append(str(raised.value))
    for text in texts:
        for secret in secrets:
            assert secret not in text, text
            assert secret[6:] not in text or not secret.startswith("whsec_"), text
