"""CESQL's types (spec §3.1) and casts (§3.7): values are Python bool, int (32-bit) and str."""

from __future__ import annotations

import json
import re

from outbox.cesql._errors import CesqlError

Value = bool | int | str

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


ZERO: dict[type, Value] = {bool: False, int: 0, str: ""}


def type_of(value: Value) -> type:
    return bool if isinstance(value, bool) else type(value)


def wrap32(value: int, errors: list[CesqlError], what: str) -> int:
    """Two's-complement 32-bit result; an overflow is also a math error."""
    if INT32_MIN <= value <= INT32_MAX:
        return value
    errors.append(CesqlError("math", f"{what} overflows a 32-bit integer"))
    return (value - INT32_MIN) % 2**32 + INT32_MIN


def to_int(value: Value, errors: list[CesqlError]) -> int:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value
    if _INTEGER.match(value):
        number = int(value)
        if INT32_MIN <= number <= INT32_MAX:
            return number
    errors.append(CesqlError("cast", f"cannot cast {value!r} to an integer"))
    return 0


def to_bool(value: Value, errors: list[CesqlError]) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    errors.append(CesqlError("cast", f"cannot cast {value!r} to a boolean"))
    return False


def to_str(value: Value, errors: list[CesqlError]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cast(value: Value, target: type, errors: list[CesqlError]) -> Value:
    if target is bool:
        return to_bool(value, errors)
    if target is int:
        return to_int(value, errors)
    return to_str(value, errors)


def attribute(name: str, value: object, errors: list[CesqlError]) -> Value:
    """An event attribute as a CESQL value: bool, int and str as they are, anything else as a string (§3.2).
    An integer outside 32 bits is no CloudEvents Integer: read as its string, with a generic error."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if INT32_MIN <= value <= INT32_MAX:
            return value
        errors.append(CesqlError("generic", f"attribute {name!r}: {value} is not a 32-bit integer"))
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)
