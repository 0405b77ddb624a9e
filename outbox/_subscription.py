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
  * `cloudeventFilters` (Open Notificaties' `/cloudevents` groups): a group matches when its
    `typeSubstring` occurs in the event `type` (case-sensitive) and each of its `filters` keys is
    absent from the event's `data` object, or equals the value there, or the value is `*`
    (Open Notificaties' rules, absent keys included). An event matches when any kanaal OR any
    cloudeventFilters group matches; with neither, only the other rules decide.
  * `source` (CloudEvents Subscriptions API): only events with exactly this `source`.
  * `types`, `source` and the Subscriptions API `filters` AND on top of all of the above.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit

from outbox._errors import InvalidSubscriptionError
from outbox._event import CloudEvent
from outbox._filters import EventView, Filter, compile_filters, filters_match
from outbox._operational import is_operational, opts_in

ContentMode = Literal["structured", "binary", "batched"]
CONTENT_MODES: tuple[ContentMode, ...] = ("structured", "binary", "batched")
AuthKind = Literal["none", "static", "oauth2", "zgw"]
ANY_VALUE = "*"
BATCH_MAX_LIMIT = 1000

_HEADER_VALUE = re.compile(r"^[\x20-\x7e\x80-\xff]+$")
_MEDIA_TYPE = re.compile(r"^[!-~]+/[!-~]+( *;[\x20-\x7e]*)?\Z")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")  # controls and spaces: never part of a URL as sent
_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9.\-_:/*]+$")
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
_ABONNEMENT_KEYS = frozenset(
    {
        "url", "callbackUrl", "auth", "kanalen", "types", "filters", "contentMode", "orderingKey", "status",
        "batchMax", "contentType", "rate", "preflight", "oauth2", "zgw", "signingSecrets",
        "caBundle", "clientCert", "clientKey", "allowQueryToken", "sendCloudevents", "cloudeventFilters",
        "source", "headers",
    }
)  # fmt: skip
# Header names a subscription may not set (protocolsettings.headers): ours to send, or hop-by-hop.
RESERVED_HEADERS = frozenset(
    {
        "authorization", "content-type", "content-length", "host", "user-agent", "transfer-encoding",
        "connection", "keep-alive", "te", "trailer", "upgrade", "expect", "proxy-authorization", "cookie",
    }
)  # fmt: skip
RESERVED_HEADER_PREFIXES = ("ce-", "webhook-")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")  # RFC 9110 token
# RFC 6750 §2.3: the one query parameter that carries a bearer token.
QUERY_TOKEN_PARAMETER = "access_token"  # noqa: S105 (a parameter name, not a secret)


@dataclass(frozen=True)
class Kanaal:
    """One channel of an abonnement: its `naam` and its AND-ed `filters`."""

    naam: str
    filters: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"naam": self.naam, "filters": dict(self.filters)}


@dataclass(frozen=True)
class CloudEventFilter:
    """One of Open Notificaties' `cloudeventFilters` groups: a substring of the event type and
    filters on the event's `data` (an absent key passes)."""

    type_substring: str
    filters: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"typeSubstring": self.type_substring, "filters": dict(self.filters)}


@dataclass(frozen=True)
class OAuth2Client:
    """OAuth 2.0 client credentials (RFC 6749 §4.4): the worker fetches and caches the token."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None


@dataclass(frozen=True)
class ZgwClient:
    """The ZGW JWT that Open Notificaties sends: HS256 with this client id and secret."""

    client_id: str
    secret: str = field(repr=False)


class SecretsNotOpened(RuntimeError):
    """A subscription read without opening its secrets was asked for them (to store or merge it)."""

    def __init__(self, subscription_id: str | None) -> None:
        super().__init__(f"subscription {subscription_id}: its secrets were not opened (read it with the box)")


@dataclass(frozen=True)
class SealedSecrets:
    """What may be shown of the secrets of a subscription read without opening them (listings,
    reads): kept in clear beside the sealed secrets whenever they are written."""

    auth_hint: str | None = None  # `auth_hint(auth)`; None: no static auth
    signing_secrets: int = 0
    header_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subscription:
    """A subscriber's webhook and what it wants. Secrets (`auth`, client secrets, signing secrets,
    the client key, header values) never appear in a repr or in `to_public_dict`.

    `sealed` is set when it was read without opening its secrets: then the secret fields are empty
    and the presentation (`auth_kind`, `auth_hint`, `header_names`, `to_public_dict`) uses it."""

    callback_url: str
    auth: str | None = field(default=None, repr=False)
    kanalen: tuple[Kanaal, ...] = ()
    types: tuple[str, ...] = ()
    # CloudEvents Subscriptions API filter expressions (and JSON Logic), compiled; all must hold.
    filters: tuple[Filter, ...] = ()
    content_mode: ContentMode = "structured"
    status: Literal["active", "paused"] = "active"
    paused_reason: str | None = None
    ordering_key: str | None = None
    allow_insecure: bool = False
    id: str | None = None
    handshake_at: datetime | None = None
    created_at: datetime | None = None
    # How delivery was agreed: "handshake" (at registration), "preflight" (before deliveries), "probe" (a
    # verification event, for receivers without the handshake) or "out-of-band". See `verification`.
    agreement: Literal["handshake", "out-of-band", "preflight", "probe"] = "out-of-band"
    requested_rate: int | None = None  # requests per minute: asked in the handshake, and our own limit
    allowed_rate: str | None = None  # WebHook-Allowed-Rate as answered: a number per minute, or "*"
    batch_max: int = 100  # batched mode: events per POST at most
    content_type: str | None = None  # sent instead of the content mode's Content-Type
    preflight: bool = False  # handshake before deliveries instead of at registration
    allow_query_token: bool = False  # the operator forced an access_token in the callback URL
    oauth2: OAuth2Client | None = None
    zgw: ZgwClient | None = None
    signing_secrets: tuple[str, ...] = field(default=(), repr=False)  # Standard Webhooks; newest first
    ca_bundle: str | None = None  # PEM; replaces the default trust store
    client_cert: str | None = None  # PEM, for mutual TLS
    client_key: str | None = field(default=None, repr=False)  # PEM, a secret
    updated_at: datetime | None = None
    source: str | None = None  # only events with exactly this source (Subscriptions API)
    # Sent with every request (Subscriptions API protocolsettings); the values are secrets.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    send_cloudevents: bool = True  # Open Notificaties' flag; every delivery here is a CloudEvent
    cloudevent_filters: tuple[CloudEventFilter, ...] = ()
    owner: str | None = None  # the API client that made it (None: the command line)
    sealed: SealedSecrets | None = field(default=None, repr=False)

    @property
    def auth_kind(self) -> AuthKind:
        if self.oauth2 is not None:
            return "oauth2"
        if self.zgw is not None:
            return "zgw"
        return "static" if self.auth or (self.sealed is not None and self.sealed.auth_hint) else "none"

    @property
    def header_names(self) -> tuple[str, ...]:
        """The names of `headers` (their values are secrets)."""
        return self.sealed.header_names if self.sealed is not None else tuple(name for name, _ in self.headers)

    @property
    def signing_secret_count(self) -> int:
        return self.sealed.signing_secrets if self.sealed is not None else len(self.signing_secrets)

    def hints(self) -> SealedSecrets:
        """What may be shown of its secrets, stored in clear beside them."""
        if self.sealed is not None:
            return self.sealed
        return SealedSecrets(auth_hint(self.auth), len(self.signing_secrets), self.header_names)

    @property
    def rate_per_minute(self) -> int | None:
        """The rate deliveries keep to: the smaller of ours and the target's (None: no limit)."""
        rates = [r for r in (self.requested_rate, _int_or_none(self.allowed_rate)) if r is not None]
        return min(rates) if rates else None

    def secrets(self) -> dict[str, Any]:
        """Every secret, as stored (encrypted when a key is set)."""
        if self.sealed is not None:
            raise SecretsNotOpened(self.id)
        found: dict[str, Any] = {}
        if self.auth:
            found["auth"] = self.auth
        if self.oauth2 is not None:
            found["oauth2_client_secret"] = self.oauth2.client_secret
        if self.zgw is not None:
            found["zgw_secret"] = self.zgw.secret
        if self.signing_secrets:
            found["signing_secrets"] = list(self.signing_secrets)
        if self.client_key:
            found["client_key"] = self.client_key
        if self.headers:
            found["headers"] = dict(self.headers)
        return found

    @classmethod
    def create(
        cls,
        *,
        callback_url: object,
        auth: object = None,
        kanalen: object = (),
        types: object = (),
        filters: object = (),
        content_mode: object = "structured",
        ordering_key: object = None,
        allow_insecure: bool = False,
        batch_max: object = 100,
        content_type: object = None,
        rate: object = None,
        preflight: object = False,
        oauth2: object = None,
        zgw: object = None,
        signing_secrets: object = (),
        ca_bundle: object = None,
        client_cert: object = None,
        client_key: object = None,
        allow_query_token: object = False,
        source: object = None,
        headers: object = None,
        send_cloudevents: object = True,
        cloudevent_filters: object = (),
    ) -> Subscription:
        """A new, validated subscription; raises `InvalidSubscriptionError` listing every fault.

        `oauth2` is a mapping with token_url, client_id, client_secret and optional scope; `zgw` one
        with client_id and secret (camelCase keys as in the abonnement JSON are accepted too)."""
        problems: list[str] = []
        url = _check_callback_url(callback_url, allow_insecure, problems)
        forced_query_token = _check_flag(allow_query_token, "allowQueryToken", problems)
        _check_query_token(url, forced_query_token, problems)
        secret = _check_auth(auth, problems)
        parsed_kanalen = _check_kanalen(kanalen, problems)
        parsed_types = _check_types(types, problems)
        parsed_filters = compile_filters(filters, problems)
        if content_mode not in CONTENT_MODES:
            problems.append(f"contentMode: must be one of {', '.join(CONTENT_MODES)}, got {content_mode!r}")
        if ordering_key is not None and (not isinstance(ordering_key, str) or not _ATTRIBUTE_NAME.match(ordering_key)):
            problems.append("orderingKey: must be an event attribute name (lowercase a-z0-9, at most 20 characters)")
        if isinstance(batch_max, bool) or not isinstance(batch_max, int) or not 1 <= batch_max <= BATCH_MAX_LIMIT:
            problems.append(f"batchMax: must be a whole number from 1 to {BATCH_MAX_LIMIT}, got {batch_max!r}")
        if content_type is not None and (not isinstance(content_type, str) or not _MEDIA_TYPE.match(content_type)):
            problems.append(
                "contentType: must be a media type such as 'application/cloudevents+json' "
                f"(optionally with '; parameters'), got {content_type!r}"
            )
        if isinstance(content_type, str) and content_mode in CONTENT_MODES:
            expected = {"structured": "application/cloudevents+json", "batched": "application/cloudevents-batch+json"}
            if content_mode == "binary":
                problems.append("contentType: binary mode sends each event's datacontenttype; no override")
            elif content_type.split(";")[0].strip().lower() != expected[str(content_mode)]:
                problems.append(
                    f"contentType: {content_mode} mode needs {expected[str(content_mode)]} "
                    "(only its parameters, e.g. '; charset=utf-8', may differ)"
                )
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
            problems.append(f"rate: must be a whole number of requests per minute, at least 1, got {rate!r}")
        wants_preflight = _check_flag(preflight, "preflight", problems)
        oauth2_client = _check_oauth2(oauth2, allow_insecure, problems)
        zgw_client = _check_zgw(zgw, problems)
        if sum(x is not None for x in (secret, oauth2_client, zgw_client)) > 1:
            problems.append("auth: choose one of auth, oauth2 and zgw (a request carries one Authorization header)")
        if forced_query_token and (secret or oauth2_client or zgw_client):
            problems.append("allowQueryToken: the token is in the URL; an Authorization header would be a second one")
        signing = _check_signing_secrets(signing_secrets, problems)
        ca = _check_pem(ca_bundle, "caBundle", "CERTIFICATE", problems)
        cert = _check_pem(client_cert, "clientCert", "CERTIFICATE", problems)
        key = _check_pem(client_key, "clientKey", "PRIVATE KEY", problems, secret=True)
        if (cert is None) != (key is None):
            problems.append("clientCert: mutual TLS needs both clientCert and clientKey")
        if (ca or cert) and isinstance(url, str) and url.startswith("http://"):
            problems.append("caBundle: TLS options need an https:// callbackUrl")
        parsed_source = _check_source(source, problems)
        parsed_headers = _check_headers(headers, problems)
        wants_cloudevents = _check_flag(send_cloudevents, "sendCloudevents", problems)
        parsed_groups = _check_cloudevent_filters(cloudevent_filters, problems)
        if parsed_groups and send_cloudevents is False:
            problems.append(
                "cloudeventFilters: need sendCloudevents true (with false they would be a rule never applied)"
            )
        if not parsed_kanalen and not parsed_types and not parsed_groups and not problems:
            problems.append(
                "kanalen: a subscription needs at least one kanaal or one type pattern ('*' for all events), "
                "or a cloudeventFilters group"
            )
        if problems:
            raise InvalidSubscriptionError(problems)
        return cls(
            callback_url=url,
            auth=secret,
            kanalen=parsed_kanalen,
            types=parsed_types,
            filters=parsed_filters,
            content_mode=content_mode,  # type: ignore[arg-type]
            ordering_key=ordering_key,  # type: ignore[arg-type]
            allow_insecure=allow_insecure,
            batch_max=batch_max,  # type: ignore[arg-type]
            content_type=content_type,  # type: ignore[arg-type]
            requested_rate=rate,  # type: ignore[arg-type]
            preflight=wants_preflight,
            agreement="preflight" if wants_preflight else "out-of-band",
            allow_query_token=forced_query_token,
            oauth2=oauth2_client,
            zgw=zgw_client,
            signing_secrets=signing,
            ca_bundle=ca,
            client_cert=cert,
            client_key=key,
            source=parsed_source,
            headers=parsed_headers,
            send_cloudevents=wants_cloudevents,
            cloudevent_filters=parsed_groups,
        )

    @classmethod
    def from_abonnement(cls, document: object, *, allow_insecure: bool = False) -> Subscription:
        """A subscription from the abonnement JSON (decoded), e.g.
        ``{"callbackUrl": "https://…", "auth": "Bearer …", "kanalen": [{"naam": "zaken", "filters": {…}}]}``.
        Also accepted: ``types`` (event type patterns), ``contentMode``, ``orderingKey``, ``batchMax``,
        ``contentType``, ``rate``, ``preflight``, ``oauth2`` ({tokenUrl, clientId, clientSecret, scope}),
        ``zgw`` ({clientId, secret}), ``signingSecrets`` (list), ``caBundle``/``clientCert``/``clientKey``
        (PEM text), ``allowQueryToken``, Open Notificaties' ``sendCloudevents`` and ``cloudeventFilters``, the
        Subscriptions API's ``source`` and ``headers``; a read-only ``url`` from an exported abonnement is
        ignored. Every fault is reported at once."""
        if not isinstance(document, Mapping):
            raise InvalidSubscriptionError(["abonnement: must be a JSON object"])
        unknown = sorted(set(document) - _ABONNEMENT_KEYS)
        problems = [f"{key}: is not a field of an abonnement" for key in unknown]
        if "callbackUrl" not in document:
            problems.append("callbackUrl: is required")
        try:
            subscription = cls._from_fields(document, allow_insecure)
        except InvalidSubscriptionError as exc:
            # Every fault at once; a missing callbackUrl is said once ("is required").
            missing = "callbackUrl" not in document
            problems += [p for p in exc.problems if not (missing and p.startswith("callbackUrl:"))]
            raise InvalidSubscriptionError(problems) from None
        if problems:
            raise InvalidSubscriptionError(problems)
        return subscription

    @classmethod
    def _from_fields(cls, document: Mapping[str, Any], allow_insecure: bool) -> Subscription:
        return cls.create(
            callback_url=document.get("callbackUrl"),
            auth=document.get("auth"),
            kanalen=document.get("kanalen", ()),
            types=document.get("types", ()),
            filters=document.get("filters", ()),
            content_mode=document.get("contentMode", "structured"),
            ordering_key=document.get("orderingKey"),
            allow_insecure=allow_insecure,
            batch_max=document.get("batchMax", 100),
            content_type=document.get("contentType"),
            rate=document.get("rate"),
            preflight=document.get("preflight", False),
            oauth2=document.get("oauth2"),
            zgw=document.get("zgw"),
            signing_secrets=document.get("signingSecrets", ()),
            ca_bundle=document.get("caBundle"),
            client_cert=document.get("clientCert"),
            client_key=document.get("clientKey"),
            allow_query_token=document.get("allowQueryToken", False),
            send_cloudevents=document.get("sendCloudevents", True),
            cloudevent_filters=document.get("cloudeventFilters", ()),
            source=document.get("source"),
            headers=document.get("headers"),
        )

    def to_abonnement(self, *, secrets: bool = True) -> dict[str, Any]:
        """The fields `create` takes, secrets included (for `subscriptions update`: change, re-check);
        with `secrets=False` without them (auth, signingSecrets, clientKey, headers, the oauth2 and
        zgw secrets), which also serves a subscription whose secrets were not opened."""
        if not secrets:
            full = replace(self, sealed=None).to_abonnement()
            for key in ("auth", "signingSecrets", "clientKey", "headers"):
                del full[key]
            for kind, secret in (("oauth2", "clientSecret"), ("zgw", "secret")):
                if full[kind] is not None:
                    del full[kind][secret]
            return full
        if self.sealed is not None:
            raise SecretsNotOpened(self.id)
        return {
            "callbackUrl": self.callback_url,
            "auth": self.auth,
            "kanalen": [k.to_dict() for k in self.kanalen],
            "types": list(self.types),
            "filters": [f.to_json() for f in self.filters],
            "contentMode": self.content_mode,
            "orderingKey": self.ordering_key,
            "batchMax": self.batch_max,
            "contentType": self.content_type,
            "rate": self.requested_rate,
            "preflight": self.preflight,
            "oauth2": None
            if self.oauth2 is None
            else {
                "tokenUrl": self.oauth2.token_url,
                "clientId": self.oauth2.client_id,
                "clientSecret": self.oauth2.client_secret,
                "scope": self.oauth2.scope,
            },
            "zgw": None if self.zgw is None else {"clientId": self.zgw.client_id, "secret": self.zgw.secret},
            "signingSecrets": list(self.signing_secrets),
            "caBundle": self.ca_bundle,
            "clientCert": self.client_cert,
            "clientKey": self.client_key,
            "allowQueryToken": self.allow_query_token,
            "sendCloudevents": self.send_cloudevents,
            "cloudeventFilters": [g.to_dict() for g in self.cloudevent_filters],
            "source": self.source,
            "headers": dict(self.headers),
        }

    # -- presentation ---------------------------------------------------------------

    @property
    def verification(self) -> dict[str, Any]:
        """How the callback was verified, for `show` and the APIs: `method` handshake (at registration
        or pre-flight) | probe | operator (out of band), `at` (when; None before a first pre-flight),
        and `verified`, in words."""
        method = {"handshake": "handshake", "preflight": "handshake", "probe": "probe"}.get(self.agreement, "operator")
        if self.agreement == "handshake":
            verified = "the target allowed our origin in the OPTIONS handshake"
        elif self.agreement == "preflight":
            verified = "the OPTIONS handshake runs before deliveries (pre-flight)"
        elif self.agreement == "probe":
            checked = " and refused it without them (401/403)" if has_credentials(self) else ""
            verified = f"the target accepted a {PROBE_TYPE} event with the subscription's credentials{checked}"
        else:
            verified = "nothing: the operator registered it (agreed out of band)"
        return {"method": method, "at": self.handshake_at.isoformat() if self.handshake_at else None,
                "verified": verified}  # fmt: skip

    @property
    def auth_hint(self) -> str | None:
        """What may be shown of `auth`: its scheme and last 4 characters at most."""
        return self.sealed.auth_hint if self.sealed is not None else auth_hint(self.auth)

    def to_public_dict(self) -> dict[str, Any]:
        """Everything but the secrets, for `list`/`show` and logs."""
        return {
            "id": self.id,
            "callbackUrl": public_url(self.callback_url),
            "auth": self.auth_hint,
            "authKind": self.auth_kind,
            "kanalen": [k.to_dict() for k in self.kanalen],
            "types": list(self.types),
            "filters": [f.to_json() for f in self.filters],
            "contentMode": self.content_mode,
            "batchMax": self.batch_max,
            "contentType": self.content_type,
            "status": self.status,
            "pausedReason": self.paused_reason,
            "orderingKey": self.ordering_key,
            "allowInsecure": self.allow_insecure,
            "allowQueryToken": self.allow_query_token,
            "agreement": self.agreement,
            "verification": self.verification,
            "preflight": self.preflight,
            "handshakeAt": self.handshake_at.isoformat() if self.handshake_at else None,
            "requestedRate": self.requested_rate,
            "allowedRate": self.allowed_rate,
            "oauth2": None
            if self.oauth2 is None
            else {
                "tokenUrl": public_url(self.oauth2.token_url),
                "clientId": self.oauth2.client_id,
                "scope": self.oauth2.scope,
                "clientSecret": "(set)",
            },
            "zgw": None if self.zgw is None else {"clientId": self.zgw.client_id, "secret": "(set)"},
            "signingSecrets": self.signing_secret_count,
            "caBundle": _pem_summary(self.ca_bundle),
            "clientCert": _pem_summary(self.client_cert),
            "createdAt": self.created_at.isoformat() if self.created_at else None,
            "sendCloudevents": self.send_cloudevents,
            "cloudeventFilters": [g.to_dict() for g in self.cloudevent_filters],
            "source": self.source,
            "headers": list(self.header_names),  # the values are secrets
            "owner": self.owner,
        }

    def __repr__(self) -> str:  # never a secret, even in a traceback
        return (
            f"Subscription(id={self.id!r}, callback_url={public_url(self.callback_url)!r}, "
            f"auth_kind={self.auth_kind!r}, auth={self.auth_hint!r})"
        )

    # -- matching -----------------------------------------------------------------------

    def wants(self, event: CloudEvent, view: EventView | None = None) -> bool:
        """Does this subscription want `event`? (Its active/paused status is not considered.)
        `view`: the event as filters read it, when the caller matches it against many subscriptions."""
        return matches(self, event, view)


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
    return _check_url(value, "callbackUrl", allow_insecure, problems)


def _check_url(value: object, name: str, allow_insecure: bool, problems: list[str]) -> str:
    """An absolute http(s) URL the worker can send to: callbackUrl, oauth2.tokenUrl."""
    if not isinstance(value, str) or not value:
        problems.append(f"{name}: must be a non-empty URL")
        return ""
    if _URL_FORBIDDEN.search(value):
        problems.append(f"{name}: must not contain spaces or control characters (percent-encode them)")
        return value
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        problems.append(f"{name}: is not a valid URL ({exc})")
        return value
    if parts.scheme not in ("https", "http") or not hostname:
        problems.append(f"{name}: must be an absolute https:// URL")
        return value
    if parts.username or parts.password:
        problems.append(f"{name}: must not carry credentials; put them in auth")
    if parts.fragment:
        problems.append(f"{name}: must not have a #fragment")
    # Loopback and private addresses are the worker's to refuse (OUTBOX_ALLOWED_NETWORKS, checked
    # at connect time and by the CLI); plain http is the subscription's.
    if not allow_insecure and parts.scheme != "https":
        problems.append(f"{name}: must use https (allow http:// explicitly with --allow-insecure)")
    return value


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


def _check_flag(value: object, name: str, problems: list[str]) -> bool:
    if not isinstance(value, bool):
        problems.append(f"{name}: must be true or false, got {value!r}")
        return False
    return value


def _check_query_token(url: object, forced: bool, problems: list[str]) -> None:
    if not isinstance(url, str) or forced:
        return
    try:
        names = {name.lower() for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    except ValueError:
        return
    if QUERY_TOKEN_PARAMETER in names:
        problems.append(
            "callbackUrl: carries an access token in its query string, which the webhook guideline says "
            "SHOULD NOT be used; send it as auth (the Authorization header), or force it with --allow-query-token"
        )


def _field(mapping: Mapping[str, Any], snake: str, camel: str) -> Any:
    return mapping.get(snake, mapping.get(camel))


def _single_line(value: object, where: str, problems: list[str], *, secret: bool = False) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: must be a non-empty string")
        return None
    if not _HEADER_VALUE.match(value) or value != value.strip():
        shown = "" if secret else f" (got {value!r})"
        problems.append(f"{where}: must be one line without control characters or outer spaces{shown}")
        return None
    return value


def _check_oauth2(value: object, allow_insecure: bool, problems: list[str]) -> OAuth2Client | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append("oauth2: must be an object with tokenUrl, clientId, clientSecret and optional scope")
        return None
    known = {"token_url", "tokenUrl", "client_id", "clientId", "client_secret", "clientSecret", "scope"}
    for key in sorted(set(value) - known):
        problems.append(f"oauth2.{key}: is not a field of oauth2 (tokenUrl, clientId, clientSecret, scope)")
    before = len(problems)
    raw_url = _field(value, "token_url", "tokenUrl")
    token_url = _check_url(raw_url, "oauth2.tokenUrl", allow_insecure, problems) if raw_url is not None else None
    if raw_url is None:
        problems.append("oauth2.tokenUrl: must be a non-empty URL")
    client_id = _single_line(_field(value, "client_id", "clientId"), "oauth2.clientId", problems)
    client_secret = _single_line(
        _field(value, "client_secret", "clientSecret"), "oauth2.clientSecret", problems, secret=True
    )
    scope = value.get("scope")
    if scope is not None:
        scope = _single_line(scope, "oauth2.scope", problems)
        if scope is not None and not all(_SCOPE_TOKEN.fullmatch(token) for token in scope.split(" ")):
            problems.append("oauth2.scope: must be scope tokens separated by single spaces (RFC 6749 §3.3)")
    if len(problems) > before or token_url is None or client_id is None or client_secret is None:
        return None
    return OAuth2Client(token_url=token_url, client_id=client_id, client_secret=client_secret, scope=scope)


def _check_zgw(value: object, problems: list[str]) -> ZgwClient | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append("zgw: must be an object with clientId and secret")
        return None
    for key in sorted(set(value) - {"client_id", "clientId", "secret"}):
        problems.append(f"zgw.{key}: is not a field of zgw (clientId, secret)")
    client_id = _single_line(_field(value, "client_id", "clientId"), "zgw.clientId", problems)
    secret = _single_line(value.get("secret"), "zgw.secret", problems, secret=True)
    if client_id is None or secret is None:
        return None
    return ZgwClient(client_id=client_id, secret=secret)


SIGNING_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SIGNING_KEY_BYTES = (24, 64)  # the Standard Webhooks secret size range


def signing_key(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret "whsec_<base64>"; ValueError (never showing the
    secret) when malformed. Padding is optional, as the reference libraries accept it."""
    if not secret.startswith(SIGNING_SECRET_PREFIX):
        raise ValueError(f"a signing secret must start with {SIGNING_SECRET_PREFIX}")
    encoded = secret[len(SIGNING_SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a signing secret must be {SIGNING_SECRET_PREFIX} followed by base64") from None
    low, high = SIGNING_KEY_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"a signing secret's key must be {low} to {high} bytes, not {len(key)}")
    return key


def check_signing_secret(value: object) -> str | None:
    """The rule a Standard Webhooks secret breaks, or None."""
    try:
        signing_key(value) if isinstance(value, str) else signing_key("")
    except ValueError:
        low, high = SIGNING_KEY_BYTES
        return f"must be {SIGNING_SECRET_PREFIX} followed by base64 of {low} to {high} bytes"
    return None


def _check_signing_secrets(value: object, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, Sequence) or len(values) > 2:
        problems.append("signingSecrets: must be a list of one or two secrets (the second during a rotation)")
        return ()
    result = []
    for i, secret in enumerate(values):
        rule = check_signing_secret(secret)
        if rule is not None:
            problems.append(f"signingSecrets[{i}]: {rule}")
        else:
            result.append(str(secret))
    return tuple(result)


def _check_pem(value: object, name: str, kind: str, problems: list[str], *, secret: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _PEM.search(value) or kind not in value:
        shown = "" if secret else " (give the file's contents, or its path on the command line)"
        problems.append(f"{name}: must be PEM text with a {kind} block{shown}")
        return None
    return value


def _pem_summary(pem: str | None) -> str | None:
    if pem is None:
        return None
    count = pem.count("-----BEGIN CERTIFICATE-----")
    digest = hashlib.sha256(pem.encode()).hexdigest()[:12]
    return f"{count} certificate{'s' if count != 1 else ''}, sha256 {digest}"


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


# The type of the probe event that verifies callbacks without the handshake (worker/delivery/verification.py).
PROBE_TYPE = "nl.overheid.outbox.verification"


def has_credentials(subscription: Subscription) -> bool:
    """Whether requests carry credentials a receiver can check (Authorization, access_token, headers)."""
    return subscription.auth_kind != "none" or subscription.allow_query_token or bool(subscription.header_names)


def public_url(url: str) -> str:
    """The URL with the value of an `access_token` query parameter hidden (it is a secret)."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return url
    if not any(name.lower() == QUERY_TOKEN_PARAMETER for name, _ in pairs):
        return url
    shown = "&".join(
        f"{quote_plus(n)}={'…' if n.lower() == QUERY_TOKEN_PARAMETER else quote_plus(v)}" for n, v in pairs
    )
    return urlunsplit(parts._replace(query=shown))


def _string_filters(filters: Mapping[Any, Any], where: str, problems: list[str]) -> dict[str, str]:
    """A kanaal's or a cloudeventFilters group's `filters`: non-empty keys, each a single string value."""
    clean: dict[str, str] = {}
    for key, val in filters.items():
        if not isinstance(key, str) or not key:
            problems.append(f"{where}.filters: keys must be non-empty strings")
        elif not isinstance(val, str):
            problems.append(f"{where}.filters.{key}: the value must be a single string")
        else:
            clean[key] = val
    return clean


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
        result.append(Kanaal(naam=naam, filters=_string_filters(filters, where, problems)))
    return tuple(result)


def _check_source(value: object, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or _URL_FORBIDDEN.search(value):
        problems.append("source: must be a non-empty URI-reference without spaces or control characters")
        return None
    return value


def _check_headers(value: object, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        problems.append("headers: must be an object of header name: value strings")
        return ()
    result = []
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            problems.append(f"headers.{name}: is not an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)")
            continue
        lower = name.lower()
        if lower in RESERVED_HEADERS or lower.startswith(RESERVED_HEADER_PREFIXES):
            problems.append(
                f"headers.{name}: is set by the outbox itself (Authorization, Content-Type, Content-Length, Host, "
                "ce-*, webhook-* and hop-by-hop headers cannot be given)"
            )
            continue
        if not isinstance(text, str) or not _HEADER_VALUE.match(text) or text != text.strip():
            problems.append(f"headers.{name}: must be a one-line value without control characters or outer spaces")
            continue
        result.append((name, text))
    return tuple(result)


def _check_cloudevent_filters(value: object, problems: list[str]) -> tuple[CloudEventFilter, ...]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        problems.append("cloudeventFilters: must be a list of {typeSubstring, filters} objects")
        return ()
    result = []
    for i, item in enumerate(value):
        where = f"cloudeventFilters[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be an object with typeSubstring and filters")
            continue
        for key in sorted(set(item) - {"typeSubstring", "filters"}):
            problems.append(f"{where}.{key}: is not a field of a cloudeventFilters group (typeSubstring, filters)")
        substring = item.get("typeSubstring")
        if not isinstance(substring, str) or not substring:
            problems.append(f"{where}.typeSubstring: must be a non-empty string")
            continue
        filters = item.get("filters") or {}
        if not isinstance(filters, Mapping):
            problems.append(f"{where}.filters: must be an object of data key: value strings")
            continue
        result.append(CloudEventFilter(type_substring=substring, filters=_string_filters(filters, where, problems)))
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
    if pattern == ANY_VALUE:
        return True
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


def _data_text(value: object) -> str | None:
    """A `data` value as a cloudeventFilters value compares with it (JSON's true/false for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def cloudevent_filter_matches(group: CloudEventFilter, event: CloudEvent) -> bool:
    """Open Notificaties' rule: `typeSubstring` in the type; each filter key absent from `data`,
    equal there, or `*`. `data` that is not a JSON object has no keys (every filter passes)."""
    if group.type_substring not in event.type:
        return False
    data = event.data if event.data_base64 is None else None
    if not isinstance(data, Mapping):
        return True
    for key, expected in group.filters.items():
        if expected == ANY_VALUE or key not in data:
            continue
        if _data_text(data[key]) != expected:
            return False
    return True


def matches(subscription: Subscription, event: CloudEvent, view: EventView | None = None) -> bool:
    """Does `subscription` want `event`? Types, source, (kanalen or cloudeventFilters) and filters
    ANDed; kanalen and cloudeventFilters groups ORed together; a kanaal's filters ANDed; the
    Subscriptions API filters all ANDed (`outbox._filters`)."""
    if subscription.types and not any(type_matches(p, event.type) for p in subscription.types):
        return False
    # Operational events go only where asked for by a pattern naming their prefix (not `*`, not a kanaal).
    if is_operational(event.type) and not any(opts_in(p) and type_matches(p, event.type) for p in subscription.types):
        return False
    if subscription.source is not None and event.source != subscription.source:
        return False
    if subscription.kanalen or subscription.cloudevent_filters:
        keys = routing_keys(event) if subscription.kanalen else {}
        if not any(kanaal_matches(k, event, keys) for k in subscription.kanalen) and not any(
            cloudevent_filter_matches(g, event) for g in subscription.cloudevent_filters
        ):
            return False
    if subscription.filters:
        return filters_match(subscription.filters, view if view is not None else EventView(event))
    return True
