"""A consumer's definition as operators give it (CLI, API, console), checked whole before anything is stored.

The JSON names are the seed's (OpenConnector's Consumers: `name`, `endpoint`, `mappingId`, `targetType`,
`targetId`, `isEnabled`) plus what verification and the limits need (`verification`, `maxBodyBytes`,
`rateLimit`, `rateBurst`). `parse_consumer` refuses a faulty definition with `InvalidConsumer`, whose
problems name each field and rule and never a secret. What needs the database (does the mapping, the
catalogue entry, the subscription exist?) is checked by `worker/store/consumers.py`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from worker.consumers.verification import InvalidVerificationConfig, parse_config

EVENT_TYPE: Final = "event-type"
SOURCE: Final = "source"
TARGET_TYPES: Final = (EVENT_TYPE, SOURCE)
SLUG = re.compile(r"^[a-z0-9]+([-_.][a-z0-9]+)*$")
DEFAULT_MAX_BODY_BYTES: Final = 262_144  # 256 KiB: a webhook payload is small; an operator may raise it
MAX_BODY_BYTES: Final = 10_485_760
FIELDS: Final = (
    "name", "endpoint", "mappingId", "targetType", "targetId", "isEnabled", "verification",
    "maxBodyBytes", "rateLimit", "rateBurst",
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """One fault of a definition: the field (camelCase, `verification.secrets[0]` for nested ones) and its rule."""

    name: str
    reason: str
    code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class InvalidConsumer(ValueError):
    """A consumer definition refused whole; `problems` name every faulty field (never a value)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


class ConsumerDefinition(BaseModel):
    """A consumer as given; `verification` is the method's config (worker/consumers/verification.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    name: str = Field(min_length=1, max_length=100, description="Human-readable name; unique.")
    endpoint: str = Field(
        min_length=1, max_length=100, description="Exposed webhook path: the request goes to /hooks/{endpoint}."
    )
    mapping_id: str | None = Field(
        default=None, description="Optional mapping applied to the payload; without one the body must be a CloudEvent."
    )
    target_type: Literal["event-type", "source"] = Field(
        description="event-type: validated against that catalogue entry and routed to every matching "
        "subscription; source: delivered to one subscription only."
    )
    target_id: str = Field(min_length=1, description="The catalogue entry's slug, or the subscription's id.")
    is_enabled: bool = Field(default=True, description="Whether the consumer is active; a disabled one answers 404.")
    verification: dict[str, Any] = Field(description='How requests are verified: {"method": …, …}.')
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1, le=MAX_BODY_BYTES)
    rate_limit: float | None = Field(default=None, gt=0, le=100_000, description="Requests per second; null: none.")
    rate_burst: int | None = Field(default=None, ge=1, le=1_000_000, description="Requests at once.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value != value.strip() or not value.isprintable():
            raise ValueError("must be printable text without outer spaces")
        return value

    @field_validator("endpoint", "mapping_id")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not SLUG.match(value):
            raise ValueError("must be lowercase letters and digits, joined by - _ or . (e.g. psp-payments)")
        return value


def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_consumer(document: Mapping[str, Any]) -> ConsumerDefinition:
    """The definition from its JSON, every fault at once (the verification config's included)."""
    if not isinstance(document, Mapping):
        raise InvalidConsumer([Problem("consumer", "must be a JSON object")])
    problems: list[Problem] = []
    definition: ConsumerDefinition | None = None
    try:
        definition = ConsumerDefinition.model_validate(dict(document))
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            name = _location(error["loc"]) or "consumer"
            code = "required" if error["type"] == "missing" else "invalid"
            problems.append(Problem(name, error["msg"].removeprefix("Value error, "), code))
    verification = document.get("verification")
    if isinstance(verification, Mapping):
        try:
            parse_config(verification)
        except InvalidVerificationConfig as exc:
            problems.extend(Problem(f"verification.{line}", "") for line in exc.problems)
    problems = [_split(p) for p in problems]
    if definition is not None:
        if (definition.rate_limit is None) != (definition.rate_burst is None):
            problems.append(Problem("rateBurst", "rateLimit and rateBurst are given together, or neither"))
        if definition.target_type == SOURCE:
            try:
                uuid.UUID(definition.target_id)
            except ValueError:
                problems.append(Problem("targetId", "must be a subscription id (a UUID) for targetType source"))
        elif not SLUG.match(definition.target_id):
            problems.append(Problem("targetId", "must be an event catalogue slug for targetType event-type"))
    if problems:
        raise InvalidConsumer(problems)
    assert definition is not None
    return definition


def _split(problem: Problem) -> Problem:
    """A verification line (`verification.secrets[0]: rule`) as a problem named by its field."""
    if problem.reason or ": " not in problem.name:
        return problem
    name, _, reason = problem.name.partition(": ")
    return Problem(name, reason, problem.code)
