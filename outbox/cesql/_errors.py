"""CESQL's errors (spec §3.3): evaluation collects them; parsing raises."""

from __future__ import annotations

from dataclasses import dataclass

# The spec's error types, by the names its TCK uses.
KINDS = ("parse", "math", "cast", "missingFunction", "functionEvaluation", "missingAttribute", "generic")


@dataclass(frozen=True)
class CesqlError:
    """One error found while evaluating: `kind` is one of KINDS, `message` says what."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class CesqlParseError(ValueError):
    """The expression is not CESQL v1: the message says where and why."""

    kind = "parse"
