"""CESQL's built-in functions (spec §3.5 and the casting functions INT, BOOL, STRING).

Each is (parameter types, variadic tail type or None, return type, implementation). Arguments are cast to
the parameter types before the call (§3.7); a function reports its own errors in `errors` and always
returns a value of its return type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outbox.cesql._errors import CesqlError
from outbox.cesql._values import INT32_MIN, Value, to_bool, to_int, to_str

# Unicode's White_Space property (TRIM removes these and nothing else, not control characters).
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True)
class Function:
    name: str
    parameters: tuple[type, ...]
    variadic: type | None
    returns: type
    call: Callable[[list[Any], list[CesqlError]], Value]

    def accepts(self, arity: int) -> bool:
        if self.variadic is None:
            return arity == len(self.parameters)
        return arity >= len(self.parameters)

    def parameter(self, index: int) -> type:
        return self.parameters[index] if index < len(self.parameters) else self.variadic  # type: ignore[return-value]


def _left(args: list[Any], errors: list[CesqlError]) -> str:
    text, count = args
    if count < 0:
        errors.append(CesqlError("functionEvaluation", "LEFT: the length must not be negative"))
        return str(text)
    return str(text[:count])


def _right(args: list[Any], errors: list[CesqlError]) -> str:
    text, count = args
    if count < 0:
        errors.append(CesqlError("functionEvaluation", "RIGHT: the length must not be negative"))
        return str(text)
    return str(text[len(text) - count :]) if count else ""


def _substring(args: list[Any], errors: list[CesqlError]) -> str:
    text, position = args[0], args[1]
    length = args[2] if len(args) == 3 else None
    if position > len(text) or position < -len(text):
        errors.append(CesqlError("functionEvaluation", f"SUBSTRING: position {position} is outside the string"))
        return ""
    if length is not None and length < 0:
        errors.append(CesqlError("functionEvaluation", "SUBSTRING: the length must not be negative"))
        return ""
    if position == 0:
        return ""
    start = position - 1 if position > 0 else len(text) + position
    return str(text[start:] if length is None else text[start : start + length])


def _abs(args: list[Any], errors: list[CesqlError]) -> int:
    (number,) = args
    if number == INT32_MIN:
        errors.append(CesqlError("math", "ABS(-2147483648) overflows a 32-bit integer"))
        return 2**31 - 1
    return abs(int(number))


_DEFINITIONS = (
    Function("LENGTH", (str,), None, int, lambda a, e: len(a[0])),
    Function("CONCAT", (), str, str, lambda a, e: "".join(a)),
    Function("CONCAT_WS", (str,), str, str, lambda a, e: a[0].join(a[1:])),
    Function("LOWER", (str,), None, str, lambda a, e: a[0].lower()),
    Function("UPPER", (str,), None, str, lambda a, e: a[0].upper()),
    Function("TRIM", (str,), None, str, lambda a, e: a[0].strip(_WHITESPACE)),
    Function("LEFT", (str, int), None, str, _left),
    Function("RIGHT", (str, int), None, str, _right),
    Function("SUBSTRING", (str, int), None, str, _substring),
    Function("SUBSTRING", (str, int, int), None, str, _substring),
    Function("ABS", (int,), None, int, _abs),
    # The casting functions: the argument is taken as it is and cast by the function itself.
    Function("INT", (object,), None, int, lambda a, e: to_int(a[0], e)),
    Function("BOOL", (object,), None, bool, lambda a, e: to_bool(a[0], e)),
    Function("STRING", (object,), None, str, lambda a, e: to_str(a[0], e)),
)

FUNCTIONS: dict[str, tuple[Function, ...]] = {}
for _function in _DEFINITIONS:
    FUNCTIONS[_function.name] = (*FUNCTIONS.get(_function.name, ()), _function)


def lookup(name: str, arity: int) -> Function | None:
    for function in FUNCTIONS.get(name.upper(), ()):
        if function.accepts(arity):
            return function
    return None
