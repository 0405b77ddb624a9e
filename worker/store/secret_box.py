"""Secrets at rest: a subscription's secrets are one JSON object, stored as is or as a Fernet token.

OUTBOX_SECRET_KEY holds one or more Fernet keys, comma-separated. The first encrypts; all of them
decrypt (cryptography's MultiFernet). A rotation is: put the new key first and the old one after
it, run `outbox secrets rotate` (re-encrypts every row with the new key), then drop the old key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_VARIABLE = "OUTBOX_SECRET_KEY"


class SecretKeyError(ValueError):
    """The key setting is unusable, or stored secrets cannot be opened with it (never shows a secret)."""


def new_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    """Seals and opens the secrets of subscriptions. Without keys, secrets are stored as plain JSON."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        fernets = []
        for i, key in enumerate(keys):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"{KEY_VARIABLE}: key {i + 1} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "make one with `outbox secrets new-key`"
                ) from None
        self._fernet = MultiFernet(fernets) if fernets else None

    @classmethod
    def from_setting(cls, value: str | None) -> SecretBox:
        """From the OUTBOX_SECRET_KEY value: comma-separated keys, the newest first."""
        if value is None or not value.strip():
            return cls()
        return cls([part for part in value.split(",") if part.strip()])

    @property
    def encrypts(self) -> bool:
        return self._fernet is not None

    def seal(self, secrets: dict[str, Any]) -> tuple[str | None, bool]:
        """(stored text, encrypted?) for a subscription's secrets; (None, False) when it has none."""
        if not secrets:
            return None, False
        text = json.dumps(secrets, separators=(",", ":"))
        if self._fernet is None:
            return text, False
        return self._fernet.encrypt(text.encode()).decode(), True

    def open(self, stored: str | None, encrypted: bool, owner: str) -> dict[str, Any]:
        """The secrets of `owner` ("subscription <id>", "client <id>": for the error message)."""
        if stored is None:
            return {}
        if encrypted:
            if self._fernet is None:
                raise SecretKeyError(f"{owner}: its secrets are encrypted, but {KEY_VARIABLE} is not set")
            try:
                stored = self._fernet.decrypt(stored.encode()).decode()
            except InvalidToken:
                raise SecretKeyError(
                    f"{owner}: its secrets do not open with {KEY_VARIABLE} (a wrong key? during a "
                    "rotation give the new key first and the old one after it, comma-separated)"
                ) from None
        value = json.loads(stored)
        if not isinstance(value, dict):
            raise SecretKeyError(f"{owner}: its stored secrets are not a JSON object")
        return value

    def reseal(self, stored: str | None, encrypted: bool, owner: str) -> tuple[str | None, bool]:
        """Re-encrypt with the first key (also encrypts plain rows once a key is set)."""
        if stored is None:
            return None, False
        if encrypted and self._fernet is not None:
            try:
                return self._fernet.rotate(stored.encode()).decode(), True
            except InvalidToken:
                pass  # fall through to open(), which says what is wrong
        return self.seal(self.open(stored, encrypted, owner))
