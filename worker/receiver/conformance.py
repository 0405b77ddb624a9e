"""The rules of the NL GOV CloudEvents guideline that a receiver can see on the wire, as checks.

Each check returns `Problem`s: a rule id from `RULES` and a short text saying what was seen. The
reference receiver (worker/receiver.py) runs them on every request and records what they find.
Sections: "004 §x" is the Logius guideline (shared/seeds/004); "HTTP 3.1.x" the CloudEvents HTTP
Protocol Binding it adopts; "CE" the CloudEvents core spec the NL GOV profile builds on; "JSON" the
JSON Event Format; "WH" HTTP 1.1 Web Hooks for Event Delivery.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple


class Rule(NamedTuple):
    level: str  # MUST (MUST NOT) or SHOULD (SHOULD NOT)
    section: str
    text: str


RULES: dict[str, Rule] = {
    # 004 §3.1.1 delivering notifications
    "webhook.post": Rule("MUST", "004 §3.1.1", "a delivery request uses HTTP POST"),
    "webhook.https": Rule("MUST", "004 §3.1.1", "a delivery request goes over HTTPS"),
    "webhook.retry-after": Rule("MUST", "004 §3.1.1, WH", "after a 429, wait out its Retry-After"),
    "webhook.gone": Rule("SHOULD", "004 §3.1.1, WH", "after a 410 Gone, stop delivering to the retired target"),
    "webhook.rate": Rule("MUST", "004 §3.1.3", "stay within the WebHook-Allowed-Rate (requests per minute)"),
    "http.user-agent": Rule("SHOULD", "RFC 7231 §5.5.3", "a request carries User-Agent"),
    # 004 §3.1.2 authorization, §3.2
    "auth.present": Rule("MUST", "004 §3.1.2", "an access token in Authorization or the access_token query"),
    "auth.bearer-scheme": Rule("MUST", "004 §3.1.2", 'an OAuth 2.0 bearer token uses the "Bearer" scheme'),
    "auth.query-token": Rule("SHOULD", "004 §3.2", "no access token in the URI query unless unavoidable"),
    "auth.static": Rule("MUST", "receiver config", "the agreed Authorization value"),
    "auth.oauth2": Rule("MUST", "004 §3.1.2, RFC 6750", "a valid, unexpired token from the token endpoint"),
    "auth.jwt": Rule("MUST", "004 §3.1.2, ZGW", "a ZGW JWT: HS256, the right secret, client_id and a fresh iat"),
    "auth.signature": Rule("MUST", "Standard Webhooks", "a valid webhook-id/-timestamp/-signature"),
    "oauth.client": Rule("MUST", "RFC 6749 §2.3.1", "the token request authenticates the client (HTTP Basic)"),
    "oauth.grant-type": Rule("MUST", "RFC 6749 §4.4.2", "grant_type=client_credentials"),
    # 004 §3.1.3 abuse protection
    "handshake.origin": Rule("MUST", "004 §3.1.3", "the validation request carries WebHook-Request-Origin"),
    "handshake.origin-dns": Rule("MUST", "004 §3.1.3", "WebHook-Request-Origin is a DNS expression"),
    "handshake.rate": Rule("MUST", "004 §3.1.3", "WebHook-Request-Rate is a positive integer"),
    "handshake.callback": Rule("MUST", "004 §3.1.3", "WebHook-Request-Callback is an HTTPS URL"),
    "handshake.missing": Rule("SHOULD", "004 §3.2", "a handshake at registration, before deliveries"),
    # 004 §1.1 HTTP binding: structured, batched, binary
    "structured.format": Rule("SHOULD", "004 §1.2, §2.2", "the JSON event format (application/cloudevents+json)"),
    "structured.body": Rule("MUST", "004 §1.1, §2.1", "the body is one event as a JSON object (UTF-8)"),
    "batch.content-type": Rule("MUST", "004 §2.1", "the JSON batch uses application/cloudevents-batch+json"),
    "batch.body": Rule("MUST", "004 §2.1", "the batch is a JSON array of events"),
    "batch.specversion": Rule("MUST", "004 §1.1", "all batched events have the same specversion"),
    "batch.unsolicited": Rule("MUST NOT", "004 §2.1, HTTP 3", "no batch where only the JSON format is supported"),
    "binary.required": Rule("MUST", "004 §1.1, HTTP 3.1.3", "ce-specversion, ce-id, ce-source, ce-type headers"),
    "binary.header-name": Rule("MUST", "HTTP 3.1.3.1", "ce-<attribute name>, a valid attribute name"),
    "binary.percent-encoding": Rule("MUST", "HTTP 3.1.3.2", "printable ASCII, percent-encoded UTF-8"),
    "binary.header-encoding": Rule("SHOULD", "HTTP 3.1.3.2 (1.0.2)", "space, double-quote, % percent-encoded"),
    "binary.content-type": Rule("SHOULD", "004 §1.1, HTTP 3.1.1", "Content-Type declares the data's media type"),
    "binary.datacontenttype": Rule("MUST NOT", "HTTP 3.1.1", "no ce-datacontenttype header (it is Content-Type)"),
    # the event itself: CE core / JSON format, under the NL GOV profile
    "event.specversion": Rule("MUST", "CE, 004 §1.3", 'specversion is "1.0"'),
    "event.id": Rule("MUST", "CE", "id is a non-empty string"),
    "event.source": Rule("MUST", "CE", "source is a non-empty URI-reference"),
    "event.type": Rule("MUST", "CE", "type is a non-empty string"),
    "event.attribute-name": Rule("MUST", "CE", "attribute names are lowercase a-z and 0-9"),
    "event.attribute-length": Rule("SHOULD", "CE", "attribute names have at most 20 characters"),
    "event.attribute-type": Rule("MUST", "CE, JSON", "attribute values are strings, 32-bit integers or booleans"),
    "event.time": Rule("MUST", "CE", "time is an RFC 3339 timestamp"),
    "event.datacontenttype": Rule("MUST", "CE, HTTP 2.1", "datacontenttype is an RFC 2046 media type"),
    "event.dataschema": Rule("MUST", "CE", "dataschema is an absolute URI"),
    "event.subject": Rule("MUST", "CE", "subject is a non-empty string"),
    "event.data": Rule("MUST NOT", "004 §2.1, JSON", "data and data_base64 together"),
    "event.data_base64": Rule("MUST", "004 §2.1, JSON", "data_base64 is a Base64 string"),
    "event.id-unique": Rule("MUST", "CE", "source + id identify one distinct event (repeats are redeliveries)"),
    "nlgov.source": Rule("SHOULD", "NL GOV profile, 004 §1.3", "source is an absolute URI, e.g. urn:nld:oin:…"),
    "nlgov.sequence": Rule("MUST", "NL GOV profile, 004 §2.3", 'sequence is a string; with sequencetype "integer"'),
    "nlgov.dataref": Rule("MUST", "NL GOV profile, 004 §2.3", "dataref is a URI-reference"),
}


class Problem(NamedTuple):
    rule: str
    text: str


REQUIRED = ("specversion", "id", "source", "type")
STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
_NAME = re.compile(r"^[a-z0-9]+$")
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")
_TCHARS = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(rf'^{_TCHARS}/{_TCHARS}(\s*;\s*{_TCHARS}=("(?:[^"\\]|\\.)*"|{_TCHARS}))*\s*$')
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_URI_REFERENCE = re.compile(r"^\S+$")
_DNS = re.compile(r"^(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}\.?$")
_INT32 = (-(2**31), 2**31 - 1)
_STRING_ATTRIBUTES = {  # attribute → the rule its type falls under
    "subject": "event.subject",
    "datacontenttype": "event.datacontenttype",
    "dataschema": "event.dataschema",
    "time": "event.time",
    "dataref": "nlgov.dataref",
    "sequence": "nlgov.sequence",
    "sequencetype": "nlgov.sequence",
}


def is_must(rule: str) -> bool:
    return RULES[rule].level.startswith("MUST")


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def mode_of(content_type: str) -> str:
    """004 §1.1: application/cloudevents-batch… is batched, application/cloudevents… structured, else binary."""
    media = media_type(content_type)
    if media.startswith("application/cloudevents-batch"):
        return "batched"
    if media.startswith("application/cloudevents"):
        return "structured"
    return "binary"


def parse_json(body: bytes) -> tuple[Any, str | None]:
    """The decoded JSON document, or None and why not (UTF-8 only, no NaN/Infinity)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the body is not UTF-8"

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse), None
    except ValueError as exc:
        return None, f"the body is not JSON ({str(exc).split(':')[0]})"


def check_event(event: Mapping[str, Any], where: str = "") -> list[Problem]:
    """The attribute rules of CloudEvents 1.0 under the NL GOV profile; a JSON null means unset."""
    at = f"{where}: " if where else ""
    found: list[Problem] = []
    present = {name: value for name, value in event.items() if value is not None}
    if present.get("specversion") != "1.0":
        found.append(Problem("event.specversion", f'{at}specversion is {present.get("specversion")!r}, not "1.0"'))
    for name in ("id", "source", "type"):
        value = present.get(name)
        if not isinstance(value, str) or not value:
            found.append(Problem(f"event.{name}", f"{at}{name} is {'missing' if value is None else repr(value)}"))
    for name, value in present.items():
        if name in ("data", "data_base64"):
            continue
        if not isinstance(name, str) or not _NAME.match(name):
            found.append(Problem("event.attribute-name", f"{at}attribute name {name!r} is not lowercase a-z0-9"))
        elif len(name) > 20:
            found.append(Problem("event.attribute-length", f"{at}attribute name {name!r} is over 20 characters"))
        if name in _STRING_ATTRIBUTES and not isinstance(value, str):
            found.append(Problem(_STRING_ATTRIBUTES[name], f"{at}{name} is not a string"))
        elif isinstance(value, bool | str) or (isinstance(value, int) and _INT32[0] <= value <= _INT32[1]):
            pass
        elif name not in REQUIRED:
            found.append(Problem("event.attribute-type", f"{at}{name} is {value!r}: not a string, int32 or boolean"))
    found += _string_attribute_problems(present, at)
    if "data" in present and "data_base64" in present:
        found.append(Problem("event.data", f"{at}both data and data_base64 are present"))
    if "data_base64" in present:
        try:
            base64.b64decode(present["data_base64"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            found.append(Problem("event.data_base64", f"{at}data_base64 is not a Base64 string"))
    return found


def _string_attribute_problems(present: Mapping[str, Any], at: str) -> list[Problem]:
    found: list[Problem] = []
    source = present.get("source")
    if isinstance(source, str) and source:
        if not _URI_REFERENCE.match(source):
            found.append(Problem("event.source", f"{at}source {source!r} is not a URI-reference"))
        elif not _ABSOLUTE_URI.match(source):
            found.append(Problem("nlgov.source", f"{at}source {source!r} is not an absolute URI (URN or URL)"))
    time = present.get("time")
    if isinstance(time, str) and not _is_rfc3339(time):
        found.append(Problem("event.time", f"{at}time {time!r} is not an RFC 3339 timestamp"))
    content_type = present.get("datacontenttype")
    if isinstance(content_type, str) and not _MEDIA_TYPE.match(content_type):
        found.append(Problem("event.datacontenttype", f"{at}datacontenttype {content_type!r} is not a media type"))
    schema = present.get("dataschema")
    if isinstance(schema, str) and not _ABSOLUTE_URI.match(schema):
        found.append(Problem("event.dataschema", f"{at}dataschema {schema!r} is not an absolute URI"))
    if present.get("subject") == "":
        found.append(Problem("event.subject", f"{at}subject is empty"))
    dataref = present.get("dataref")
    if isinstance(dataref, str) and not _URI_REFERENCE.match(dataref):
        found.append(Problem("nlgov.dataref", f"{at}dataref {dataref!r} is not a URI-reference"))
    sequence, kind = present.get("sequence"), present.get("sequencetype")
    if isinstance(sequence, str) and isinstance(kind, str) and kind.lower() == "integer":
        try:
            number = int(sequence)
        except ValueError:
            number = None
        if number is None or not _INT32[0] <= number <= _INT32[1]:
            found.append(Problem("nlgov.sequence", f"{at}sequence {sequence!r} is not a 32-bit integer"))
    return found


def _is_rfc3339(value: str) -> bool:
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_batch(parsed: Any) -> list[Problem]:
    if not isinstance(parsed, list):
        return [Problem("batch.body", f"the batch is a JSON {type(parsed).__name__}, not an array")]
    found: list[Problem] = []
    for n, event in enumerate(parsed):
        if isinstance(event, dict):
            found += check_event(event, f"event {n}")
        else:
            found.append(Problem("batch.body", f"batch element {n} is not a JSON object"))
    versions = {event.get("specversion") for event in parsed if isinstance(event, dict)}
    if len(versions) > 1:
        found.append(Problem("batch.specversion", f"the batch mixes specversions {sorted(map(str, versions))}"))
    return found


def decode_header(name: str, raw: str) -> tuple[str, list[Problem]]:
    """HTTP 3.1.3.2: unquote a quoted-string, then one round of percent-decoding to UTF-8."""
    found: list[Problem] = []
    value = raw
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(Problem("binary.header-encoding", f"{name} is a quoted-string, not percent-encoded"))
    elif " " in value or '"' in value:
        found.append(Problem("binary.header-encoding", f"{name} has a space or double-quote not percent-encoded"))
    if any(not 0x20 <= ord(c) <= 0x7E for c in value):
        found.append(Problem("binary.percent-encoding", f"{name} has characters outside printable ASCII"))
    octets = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "%" and re.fullmatch(r"[0-9A-Fa-f]{2}", value[i + 1 : i + 3]):
            octets.append(int(value[i + 1 : i + 3], 16))
            i += 3
            continue
        if value[i] == "%":
            found.append(Problem("binary.percent-encoding", f"{name} has a % that is not percent-encoded"))
        octets += value[i].encode("utf-8", errors="surrogateescape")
        i += 1
    try:
        return octets.decode("utf-8"), found
    except UnicodeDecodeError:
        found.append(Problem("binary.percent-encoding", f"{name} decodes to bytes that are not UTF-8"))
        return octets.decode("utf-8", errors="replace"), found


def binary_event(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The event of a binary-mode request (None when no ce-* header is present) and the problems seen."""
    found: list[Problem] = []
    attributes: dict[str, Any] = {}
    for key, raw in headers.items():
        if not key.lower().startswith("ce-"):
            continue
        name = key[3:].lower()
        if name == "datacontenttype":
            found.append(Problem("binary.datacontenttype", "a ce-datacontenttype header is present"))
            continue
        if not _NAME.match(name):
            found.append(Problem("binary.header-name", f"header {key!r} does not name a valid attribute"))
            continue
        attributes[name], problems = decode_header(key, raw)
        found += problems
    if not attributes:
        return None, [Problem("binary.required", "not a CloudEvent: no ce-* headers and not a CloudEvents media type")]
    missing = [name for name in REQUIRED if not attributes.get(name)]
    if missing:
        found.append(Problem("binary.required", f"binary mode lacks {', '.join('ce-' + m for m in missing)}"))
    content_type = headers.get("Content-Type")
    if content_type:
        attributes["datacontenttype"] = content_type
    elif body:
        found.append(Problem("binary.content-type", "a body without Content-Type"))
    found += [p for p in check_event(attributes) if p.rule not in {f"event.{m}" for m in missing}]
    if body:
        parsed, error = parse_json(body) if "json" in (content_type or "application/json") else (None, "not JSON")
        if error is None:
            attributes["data"] = parsed
        else:
            attributes["data_base64"] = base64.b64encode(body).decode("ascii")
    return attributes, found


def check_handshake(headers: Mapping[str, str]) -> list[Problem]:
    found: list[Problem] = []
    origin = headers.get("WebHook-Request-Origin")
    if origin is None or not origin.strip():
        found.append(Problem("handshake.origin", "OPTIONS without WebHook-Request-Origin"))
    elif not _DNS.match(origin.strip()):
        found.append(Problem("handshake.origin-dns", f"WebHook-Request-Origin {origin!r} is not a DNS name"))
    rate = headers.get("WebHook-Request-Rate")
    if rate is not None and not (rate.strip().isascii() and rate.strip().isdigit() and int(rate) > 0):
        found.append(Problem("handshake.rate", f"WebHook-Request-Rate {rate!r} is not a positive integer"))
    callback = headers.get("WebHook-Request-Callback")
    if callback is not None and not re.match(r"^https://\S+$", callback.strip()):
        found.append(Problem("handshake.callback", f"WebHook-Request-Callback {callback!r} is not an https URL"))
    return found
