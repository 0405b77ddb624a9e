"""The CloudEvent model and its NL GOV profile validation (no database)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from outbox import CloudEvent, InvalidEventError

# The JSON event format examples of the Logius guideline (004), verbatim.
GUIDELINE_NULL_EXAMPLE = {
    "specversion": "1.0",
    "type": "nl.overheid.zaken.zaakstatus-gewijzigd",
    "source": "urn:nld:oin:00000001823288444000:systeem:BRP-component",
    "subject": "123456789",
    "id": "f3dce042-cd6e-4977-844d-05be8dce7cea",
    "time": "2021-12-10T17:31:00Z",
    "nlbrpnationaliteit": "0083",
    "geheimnummer": None,
    "dataref": "https://gemeenteX/api/persoon/123456789",
    "sequence": "1234",
    "sequencetype": "integer",
    "datacontenttype": "application/json",
    "data": {"bsn": "1234567789", "naam": "Jan Jansen", "gecontroleerd": "ja"},
}
GUIDELINE_BASE64_EXAMPLE = {
    "specversion": "1.0",
    "type": "nl.overheid.zaken.zaakstatus-gewijzigd",
    "source": "urn:nld:oin:00000001823288444000:systeem:BRP-component",
    "id": "f3dce042-cd6e-4977-844d-05be8dce7cea",
    "datacontenttype": "application/vnd.apache.thrift.binary",
    "data_base64": "YWFwIG5vb3QgbWllcw==",
}


def test_defaults_id_time_and_specversion() -> None:
    event = CloudEvent(type="nl.overheid.zaken.zaak-gekoppeld", source="urn:nld:oin:01823288444:openklant")
    assert event.specversion == "1.0"
    assert uuid.UUID(event.id).version == 4
    assert event.time is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event.time)
    stamp = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=5)
    assert CloudEvent(type="t", source="s").id != event.id


def test_null_attribute_means_unset_and_round_trip_is_exact() -> None:
    event = CloudEvent.from_dict(GUIDELINE_NULL_EXAMPLE)
    expected = {k: v for k, v in GUIDELINE_NULL_EXAMPLE.items() if v is not None}
    assert event.to_dict() == expected
    assert "geheimnummer" not in event.to_dict()
    assert event.extensions == {"nlbrpnationaliteit": "0083"}
    assert json.loads(event.to_json()) == expected
    assert CloudEvent.from_json(event.to_json()) == event


def test_data_base64_round_trip_and_bytes() -> None:
    event = CloudEvent.from_dict(GUIDELINE_BASE64_EXAMPLE)
    assert event.to_dict() == GUIDELINE_BASE64_EXAMPLE
    assert event.data == b"aap noot mies"
    from_bytes = CloudEvent(type="t", source="s", data=b"aap noot mies")
    assert from_bytes.to_dict()["data_base64"] == "YWFwIG5vb3QgbWllcw=="
    assert "data" not in from_bytes.to_dict()


def test_to_json_is_compact_and_keeps_unicode() -> None:
    event = CloudEvent(type="t", source="s", id="1", time="2025-10-10T00:00:00Z", data={"naam": "Zoë"})
    assert event.to_json() == (
        '{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2025-10-10T00:00:00Z","data":{"naam":"Zoë"}}'
    )


def test_datetime_time_is_normalised_to_utc_z() -> None:
    amsterdam = timezone(timedelta(hours=2))
    event = CloudEvent(type="t", source="s", time=datetime(2025, 10, 10, 2, 0, tzinfo=amsterdam))
    assert event.time == "2025-10-10T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("kwargs", "attribute", "rule"),
    [
        ({"type": "", "source": "s"}, "type", "non-empty string"),
        ({"type": "t", "source": ""}, "source", "non-empty string"),
        ({"type": "t", "source": "s", "id": ""}, "id", "non-empty string"),
        ({"type": "t", "source": "has space"}, "source", "URI-reference"),
        ({"type": "t", "source": "s", "specversion": "0.3"}, "specversion", '"1.0"'),
        ({"type": "t", "source": "s", "time": "yesterday"}, "time", "RFC 3339"),
        ({"type": "t", "source": "s", "time": "2025-13-40T00:00:00Z"}, "time", "real date"),
        ({"type": "t", "source": "s", "time": datetime(2025, 1, 1)}, "time", "timezone-aware"),
        ({"type": "t", "source": "s", "subject": ""}, "subject", "non-empty string"),
        ({"type": "t", "source": "s", "subject": 5}, "subject", "non-empty string"),
        (
            {"type": "t", "source": "s", "data": {}, "data_base64": "YQ=="},
            "data_base64",
            "together with data",
        ),
        ({"type": "t", "source": "s", "data_base64": "not base64!"}, "data_base64", "base64"),
        ({"type": "t", "source": "s", "Upper": "x"}, "Upper", "lowercase a-z0-9"),
        ({"type": "t", "source": "s", "a" * 21: "x"}, "a" * 21, "at most 20"),
        ({"type": "t", "source": "s", "ext": {"a": 1}}, "ext", "string, integer or boolean"),
        ({"type": "t", "source": "s", "ext": 1.5}, "ext", "string, integer or boolean"),
        ({"type": "t", "source": "s", "ext": 2**40}, "ext", "32 bits"),
    ],
)
def test_invalid_events_name_the_attribute_and_rule(kwargs: dict[str, Any], attribute: str, rule: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        CloudEvent(**kwargs)
    assert caught.value.attribute == attribute
    assert str(caught.value).startswith(f"{attribute}: ")
    assert rule in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("missing", ["type", "source", "id", "specversion"])
def test_from_dict_requires_the_required_attributes(missing: str) -> None:
    document = dict(GUIDELINE_NULL_EXAMPLE)
    document[missing] = None
    with pytest.raises(InvalidEventError, match=f"^{missing}: is required"):
        CloudEvent.from_dict(document)


def test_from_json_rejects_non_json_and_non_objects() -> None:
    with pytest.raises(InvalidEventError, match="^event: must be a JSON document"):
        CloudEvent.from_json("{nope")
    with pytest.raises(InvalidEventError, match="^event: must be a JSON object"):
        CloudEvent.from_json("[1, 2]")


def test_unserialisable_data_is_refused() -> None:
    event = CloudEvent(type="t", source="s", data={"amount": Decimal("1.50")})
    with pytest.raises(InvalidEventError, match="^data: must be JSON-serializable"):
        event.to_json()
    with pytest.raises(InvalidEventError, match="^data: must be JSON-serializable"):
        CloudEvent(type="t", source="s", data={1: "non-string key"}).serialize()


def test_datetimes_and_uuids_in_data_become_strings() -> None:
    zaak = uuid.UUID("a7b3c8d9-e4f5-6a7b-8c9d-e0f1a2b3c4d5")
    event = CloudEvent(type="t", source="s", data={"zaak": zaak, "at": datetime(2025, 10, 10, tzinfo=UTC)})
    assert json.loads(event.to_json())["data"] == {"zaak": str(zaak), "at": "2025-10-10T00:00:00+00:00"}


def test_size_limit_counts_utf8_bytes() -> None:
    event = CloudEvent(type="t", source="s", id="1", time="2025-10-10T00:00:00Z", data="é" * 600)
    size = len(event.to_json().encode())
    assert event.serialize(max_bytes=size) == event.to_json()
    with pytest.raises(
        InvalidEventError, match=f"^event: serialized size {size} bytes exceeds the limit of {size - 1}"
    ):
        event.serialize(max_bytes=size - 1)
    big = CloudEvent(type="t", source="s", data="x" * (1024 * 1024))
    with pytest.raises(InvalidEventError, match="exceeds the limit of 1048576 bytes"):
        big.serialize()
