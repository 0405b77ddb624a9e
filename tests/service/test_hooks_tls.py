"""`outbox serve` terminating TLS, as a real process: consumers verified by the sender's client certificate."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trustme

from outbox._catalogue import EventType
from tests.support import free_port, wait_until
from worker.store import catalogue as catalogue_store
from worker.store import consumers as store
from worker.store.secret_box import SecretBox

TYPE = "nl.example.ondertekening.document-ondertekend"
SOURCE = "urn:nld:oin:00000001234567890000:systeem:esign"
EXPRESSION = '{"id": body.envelope, "subject": body.envelope, "time": body.signedAt, "data": {"door": body.signer}}'


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(tmp_path / "server.pem")
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(tmp_path / "server.pem", append=True)
    server.private_key_pem.write_to_path(tmp_path / "server.key")
    client_ca.cert_pem.write_to_path(tmp_path / "clients-ca.pem")
    server_ca.cert_pem.write_to_path(tmp_path / "server-ca.pem")
    paths = {}
    for name in ("esign.example.nl", "someone-else.example.nl"):
        issued = client_ca.issue_cert(name)
        issued.private_key_and_cert_chain_pem.write_to_path(tmp_path / f"{name}.pem")
        paths[name] = str(tmp_path / f"{name}.pem")
    stranger = trustme.CA().issue_cert("esign.example.nl")  # the right name from a CA the server does not trust
    stranger.private_key_and_cert_chain_pem.write_to_path(tmp_path / "stranger.pem")
    return {"dir": tmp_path, "clients": paths, "stranger": str(tmp_path / "stranger.pem")}


@pytest.fixture
def tls_serve(database_url: str, pki: dict[str, Any]) -> Iterator[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        catalogue_store.add(
            conn, "outbox", EventType(slug="document-ondertekend", type=TYPE, name="Ondertekend", source=SOURCE)
        )
        store.add_mapping(conn, "outbox", "esign", EXPRESSION)
        for endpoint, verification in (
            ("esign", {"method": "mtls", "sans": ["DNS:esign.example.nl"]}),
            ("esign-token", {"method": "bearer", "tokens": ["esign-token-0123456789abcdef"]}),
        ):
            store.add(
                conn,
                "outbox",
                {
                    "name": endpoint,
                    "endpoint": endpoint,
                    "mappingId": "esign",
                    "targetType": "event-type",
                    "targetId": "document-ondertekend",
                    "verification": verification,
                },
                SecretBox(),
            )
    port = free_port()
    directory = pki["dir"]
    env = {
        **os.environ,
        "OUTBOX_DATABASE_URL": database_url,
        "OUTBOX_TLS_CERTIFICATE": str(directory / "server.pem"),
        "OUTBOX_TLS_KEY": str(directory / "server.key"),
        "OUTBOX_TLS_CLIENT_CA": str(directory / "clients-ca.pem"),
    }
    env.pop("OUTBOX_SCHEMA", None)
    log = directory / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker", "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    base = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            trusted = ssl.create_default_context(cafile=str(directory / "server-ca.pem"))
            return httpx.get(f"{base}/readyz", verify=trusted).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, message="outbox serve over TLS")
        yield base
    finally:
        process.terminate()
        process.wait(15)


def _post(base: str, pki: dict[str, Any], endpoint: str, cert: str | None, **headers: str) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(pki["dir"] / "server-ca.pem"))
    if cert is not None:
        context.load_cert_chain(cert)
    body = {"envelope": "env-42", "signedAt": "2026-12-07T09:30:00Z", "signer": "J. Jansen"}
    with httpx.Client(verify=context, timeout=10) as client:
        return client.post(f"{base}/hooks/{endpoint}", content=json.dumps(body), headers=headers)


def test_a_consumer_verified_by_client_certificate(tls_serve: str, pki: dict[str, Any], database_url: str) -> None:
    accepted = _post(tls_serve, pki, "esign", pki["clients"]["esign.example.nl"])
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"id": "env-42", "source": SOURCE, "status": "accepted"}

    without = _post(tls_serve, pki, "esign", None)
    assert without.status_code == 401 and "(missing_certificate)" in without.json()["detail"]
    other = _post(tls_serve, pki, "esign", pki["clients"]["someone-else.example.nl"])
    assert other.status_code == 401 and "(certificate_mismatch)" in other.json()["detail"]
    # A certificate of a CA the server does not trust never gets as far as the consumer: the handshake fails.
    with pytest.raises(httpx.TransportError):
        _post(tls_serve, pki, "esign", pki["stranger"])
    # Consumers that verify otherwise need no client certificate on the same listener.
    token = _post(tls_serve, pki, "esign-token", None, Authorization="Bearer esign-token-0123456789abcdef")
    assert token.status_code == 202 and token.json()["status"] == "duplicate"  # the same envelope id
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.events").fetchone() == (1,)


def test_tls_settings_that_do_not_fit_stop_serve_with_one_line(tmp_path: Path, database_url: str) -> None:
    env = {**os.environ, "OUTBOX_DATABASE_URL": database_url, "OUTBOX_TLS_CERTIFICATE": str(tmp_path / "none.pem")}
    run = subprocess.run([sys.executable, "-m", "worker", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "OUTBOX_TLS_CERTIFICATE and OUTBOX_TLS_KEY" in errors[0], run.stderr
