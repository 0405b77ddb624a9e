"""The evaluated tree: one class per construct of the grammar, each `evaluate(event, errors) -> value`.

Errors flow up: an operator or function whose operand produced an error does not compute, it returns the
zero value of its own return type (false, 0, "") and passes the errors on. That is the spec's rule for a
missing attribute (§3.2: `1 / missing` is 0 with a missingAttribute error, not a math error) and what its
TCK asks of every error (`true AND (1 != 1 / 0)` is false with a math error). An attribute the event
lacks is itself false (the spec's default when the type cannot be known).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from outbox.cesql._errors import CesqlError
from outbox.cesql._functions import Function
from outbox.cesql._values import ZERO, Value, attribute, cast, to_bool, to_int, to_str, type_of, wrap32

Event = Mapping[str, Any]


class Node:
    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        raise NotImplementedError


def _operands(nodes: tuple[Node, ...], event: Event, errors: list[CesqlError]) -> list[Value] | None:
    """The operands' values, or None when any of them produced an error (added to `errors`)."""
    found: list[CesqlError] = []
    values = [node.evaluate(event, found) for node in nodes]
    if found:
        errors.extend(found)
        return None
    return values


@dataclass(frozen=True)
class Literal(Node):
    value: bool | int | str

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        return self.value


@dataclass(frozen=True)
class Attribute(Node):
    name: str

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        value = event.get(self.name)
        if value is None:
            errors.append(CesqlError("missingAttribute", f"the event has no attribute {self.name!r}"))
            return False
        return attribute(self.name, value, errors)


@dataclass(frozen=True)
class Exists(Node):
    name: str

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        return event.get(self.name) is not None


@dataclass(frozen=True)
class Not(Node):
    operand: Node

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        values = _operands((self.operand,), event, errors)
        return False if values is None else not to_bool(values[0], errors)


@dataclass(frozen=True)
class Negate(Node):
    operand: Node

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        values = _operands((self.operand,), event, errors)
        return 0 if values is None else wrap32(-to_int(values[0], errors), errors, "negation")


@dataclass(frozen=True)
class Arithmetic(Node):
    operator: str
    left: Node
    right: Node

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        values = _operands((self.left, self.right), event, errors)
        if values is None:
            return 0
        x, y = to_int(values[0], errors), to_int(values[1], errors)
        if self.operator in "/%" and y == 0:
            errors.append(CesqlError("math", f"{'division' if self.operator == '/' else 'modulo'} by zero"))
            return 0
        if self.operator == "+":
            result = x + y
        elif self.operator == "-":
            result = x - y
        elif self.operator == "*":
            result = x * y
        else:
            # Rounded towards zero, and a remainder with the sign of x (not Python's floor semantics).
            quotient = abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
            result = quotient if self.operator == "/" else x - y * quotient
        return wrap32(result, errors, f"{x} {self.operator} {y}")


@dataclass(frozen=True)
class Comparison(Node):
    operator: str
    left: Node
    right: Node

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        values = _operands((self.left, self.right), event, errors)
        if values is None:
            return False
        left, right = values
        if self.operator in ("=", "!=", "<>"):
            # `=` is defined for each type: the right operand's type decides, the left is cast to it (§3.7).
            equal = cast(left, type_of(right), errors) == right
            return equal if self.operator == "=" else not equal
        x, y = to_int(left, errors), to_int(right, errors)
        if self.operator == "<":
            return x < y
        if self.operator == "<=":
            return x <= y
        if self.operator == ">":
            return x > y
        return x >= y


@dataclass(frozen=True)
class Logic(Node):
    operator: str
    left: Node
    right: Node

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        left = _operands((self.left,), event, errors)
        if left is None:
            return False
        x = to_bool(left[0], errors)
        # AND and OR short-circuit: the right operand is not evaluated (nor are its errors).
        if self.operator == "AND" and not x:
            return False
        if self.operator == "OR" and x:
            return True
        right = _operands((self.right,), event, errors)
        if right is None:
            return False
        y = to_bool(right[0], errors)
        return x != y if self.operator == "XOR" else y


def like_pattern(pattern: str) -> re.Pattern[str]:
    """`%` any run, `_` one character, `\\%` and `\\_` themselves; everything else literally."""
    parts, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "%_":
            parts.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class Like(Node):
    operand: Node
    pattern: re.Pattern[str]
    negated: bool

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        values = _operands((self.operand,), event, errors)
        if values is None:
            return False
        matched = self.pattern.fullmatch(to_str(values[0], errors)) is not None
        return matched != self.negated


@dataclass(frozen=True)
class In(Node):
    operand: Node
    items: tuple[Node, ...]
    negated: bool

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        values = _operands((self.operand, *self.items), event, errors)
        if values is None:
            return False
        value, items = values[0], values[1:]
        # The left operand's type is the target: the set's elements are cast to it (§3.7).
        target = type_of(value)
        found = any(cast(item, target, errors) == value for item in items)
        return found != self.negated


@dataclass(frozen=True)
class Call(Node):
    function: Function
    arguments: tuple[Node, ...]

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        values = _operands(self.arguments, event, errors)
        if values is None:
            return ZERO[self.function.returns]
        cast_values = [
            value if self.function.parameter(index) is object else cast(value, self.function.parameter(index), errors)
            for index, value in enumerate(values)
        ]
        return self.function.call(cast_values, errors)


@dataclass(frozen=True)
class MissingFunction(Node):
    name: str
    arity: int

    def evaluate(self, event: Event, errors: list[CesqlError]) -> Value:
        errors.append(CesqlError("missingFunction", f"no function {self.name.upper()} with {self.arity} argument(s)"))
        return False
