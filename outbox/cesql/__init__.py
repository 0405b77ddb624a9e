"""CloudEvents SQL Expression Language v1 (CESQL, cloudevents/spec `cesql/spec.md`), written from the spec.

    expression = outbox.cesql.compile("type LIKE 'nl.overheid.zaken.%' AND EXISTS subject")
    value, errors = expression.evaluate(event)       # an outbox.CloudEvent or an event dict (JSON format)
    expression.matches(event)                        # the Subscriptions API filter: TRUE and no error

Compile once, evaluate often. A parse error raises `CesqlParseError`; evaluation never raises: it goes on
after an error with the spec's zero values and returns every `CesqlError` found (complete evaluation
mode), each with `.kind` one of `parse`, `math`, `cast`, `missingFunction`, `functionEvaluation`,
`missingAttribute`, `generic`. Values are `bool`, `int` (32-bit) and `str`; event attributes of other
types are read as strings. `data` is not addressable (spec §1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outbox._event import CloudEvent
from outbox.cesql._errors import KINDS, CesqlError, CesqlParseError
from outbox.cesql._nodes import Node
from outbox.cesql._parser import Parser
from outbox.cesql._values import Value

__all__ = ["KINDS", "CesqlError", "CesqlParseError", "Expression", "compile"]


class Expression:
    """A compiled CESQL expression."""

    __slots__ = ("_root", "text")

    def __init__(self, text: str, root: Node) -> None:
        self.text = text
        self._root = root

    def evaluate(self, event: CloudEvent | Mapping[str, Any]) -> tuple[Value, list[CesqlError]]:
        """(value, errors): the value is always a bool, int or str, also when there are errors."""
        attributes = _attributes(event)
        errors: list[CesqlError] = []
        return self._root.evaluate(attributes, errors), errors

    def matches(self, event: CloudEvent | Mapping[str, Any]) -> bool:
        """As a filter (spec §1.2): true only for the boolean TRUE with no error."""
        value, errors = self.evaluate(event)
        return value is True and not errors

    def matches_context(self, attributes: Mapping[str, Any]) -> bool:
        """`matches` for the context attributes alone (no `data`), as the router has them: no copy."""
        errors: list[CesqlError] = []
        return self._root.evaluate(attributes, errors) is True and not errors

    def __repr__(self) -> str:
        return f"outbox.cesql.compile({self.text!r})"


def compile(text: str) -> Expression:
    """Parse `text` as CESQL v1; raises `CesqlParseError` saying where and why it is not."""
    if not isinstance(text, str):
        raise CesqlParseError("a CESQL expression must be a string")
    return Expression(text, Parser(text).parse())


def _attributes(event: CloudEvent | Mapping[str, Any]) -> Mapping[str, Any]:
    document: Mapping[str, Any]
    if isinstance(event, CloudEvent):
        document = event.to_dict()
    elif isinstance(event, Mapping):
        document = event
    else:
        raise TypeError(f"evaluate takes an outbox.CloudEvent or an event dict, not {type(event).__name__}")
    # `data` / `data_base64` are not context attributes: CESQL cannot address them.
    return {name: value for name, value in document.items() if name not in ("data", "data_base64")}
