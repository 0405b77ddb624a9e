"""Subscriptions (abonnementen) and the question "does this subscription want this event?".

A subscription is read from the abonnement JSON of the ZGW notifications API
(`callbackUrl`, `auth`, `kanalen[].naam`, `kanalen[].filters`), optionally with
OpenConnector-style event type patterns (`types`). It is validated whole: every
fault is collected and the subscription is refused with all of them.

Matching:
  * `types`: the event `type` matches one of the patterns (`*` = any run of
    characters); no patterns = no constraint.
  * `kanalen`: at least one kanaal matches (OR). A kanaal matches when the
    event's kanaal equals `naam` and every filter matches (AND).
  * The event's kanaal, `#resource` and `#action` come from the extension
    attributes `kanaal`, `resource`, `action` if present, else from a type
    `nl.overheid.<kanaal>.<resource>.<action>` (the kanaal alone from any
    `nl.overheid.<kanaal>.…` type).
  * Other filter keys look up the event attribute of that name, then the
    top-level key of a JSON object `data`.
  * A filter value `*` matches any value, or none. Any other value must equal
    the event's value (booleans compare as True/False, case-insensitively).
    An event that lacks the key does not match: a filter that narrows, e.g.
    on `vertrouwelijkheidaanduiding`, never lets unlabelled events through.
    (Open Notificaties skips absent keys; we chose the safer reading.)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from outbox._errors import InvalidSubscriptionError
from outbox._event import CloudEvent

ContentMode = Literal["structured", "binary", "batched"]
CONTENT_MODES: tuple[ContentMode, ...] = ("structured", "binary", "batched")
ANY_VALUE = "*"

_HEADER_VALUE = re.compile(r"^[\x20-\x7e\x80-\xff]+$")
_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9.\-_:/*]+$")
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_ABONNEMENT_KEYS = frozenset({"url", "callbackUrl", "auth", "kanalen", "types", "contentMode", "orderingKey", "status"})


@dataclass(frozen=True)
class Kanaal:
    """One channel of an abonnement: its `naam` and its AND-ed `filters`."""

    naam: str
    filters: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"naam": self.naam, "filters": dict(self.filters)}


@dataclass(frozen=True)
class Subscription:
    """A subscriber's webhook and what it wants. `auth` is a secret: see `auth_hint`."""

    callback_url: str
    auth: str | None = None
    kanalen: tuple[Kanaal, ...] = ()
    types: tuple[str, ...] = ()
    content_mode: ContentMode = "structured"
    status: Literal["active", "paused"] = "active"
    paused_reason: str | None = None
    ordering_key: str | None = None
    allow_insecure: bool = False
    id: str | None = None
    handshake_at: datetime | None = None
    created_at: datetime | None = None
    # How delivery was agreed: "handshake" (the OPTIONS handshake succeeded) or "out-of-band".
    agreement: Literal["handshake", "out-of-band"] = "out-of-band"
    requested_rate: int | None = None  # requests per minute asked in the handshake
    allowed_rate: str | None = None  # WebHook-Allowed-Rate as answered: a number per minute, or "*"

    @classmethod
    def create(
        cls,
        *,
        callback_url: object,
        auth: object = None,
        kanalen: object = (),
        types: object = (),
        content_mode: object = "structured",
        ordering_key: object = None,
        allow_insecure: bool = False,
    ) -> Subscription:
        """A new, validated subscription; raises `InvalidSubscriptionError` listing every fault."""
        problems: list[str] = []
        url = _check_callback_url(callback_url, allow_insecure, problems)
        secret = _check_auth(auth, problems)
        parsed_kanalen = _check_kanalen(kanalen, problems)
        parsed_types = _check_types(types, problems)
        if content_mode not in CONTENT_MODES:
            problems.append(f"contentMode: must be one of {', '.join(CONTENT_MODES)}, got {content_mode!r}")
        if ordering_key is not None and (not isinstance(ordering_key, str) or not _ATTRIBUTE_NAME.match(ordering_key)):
            problems.append("orderingKey: must be an event attribute name (lowercase a-z0-9, at most 20 characters)")
        if not parsed_kanalen and not parsed_types and not problems:
            problems.append(
                "kanalen: a subscription needs at least one kanaal or one type pattern ('*' for all events)"
            )
        if problems:
            raise InvalidSubscriptionError(problems)
        return cls(
            callback_url=url,
            auth=secret,
            kanalen=parsed_kanalen,
            types=parsed_types,
            content_mode=content_mode,  # type: ignore[arg-type]
            ordering_key=ordering_key,  # type: ignore[arg-type]
            allow_insecure=allow_insecure,
        )

    @classmethod
    def from_abonnement(cls, document: object, *, allow_insecure: bool = False) -> Subscription:
        """A subscription from the abonnement JSON (decoded), e.g.
        ``{"callbackUrl": "https://…", "auth": "Bearer …", "kanalen": [{"naam": "zaken", "filters": {…}}]}``.
        Also accepted: ``types`` (event type patterns), ``contentMode``, ``orderingKey``;
        a read-only ``url`` from an exported abonnement is ignored."""
        if not isinstance(document, Mapping):
            raise InvalidSubscriptionError(["abonnement: must be a JSON object"])
        unknown = sorted(set(document) - _ABONNEMENT_KEYS)
        problems = [f"{key}: is not a field of an abonnement" for key in unknown]
        if "callbackUrl" not in document:
            problems.append("callbackUrl: is required")
        if problems:
            raise InvalidSubscriptionError(problems)
        return cls.create(
            callback_url=document["callbackUrl"],
            auth=document.get("auth"),
            kanalen=document.get("kanalen", ()),
            types=document.get("types", ()),
            content_mode=document.get("contentMode", "structured"),
            ordering_key=document.get("orderingKey"),
            allow_insecure=allow_insecure,
        )

    # -- presentation ---------------------------------------------------------------

    @property
    def auth_hint(self) -> str | None:
        """What may be shown of `auth`: its scheme and last 4 characters at most."""
        return auth_hint(self.auth)

    def to_public_dict(self) -> dict[str, Any]:
        """Everything but the secret, for `list`/`show` and logs."""
        return {
            "id": self.id,
            "callbackUrl": self.callback_url,
            "auth": self.auth_hint,
            "kanalen": [k.to_dict() for k in self.kanalen],
            "types": list(self.types),
            "contentMode": self.content_mode,
            "status": self.status,
            "pausedReason": self.paused_reason,
            "orderingKey": self.ordering_key,
            "allowInsecure": self.allow_insecure,
            "agreement": self.agreement,
            "handshakeAt": self.handshake_at.isoformat() if self.handshake_at else None,
            "requestedRate": self.requested_rate,
            "allowedRate": self.allowed_rate,
            "createdAt": self.created_at.isoformat() if self.created_at else None,
        }

    def __repr__(self) -> str:  # never the secret, even in a traceback
        return f"Subscription(id={self.id!r}, callback_url={self.callback_url!r}, auth={self.auth_hint!r})"

    # -- matching -----------------------------------------------------------------------

    def wants(self, event: CloudEvent) -> bool:
        """Does this subscription want `event`? (Its active/paused status is not considered.)"""
        return matches(self, event)


def auth_hint(auth: str | None) -> str | None:
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    if not token:
        scheme, token = "", auth
    tail = token[-4:] if len(token) >= 12 else ""
    return f"{scheme + ' ' if scheme else ''}…{tail}"


# -- validation helpers -------------------------------------------------------------------


def _check_callback_url(value: object, allow_insecure: bool, problems: list[str]) -> str:
    if not isinstance(value, str) or not value:
        problems.append("callbackUrl: must be a non-empty URL")
        return ""
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        problems.append(f"callbackUrl: is not a valid URL ({exc})")
        return value
    if parts.scheme not in ("https", "http") or not hostname:
        problems.append("callbackUrl: must be an absolute https:// URL")
        return value
    if parts.username or parts.password:
        problems.append("callbackUrl: must not carry credentials; put them in auth")
    if parts.fragment:
        problems.append("callbackUrl: must not have a #fragment")
    if not allow_insecure:
        if parts.scheme != "https":
            problems.append("callbackUrl: must use https (allow http:// explicitly with --allow-insecure)")
        if _is_private_host(hostname):
            problems.append(
                f"callbackUrl: {hostname} is a loopback or private address (allow it explicitly with --allow-insecure)"
            )
    return value


def _is_private_host(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return not address.is_global


def _check_auth(value: object, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append("auth: must be a non-empty string, e.g. 'Bearer <token>'")
        return None
    if not _HEADER_VALUE.match(value) or value != value.strip():
        # Never echo the value: it is a secret.
        problems.append("auth: must be a single-line header value without control characters or outer spaces")
        return None
    return value


def _check_kanalen(value: object, problems: list[str]) -> tuple[Kanaal, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        problems.append("kanalen: must be a list of {naam, filters} objects")
        return ()
    result = []
    for i, item in enumerate(value):
        where = f"kanalen[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be an object with naam and filters")
            continue
        for key in sorted(set(item) - {"naam", "filters"}):
            problems.append(f"{where}.{key}: is not a field of a kanaal (naam, filters)")
        naam = item.get("naam")
        if not isinstance(naam, str) or not naam.strip():
            problems.append(f"{where}.naam: must be a non-empty string")
            continue
        filters = item.get("filters", {})
        if filters is None:
            filters = {}
        if not isinstance(filters, Mapping):
            problems.append(f"{where}.filters: must be an object of key: value strings")
            continue
        clean: dict[str, str] = {}
        for key, val in filters.items():
            if not isinstance(key, str) or not key:
                problems.append(f"{where}.filters: keys must be non-empty strings")
            elif not isinstance(val, str):
                problems.append(f"{where}.filters.{key}: the value must be a single string")
            else:
                clean[key] = val
        result.append(Kanaal(naam=naam, filters=clean))
    return tuple(result)


def _check_types(value: object, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        problems.append("types: must be a list of event type patterns")
        return ()
    result = []
    for i, pattern in enumerate(value):
        if not isinstance(pattern, str) or not _TYPE_PATTERN.match(pattern):
            problems.append(
                f"types[{i}]: must be an event type pattern of letters, digits, . - _ : / and * (got {pattern!r})"
            )
        else:
            result.append(pattern)
    return tuple(result)


# -- matching ----------------------------------------------------------------------------------

_pattern_cache: dict[str, re.Pattern[str]] = {}


def type_matches(pattern: str, event_type: str) -> bool:
    """`*` matches any run of characters; everything else literally."""
    compiled = _pattern_cache.get(pattern)
    if compiled is None:
        compiled = re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")
        _pattern_cache[pattern] = compiled
    return compiled.match(event_type) is not None


def routing_keys(event: CloudEvent) -> dict[str, str]:
    """The kanaal, #resource and #action of an event (those that can be known)."""
    keys: dict[str, str] = {}
    parts = event.type.split(".")
    if len(parts) >= 3 and parts[0] == "nl" and parts[1] == "overheid":
        keys["kanaal"] = parts[2]
        if len(parts) == 5:
            keys["#resource"] = parts[3]
            keys["#action"] = parts[4]
    for name, key in (("kanaal", "kanaal"), ("resource", "#resource"), ("action", "#action")):
        value = event.get(name)
        if value is not None:
            keys[key] = _as_text(value)
    return keys


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _value_of(event: CloudEvent, key: str, keys: Mapping[str, str]) -> str | None:
    if key in keys:
        return keys[key]
    value = event.get(key)
    if value is None:
        data = event.data if event.data_base64 is None else None
        if isinstance(data, Mapping):
            value = data.get(key)
    if value is None or isinstance(value, dict | list):
        return None
    return _as_text(value)


def _filter_matches(expected: str, actual: str | None) -> bool:
    if expected == ANY_VALUE:
        return True
    if actual is None:
        return False
    if actual.lower() in ("true", "false"):
        return expected.lower() == actual.lower()
    return expected == actual


def kanaal_matches(kanaal: Kanaal, event: CloudEvent, keys: Mapping[str, str] | None = None) -> bool:
    keys = routing_keys(event) if keys is None else keys
    if keys.get("kanaal") != kanaal.naam:
        return False
    return all(_filter_matches(expected, _value_of(event, key, keys)) for key, expected in kanaal.filters.items())


def matches(subscription: Subscription, event: CloudEvent) -> bool:
    """Does `subscription` want `event`? Types ANDed with kanalen; kanalen ORed; filters ANDed."""
    if subscription.types and not any(type_matches(p, event.type) for p in subscription.types):
        return False
    if subscription.kanalen:
        keys = routing_keys(event)
        return any(kanaal_matches(k, event, keys) for k in subscription.kanalen)
    return True
