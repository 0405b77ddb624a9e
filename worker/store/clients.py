"""API clients of `outbox serve`: id, scopes, and the secret their JWTs are signed with (sealed by a SecretBox)."""

from __future__ import annotations

import re
import secrets as random_secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import psycopg

from outbox._sql import query
from worker.store.secret_box import SecretBox

PUBLISH: Final = "notificaties.publiceren"
CONSUME: Final = "notificaties.consumeren"
ADMIN: Final = "outbox.beheer"
SCOPES: Final = (PUBLISH, CONSUME, ADMIN)
_CLIENT_ID = re.compile(r"^[!-~]{1,200}$")
MIN_SECRET_LENGTH = 16  # HS256 keys shorter than this are guessable; PyJWT warns below 32 bytes


class ClientNotFound(LookupError):
    def __init__(self, client_id: str) -> None:
        super().__init__(f"no API client {client_id!r}")


class ClientExists(ValueError):
    def __init__(self, client_id: str) -> None:
        super().__init__(f"an API client {client_id!r} exists already (rotate its secret, or remove it first)")


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    scopes: frozenset[str]
    secret: str = field(default="", repr=False)
    created_at: datetime | None = None
    rotated_at: datetime | None = None


def new_secret() -> str:
    """32 random bytes, URL-safe: a full-strength HS256 key."""
    return random_secrets.token_urlsafe(32)


def check(client_id: str, scopes: tuple[str, ...], secret: str | None) -> list[str]:
    """Every fault of a new client, each `field: rule` (the secret is never shown)."""
    problems = []
    if not _CLIENT_ID.match(client_id):
        problems.append("CLIENT_ID: must be 1 to 200 visible ASCII characters (no spaces)")
    if not scopes:
        problems.append(f"--scope: give at least one of {', '.join(SCOPES)}")
    for scope in scopes:
        if scope not in SCOPES:
            problems.append(f"--scope: {scope!r} is not one of {', '.join(SCOPES)}")
    if secret is not None:
        problems.extend(check_secret(secret))
    return problems


def check_secret(secret: str) -> list[str]:
    if len(secret) < MIN_SECRET_LENGTH or not secret.isprintable() or secret != secret.strip():
        return [f"--secret: must be at least {MIN_SECRET_LENGTH} printable characters without outer spaces"]
    return []


def _sealed(box: SecretBox, secret: str) -> tuple[str, bool]:
    stored, encrypted = box.seal({"secret": secret})
    assert stored is not None
    return stored, encrypted


def add(conn: psycopg.Connection[Any], schema: str, client: ApiClient, box: SecretBox) -> None:
    stored, encrypted = _sealed(box, client.secret)
    parameters = {
        "client_id": client.client_id,
        "scopes": sorted(client.scopes),
        "secret": stored,
        "secret_encrypted": encrypted,
    }
    if conn.execute(query("insert_api_client", schema), parameters).fetchone() is None:
        raise ClientExists(client.client_id)


def list_all(conn: psycopg.Connection[Any], schema: str) -> list[ApiClient]:
    rows = conn.execute(query("list_api_clients", schema)).fetchall()
    return [ApiClient(client_id=r[0], scopes=frozenset(r[1]), created_at=r[2], rotated_at=r[3]) for r in rows]


def from_row(row: tuple[Any, ...], box: SecretBox) -> ApiClient:
    client_id, scopes, stored, encrypted, created_at, rotated_at = row
    opened = box.open(stored, encrypted, f"client {client_id}")
    return ApiClient(client_id, frozenset(scopes), str(opened.get("secret", "")), created_at, rotated_at)


def rotate(conn: psycopg.Connection[Any], schema: str, client_id: str, secret: str, box: SecretBox) -> None:
    stored, encrypted = _sealed(box, secret)
    if conn.execute(query("rotate_api_client", schema), (stored, encrypted, client_id)).fetchone() is None:
        raise ClientNotFound(client_id)


def remove(conn: psycopg.Connection[Any], schema: str, client_id: str) -> None:
    if conn.execute(query("delete_api_client", schema), (client_id,)).fetchone() is None:
        raise ClientNotFound(client_id)


def reseal_all(conn: psycopg.Connection[Any], schema: str, box: SecretBox) -> int:
    """Re-encrypt every client's secret with the box's first key (in the caller's transaction)."""
    rows = conn.execute(query("sealed_client_secrets", schema)).fetchall()
    for client_id, stored, encrypted in rows:
        sealed, now_encrypted = box.reseal(stored, encrypted, f"client {client_id}")
        conn.execute(query("reseal_client_secret", schema), (sealed, now_encrypted, client_id))
    return len(rows)
