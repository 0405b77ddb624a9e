"""Subscription filters of the CloudEvents Subscriptions API (cloudevents/spec `subscriptions/spec.md`
§3.2.4), plus OpenConnector's JSON Logic.

A subscription's `filters` is a list of filter expressions, all of which must hold (AND). Each is one
dialect object, exactly as the spec writes it:

    {"exact":  {"type": "nl.overheid.zaken.zaak-gekoppeld"}}     every named attribute equals its value
    {"prefix": {"source": "urn:nld:oin:"}}                       … starts with it
    {"suffix": {"type": ".zaak-ontkoppeld"}}                     … ends with it
    {"all": [filter, …]}  {"any": [filter, …]}  {"not": filter}  nesting (all/any: at least one)
    {"sql": "subject LIKE 'a7b3%'"}                              CESQL v1: TRUE with no error
    {"jsonlogic": {…}}                                           JSON Logic over the attributes and `data`

Attribute names and values of exact/prefix/suffix are non-empty strings, compared case-sensitively with the
attribute's canonical string form; an event without the attribute does not match. Filters are checked
whole when a subscription is made (every fault named by its path, e.g. `filters[1].all[0].exact.type`) and
compiled once: matching an event never parses anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from json_logic import jsonLogic  # panzi-json-logic
from json_logic.builtins import BUILTINS

from outbox import cesql
from outbox._event import CloudEvent

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "sql", "jsonlogic")


class EventView:
    """What filters read from one event, computed once per event (not once per filter)."""

    __slots__ = ("attributes", "context", "document")

    def __init__(self, event: CloudEvent) -> None:
        self.document = event.to_dict()  # JSON Logic reads this: the attributes and `data`
        # CESQL reads the context attributes with their types; exact/prefix/suffix their canonical strings.
        self.context = {name: value for name, value in self.document.items() if name not in ("data", "data_base64")}
        self.attributes = {name: _canonical(value) for name, value in self.context.items()}


def _canonical(value: object) -> str:
    """An attribute's canonical string (CloudEvents type system): booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Filter:
    """One compiled filter expression."""

    def matches(self, view: EventView) -> bool:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class _Attributes(Filter):
    dialect: str
    expected: tuple[tuple[str, str], ...]

    def matches(self, view: EventView) -> bool:
        attributes = view.attributes
        for name, value in self.expected:
            actual = attributes.get(name)
            if actual is None:
                return False
            if self.dialect == "exact":
                if actual != value:
                    return False
            elif self.dialect == "prefix":
                if not actual.startswith(value):
                    return False
            elif not actual.endswith(value):
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {self.dialect: dict(self.expected)}


@dataclass(frozen=True)
class _All(Filter):
    children: tuple[Filter, ...]

    def matches(self, view: EventView) -> bool:
        return all(child.matches(view) for child in self.children)

    def to_json(self) -> dict[str, Any]:
        return {"all": [child.to_json() for child in self.children]}


@dataclass(frozen=True)
class _Any(Filter):
    children: tuple[Filter, ...]

    def matches(self, view: EventView) -> bool:
        return any(child.matches(view) for child in self.children)

    def to_json(self) -> dict[str, Any]:
        return {"any": [child.to_json() for child in self.children]}


@dataclass(frozen=True)
class _Not(Filter):
    child: Filter

    def matches(self, view: EventView) -> bool:
        return not self.child.matches(view)

    def to_json(self) -> dict[str, Any]:
        return {"not": self.child.to_json()}


@dataclass(frozen=True)
class _Sql(Filter):
    expression: cesql.Expression

    def matches(self, view: EventView) -> bool:
        # The spec's rule: only the boolean TRUE with no error lets the event through.
        return self.expression.matches_context(view.context)

    def to_json(self) -> dict[str, Any]:
        return {"sql": self.expression.text}


@dataclass(frozen=True)
class _JsonLogic(Filter):
    rule: Any  # the JSON Logic rule as given (JSON values)

    def matches(self, view: EventView) -> bool:
        try:
            return bool(jsonLogic(self.rule, view.document))
        except Exception:  # a rule that fails on this event's data: it does not match
            return False

    def to_json(self) -> dict[str, Any]:
        return {"jsonlogic": self.rule}


def compile_filters(value: object, problems: list[str], where: str = "filters") -> tuple[Filter, ...]:
    """The filters of a subscription, each fault appended to `problems` as `path: rule`."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        problems.append(f'{where}: must be a list of filter expressions, e.g. [{{"exact": {{"type": "…"}}}}]')
        return ()
    compiled = [_compile(item, f"{where}[{index}]", problems) for index, item in enumerate(value)]
    return tuple(item for item in compiled if item is not None)


def _compile(item: object, where: str, problems: list[str]) -> Filter | None:
    if not isinstance(item, Mapping) or len(item) != 1:
        problems.append(f"{where}: must be an object with exactly one dialect ({', '.join(DIALECTS)})")
        return None
    ((dialect, body),) = item.items()
    path = f"{where}.{dialect}"
    if dialect in ("exact", "prefix", "suffix"):
        if not isinstance(body, Mapping) or not body:
            problems.append(f"{path}: must be an object of attribute name: string value, at least one")
            return None
        expected = []
        for name, text in body.items():
            if not isinstance(name, str) or not name:
                problems.append(f"{path}: attribute names must be non-empty strings")
            elif not isinstance(text, str) or not text:
                problems.append(f"{path}.{name}: must be a non-empty string")
            else:
                expected.append((name, text))
        return _Attributes(dialect, tuple(expected)) if len(expected) == len(body) else None
    if dialect in ("all", "any"):
        if isinstance(body, str | bytes) or not isinstance(body, Sequence) or not body:
            problems.append(f"{path}: must be a list of at least one filter expression")
            return None
        before = len(problems)
        children = tuple(_compile(child, f"{path}[{index}]", problems) for index, child in enumerate(body))
        if len(problems) > before:
            return None
        return (_All if dialect == "all" else _Any)(tuple(c for c in children if c is not None))
    if dialect == "not":
        child = _compile(body, path, problems)
        return _Not(child) if child is not None else None
    if dialect == "sql":
        if not isinstance(body, str):
            problems.append(f"{path}: must be a CESQL expression (a string)")
            return None
        try:
            return _Sql(cesql.compile(body))
        except cesql.CesqlParseError as exc:
            problems.append(f"{path}: not a valid CESQL expression: {exc}")
            return None
    if dialect == "jsonlogic":
        return _compile_jsonlogic(body, path, problems)
    problems.append(f"{where}: unknown filter dialect {dialect!r} (supported: {', '.join(DIALECTS)})")
    return None


# JSON Logic's operations as panzi-json-logic runs them; `log` is left out (it prints to the worker's stdout).
_LOGIC_SPECIAL = frozenset({"if", "?:", "and", "or", "filter", "reduce", "map", "all", "some", "none"})


_LOGIC_OPERATIONS = (frozenset(BUILTINS) | _LOGIC_SPECIAL) - {"log"}


def _check_logic(rule: object, path: str, operations: frozenset[str], problems: list[str]) -> None:
    if isinstance(rule, list):
        for index, item in enumerate(rule):
            _check_logic(item, f"{path}[{index}]", operations, problems)
    elif isinstance(rule, Mapping):
        if len(rule) != 1:
            problems.append(f"{path}: a JSON Logic operation is an object with exactly one key")
            return
        ((operation, arguments),) = rule.items()
        if operation not in operations:
            problems.append(f"{path}: unknown JSON Logic operation {operation!r}")
            return
        _check_logic(arguments, f"{path}.{operation}", operations, problems)
    elif not (rule is None or isinstance(rule, str | int | float | bool)):
        problems.append(f"{path}: must be JSON")


def _compile_jsonlogic(body: object, path: str, problems: list[str]) -> Filter | None:
    if not isinstance(body, Mapping):
        problems.append(f'{path}: must be a JSON Logic rule, an object such as {{"==": [{{"var": "type"}}, "…"]}}')
        return None
    before = len(problems)
    _check_logic(body, path, _LOGIC_OPERATIONS, problems)
    return _JsonLogic(body) if len(problems) == before else None


def filters_match(filters: tuple[Filter, ...], view: EventView) -> bool:
    return all(f.matches(view) for f in filters)


def stored_filters(value: object) -> tuple[Filter, ...]:
    """Filters read back from the database (checked when they were stored; a fault now is a bug)."""
    problems: list[str] = []
    filters = compile_filters(value, problems)
    if problems:
        raise ValueError("stored filters no longer compile: " + "; ".join(problems))
    return filters
