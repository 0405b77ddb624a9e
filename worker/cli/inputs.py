"""JSON that an operator hands a command: a file, or standard input for `-` (keeps secrets out of `ps`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def read_json(path: str, what: str) -> Any:
    """The decoded JSON of `path`; one readable ClickException, naming `what` (the option), if it cannot be."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{what}: cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.ClickException(f"{what}: {path} is not valid JSON ({exc})") from None
