"""The worker's configuration: flags over environment (OUTBOX_*) over defaults, checked at start."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Annotated, Any, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from outbox._sql import DEFAULT_SCHEMA, check_schema_name
from worker.daemon.maintenance import parse_duration
from worker.delivery.safety import IPNetwork, parse_networks
from worker.store.secret_box import SecretBox

MAX_DISABLE_AFTER = timedelta(days=3650)
DISABLE_AFTER_RULE = "must be seconds or a duration such as 5d, 12h or 30s, at most 3650d (0: never)"


class SettingsError(ValueError):
    """The configuration is invalid; `lines` holds one readable line per fault."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class WorkerSettings(BaseSettings):
    """Every field is also an environment variable: OUTBOX_<FIELD NAME IN CAPITALS>."""

    model_config = SettingsConfigDict(env_prefix="OUTBOX_", extra="forbid", validate_default=True)

    database_url: str | None = Field(None, description="libpq URL; none = the embedded PostgreSQL")
    direct_database_url: str | None = Field(
        None, description="libpq URL of PostgreSQL itself, for LISTEN, when the database URL goes through PgBouncer"
    )
    db_schema: str = Field(DEFAULT_SCHEMA, validation_alias="OUTBOX_SCHEMA", description="outbox schema")
    concurrency: int = Field(400, ge=1, le=10_000, description="HTTP requests in flight per process")
    subscription_concurrency: int = Field(
        200,
        ge=1,
        le=10_000,
        description="most requests in flight per subscription, over all workers (the adaptive limit's ceiling)",
    )
    adaptive_concurrency: bool = Field(
        True, description="adapt each subscription's limit to its receiver (false: always the maximum)"
    )
    subscription_concurrency_initial: int = Field(
        4, ge=1, le=10_000, description="a subscription's limit before its receiver answered (adaptive)"
    )
    batch_size: int = Field(400, ge=1, le=10_000, description="events routed / deliveries claimed per query")
    poll_interval: float = Field(1.0, gt=0, le=3600, description="seconds between looks for work when idle")
    lease_seconds: float = Field(60.0, gt=0, le=86_400, description="how long a claim is ours")
    retry_base_delay: float = Field(1.0, gt=0, le=86_400, description="first backoff ceiling (seconds)")
    retry_max_delay: float = Field(3600.0, gt=0, le=7 * 86_400, description="largest backoff (seconds)")
    retry_max_attempts: int = Field(10, ge=1, le=1000, description="attempts before a delivery is failed")
    retry_after_max: float = Field(3600.0, ge=0, le=7 * 86_400, description="cap on a 429's Retry-After (s)")
    request_timeout: float = Field(10.0, gt=0, le=600, description="HTTP timeout per request (seconds)")
    shutdown_grace: float = Field(30.0, ge=0, le=3600, description="on SIGTERM, wait this long for HTTP")
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}", min_length=1)
    webhook_origin: str | None = Field(
        None, description="our WebHook-Request-Origin (pre-flight handshakes, and a header on deliveries)"
    )
    preflight_max_age: float = Field(
        300.0, ge=0, le=86_400, description="a pre-flight handshake is repeated after this many seconds (0: always)"
    )
    secret_key: SecretStr | None = Field(
        None, description="Fernet key(s), comma-separated, that encrypt subscription secrets at rest"
    )
    metrics_port: int | None = Field(None, ge=0, le=65_535, description="serve /metrics, /healthz and /readyz")
    metrics_host: str = Field(
        "127.0.0.1", description="address the metrics server binds to (empty: every interface, IPv4 and IPv6)"
    )
    # NoDecode: a comma-separated list, not the JSON pydantic-settings expects for list fields.
    allowed_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = Field(
        (), description="non-public networks webhooks may go to, e.g. 10.1.0.0/16,::1 (CIDRs or addresses)"
    )

    partition_interval: timedelta = Field(
        timedelta(days=1),
        description="width of a partition leaf of events, deliveries and attempts (5m to 31d; below 1h: tests)",
    )

    disable_after: timedelta = Field(
        timedelta(days=5),
        description="pause a subscription whose deliveries all failed this long (seconds or 5d, 12h, 30s; 0: never)",
    )
    operational_source: str | None = Field(
        None,
        description="the source of the outbox's operational events (default urn:nlgov-outbox:<schema>), "
        "e.g. urn:nld:oin:<OIN>:systeem:outbox",
    )

    @field_validator("disable_after", mode="before")
    @classmethod
    def _disable_after(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value
        text = value.strip()
        try:
            after = timedelta(seconds=float(text))
        except ValueError:
            try:
                after = parse_duration(text)
            except (ValueError, OverflowError):
                raise ValueError(DISABLE_AFTER_RULE) from None
        except OverflowError:
            raise ValueError(DISABLE_AFTER_RULE) from None
        # At most 10 years: the round computes now() - the limit, which a limit of millennia takes out of
        # PostgreSQL's timestamp range (every round would then fail); 0 is the way to say never.
        if not timedelta(0) <= after <= MAX_DISABLE_AFTER:
            raise ValueError(DISABLE_AFTER_RULE)
        return after

    @field_validator("operational_source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and (not value or not value.isprintable() or " " in value):
            raise ValueError("must be a URI-reference without spaces or control characters, e.g. urn:nld:oin:…")
        return value

    @field_validator("partition_interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = parse_duration(value)
        if isinstance(value, timedelta) and not timedelta(minutes=5) <= value <= timedelta(days=31):
            raise ValueError("must be from 5m up to 31d, e.g. 1d or 12h")
        return value

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        return parse_networks(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_schema_name(self.db_schema)
        if self.secret_key is not None:
            SecretBox.from_setting(self.secret_key.get_secret_value())  # raises SecretKeyError, a ValueError
        if self.lease_seconds <= 2 * self.request_timeout:
            raise ValueError(
                f"OUTBOX_LEASE_SECONDS ({self.lease_seconds:g}) must be more than twice "
                f"OUTBOX_REQUEST_TIMEOUT ({self.request_timeout:g}) (a connect and a read may each take that "
                "long), or deliveries in flight would be taken twice"
            )
        if self.retry_max_delay < self.retry_base_delay:
            raise ValueError(
                f"OUTBOX_RETRY_MAX_DELAY ({self.retry_max_delay:g}) must be at least "
                f"OUTBOX_RETRY_BASE_DELAY ({self.retry_base_delay:g})"
            )
        return self

    @classmethod
    def load(cls, **overrides: Any) -> WorkerSettings:
        """Environment and defaults, with `overrides` (flags; None = not given) on top.

        Raises `SettingsError` with one line per fault, naming the variable and the rule.
        """
        given = {key: value for key, value in overrides.items() if value is not None}
        if "db_schema" in given:
            given["OUTBOX_SCHEMA"] = given.pop("db_schema")
        try:
            return cls(**given)
        except ValidationError as exc:
            raise SettingsError([settings_error_line(error) for error in exc.errors()]) from None


def settings_error_line(error: Any) -> str:
    """One pydantic error as `OUTBOX_NAME: rule (got value)`."""
    location = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid"))
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if not location:
        return message
    name = location[0]
    variable = name if name.startswith("OUTBOX_") else f"OUTBOX_{name.upper()}"
    if name == "db_schema":
        variable = "OUTBOX_SCHEMA"
    given = error.get("input")
    shown = f" (got {given!r})" if given is not None and not isinstance(given, dict) else ""
    return f"{variable}: {message}{shown}"
