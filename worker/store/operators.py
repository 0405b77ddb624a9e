"""Console operator accounts in the database: what `outbox operators …` writes and `/console/` signs in with.

Passwords are argon2id hashes (argon2-cffi's defaults, RFC 9106's second recommended profile); the
hash never leaves this module's callers except to be verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from outbox._sql import query

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a bound keeps one sign-in's cost bounded

HASHER = PasswordHasher()  # argon2id
# Verified against when the account does not exist, so a wrong name costs what a wrong password does.
_ABSENT_HASH = HASHER.hash("no account has this password")


class OperatorError(ValueError):
    """Bad input for an account; the message names the field and the rule."""


class OperatorNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no operator named {name!r}")


@dataclass(frozen=True)
class Operator:
    name: str
    role: Role
    created_at: datetime | None = None
    updated_at: datetime | None = None
    sessions: int = 0

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise OperatorError("name: 1 to 64 characters of letters, digits and . _ @ -, starting with a letter or digit")
    return name


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise OperatorError(f"role: must be one of {', '.join(ROLES)} (got {role!r})")
    return role


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise OperatorError(f"password: at most {MAX_PASSWORD} characters")
    return HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored` (None: no such account; still costs one verification)."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return HASHER.verify(stored or _ABSENT_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return HASHER.check_needs_rehash(stored)


def add(conn: psycopg.Connection[Any], schema: str, name: str, role: str, password: str) -> None:
    hashed = hash_password(password)
    with conn.transaction():
        row = conn.execute(query("insert_operator", schema), (check_name(name), check_role(role), hashed)).fetchone()
    if row is None:
        raise OperatorError(f"name: an operator named {name!r} already exists")


def set_password(conn: psycopg.Connection[Any], schema: str, name: str, password: str) -> None:
    """A new password; every session of the account ends."""
    hashed = hash_password(password)
    with conn.transaction():
        row = conn.execute(query("set_operator_password", schema), {"hash": hashed, "name": name}).fetchone()
    if row is None:
        raise OperatorNotFound(name)


def set_role(conn: psycopg.Connection[Any], schema: str, name: str, role: str) -> None:
    with conn.transaction():
        row = conn.execute(query("set_operator_role", schema), (check_role(role), name)).fetchone()
    if row is None:
        raise OperatorNotFound(name)


def remove(conn: psycopg.Connection[Any], schema: str, name: str) -> None:
    with conn.transaction():
        row = conn.execute(query("delete_operator", schema), (name,)).fetchone()
    if row is None:
        raise OperatorNotFound(name)


def list_all(conn: psycopg.Connection[Any], schema: str) -> list[Operator]:
    rows = conn.execute(query("list_operators", schema)).fetchall()
    return [Operator(name, role, created, updated, int(sessions)) for name, role, created, updated, sessions in rows]
