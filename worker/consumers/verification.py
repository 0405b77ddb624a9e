"""Verification of an inbound webhook request (a Consumer's `/hooks/{endpoint}`), before anything is stored.

Pure: no database, no HTTP server. The HTTP layer builds an `Inbound` (raw body bytes, the header list as
received, the ASGI TLS extension), calls `verifier_for(config).verify(inbound)` and gets a `Verified`, or a
`VerificationFailed` whose `code` it counts per consumer and answers 401 for. A refusal's text says what was
wrong (which header, which rule) and never a secret, a token or a signature value: it is safe to log.

One method per consumer (`method` in its config):

- `standard-webhooks` (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
  `webhook-signature` (space-separated `v1,<base64>` entries; other versions, such as the asymmetric `v1a`,
  are ignored) over `<id>.<timestamp>.<body>` with HMAC-SHA256; one to three `whsec_<base64>` secrets (more
  than one during a rotation: any may match); the timestamp within `toleranceSeconds` (default 300) of now,
  either way. **Replay protection by id is the caller's:** `Verified.webhook_id` is the verified id, to be
  recorded per consumer (unique) before the event is stored, and kept at least twice the tolerance window; a
  second request with a recorded id is a replay (a sender's retry: answered as a success, nothing stored
  again). Within the window only the id can tell a replay; outside it, the timestamp refuses it here.
- `hmac`: an HMAC of the raw body in one header, as GitHub (`X-Hub-Signature-256: sha256=<hex>`), Shopify
  (`X-Shopify-Hmac-Sha256: <base64>`) and most payment providers send it: `algorithm` sha256 (default) or
  sha512, `encoding` hex (either case) or base64, an optional `prefix` (`sha256=`), the secret's UTF-8 bytes
  as the key (as those senders use it). SHA-1 is not offered: HMAC-SHA1 is not broken as a MAC, but SHA-1 is
  deprecated, and the senders that still send it (GitHub's `X-Hub-Signature`) send SHA-256 beside it, so
  allowing it would only add a weaker choice. Optionally `timestampHeader`: the signed content is then
  `<scheme>:<timestamp>:<body>`, with `scheme` the prefix without its `=`, as Slack (`X-Slack-Signature:
  v0=<hex>`, `X-Slack-Request-Timestamp`) and Zoom (`x-zm-signature`, `x-zm-request-timestamp`) sign, and
  the timestamp is held to `toleranceSeconds`. Stripe's combined `Stripe-Signature: t=…,v1=…` is another
  format, not covered. Without a timestamp nothing limits a replay of a captured request but the mapping's
  event id (deduplicated by (`source`, `id`)).
- `bearer`: `Authorization: Bearer <token>`, one of one to three tokens.
- `basic`: HTTP Basic (RFC 7617, UTF-8), one user name and password.
- `api-key`: a header (`header`, default `X-API-Key`) carrying one of one to three keys.
- `mtls`: the client certificate's subject DN (RFC 4514, e.g. `CN=psp.example.com,O=PSP,C=NL`) or one of its
  subject alternative names (`DNS:…`, `URI:…`, `email:…`, `IP:…`) is one configured. The chain is verified
  by the TLS server (a context with `CERT_REQUIRED` and the consumers' CA bundle), not here: this module
  only reads the certificate the ASGI TLS extension (`worker/runtime/asgi.py`) gives the app, and refuses a
  connection without one or with `client_cert_error` set.
- `none`: accepts every request; only when a config says `{"method": "none"}`, never by default.

Secrets (`SECRET_FIELDS` per method; `split_secrets` / `parse_config`) are `SecretStr`: their repr is masked,
and a faulty config's `InvalidVerificationConfig` names the field and the rule, never the value. They are meant
to be sealed at rest with `worker/store/secret_box.py`: store `split_secrets(config)[0]` in clear and seal
`[1]`, and give `parse_config({**clear, **opened})` back. Comparisons are constant time
(`hmac.compare_digest`; tokens, keys and passwords are compared as SHA-256 digests, so their length does not
show either). Header names are looked up case-insensitively; a verification header given twice is refused
(`malformed_header`: which one counts would be a guess). The clock is injectable (`clock`, Unix seconds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol

from cryptography import x509
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from outbox._subscription import signing_key

Clock = Callable[[], float]

# -- refusals ---------------------------------------------------------------------------------------------

MISSING_HEADER = "missing_header"
MALFORMED_HEADER = "malformed_header"
SIGNATURE_MISMATCH = "signature_mismatch"
TIMESTAMP_STALE = "timestamp_stale"
TIMESTAMP_FUTURE = "timestamp_future"
CREDENTIALS_MISMATCH = "credentials_mismatch"
MISSING_CERTIFICATE = "missing_certificate"
MALFORMED_CERTIFICATE = "malformed_certificate"
CERTIFICATE_MISMATCH = "certificate_mismatch"
CODES = (
    MISSING_HEADER,
    MALFORMED_HEADER,
    SIGNATURE_MISMATCH,
    TIMESTAMP_STALE,
    TIMESTAMP_FUTURE,
    CREDENTIALS_MISMATCH,
    MISSING_CERTIFICATE,
    MALFORMED_CERTIFICATE,
    CERTIFICATE_MISMATCH,
)


class VerificationFailed(Exception):
    """A refused request: `code` (one of `CODES`, for the metrics' label) and `reason` (safe to log)."""

    def __init__(self, code: str, reason: str) -> None:
        assert code in CODES, code
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"VerificationFailed({self.code!r}, {self.reason!r})"


class InvalidVerificationConfig(ValueError):
    """A config that cannot be used, with every fault as a `field: rule` line (never a value)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


# -- the request ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inbound:
    """What verification reads of one request: the raw body, the headers as received, the TLS extension."""

    body: bytes
    headers: Mapping[str, tuple[str, ...]] = field(repr=False)  # lower-case name → every value, in order
    tls: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls,
        body: bytes,
        headers: Mapping[str, str] | Iterable[tuple[bytes | str, bytes | str]],
        tls: Mapping[str, Any] | None = None,
    ) -> Inbound:
        """From a mapping or an ASGI header list ((name, value) bytes; values as latin-1, as HTTP sends)."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        found: dict[str, list[str]] = {}
        for name, value in pairs:
            key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            found.setdefault(key, []).append(text)
        return cls(bytes(body), {k: tuple(v) for k, v in found.items()}, tls)

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], body: bytes) -> Inbound:
        """From an ASGI HTTP scope and the body read whole."""
        extensions = scope.get("extensions") or {}
        return cls.of(body, scope.get("headers", ()), extensions.get("tls"))

    def header(self, name: str) -> str | None:
        """The header's one value (stripped), None when absent; given more than once: `malformed_header`."""
        values = self.headers.get(name.lower())
        if not values:
            return None
        if len(values) > 1:
            raise VerificationFailed(MALFORMED_HEADER, f"{name} is given {len(values)} times")
        return values[0].strip()

    def required(self, name: str) -> str:
        value = self.header(name)
        if not value:
            raise VerificationFailed(MISSING_HEADER, f"{name} is missing" if value is None else f"{name} is empty")
        return value


@dataclass(frozen=True)
class Verified:
    """An accepted request: how, and what the caller may record (nothing secret)."""

    method: str
    webhook_id: str | None = None  # standard-webhooks: record it per consumer (replay protection)
    timestamp: int | None = None  # the signed timestamp, Unix seconds (standard-webhooks; hmac with one)
    principal: str | None = None  # basic: the user name; mtls: the subject DN or SAN that matched
    key_index: int | None = None  # which configured secret/token/key matched (0: the first): rotation progress


# -- configs ----------------------------------------------------------------------------------------------

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_VISIBLE = re.compile(r"[\x21-\x7e]+")
MIN_SECRET_CHARS = 16
MAX_SECRETS = 3
MAX_TOLERANCE = 3600
DEFAULT_TOLERANCE = 300


class _Config(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=True,
    )
    # The config's secret fields, as named in its JSON (sealed at rest; write-only in an API).
    secret_fields: ClassVar[tuple[str, ...]] = ()


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError("must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
    return value


def _secret_list(values: list[SecretStr], check: Callable[[str], None]) -> list[SecretStr]:
    if not 1 <= len(values) <= MAX_SECRETS:
        raise ValueError(f"must hold 1 to {MAX_SECRETS} values (more than one during a rotation)")
    for i, value in enumerate(values):
        try:
            check(value.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"[{i}]: {exc}") from None
    if len({v.get_secret_value() for v in values}) != len(values):
        raise ValueError("holds the same value twice")
    return values


def _strong(value: str) -> None:
    if len(value) < MIN_SECRET_CHARS or not _VISIBLE.fullmatch(value):
        raise ValueError(f"must be at least {MIN_SECRET_CHARS} visible ASCII characters, without spaces")


def _long(value: str) -> None:
    if len(value) < MIN_SECRET_CHARS or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters, without control characters")


def _whsec(value: str) -> None:
    signing_key(value)  # its ValueError names the rule, never the secret


class StandardWebhooksConfig(_Config):
    """Standard Webhooks: `secrets` (whsec_…, newest first), `toleranceSeconds` (default 300)."""

    secret_fields: ClassVar[tuple[str, ...]] = ("secrets",)
    method: Literal["standard-webhooks"]
    secrets: list[SecretStr]
    tolerance_seconds: int = Field(DEFAULT_TOLERANCE, ge=1, le=MAX_TOLERANCE)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[SecretStr]) -> list[SecretStr]:
        return _secret_list(values, _whsec)


class HmacConfig(_Config):
    """An HMAC of the raw body in `header`, hex or base64, after an optional `prefix`; optionally a timestamp."""

    secret_fields: ClassVar[tuple[str, ...]] = ("secrets",)
    method: Literal["hmac"]
    secrets: list[SecretStr]
    header: str
    algorithm: Literal["sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    tolerance_seconds: int = Field(DEFAULT_TOLERANCE, ge=1, le=MAX_TOLERANCE)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[SecretStr]) -> list[SecretStr]:
        return _secret_list(values, _long)  # spaces allowed: GitHub's own example secret has them

    @field_validator("header", "timestamp_header")
    @classmethod
    def _headers(cls, value: str | None) -> str | None:
        return None if value is None else _header_name(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if (value and not _VISIBLE.fullmatch(value)) or len(value) > 32:
            raise ValueError("must be at most 32 visible ASCII characters, such as sha256=")
        return value

    @model_validator(mode="after")
    def _scheme(self) -> HmacConfig:
        if self.timestamp_header is not None and not (len(self.prefix) > 1 and self.prefix.endswith("=")):
            # the signed content is "<scheme>:<timestamp>:<body>", the scheme taken from the prefix
            raise ValueError("prefix: with timestampHeader it must be the scheme and '=' (such as v0=)")
        return self


class BearerConfig(_Config):
    """`Authorization: Bearer <token>`, one of `tokens`."""

    secret_fields: ClassVar[tuple[str, ...]] = ("tokens",)
    method: Literal["bearer"]
    tokens: list[SecretStr]

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, values: list[SecretStr]) -> list[SecretStr]:
        return _secret_list(values, _strong)


class BasicConfig(_Config):
    """HTTP Basic: `username` and `password`."""

    secret_fields: ClassVar[tuple[str, ...]] = ("password",)
    method: Literal["basic"]
    username: str
    password: SecretStr

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value or ":" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("must be non-empty, without ':' or control characters")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr) -> SecretStr:
        _long(value.get_secret_value())
        return value


class ApiKeyConfig(_Config):
    """One of `keys` in the header `header` (default X-API-Key)."""

    secret_fields: ClassVar[tuple[str, ...]] = ("keys",)
    method: Literal["api-key"]
    header: str = "X-API-Key"
    keys: list[SecretStr]

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return _header_name(value)

    @field_validator("keys")
    @classmethod
    def _keys(cls, values: list[SecretStr]) -> list[SecretStr]:
        return _secret_list(values, _strong)


_SAN_KINDS = ("DNS", "URI", "email", "IP")
# Names RFC 4514 text may use beyond cryptography's own (CN, L, ST, O, OU, C, STREET, DC, UID): PKIoverheid
# certificates carry the OIN in serialNumber (older) or organizationIdentifier (eIDAS: NTRNL-<OIN>).
_DN_NAMES = {
    "serialNumber": x509.NameOID.SERIAL_NUMBER,
    "organizationIdentifier": x509.ObjectIdentifier("2.5.4.97"),
    "emailAddress": x509.NameOID.EMAIL_ADDRESS,
}
_DN_TEXT = {oid: name for name, oid in _DN_NAMES.items()}


def _dn(text: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(text, _DN_NAMES)


def _san(value: str) -> str:
    kind, sep, name = value.partition(":")
    rule = "each must be DNS:<name>, URI:<uri>, email:<address> or IP:<address>"
    if not sep or not name or kind not in _SAN_KINDS:
        raise ValueError(rule)
    if kind == "IP":
        try:
            return f"IP:{ipaddress.ip_address(name)}"
        except ValueError:
            raise ValueError(rule) from None
    if kind == "DNS":
        return f"DNS:{name.lower()}"
    return value


class MtlsConfig(_Config):
    """The client certificate's subject DN is one of `subjects`, or one of its SANs is one of `sans`."""

    method: Literal["mtls"]
    subjects: list[str] = Field(default_factory=list)
    sans: list[str] = Field(default_factory=list)

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                name = _dn(value)
            except ValueError:
                raise ValueError("each must be a distinguished name as RFC 4514 writes it (CN=…,O=…,C=NL)") from None
            if not len(name):
                raise ValueError("each must name at least one attribute")
        return values

    @field_validator("sans")
    @classmethod
    def _sans(cls, values: list[str]) -> list[str]:
        return [_san(value) for value in values]

    @model_validator(mode="after")
    def _some(self) -> MtlsConfig:
        if not self.subjects and not self.sans:
            raise ValueError("subjects or sans: at least one subject DN or subject alternative name is needed")
        return self


class NoneConfig(_Config):
    """No verification: every request is accepted. Only when chosen."""

    method: Literal["none"]


VerificationConfig = Annotated[
    StandardWebhooksConfig | HmacConfig | BearerConfig | BasicConfig | ApiKeyConfig | MtlsConfig | NoneConfig,
    Field(discriminator="method"),
]
CONFIGS: dict[str, type[_Config]] = {
    "standard-webhooks": StandardWebhooksConfig,
    "hmac": HmacConfig,
    "bearer": BearerConfig,
    "basic": BasicConfig,
    "api-key": ApiKeyConfig,
    "mtls": MtlsConfig,
    "none": NoneConfig,
}
METHODS = tuple(CONFIGS)
SECRET_FIELDS: dict[str, tuple[str, ...]] = {method: model.secret_fields for method, model in CONFIGS.items()}
_ADAPTER: TypeAdapter[VerificationConfig] = TypeAdapter(VerificationConfig)


def _location(loc: Sequence[int | str], method: object) -> str:
    parts = list(loc)
    if parts and parts[0] == method:  # the union's tag
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_config(document: Mapping[str, Any]) -> VerificationConfig:
    """A consumer's verification config from its JSON (camelCase names); every fault at once as
    `InvalidVerificationConfig`, whose lines name the field and never show a value."""
    if not isinstance(document, Mapping):
        raise InvalidVerificationConfig(["verification: must be a JSON object"])
    method = document.get("method")
    if method is None:
        raise InvalidVerificationConfig([f"method: is required, one of {', '.join(METHODS)}"])
    if not isinstance(method, str) or method not in CONFIGS:
        raise InvalidVerificationConfig([f"method: must be one of {', '.join(METHODS)}"])
    try:
        return _ADAPTER.validate_python(dict(document))
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = _location(error["loc"], method)
            message = error["msg"].removeprefix("Value error, ")
            if message.startswith("[") and "]: " in message:  # a list's rule names the item
                index, _, message = message.partition(": ")
                name += index
            elif not name and ": " in message:  # a model-level rule names its field itself
                name, _, message = message.partition(": ")
            problems.append(f"{name or 'verification'}: {message}")
        raise InvalidVerificationConfig(problems) from None


def split_secrets(config: VerificationConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what is stored in clear, the secrets to seal), both JSON with the config's camelCase names."""
    clear = config.model_dump(mode="json", by_alias=True)
    secrets: dict[str, Any] = {}
    for attribute, info in type(config).model_fields.items():
        name = info.alias or attribute
        if name in config.secret_fields:
            clear.pop(name, None)
            value = getattr(config, attribute)
            secrets[name] = (
                [v.get_secret_value() for v in value] if isinstance(value, list) else value.get_secret_value()
            )
    return clear, secrets


# -- verifiers --------------------------------------------------------------------------------------------


class Verifier(Protocol):
    method: str

    def verify(self, request: Inbound) -> Verified: ...


def verifier_for(config: VerificationConfig, *, clock: Clock = time.time) -> Verifier:
    """The verifier of one config (keys prepared once: keep it as long as the config)."""
    if isinstance(config, StandardWebhooksConfig):
        return StandardWebhooksVerifier(config, clock=clock)
    if isinstance(config, HmacConfig):
        return HmacVerifier(config, clock=clock)
    if isinstance(config, BearerConfig):
        return BearerVerifier(config)
    if isinstance(config, BasicConfig):
        return BasicVerifier(config)
    if isinstance(config, ApiKeyConfig):
        return ApiKeyVerifier(config)
    if isinstance(config, MtlsConfig):
        return MtlsVerifier(config)
    return NoneVerifier()


def verify(config: VerificationConfig, request: Inbound, *, clock: Clock = time.time) -> Verified:
    """`verifier_for(config, clock=clock).verify(request)`: for one request; keep a verifier for many."""
    return verifier_for(config, clock=clock).verify(request)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _match(given: str, expected: Sequence[bytes]) -> int | None:
    """Which expected digest the given value's is, comparing with every one (constant time each)."""
    mine = _digest(given)
    found = None
    for i, digest in enumerate(expected):
        if hmac.compare_digest(mine, digest) and found is None:
            found = i
    return found


def _timestamp(text: str, name: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise VerificationFailed(MALFORMED_HEADER, f"{name} must be a Unix time in seconds")
    return int(text)


def _within(timestamp: int, now: float, tolerance: int, name: str) -> None:
    if now - timestamp > tolerance:
        raise VerificationFailed(TIMESTAMP_STALE, f"{name} is {int(now - timestamp)} s old; at most {tolerance} s")
    if timestamp - now > tolerance:
        raise VerificationFailed(
            TIMESTAMP_FUTURE, f"{name} is {int(timestamp - now)} s ahead; at most {tolerance} s (a clock off?)"
        )


class StandardWebhooksVerifier:
    """Standard Webhooks v1 (HMAC-SHA256). The signature is checked before the timestamp, so
    `timestamp_stale`/`timestamp_future` are only said of requests that were signed with a configured
    secret: a replay or a sender's clock, not a forgery."""

    method = "standard-webhooks"
    MAX_ID = 256
    MAX_SIGNATURES = 8
    __slots__ = ("_clock", "_macs", "_tolerance")

    def __init__(self, config: StandardWebhooksConfig, *, clock: Clock = time.time) -> None:
        self._macs = tuple(
            hmac.new(signing_key(s.get_secret_value()), digestmod=hashlib.sha256) for s in config.secrets
        )
        self._tolerance = config.tolerance_seconds
        self._clock = clock

    def __repr__(self) -> str:
        return f"StandardWebhooksVerifier({len(self._macs)} secret(s), tolerance {self._tolerance} s)"

    def verify(self, request: Inbound) -> Verified:
        webhook_id = request.required("webhook-id")
        stamp = request.required("webhook-timestamp")
        header = request.required("webhook-signature")
        if len(webhook_id) > self.MAX_ID or not _VISIBLE.fullmatch(webhook_id):
            raise VerificationFailed(
                MALFORMED_HEADER, f"webhook-id must be 1 to {self.MAX_ID} visible ASCII characters"
            )
        timestamp = _timestamp(stamp, "webhook-timestamp")
        entries = header.split()
        if len(entries) > self.MAX_SIGNATURES:
            raise VerificationFailed(MALFORMED_HEADER, f"webhook-signature holds more than {self.MAX_SIGNATURES}")
        signatures = []
        for entry in entries:
            version, sep, encoded = entry.partition(",")
            if not sep or not version or not encoded:
                raise VerificationFailed(MALFORMED_HEADER, "webhook-signature entries must be <version>,<signature>")
            if version != "v1":
                continue  # another scheme (v1a: ed25519), not ours to check
            try:
                signatures.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                raise VerificationFailed(MALFORMED_HEADER, "a webhook-signature v1 entry is not base64") from None
        if not signatures:
            raise VerificationFailed(MALFORMED_HEADER, "webhook-signature holds no v1 signature")
        signed = f"{webhook_id}.{timestamp}.".encode() + request.body
        matched = None
        for i, key in enumerate(self._macs):
            mac = key.copy()
            mac.update(signed)
            expected = mac.digest()
            for signature in signatures:
                if hmac.compare_digest(expected, signature) and matched is None:
                    matched = i
        if matched is None:
            raise VerificationFailed(SIGNATURE_MISMATCH, "no webhook-signature v1 entry matches a configured secret")
        _within(timestamp, self._clock(), self._tolerance, "webhook-timestamp")
        return Verified(self.method, webhook_id=webhook_id, timestamp=timestamp, key_index=matched)


class HmacVerifier:
    """An HMAC of the body (or `<scheme>:<timestamp>:<body>`) in one header."""

    method = "hmac"
    __slots__ = ("_clock", "_encoding", "_header", "_macs", "_prefix", "_size", "_timestamp_header", "_tolerance")

    def __init__(self, config: HmacConfig, *, clock: Clock = time.time) -> None:
        self._macs = tuple(hmac.new(s.get_secret_value().encode(), digestmod=config.algorithm) for s in config.secrets)
        self._size = self._macs[0].digest_size
        self._header = config.header
        self._encoding = config.encoding
        self._prefix = config.prefix
        self._timestamp_header = config.timestamp_header
        self._tolerance = config.tolerance_seconds
        self._clock = clock

    def __repr__(self) -> str:
        return f"HmacVerifier({self._header}, {len(self._macs)} secret(s))"

    def verify(self, request: Inbound) -> Verified:
        value = request.required(self._header)
        timestamp = None
        if self._timestamp_header is not None:
            timestamp = _timestamp(request.required(self._timestamp_header), self._timestamp_header)
        if not value.startswith(self._prefix):
            raise VerificationFailed(MALFORMED_HEADER, f"{self._header} must start with {self._prefix}")
        encoded = value[len(self._prefix) :]
        try:
            if self._encoding == "hex":
                signature = bytes.fromhex(encoded) if encoded.isascii() else b""
            else:
                signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        if len(signature) != self._size:
            raise VerificationFailed(
                MALFORMED_HEADER,
                f"{self._header} must hold {self._encoding} of {self._size} bytes"
                + (f" after {self._prefix}" if self._prefix else ""),
            )
        scheme = b"" if timestamp is None else f"{self._prefix[:-1]}:{timestamp}:".encode()
        signed = scheme + request.body
        matched = None
        for i, key in enumerate(self._macs):
            mac = key.copy()
            mac.update(signed)
            if hmac.compare_digest(mac.digest(), signature) and matched is None:
                matched = i
        if matched is None:
            raise VerificationFailed(SIGNATURE_MISMATCH, f"{self._header} does not match a configured secret")
        if timestamp is not None and self._timestamp_header is not None:
            _within(timestamp, self._clock(), self._tolerance, self._timestamp_header)
        return Verified(self.method, timestamp=timestamp, key_index=matched)


def _authorization(request: Inbound, scheme: str) -> str:
    value = request.required("Authorization")
    given, _, credentials = value.partition(" ")
    if given.lower() != scheme.lower() or not credentials.strip():
        raise VerificationFailed(MALFORMED_HEADER, f"Authorization must be {scheme} <credentials>")
    return credentials.strip()


class BearerVerifier:
    method = "bearer"
    __slots__ = ("_digests",)

    def __init__(self, config: BearerConfig) -> None:
        self._digests = tuple(_digest(t.get_secret_value()) for t in config.tokens)

    def __repr__(self) -> str:
        return f"BearerVerifier({len(self._digests)} token(s))"

    def verify(self, request: Inbound) -> Verified:
        matched = _match(_authorization(request, "Bearer"), self._digests)
        if matched is None:
            raise VerificationFailed(CREDENTIALS_MISMATCH, "the bearer token is not a configured one")
        return Verified(self.method, key_index=matched)


class BasicVerifier:
    method = "basic"
    __slots__ = ("_password", "_username", "_username_digest")

    def __init__(self, config: BasicConfig) -> None:
        self._username = config.username
        self._username_digest = _digest(config.username)
        self._password = _digest(config.password.get_secret_value())

    def __repr__(self) -> str:
        return f"BasicVerifier({self._username!r})"

    def verify(self, request: Inbound) -> Verified:
        encoded = _authorization(request, "Basic")
        try:
            username, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            raise VerificationFailed(MALFORMED_HEADER, "Authorization Basic must be base64 of UTF-8 text") from None
        if not sep:
            raise VerificationFailed(MALFORMED_HEADER, "Authorization Basic must hold <user>:<password>")
        user_ok = hmac.compare_digest(_digest(username), self._username_digest)
        password_ok = hmac.compare_digest(_digest(password), self._password)
        if not (user_ok and password_ok):  # one answer for both: which was wrong is not told
            raise VerificationFailed(CREDENTIALS_MISMATCH, "the user name or password is not the configured one")
        return Verified(self.method, principal=self._username)


class ApiKeyVerifier:
    method = "api-key"
    __slots__ = ("_digests", "_header")

    def __init__(self, config: ApiKeyConfig) -> None:
        self._header = config.header
        self._digests = tuple(_digest(k.get_secret_value()) for k in config.keys)

    def __repr__(self) -> str:
        return f"ApiKeyVerifier({self._header}, {len(self._digests)} key(s))"

    def verify(self, request: Inbound) -> Verified:
        matched = _match(request.required(self._header), self._digests)
        if matched is None:
            raise VerificationFailed(CREDENTIALS_MISMATCH, f"{self._header} is not a configured key")
        return Verified(self.method, key_index=matched)


def _names(certificate: x509.Certificate) -> list[str]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    san = extension.value
    return (
        [f"DNS:{name.lower()}" for name in san.get_values_for_type(x509.DNSName)]
        + [f"URI:{name}" for name in san.get_values_for_type(x509.UniformResourceIdentifier)]
        + [f"email:{name}" for name in san.get_values_for_type(x509.RFC822Name)]
        + [f"IP:{address}" for address in san.get_values_for_type(x509.IPAddress)]
    )


class MtlsVerifier:
    """The leaf certificate of the ASGI TLS extension's `client_cert_chain` (PEM), already verified by the
    TLS server, against the configured subjects (as `x509.Name`s: attribute order and types, values
    exactly) and SANs (DNS names case-insensitively)."""

    method = "mtls"
    __slots__ = ("_sans", "_subjects")

    def __init__(self, config: MtlsConfig) -> None:
        self._subjects = [(text, _dn(text)) for text in config.subjects]
        self._sans = config.sans

    def __repr__(self) -> str:
        return f"MtlsVerifier({len(self._subjects)} subject(s), {len(self._sans)} SAN(s))"

    def verify(self, request: Inbound) -> Verified:
        tls = request.tls
        chain = tls.get("client_cert_chain") if tls else None
        if not tls or not chain:
            raise VerificationFailed(MISSING_CERTIFICATE, "the connection has no client certificate")
        if tls.get("client_cert_error"):
            raise VerificationFailed(MALFORMED_CERTIFICATE, "the TLS server did not accept the client certificate")
        leaf = chain[0]
        try:
            certificate = x509.load_pem_x509_certificate(leaf.encode() if isinstance(leaf, str) else leaf)
        except (ValueError, TypeError):
            raise VerificationFailed(MALFORMED_CERTIFICATE, "the client certificate is not PEM") from None
        for text, name in self._subjects:
            if certificate.subject == name:
                return Verified(self.method, principal=text)
        names = _names(certificate)
        for san in self._sans:
            if san in names:
                return Verified(self.method, principal=san)
        raise VerificationFailed(
            CERTIFICATE_MISMATCH,
            f"client certificate {certificate.subject.rfc4514_string(_DN_TEXT)} is not a configured subject or SAN",
        )


class NoneVerifier:
    method = "none"
    __slots__ = ()

    def __repr__(self) -> str:
        return "NoneVerifier()"

    def verify(self, request: Inbound) -> Verified:
        return Verified(self.method)
