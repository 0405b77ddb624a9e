"""Who is signed in: argon2id passwords, sessions stored hashed, lockout per account name and per address.

A session is a random token in an HttpOnly cookie; the database holds its SHA-256, so a copy of
`operator_sessions` signs nobody in. The CSRF token of the session's forms is an HMAC of the cookie's
token (a synchroniser token tied to the session that needs no storage). Each request renews the idle
time (OUTBOX_CONSOLE_SESSION_IDLE) up to the absolute end (OUTBOX_CONSOLE_SESSION_MAX); the role is
read with the session at every request, so `outbox operators role|remove|passwd` take effect at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from outbox._sql import query
from worker.runtime.logs import log
from worker.service.settings import ServeSettings
from worker.store import operators as operator_store


@dataclass(frozen=True)
class Session:
    name: str
    role: str
    token: str  # the cookie's value; never logged, never rendered

    @property
    def may_act(self) -> bool:
        return self.role == "operator"

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"nlgov-outbox console csrf", hashlib.sha256).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def session_for(pool: AsyncConnectionPool[Any], settings: ServeSettings, token: str) -> Session | None:
    """The live session of this cookie token (its idle time renewed), or None."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            query("touch_operator_session", settings.db_schema),
            {"token_hash": token_hash(token), "idle": settings.console_session_idle},
        )
        row = await cursor.fetchone()
    return None if row is None else Session(row[0], row[1], token)


async def sign_in(
    pool: AsyncConnectionPool[Any], settings: ServeSettings, name: str, password: str, address: str
) -> Session | None:
    """A new session, or None: a wrong name or password, or the name or the address is locked. The
    caller cannot tell which (nor may the person signing in): each failure is counted for both."""
    schema = settings.db_schema
    lock = {
        "name": name,
        "address": address,
        "limit": settings.console_signin_attempts,
        "address_limit": settings.console_address_attempts,
        "lockout": settings.console_lockout,
    }
    async with pool.connection() as conn:
        cursor = await conn.execute(query("signin_locked", schema), lock)
        locked = bool((await cursor.fetchone() or (False,))[0])
        cursor = await conn.execute(query("get_operator_for_signin", schema), (name,))
        account = await cursor.fetchone()
    stored = account[2] if account else None
    # argon2 takes tens of milliseconds of CPU: off the event loop. A locked key is checked too, so a
    # locked sign-in costs what an open one does.
    good = await asyncio.to_thread(operator_store.verify_password, stored, password)
    if locked or not good or account is None:
        async with pool.connection() as conn:
            await conn.execute(query("record_signin_failure", schema), lock)
        log(logging.WARNING, "console sign-in refused", address=address, locked=locked)
        return None
    token = new_token()
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(query("clear_signin_failures", schema), (name,))
        await conn.execute(query("purge_operator_sessions", schema), (settings.console_session_idle,))
        await conn.execute(
            query("insert_operator_session", schema), (token_hash(token), name, settings.console_session_max)
        )
        if stored and operator_store.needs_rehash(stored):
            rehashed = await asyncio.to_thread(operator_store.HASHER.hash, password)
            await conn.execute(query("update_operator_hash", schema), (rehashed, name, stored))
    log(logging.INFO, "console sign-in", operator=name, role=account[1], address=address)
    return Session(name, account[1], token)


async def sign_out(pool: AsyncConnectionPool[Any], settings: ServeSettings, session: Session) -> None:
    async with pool.connection() as conn:
        await conn.execute(query("delete_operator_session", settings.db_schema), (token_hash(session.token),))
    log(logging.INFO, "console sign-out", operator=session.name)
