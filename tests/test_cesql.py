"""CESQL v1 (`outbox.cesql`), case by case from cloudevents/spec `cesql/spec.md`."""

from __future__ import annotations

from typing import Any

import pytest

from outbox import CloudEvent, cesql

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "f347fd1f",
    "source": "urn:nld:oin:01823288444:openklant",
    "type": "nl.overheid.zaken.zaak-gekoppeld",
    "subject": "a7b3c8d9",
    "sequence": "10",
    "hop": 3,
    "ttl": 5,
    "firstname": "Francesco",
    "lastname": "Guardiani",
    "flag": True,
    "data": {"zaak": "urn:uuid:a7b3c8d9"},
}


def run(text: str, event: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    value, errors = cesql.compile(text).evaluate(EVENT if event is None else event)
    return value, [error.kind for error in errors]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # §2.2 literals: integers (signed, 32-bit), booleans (any case), strings in '' or "" with escapes
        ("1", 1),
        ("-2147483648", -(2**31)),
        ("+7", 7),
        ("tRuE", True),
        ("FALSE", False),
        ("'abc'", "abc"),
        ('"abc"', "abc"),
        ("'a\"b\\'c'", "a\"b'c"),
        ('"a\'b\\"c"', "a'b\"c"),
        ("'it''s'", "it's"),
        ("'ab\\c'", "ab\\c"),
        # §3.2 attributes, extensions, case-insensitive identifiers; data is not addressable
        ("id", "f347fd1f"),
        ("ID", "f347fd1f"),
        ("hop", 3),
        ("flag", True),
        # §3.4.1 unary
        ("NOT TRUE", False),
        ("NOT 'false'", True),
        ("NOT 10", False),  # Integer -> Boolean is a supported cast (§3.7); the TCK disagrees, the spec wins
        ("-hop", -3),
        ("- -5", 5),
        # §3.4.2 arithmetic with 32-bit integers, division towards zero, remainder with the sign of x
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7 % -3", 1),
        ("-7 % 3", -1),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 - 2 - 3", 5),
        ("sequence + 10", 20),  # the string is cast to an integer
        # comparisons: '=' takes the right operand's type, '<' is for integers
        ("sequence = 10", True),
        ("TRUE = 'true' AND FALSE = 'false'", True),
        ("TRUE = 'TRUE' OR FALSE = 'FALSE'", False),
        ("'abc' = 'ABC'", False),
        ("1 <> 2", True),
        ("1 != 1", False),
        ("hop < ttl", True),
        ("'10' >= 9", True),
        ("3 <= hop", True),
        ("hop > ttl", False),
        # logic, right-associative on one level (the grammar's <assoc=right>)
        ("TRUE XOR TRUE", False),
        ("TRUE XOR FALSE", True),
        ("FALSE AND FALSE OR TRUE", False),  # FALSE AND (FALSE OR TRUE)
        ("(FALSE AND FALSE) OR TRUE", True),
        ("TRUE OR 1 / 0 = 0", True),  # short-circuit: the right side is not evaluated
        ("FALSE AND missing = 1", False),
        # §3.4.3 LIKE
        ("type LIKE 'nl.overheid.zaken.%'", True),
        ("'abc' LIKE 'a_c'", True),
        ("'abc' LIKE 'A%'", False),
        ("'a%c' LIKE 'a\\%c'", True),
        ("'abc' LIKE 'a\\%c'", False),
        ("'a_c' LIKE 'a\\_c'", True),
        ("'ab\\c' LIKE 'ab\\c'", True),
        ("'abc' NOT LIKE 'x%'", True),
        ("hop LIKE '3'", True),  # cast to string
        ("'a\nb' LIKE 'a_b'", True),
        # §3.4.4 EXISTS
        ("EXISTS id AND EXISTS specversion AND EXISTS SOURCE", True),
        ("EXISTS subject", True),
        ("EXISTS time", False),
        ("NOT EXISTS data", True),  # data is not a context attribute
        # §3.4.5 IN: the left operand's type is the target
        ("hop IN (1, 2, 3)", True),
        ("hop IN ('3', 'x')", True),
        ("'b' NOT IN ('a', 'c')", True),
        ("firstname IN (lastname, 'Francesco')", True),
        # §3.5 functions, case-insensitive names
        ("LENGTH('abc')", 3),
        ("length(firstname)", 9),
        ("CONCAT()", ""),
        ("CONCAT('a', 1, TRUE)", "a1true"),
        ("CONCAT_WS(', ', 'a', 'b')", "a, b"),
        ("CONCAT_WS('-')", ""),
        ("LOWER('ABC')", "abc"),
        ("UPPER('abc')", "ABC"),
        ("TRIM('\u2003 a b \t')", "a b"),
        ("TRIM('\x1fa')", "\x1fa"),  # a control character is not white space
        ("LEFT('abc', 2)", "ab"),
        ("LEFT('abc', 10)", "abc"),
        ("RIGHT('abc', 2)", "bc"),
        ("RIGHT('abc', 0)", ""),
        ("SUBSTRING('abcdef', 3)", "cdef"),
        ("SUBSTRING('abcdef', -2)", "ef"),
        ("SUBSTRING('abcdef', 0)", ""),
        ("SUBSTRING('abcdef', 2, 3)", "bcd"),
        ("SUBSTRING('abcdef', -3, 10)", "def"),
        ("ABS(-5)", 5),
        ("INT('-12')", -12),
        ("INT(TRUE)", 1),
        ("BOOL('False')", False),
        ("BOOL(-50)", True),
        ("STRING(-1)", "-1"),
        ("STRING(FALSE)", "false"),
        # §5 the spec's examples
        ("firstname = 'Francesco' OR subject = 'Francesco'", True),
        ("(firstname = 'Francesco' AND lastname = 'Guardiani') OR subject = 'Francesco Guardiani'", True),
    ],
)
def test_values(text: str, value: Any) -> None:
    assert run(text) == (value, [])


def test_in_casts_the_set_to_the_left_operands_type() -> None:
    # sequence is the string '10': 10 and 20 become '10' and '20'
    assert run("sequence IN (10, 20)") == (True, [])


@pytest.mark.parametrize(
    ("text", "value", "kinds"),
    [
        # §3.2 a missing attribute: the zero value of the enclosing subexpression's type
        ("missing", False, ["missingAttribute"]),
        ("missing * 5", 0, ["missingAttribute"]),
        ("1 / missing", 0, ["missingAttribute"]),  # no math error: the division does not happen
        ("TRUE AND (missing = '')", False, ["missingAttribute"]),
        ("NOT missing", False, ["missingAttribute"]),
        ("LENGTH(missing)", 0, ["missingAttribute"]),
        ("UPPER(missing)", "", ["missingAttribute"]),
        ("missing LIKE '%'", False, ["missingAttribute"]),
        ("'a' IN ('b', missing)", False, ["missingAttribute"]),
        # math
        ("5 / 0", 0, ["math"]),
        ("5 % 0", 0, ["math"]),
        ("TRUE AND (1 != 1 / 0)", False, ["math"]),  # an operand in error: the operator gives its zero value
        ("2147483647 + 1", -(2**31), ["math"]),  # 32-bit two's complement, and the overflow reported
        ("-(-2147483648)", -(2**31), ["math"]),
        ("ABS(-2147483648)", 2**31 - 1, ["math"]),
        # cast
        ("INT('ABC')", 0, ["cast"]),
        ("INT('2147483648')", 0, ["cast"]),
        ("BOOL('yes')", False, ["cast"]),
        ("'abc' = 1", False, ["cast"]),
        ("'abc' + 1", 1, ["cast"]),
        ("NOT 'maybe'", True, ["cast"]),
        # functionEvaluation
        ("LEFT('abc', -1)", "abc", ["functionEvaluation"]),
        ("RIGHT('abc', -1)", "abc", ["functionEvaluation"]),
        ("SUBSTRING('abc', 4)", "", ["functionEvaluation"]),
        ("SUBSTRING('abc', -4)", "", ["functionEvaluation"]),
        ("SUBSTRING('abc', 1, -1)", "", ["functionEvaluation"]),
        # missingFunction: false, and evaluation goes on
        ("NOSUCH(1)", False, ["missingFunction"]),
        ("ABS(1, 2)", False, ["missingFunction"]),
        ("CONCAT_WS()", False, ["missingFunction"]),
        # errors from both sides are all reported (complete evaluation)
        ("(5 / 0) + INT('x')", 0, ["math", "cast"]),
        ("INT('x') = 0 XOR missing", False, ["cast"]),
    ],
)
def test_errors_and_their_values(text: str, value: Any, kinds: list[str]) -> None:
    assert run(text) == (value, kinds)


def test_generic_error_for_an_attribute_that_is_no_cloudevents_integer() -> None:
    assert run("big", {**EVENT, "big": 2**32}) == ("4294967296", ["generic"])
    assert run("big = '4294967296'", {**EVENT, "big": 2**32}) == (False, ["generic"])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "(",
        "1 +",
        "ABC(",
        "'unterminated",
        "2147483648",
        "-2147483649",
        "a LIKE b",  # the pattern must be a string literal
        "a LIKE 1",
        "EXISTS 'x'",
        "x IN ()",  # sets are never empty
        "x IN 1",
        "my_attr",  # underscores are for function names only
        "1 2",
        "a ! b",
        "LENGTH('a') )",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(cesql.CesqlParseError) as raised:
        cesql.compile(text)
    assert raised.value.kind == "parse"
    assert "position" in str(raised.value) or text == ""


def test_a_filter_holds_only_for_true_without_errors() -> None:
    event = CloudEvent(type="nl.overheid.zaken.zaak-gekoppeld", source="urn:x", subject="s", data={"a": 1})
    assert cesql.compile("type LIKE '%gekoppeld' AND EXISTS subject").matches(event)
    assert not cesql.compile("subject").matches(event)  # a string, not TRUE
    assert not cesql.compile("1").matches(event)
    assert not cesql.compile("missing = 'x' OR TRUE").matches(event)  # TRUE, but with an error
    assert not cesql.compile("NOT (1 / 0 = 0)").matches(event)


def test_evaluation_neither_mutates_nor_keeps_state() -> None:
    expression = cesql.compile("CONCAT(id, '-', hop) = 'f347fd1f-3'")
    before = dict(EVENT)
    assert expression.evaluate(EVENT) == (True, [])
    assert expression.evaluate({**EVENT, "hop": 4}) == (False, [])
    assert before == EVENT
    assert repr(expression) == "outbox.cesql.compile(\"CONCAT(id, '-', hop) = 'f347fd1f-3'\")"


def test_error_objects_say_what_happened() -> None:
    _, errors = cesql.compile("missing").evaluate(EVENT)
    assert str(errors[0]) == "missingAttribute: the event has no attribute 'missing'"
    assert set(cesql.KINDS) == {
        "parse",
        "math",
        "cast",
        "missingFunction",
        "functionEvaluation",
        "missingAttribute",
        "generic",
    }
