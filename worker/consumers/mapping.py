"""The mapping step of a Consumer (issue 22 item 3): an incoming webhook payload → an `outbox.CloudEvent`.

Pure: no database, no HTTP server. A `Mapping` is a JSONata expression (the language chosen by measurement,
docs/consumers/mapping-languages.md, evaluated by `jsonatapy`), the request headers it may read and a version.
It is compiled when it is created, so a mapping with a syntax error is refused whole (`InvalidMapping`, a problem
naming `expression`; `parse_mapping` gives every fault of a stored/JSON definition at once).

`apply(mapping, payload, headers)` evaluates the expression on

    {"body": <the payload as parsed JSON>, "headers": {<lower-case name>: <value>, ... only the chosen ones}}

(a header sent more than once is its values joined by ", ", as HTTP allows; a chosen header that was not sent is
absent). The result must be a JSON object with at least `type`, `subject`, `source`, `id`, `time` and `data`;
`specversion` defaults to "1.0"; `datacontenttype`, `dataschema`, the other optional attributes and extension
attributes are allowed under the rules of `outbox.CloudEvent`, which builds the event and validates the NL GOV
profile. Anything else raises `MappingFailed(code, problems)`, each problem a `Problem(field, rule)`:

- `malformed_json`: the payload bytes are not a JSON document (field `body`);
- `expression_error`: the expression does not compile (field `expression`);
- `timeout`: the evaluation ran past `TIMEOUT_MS` (JSONata D1012);
- `evaluation_error`: any other runtime error of the expression (recursion deeper than `MAX_STACK_DEPTH`, a
  sequence longer than `MAX_SEQUENCE_LENGTH`, a type error, a panic inside the engine);
- `not_an_object`: the expression produced no value or something other than a JSON object (field `result`);
- `invalid_event`: the object is not a valid CloudEvent; one problem per faulty attribute, named by it.

Engine rules (measured, see the doc): every evaluation gets `timeout=TIMEOUT_MS`, `max_stack_depth` and
`max_sequence_length`; jsonatapy holds the GIL while it evaluates, so the timeout is small. A compiled
`jsonatapy` expression is bound to the thread that compiled it (using it from another one raises pyo3's
`PanicException`, a `BaseException`), so compiled expressions are cached per thread (`threading.local`, keyed by
(expression, version)): safe under FastAPI's thread pool and `asyncio.to_thread`. A compile costs ~15 µs.
What the timeout does not stop (a builtin such as `$pad('', 1e9, 'x')` runs to its end) is the mapping author's
to avoid: mappings are written by admins.

`try_mapping` is the same step answering with data instead of an exception, for `outbox consumers try` and the
API: `{"event": {...}}` or `{"code": ..., "problems": [{"field": ..., "rule": ...}, ...]}`.
"""

from __future__ import annotations

import re
import threading
from collections import abc
from dataclasses import dataclass
from typing import Any, Final

import jsonatapy
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from outbox import CloudEvent
from outbox._errors import InvalidEventError
from outbox._event import event_problems

TIMEOUT_MS: Final = 50
MAX_STACK_DEPTH: Final = 200
MAX_SEQUENCE_LENGTH: Final = 100_000
# Compiled expressions kept per thread; a thread that sees more distinct (expression, version) pairs starts over.
CACHE_SIZE: Final = 256

MALFORMED_JSON: Final = "malformed_json"
EXPRESSION_ERROR: Final = "expression_error"
EVALUATION_ERROR: Final = "evaluation_error"
TIMEOUT: Final = "timeout"
NOT_AN_OBJECT: Final = "not_an_object"
INVALID_EVENT: Final = "invalid_event"
INVALID_MAPPING: Final = "invalid_mapping"  # InvalidMapping's code when the expression is not at fault
CODES: Final = (MALFORMED_JSON, EXPRESSION_ERROR, EVALUATION_ERROR, TIMEOUT, NOT_AN_OBJECT, INVALID_EVENT)

# What the mapped object must carry besides `specversion` (defaulted); issue 22: the sender's stable id goes in
# `id` so that its retries are deduplicated by (source, id).
REQUIRED: Final = ("type", "subject", "source", "id", "time", "data")

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")  # an RFC 9110 token, lower case


@dataclass(frozen=True)
class Problem:
    """One fault: the field it is about (`expression`, `body`, `result` or an event attribute) and the rule."""

    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule}


class MappingFailed(Exception):
    """A payload the mapping could not turn into a CloudEvent: `code` (one of `CODES`) and its `problems`."""

    def __init__(self, code: str, problems: abc.Sequence[Problem]) -> None:
        assert code in CODES, code
        self.code = code
        self.problems = tuple(problems)
        super().__init__(f"{code}: " + "; ".join(str(problem) for problem in self.problems))

    def __repr__(self) -> str:
        return f"MappingFailed({self.code!r}, {list(self.problems)!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "problems": [problem.to_dict() for problem in self.problems]}


class InvalidMapping(ValueError):
    """A mapping definition that cannot be used, refused whole; `code` is `expression_error` when a problem
    is the expression's (it does not compile), else `invalid_mapping`; `problems` name every faulty field."""

    def __init__(self, problems: abc.Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        self.code = EXPRESSION_ERROR if any(p.field == "expression" for p in self.problems) else INVALID_MAPPING
        super().__init__("; ".join(str(problem) for problem in self.problems))

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "problems": [problem.to_dict() for problem in self.problems]}


# -- compiling, per thread --------------------------------------------------------------------------------


class _Compiled(threading.local):
    def __init__(self) -> None:
        self.expressions: dict[tuple[str, int], jsonatapy.JsonataExpression] = {}


_compiled = _Compiled()


def _compile(expression: str, version: int) -> jsonatapy.JsonataExpression:
    """The expression compiled in (and only for) the calling thread; `ValueError` on a syntax error."""
    cache = _compiled.expressions
    key = (expression, version)
    found = cache.get(key)
    if found is None:
        found = jsonatapy.compile(expression)
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[key] = found
    return found


def _is_panic(exc: BaseException) -> bool:
    # pyo3's PanicException lives in a module (`pyo3_runtime`) that cannot be imported; recognise it by type.
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


# -- the mapping --------------------------------------------------------------------------------------------


class Mapping(BaseModel):
    """A stored mapping: JSONata `expression`, the request `headers` it may read (names, lower-cased here),
    and its `version` (the cache key with the expression). Compiled at creation: a syntax error refuses it."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    expression: str = Field(min_length=1)
    headers: tuple[str, ...] = ()
    version: int = Field(default=1, ge=1)

    @field_validator("headers", mode="before")
    @classmethod
    def _lower_headers(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(item.lower() if isinstance(item, str) else item for item in value)
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
        return tuple(dict.fromkeys(value))

    @field_validator("expression")
    @classmethod
    def _check_expression(cls, value: str) -> str:
        try:
            jsonatapy.compile(value)
        except ValueError as exc:
            raise ValueError(f"does not compile: {exc}") from None
        return value


def parse_mapping(document: abc.Mapping[str, Any]) -> Mapping:
    """A `Mapping` from its JSON definition, every fault at once as `InvalidMapping` (problems by field)."""
    if not isinstance(document, abc.Mapping):
        raise InvalidMapping([Problem("mapping", "must be a JSON object")])
    try:
        return Mapping.model_validate(dict(document))
    except ValidationError as exc:
        raise InvalidMapping(_problems(exc)) from None


def _problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "mapping"
        problems.append(Problem(name, error["msg"].removeprefix("Value error, ")))
    return problems


# -- applying it --------------------------------------------------------------------------------------------

Headers = abc.Mapping[str, str] | abc.Mapping[str, tuple[str, ...]] | abc.Iterable[tuple[bytes | str, bytes | str]]


def _chosen_headers(chosen: tuple[str, ...], headers: Headers | None) -> dict[str, str]:
    if not chosen or headers is None:
        return {}
    pairs: abc.Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, abc.Mapping) else headers
    found: dict[str, list[str]] = {}
    for name, value in pairs:
        key = (name.decode("latin-1") if isinstance(name, bytes) else str(name)).lower()
        if key not in chosen:
            continue
        values = value if isinstance(value, tuple | list) else (value,)
        for item in values:
            found.setdefault(key, []).append(item.decode("latin-1") if isinstance(item, bytes) else str(item))
    return {key: ", ".join(values) for key, values in found.items()}


def _parsed(payload: Any) -> Any:
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise MappingFailed(MALFORMED_JSON, [Problem("body", f"must be a JSON document ({exc})")]) from None
    return payload


def _evaluate(mapping: Mapping, document: dict[str, Any]) -> Any:
    try:
        compiled = _compile(mapping.expression, mapping.version)
    except ValueError as exc:  # only when a Mapping was built without validation (model_construct)
        raise MappingFailed(EXPRESSION_ERROR, [Problem("expression", f"does not compile: {exc}")]) from None
    try:
        return compiled.evaluate(
            document,
            timeout=TIMEOUT_MS,
            max_stack_depth=MAX_STACK_DEPTH,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
        )
    except ValueError as exc:
        message = str(exc)
        if message.startswith("D1012"):
            raise MappingFailed(TIMEOUT, [Problem("expression", f"ran longer than {TIMEOUT_MS} ms")]) from None
        raise MappingFailed(EVALUATION_ERROR, [Problem("expression", message)]) from None
    except BaseException as exc:  # pyo3's PanicException only; everything else goes on up
        if not _is_panic(exc):
            raise
        raise MappingFailed(EVALUATION_ERROR, [Problem("expression", f"the engine failed: {exc}")]) from None


_JSON_KINDS: Final = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}


def _event(
    result: Any, defaults: abc.Mapping[str, Any] | None = None, required: tuple[str, ...] = REQUIRED
) -> CloudEvent:
    if not isinstance(result, dict):
        what = _JSON_KINDS.get(type(result), "nothing" if result is None else type(result).__name__)
        raise MappingFailed(NOT_AN_OBJECT, [Problem("result", f"must be a JSON object, the expression gave {what}")])
    document = {"specversion": "1.0", **(defaults or {}), **result}
    problems = [Problem(name, "is required") for name in required if document.get(name) is None]
    if not problems:
        try:  # the usual case; event_problems (every fault named) only for an answer that needs them
            return CloudEvent.from_dict(document)
        except (InvalidEventError, TypeError):
            pass
    missing = {problem.field for problem in problems}
    problems += [
        Problem(fault.attribute, fault.rule) for fault in event_problems(document) if fault.attribute not in missing
    ]
    if not problems:  # event_problems found nothing from_dict refused: say what from_dict said
        try:
            CloudEvent.from_dict(document)
        except InvalidEventError as exc:
            problems = [Problem(exc.attribute, exc.rule)]
        except TypeError as exc:
            problems = [Problem("result", str(exc))]
    raise MappingFailed(INVALID_EVENT, problems)


def apply(
    mapping: Mapping,
    payload: bytes | Any,
    headers: Headers | None = None,
    defaults: abc.Mapping[str, Any] | None = None,
) -> CloudEvent:
    """The CloudEvent `mapping` makes of `payload` (raw body bytes, or already parsed JSON) and the chosen
    `headers` (a mapping, `Inbound.headers`, or an ASGI header list); `MappingFailed` otherwise. `defaults`
    are attributes the result may leave out (a consumer's target event type gives `type` and `source`)."""
    document = {"body": _parsed(payload), "headers": _chosen_headers(mapping.headers, headers)}
    return _event(_evaluate(mapping, document), defaults)


def as_event(payload: bytes, defaults: abc.Mapping[str, Any] | None = None) -> CloudEvent:
    """A consumer without a mapping: the body is the event itself (the JSON event format), checked as a
    mapping's result is (`MappingFailed` with `malformed_json`, `not_an_object` or `invalid_event`)."""
    return _event(_parsed(payload), defaults, required=("id", "source", "type"))


def try_mapping(
    mapping: Mapping | abc.Mapping[str, Any], payload: bytes | Any, headers: Headers | None = None
) -> dict[str, Any]:
    """`apply` without raising and without storing anything: `{"event": <JSON event format>}` or
    `{"code": ..., "problems": [{"field", "rule"}, ...]}`. `mapping` may be an unstored JSON definition."""
    try:
        chosen = mapping if isinstance(mapping, Mapping) else parse_mapping(mapping)
        return {"event": apply(chosen, payload, headers).to_dict()}
    except (MappingFailed, InvalidMapping) as exc:
        return exc.to_dict()
