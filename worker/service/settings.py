"""`outbox serve`'s configuration: flags over environment (OUTBOX_*) over defaults, checked at start."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from outbox._event import DEFAULT_MAX_EVENT_BYTES
from outbox._sql import DEFAULT_SCHEMA, check_schema_name
from worker.daemon.settings import SettingsError, settings_error_line
from worker.delivery.safety import IPNetwork, parse_networks
from worker.store.secret_box import SecretBox


class ServeSettings(BaseSettings):
    """Every field is also an environment variable: OUTBOX_<FIELD NAME IN CAPITALS>."""

    model_config = SettingsConfigDict(env_prefix="OUTBOX_", extra="forbid", validate_default=True)

    database_url: str | None = Field(None, description="libpq URL; none = the embedded PostgreSQL")
    db_schema: str = Field(DEFAULT_SCHEMA, validation_alias="OUTBOX_SCHEMA", description="outbox schema")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65_535, description="port to listen on")
    public_url: str | None = Field(
        None, description="the service's own base URL for `url` fields (behind a proxy); default: as requested"
    )
    pool_size: int = Field(8, ge=1, le=200, description="database connections of this process")
    secret_key: SecretStr | None = Field(
        None, description="Fernet key(s), comma-separated, that encrypt client and subscription secrets"
    )
    jwt_leeway: float = Field(5.0, ge=0, le=3600, description="clock skew allowed on a JWT's iat/exp (seconds)")
    jwt_max_age: float = Field(3600.0, gt=0, le=7 * 86_400, description="a JWT older than this (by iat) is refused")
    client_cache_ttl: float = Field(
        5.0, ge=0, le=3600, description="seconds a client's record is cached (how soon rotate/remove take effect)"
    )
    max_event_bytes: int = Field(
        DEFAULT_MAX_EVENT_BYTES, ge=1024, le=64 * 1024 * 1024, description="largest event (JSON event format)"
    )
    max_batch_events: int = Field(100, ge=1, le=10_000, description="most events in one batched POST")
    max_batch_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024, description="largest body of a batched POST (bytes)"
    )
    rate_limit: float = Field(
        200.0, ge=0, le=1_000_000, description="requests per second per client, over every process (0: no limit)"
    )
    rate_burst: int = Field(0, ge=0, le=1_000_000, description="requests a client may send at once (0: one second's)")
    request_timeout: float = Field(
        10.0, gt=0, le=600, description="timeout of the OPTIONS handshake at create, and of each part of a request body"
    )
    body_timeout: float = Field(
        30.0, gt=0, le=3600, description="a whole request body must arrive within this many seconds of its first read"
    )
    webhook_origin: str | None = Field(None, description="our WebHook-Request-Origin in handshakes")
    allow_insecure_callbacks: bool = Field(False, description="accept http:// callback URLs (closed networks, tests)")
    # NoDecode: a comma-separated list, not the JSON pydantic-settings expects for list fields.
    allowed_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = Field(
        (), description="non-public networks callbacks may point to, e.g. 10.1.0.0/16,::1"
    )
    shutdown_grace: float = Field(30.0, ge=0, le=3600, description="on SIGTERM, wait this long for requests")
    # Consumers (/hooks/{endpoint}) and TLS termination (needed for their mTLS verification). Paths, named
    # without _FILE: OUTBOX_X_FILE means "read OUTBOX_X from this file" (runtime/env_files.py).
    consumer_cache_ttl: float = Field(
        2.0, ge=0, le=3600, description="seconds a process keeps a consumer's definition before reading it again"
    )
    tls_certificate: Path | None = Field(None, description="serve HTTPS with this PEM certificate (chain)")
    tls_key: Path | None = Field(None, description="the certificate's PEM private key")
    tls_client_ca: Path | None = Field(
        None,
        description="PEM CA bundle client certificates are verified against (asked for, not required: "
        "consumers with mTLS verification refuse a request without one)",
    )
    # Not OUTBOX_METRICS_PORT: that is the worker's, and one env file often serves both units (deploy/systemd).
    serve_metrics_port: int | None = Field(
        None, ge=0, le=65_535, description="serve Prometheus /metrics on this port (its own listener)"
    )
    serve_metrics_host: str = Field("127.0.0.1", description="address of the /metrics listener")
    # The console (/console/): sessions and sign-in lockout.
    console_session_idle: float = Field(
        1800.0, ge=60, le=86_400, description="a console session ends after this many seconds without a request"
    )
    console_session_max: float = Field(
        43_200.0, ge=300, le=30 * 86_400, description="a console session ends this many seconds after sign-in"
    )
    console_signin_attempts: int = Field(
        5, ge=1, le=1000, description="failed sign-ins to one account name before it is locked"
    )
    console_address_attempts: int = Field(
        20, ge=1, le=100_000, description="failed sign-ins from one client address before it is locked"
    )
    console_lockout: float = Field(
        900.0,
        ge=1,
        le=86_400,
        description="seconds a locked account name or address stays locked after its last failure",
    )

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        return parse_networks(value) if isinstance(value, str) else value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an absolute http(s) URL, e.g. https://notificaties.example.nl")
        return value.rstrip("/") if value else None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_schema_name(self.db_schema)
        if self.secret_key is not None:
            SecretBox.from_setting(self.secret_key.get_secret_value())  # raises SecretKeyError, a ValueError
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("OUTBOX_TLS_CERTIFICATE and OUTBOX_TLS_KEY: give both, or neither")
        if self.tls_client_ca is not None and self.tls_certificate is None:
            raise ValueError("OUTBOX_TLS_CLIENT_CA: needs OUTBOX_TLS_CERTIFICATE and OUTBOX_TLS_KEY (TLS)")
        for name in ("tls_certificate", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"OUTBOX_{name.upper()}: {path} is not a readable file")
        if self.max_batch_bytes < self.max_event_bytes:
            raise ValueError(
                f"OUTBOX_MAX_BATCH_BYTES: must be at least OUTBOX_MAX_EVENT_BYTES ({self.max_event_bytes}), "
                f"as a batch may hold one event of that size (got {self.max_batch_bytes})"
            )
        return self

    @property
    def box(self) -> SecretBox:
        return SecretBox.from_setting(self.secret_key.get_secret_value() if self.secret_key else None)

    @classmethod
    def load(cls, **overrides: Any) -> ServeSettings:
        """Environment and defaults, with `overrides` (flags; None = not given) on top.

        Raises `SettingsError` with one line per fault, naming the variable and the rule."""
        given = {key: value for key, value in overrides.items() if value is not None}
        if "db_schema" in given:
            given["OUTBOX_SCHEMA"] = given.pop("db_schema")
        try:
            return cls(**given)
        except ValidationError as exc:
            raise SettingsError([settings_error_line(error) for error in exc.errors()]) from None
