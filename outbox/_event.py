"""The CloudEvent model, validated against the NL GOV profile.

The JSON event format is the source of truth: `to_dict`/`from_dict` and
`to_json`/`from_json` round-trip exactly (a JSON null attribute means unset, so
nulls are dropped on the way in). Validation is done once, in the constructor,
so a `CloudEvent` that exists is valid; only the size limit is checked when the
event is serialized for enqueueing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from outbox._errors import InvalidEventError
from outbox._tracing import TRACEPARENT, TRACESTATE, traceparent_fault, tracestate_fault

SPECVERSION = "1.0"
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024

# Optional context attributes of CloudEvents 1.0 and the NL GOV profile
# (`dataref`, `sequence`, `sequencetype` come from the CloudEvents extensions
# the profile adopts), each a string when present.
OPTIONAL_STRING_ATTRIBUTES = (
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "dataref",
    "sequence",
    "sequencetype",
)
_URI_ATTRIBUTES = frozenset({"source", "dataschema", "dataref"})
_RESERVED = frozenset({"specversion", "id", "source", "type", "data", "data_base64", *OPTIONAL_STRING_ATTRIBUTES})
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")
_NO_SPACE = re.compile(r"^\S+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=(\"[^\"]*\"|[\w.+-]+))*$")
_INT32 = (-(2**31), 2**31 - 1)
_TRACESTATE_ALONE = "is only allowed together with traceparent (the Distributed Tracing extension)"
# A valid traceparent, for checking a tracestate on its own (event_problems).
_SOME_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

ExtensionValue = str | int | bool


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _format_time(value: datetime | str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidEventError("time", "a datetime must be timezone-aware")
        return _rfc3339(value)
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise InvalidEventError("time", "must be an RFC 3339 timestamp, e.g. 2025-10-10T00:00:00Z")
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise InvalidEventError("time", "must be an RFC 3339 timestamp with a real date and time") from None
    return value


def _check_string(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEventError(name, "must be a non-empty string")
    printable = value.isprintable()  # the common case, in C: no control characters, no whitespace but " "
    if not printable and _CONTROL.search(value):
        # They end up in HTTP headers (binary mode) and PostgreSQL text, which cannot hold NUL.
        raise InvalidEventError(name, "must not contain control characters (CR, LF, NUL, ...)")
    if name in _URI_ATTRIBUTES and (" " in value if printable else not _NO_SPACE.match(value)):
        raise InvalidEventError(name, "must be a URI-reference (no whitespace)")
    if name == "datacontenttype" and not _MEDIA_TYPE.match(value):
        raise InvalidEventError(name, "must be a media type, e.g. application/json")
    return value


# The Distributed Tracing extension's attributes: strings in the W3C Trace Context formats.
_TRACE_FORMATS = {TRACEPARENT: traceparent_fault, TRACESTATE: tracestate_fault}


def _check_extension(name: str, value: object) -> ExtensionValue:
    if not _EXTENSION_NAME.match(name):
        raise InvalidEventError(name, "extension attribute names must be lowercase a-z0-9, at most 20 characters")
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise InvalidEventError(name, "must not contain control characters (CR, LF, NUL, ...)")
        trace_format = _TRACE_FORMATS.get(name)
        if trace_format is not None and (fault := trace_format(value)) is not None:
            raise InvalidEventError(name, fault)
        return value
    if name in _TRACE_FORMATS:
        raise InvalidEventError(name, "must be a string (the Distributed Tracing extension)")
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT32[0] <= value <= _INT32[1]:
            raise InvalidEventError(name, "an integer extension value must fit in 32 bits (signed)")
        return value
    raise InvalidEventError(name, "extension attribute values must be a string, integer or boolean")


def _checked_data(data: Any, data_base64: Any) -> tuple[Any, str | None]:
    """`data` and `data_base64` as stored: bytes become base64; never both."""
    if isinstance(data, bytes | bytearray | memoryview):
        if data_base64 is not None:
            raise InvalidEventError("data_base64", "must not be given together with data")
        return None, base64.b64encode(bytes(data)).decode("ascii")
    if data_base64 is not None:
        if data is not None:
            raise InvalidEventError("data_base64", "must not be given together with data")
        if not isinstance(data_base64, str):
            raise InvalidEventError("data_base64", "must be a base64 string")
        try:
            base64.b64decode(data_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEventError("data_base64", "must be a base64 string") from None
    return data, data_base64


def event_problems(document: object) -> list[InvalidEventError]:
    """Every fault of an event in the JSON event format, not just the first (`from_dict` stops at one).

    Each attribute is checked on its own, by `from_dict` itself on an otherwise valid event, so the
    rules live in one place; `[]` means `from_dict` accepts the document."""
    if not isinstance(document, Mapping):
        return [InvalidEventError("event", "must be a JSON object")]
    present = {key: value for key, value in document.items() if value is not None}
    faults = [
        InvalidEventError(key, "is required") for key in ("specversion", "id", "source", "type") if key not in present
    ]
    valid: dict[str, Any] = {"specversion": SPECVERSION, "id": "x", "source": "x", "type": "x"}
    for key, value in present.items():
        if key in ("data", "data_base64"):
            continue
        alone = {**valid, TRACEPARENT: _SOME_TRACEPARENT} if key == TRACESTATE else valid
        try:
            CloudEvent.from_dict({**alone, key: value})
        except InvalidEventError as exc:
            faults.append(exc)
    if TRACESTATE in present and TRACEPARENT not in present:
        faults.append(InvalidEventError(TRACESTATE, _TRACESTATE_ALONE))
    data = {key: present[key] for key in ("data", "data_base64") if key in present}
    try:
        CloudEvent.from_dict({**valid, **data})
    except InvalidEventError as exc:
        faults.append(exc)
    return faults


class CloudEvent:
    """One CloudEvent (specversion 1.0) under the NL GOV profile.

    >>> CloudEvent(type="nl.overheid.zaken.zaak-gekoppeld", source="urn:nld:oin:01823288444:openklant",
    ...            subject="a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5", data={"zaak": "urn:uuid:..."})

    `id` defaults to a new UUID4 and `time` to now (UTC, RFC 3339 with Z).
    `data` is any JSON value; bytes become `data_base64`. Keyword arguments
    other than the context attributes are extension attributes.
    Invalid input raises `InvalidEventError` naming the attribute and the rule.
    """

    __slots__ = ("_attributes", "_data", "_data_base64", "_extensions")

    def __init__(
        self,
        *,
        type: str,
        source: str,
        id: str | None = None,
        specversion: str = SPECVERSION,
        subject: str | None = None,
        time: datetime | str | None = None,
        datacontenttype: str | None = None,
        dataschema: str | None = None,
        dataref: str | None = None,
        sequence: str | None = None,
        sequencetype: str | None = None,
        data: Any = None,
        data_base64: str | None = None,
        **extensions: ExtensionValue | None,
    ) -> None:
        if specversion != SPECVERSION:
            raise InvalidEventError("specversion", f'must be "{SPECVERSION}"')
        attributes: dict[str, str] = {
            "specversion": SPECVERSION,
            "id": _check_string("id", id) if id is not None else str(uuid.uuid4()),
            "source": _check_string("source", source),
            "type": _check_string("type", type),
        }
        optional = {
            "subject": subject,
            "time": _format_time(time if time is not None else datetime.now(UTC)),
            "datacontenttype": datacontenttype,
            "dataschema": dataschema,
            "dataref": dataref,
            "sequence": sequence,
            "sequencetype": sequencetype,
        }
        for name, value in optional.items():
            if value is not None:
                attributes[name] = _check_string(name, value)

        data, data_base64 = _checked_data(data, data_base64)
        self._attributes = attributes
        self._data = data
        self._data_base64 = data_base64
        self._extensions: dict[str, ExtensionValue] = {
            name: _check_extension(name, value) for name, value in extensions.items() if value is not None
        }
        if TRACESTATE in self._extensions and TRACEPARENT not in self._extensions:
            raise InvalidEventError(TRACESTATE, _TRACESTATE_ALONE)

    # -- the JSON event format -------------------------------------------------

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> CloudEvent:
        """An event from its JSON event format (a decoded JSON object)."""
        if not isinstance(document, Mapping):
            raise InvalidEventError("event", "must be a JSON object")
        present = {key: value for key, value in document.items() if value is not None}
        for key in ("type", "source", "id"):
            if key not in present:
                raise InvalidEventError(key, "is required")
        if "specversion" not in present:
            raise InvalidEventError("specversion", "is required")
        for key in present:
            if not isinstance(key, str):
                raise InvalidEventError(repr(key), "attribute names must be strings")
        if present["specversion"] != SPECVERSION:
            raise InvalidEventError("specversion", f'must be "{SPECVERSION}"')
        # The constructor's checks, in its order, without its keyword packing: this runs once per event
        # a service takes in (POST /cloudevents), where it was a third of the CPU of a batch.
        attributes: dict[str, str] = {
            "specversion": SPECVERSION,
            "id": _check_string("id", present["id"]),
            "source": _check_string("source", present["source"]),
            "type": _check_string("type", present["type"]),
        }
        for name in OPTIONAL_STRING_ATTRIBUTES:
            value = present.get(name)
            if value is not None:
                attributes[name] = _check_string(name, _format_time(value) if name == "time" else value)
        data, data_base64 = _checked_data(present.get("data"), present.get("data_base64"))
        event = cls.__new__(cls)
        event._attributes = attributes
        event._data = data
        event._data_base64 = data_base64
        # Extension names such as "self" or "cls" are legal: they do not go through keyword arguments.
        event._extensions = {
            name: _check_extension(name, value) for name, value in present.items() if name not in _RESERVED
        }
        if TRACESTATE in event._extensions and TRACEPARENT not in event._extensions:
            raise InvalidEventError(TRACESTATE, _TRACESTATE_ALONE)
        return event

    @classmethod
    def from_json(cls, text: str | bytes) -> CloudEvent:
        """An event from a JSON document in the JSON event format."""
        try:
            document = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise InvalidEventError("event", f"must be a JSON document ({exc})") from None
        return cls.from_dict(document)

    def to_dict(self) -> dict[str, Any]:
        """The JSON event format as a dict (unset attributes are left out)."""
        document: dict[str, Any] = dict(self._attributes)
        document.update(self._extensions)
        if self._data_base64 is not None:
            document["data_base64"] = self._data_base64
        elif self._data is not None:
            document["data"] = self._data
        return document

    def _json_bytes(self, trace: dict[str, str] | None = None) -> bytes:
        # orjson: several times faster than the json module, and enqueue's cost is the host's cost.
        document = self.to_dict()
        if trace is not None and TRACEPARENT not in self._extensions:  # the event's own context wins
            document.update(trace)
        try:
            return orjson.dumps(document)
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise InvalidEventError("data", f"must be JSON-serializable ({exc})") from None

    def to_json(self) -> str:
        """The JSON event format, compact, UTF-8 characters kept as they are.

        (JSON has no NaN or Infinity: such floats in `data` become null.)
        """
        return self._json_bytes().decode()

    def serialize(self, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> str:
        """`to_json`, refusing events larger than `max_bytes` once UTF-8 encoded."""
        return self._serialize(max_bytes)

    def _serialize(self, max_bytes: int, trace: dict[str, str] | None = None) -> str:
        """`serialize`, with the Distributed Tracing attributes `trace` unless the event has its own
        `traceparent` (enqueue: the host's trace context, outbox/_tracing.py)."""
        raw = self._json_bytes(trace)
        if len(raw) > max_bytes:
            raise InvalidEventError("event", f"serialized size {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
        return raw.decode()

    # -- attribute access ---------------------------------------------------------

    @property
    def specversion(self) -> str:
        return self._attributes["specversion"]

    @property
    def id(self) -> str:
        return self._attributes["id"]

    @property
    def source(self) -> str:
        return self._attributes["source"]

    @property
    def type(self) -> str:
        return self._attributes["type"]

    @property
    def subject(self) -> str | None:
        return self._attributes.get("subject")

    @property
    def time(self) -> str | None:
        return self._attributes.get("time")

    @property
    def datacontenttype(self) -> str | None:
        return self._attributes.get("datacontenttype")

    @property
    def dataschema(self) -> str | None:
        return self._attributes.get("dataschema")

    @property
    def dataref(self) -> str | None:
        return self._attributes.get("dataref")

    @property
    def sequence(self) -> str | None:
        return self._attributes.get("sequence")

    @property
    def sequencetype(self) -> str | None:
        return self._attributes.get("sequencetype")

    @property
    def data(self) -> Any:
        """The `data` member, or the decoded bytes of `data_base64`."""
        if self._data_base64 is not None:
            return base64.b64decode(self._data_base64)
        return self._data

    @property
    def data_base64(self) -> str | None:
        return self._data_base64

    @property
    def extensions(self) -> dict[str, ExtensionValue]:
        return dict(self._extensions)

    def get(self, name: str) -> Any:
        """A context or extension attribute by name, None when unset."""
        if name in self._attributes:
            return self._attributes[name]
        return self._extensions.get(name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CloudEvent):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.source, self.id))

    def __repr__(self) -> str:
        return f"CloudEvent(type={self.type!r}, source={self.source!r}, id={self.id!r}, subject={self.subject!r})"
