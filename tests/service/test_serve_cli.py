"""`outbox serve` and `outbox clients` as operators run them: real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.service.live import token
from tests.support import wait_until

EVENT = {"specversion": "1.0", "id": "1", "source": "urn:x", "type": "nl.overheid.zaken.zaak-gekoppeld"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _serve(database_url: str, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "OUTBOX_DATABASE_URL": database_url, **env}
    environment.pop("OUTBOX_SCHEMA", None)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "serve", "--port", str(port)], env=environment, stdout=out, stderr=out
        )


def test_clients_add_list_rotate_remove(run_cli: Any, database_url: str) -> None:
    added = run_cli("clients", "add", "openklant", "--scope", "notificaties.publiceren")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert len(secret) >= 32
    assert "shown once" in added.stderr
    listed = run_cli("clients", "list")
    assert "openklant  notificaties.publiceren" in listed.stdout
    assert secret not in listed.stdout + listed.stderr
    as_json = json.loads(run_cli("clients", "list", "--json").stdout)
    assert as_json[0]["clientId"] == "openklant"
    assert secret not in json.dumps(as_json)
    again = run_cli("clients", "add", "openklant", "--scope", "outbox.beheer")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    rotated = run_cli("clients", "rotate", "openklant")
    assert rotated.returncode == 0
    assert rotated.stdout.strip() not in ("", secret)
    assert run_cli("clients", "remove", "openklant").returncode == 0
    assert run_cli("clients", "remove", "openklant").returncode == 1
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.api_clients").fetchone() == (0,)


def test_clients_add_refuses_bad_input_whole(run_cli: Any) -> None:
    result = run_cli("clients", "add", "has space", "--scope", "notificaties.publiceren", "--secret", "short")
    assert result.returncode == 2
    assert "CLIENT_ID: must be 1 to 200 visible ASCII characters" in result.stderr
    assert "--secret: must be at least 16" in result.stderr
    assert "short" not in result.stderr.replace("--secret", "")
    bad_scope = run_cli("clients", "add", "x", "--scope", "zaken.lezen")
    assert bad_scope.returncode == 2
    assert "zaken.lezen" in bad_scope.stderr


def test_a_bad_setting_stops_serve_with_one_line_each(run_cli: Any) -> None:
    result = run_cli("serve", "--port", "70000", env={"OUTBOX_JWT_MAX_AGE": "-1", "OUTBOX_PUBLIC_URL": "ftp://x"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert any(line.startswith("error: OUTBOX_PORT:") for line in lines)
    assert any(line.startswith("error: OUTBOX_JWT_MAX_AGE:") for line in lines)
    assert any(line.startswith("error: OUTBOX_PUBLIC_URL:") for line in lines)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OUTBOX_BODY_TIMEOUT": "0"}, "OUTBOX_BODY_TIMEOUT"),
        ({"OUTBOX_BODY_TIMEOUT": "soon"}, "OUTBOX_BODY_TIMEOUT"),
        ({"OUTBOX_MAX_BATCH_BYTES": "10"}, "OUTBOX_MAX_BATCH_BYTES"),
        ({"OUTBOX_MAX_BATCH_BYTES": "4096", "OUTBOX_MAX_EVENT_BYTES": "8192"}, "OUTBOX_MAX_BATCH_BYTES"),
    ],
)
def test_a_bad_body_limit_stops_serve_with_one_line(run_cli: Any, env: dict[str, str], variable: str) -> None:
    result = run_cli("serve", "--port", "0", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: {variable}:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_taken_port_is_one_line_and_exit_2(run_cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: OUTBOX_PORT: cannot listen on 127.0.0.1:{port}")


def test_sigterm_finishes_the_request_in_flight_and_exits_0(run_cli: Any, database_url: str, tmp_path: Path) -> None:
    added = run_cli("clients", "add", "p", "--scope", "notificaties.publiceren")
    secret = added.stdout.strip()
    port = _free_port()
    server = _serve(database_url, port, tmp_path / "serve.log")
    try:
        wait_until(lambda: _ready(port), message="outbox serve ready")
        body = json.dumps(EVENT).encode()
        head = (
            f"POST /api/v1/cloudevents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token('p', secret)}\r\n"
            f"Content-Type: application/cloudevents+json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + body[:10])  # the request is in flight: its body is still arriving
            time.sleep(0.3)
            server.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(body[10:])
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201"), answer
        assert server.wait(15) == 0
    finally:
        if server.poll() is None:
            server.kill()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox.events").fetchone() == (1,)
    assert "service stopped" in (tmp_path / "serve.log").read_text()
