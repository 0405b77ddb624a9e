"""Subscriptions: the abonnement JSON of seed 002, validation, and the matching function."""

from __future__ import annotations

from typing import Any

import pytest

from outbox import CloudEvent, InvalidSubscriptionError, Kanaal, Subscription, matches
from outbox._subscription import auth_hint, routing_keys

# Seed 002, "get a notification when the case in the VTH domain has closed", verbatim.
SEED_ABONNEMENT = {
    "callbackUrl": "https://myapp.zaakgerichtwerken.nl/webhook",
    "auth": "Bearer 8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE",
    "kanalen": [{"filters": {"domein": "VTH", "is_eindzaakstatus": "True"}, "naam": "zaken"}],
}


def event(type: str = "nl.overheid.zaken.zaak.update", data: Any = None, **extensions: Any) -> CloudEvent:
    return CloudEvent(type=type, source="urn:nld:oin:00000001823288444000:systeem:zrc", data=data, **extensions)


def sub(*kanalen: Kanaal, types: tuple[str, ...] = ()) -> Subscription:
    return Subscription(callback_url="https://example.org/hook", kanalen=kanalen, types=types)


def test_seed_abonnement_is_accepted_verbatim() -> None:
    s = Subscription.from_abonnement(SEED_ABONNEMENT)
    assert s.callback_url == "https://myapp.zaakgerichtwerken.nl/webhook"
    assert s.auth == "Bearer 8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE"
    assert s.kanalen == (Kanaal(naam="zaken", filters={"domein": "VTH", "is_eindzaakstatus": "True"}),)
    assert s.content_mode == "structured"
    assert s.status == "active"


def test_seed_abonnement_matches_a_closed_vth_case() -> None:
    s = Subscription.from_abonnement(SEED_ABONNEMENT)
    assert s.wants(event(data={"domein": "VTH", "is_eindzaakstatus": True}))
    assert s.wants(event(data={"domein": "VTH", "is_eindzaakstatus": "True"}))
    assert not s.wants(event(data={"domein": "VTH", "is_eindzaakstatus": False}))
    assert not s.wants(event(data={"domein": "BRP", "is_eindzaakstatus": True}))
    assert not s.wants(event(data={"domein": "VTH"})), "an absent filter key does not match"
    assert not s.wants(event("nl.overheid.besluiten.besluit.create", data={"domein": "VTH", "is_eindzaakstatus": True}))


def test_secret_is_not_in_repr_or_public_dict() -> None:
    s = Subscription.from_abonnement(SEED_ABONNEMENT)
    assert "8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE" not in repr(s)
    public = s.to_public_dict()
    assert "8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE" not in str(public)
    assert public["auth"] == "Bearer …gFYE"


@pytest.mark.parametrize(
    ("auth", "hint"),
    [
        (None, None),
        ("Bearer 8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE", "Bearer …gFYE"),
        ("Bearer short", "Bearer …"),
        ("rawtokenvalue123", "…e123"),
    ],
)
def test_auth_hint_shows_scheme_and_last_four_at_most(auth: str | None, hint: str | None) -> None:
    assert auth_hint(auth) == hint


@pytest.mark.parametrize(
    ("document", "problems"),
    [
        ({}, ["callbackUrl: is required"]),
        (
            {**SEED_ABONNEMENT, "callbackUrl": "ftp://x.nl/hook"},
            ["callbackUrl: must be an absolute https:// URL"],
        ),
        ({**SEED_ABONNEMENT, "callbackUrl": "http://x.nl/hook"}, ["callbackUrl: must use https"]),
        (
            {**SEED_ABONNEMENT, "callbackUrl": "https://u:p@x.nl/hook"},
            ["callbackUrl: must not carry credentials"],
        ),
        ({**SEED_ABONNEMENT, "auth": ""}, ["auth: must be a non-empty string"]),
        ({**SEED_ABONNEMENT, "auth": "Bearer a\r\nX-Evil: 1"}, ["auth: must be a single-line header value"]),
        ({**SEED_ABONNEMENT, "kanalen": "zaken"}, ["kanalen: must be a list"]),
        ({**SEED_ABONNEMENT, "kanalen": [{"filters": {}}]}, ["kanalen[0].naam: must be a non-empty string"]),
        (
            {**SEED_ABONNEMENT, "kanalen": [{"naam": "zaken", "filters": {"domein": ["VTH", "BRP"]}}]},
            ["kanalen[0].filters.domein: the value must be a single string"],
        ),
        (
            {**SEED_ABONNEMENT, "kanalen": [{"naam": "zaken", "filter": {}}]},
            ["kanalen[0].filter: is not a field"],
        ),
        (
            {**SEED_ABONNEMENT, "kanalen": []},
            ["kanalen: a subscription needs at least one kanaal or one type"],
        ),
        ({**SEED_ABONNEMENT, "callbackURL": "x"}, ["callbackURL: is not a field of an abonnement"]),
        (
            {**SEED_ABONNEMENT, "contentMode": "xml"},
            ["contentMode: must be one of structured, binary, batched"],
        ),
        ({**SEED_ABONNEMENT, "types": "nl.*"}, ["types: must be a list"]),
        ({**SEED_ABONNEMENT, "types": ["nl overheid"]}, ["types[0]: must be an event type pattern"]),
    ],
)
def test_malformed_subscriptions_are_refused_whole(document: dict[str, Any], problems: list[str]) -> None:
    with pytest.raises(InvalidSubscriptionError) as caught:
        Subscription.from_abonnement(document)
    assert len(caught.value.problems) == len(problems), caught.value.problems
    for got, want in zip(caught.value.problems, problems, strict=True):
        assert got.startswith(want)
    assert "8a0WWCKMgh1EIBlD2g1b6yQDtTpIgFYE" not in str(caught.value)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(InvalidSubscriptionError) as caught:
        Subscription.from_abonnement(
            {"callbackUrl": "http://127.0.0.1/x", "auth": "", "kanalen": [{"naam": ""}], "batchMax": 0}
        )
    fields = [p.split(":")[0] for p in caught.value.problems]
    assert fields == ["callbackUrl", "auth", "kanalen[0].naam", "batchMax"]


def test_allow_insecure_admits_http() -> None:
    s = Subscription.from_abonnement(
        {**SEED_ABONNEMENT, "callbackUrl": "http://127.0.0.1:8080/hook"}, allow_insecure=True
    )
    assert s.callback_url == "http://127.0.0.1:8080/hook"
    assert s.allow_insecure


# -- matching ------------------------------------------------------------------------------------


def test_routing_keys_from_type_and_extensions() -> None:
    assert routing_keys(event("nl.overheid.zaken.zaak.create")) == {
        "kanaal": "zaken",
        "#resource": "zaak",
        "#action": "create",
    }
    assert routing_keys(event("nl.overheid.zaken.zaak-gekoppeld")) == {"kanaal": "zaken"}
    assert routing_keys(event("nl.vng.zgw.zaken.zaak.created")) == {}
    assert routing_keys(event("com.example.thing", kanaal="documenten", resource="verzending", action="destroy")) == {
        "kanaal": "documenten",
        "#resource": "verzending",
        "#action": "destroy",
    }


def test_kanalen_are_ored_and_filters_anded() -> None:
    s = sub(
        Kanaal("zaken", {"#resource": "status", "#action": "create"}),
        Kanaal("besluiten", {"#action": "create"}),
    )
    assert s.wants(event("nl.overheid.zaken.status.create"))
    assert s.wants(event("nl.overheid.besluiten.besluit.create"))
    assert not s.wants(event("nl.overheid.zaken.status.update"))
    assert not s.wants(event("nl.overheid.zaken.zaak.create"))
    assert not s.wants(event("nl.overheid.documenten.enkelvoudiginformatieobject.create"))


def test_star_matches_any_value_even_absent() -> None:
    s = sub(Kanaal("zaken", {"#resource": "*", "bronorganisatie": "*"}))
    assert s.wants(event("nl.overheid.zaken.rol.destroy", data={"bronorganisatie": "000001375"}))
    assert s.wants(event("nl.overheid.zaken.zaak-gekoppeld"))


def test_filter_keys_look_at_attributes_then_data() -> None:
    s = sub(Kanaal("zaken", {"subject": "123", "bronorganisatie": "000001375"}))
    assert s.wants(
        CloudEvent(
            type="nl.overheid.zaken.zaak.create",
            source="s",
            subject="123",
            data={"bronorganisatie": "000001375"},
        )
    )
    assert not s.wants(
        CloudEvent(
            type="nl.overheid.zaken.zaak.create",
            source="s",
            subject="124",
            data={"bronorganisatie": "000001375"},
        )
    )
    # An extension attribute wins over a data key of the same name.
    s2 = sub(Kanaal("zaken", {"domein": "VTH"}))
    assert s2.wants(event(domein="VTH", data={"domein": "BRP"}))
    assert not s2.wants(event(domein="BRP", data={"domein": "VTH"}))
    # Non-object data, base64 data and nested values never match a concrete value.
    assert not s2.wants(event(data=["VTH"]))
    assert not s2.wants(event(data=b"VTH"))
    assert not s2.wants(event(data={"domein": {"naam": "VTH"}}))


def test_type_patterns() -> None:
    s = sub(types=("nl.overheid.zaken.*", "nl.vng.zgw.zaken.zaak.created"))
    assert s.wants(event("nl.overheid.zaken.zaak-gekoppeld"))
    assert s.wants(event("nl.vng.zgw.zaken.zaak.created"))
    assert not s.wants(event("nl.vng.zgw.zaken.zaak.createdX"))
    assert not s.wants(event("nl.overheid.besluiten.besluit.create"))
    assert sub(types=("*",)).wants(event("anything.at.all"))
    assert sub(types=("nl.*.zaak-*",)).wants(event("nl.overheid.zaken.zaak-ontkoppeld"))
    assert not sub(types=("nl.overheid.zaken.zaak?gekoppeld",)).wants(event("nl.overheid.zaken.zaak-gekoppeld"))


def test_types_and_kanalen_together_must_both_match() -> None:
    s = sub(Kanaal("zaken", {}), types=("*.zaak-gekoppeld",))
    assert s.wants(event("nl.overheid.zaken.zaak-gekoppeld"))
    assert not s.wants(event("nl.overheid.zaken.zaak-ontkoppeld"))
    assert not s.wants(event("nl.overheid.besluiten.zaak-gekoppeld"))


def test_matches_is_the_public_function() -> None:
    s = Subscription.from_abonnement(SEED_ABONNEMENT)
    e = event(data={"domein": "VTH", "is_eindzaakstatus": "true"})
    assert matches(s, e) is True


def test_oauth2_settings_are_checked_like_the_callback_url() -> None:
    def problems(**oauth2: str) -> list[str]:
        good = {"tokenUrl": "https://idp.example.nl/token", "clientId": "c", "clientSecret": "s3cret-value"}
        with pytest.raises(InvalidSubscriptionError) as caught:
            Subscription.create(callback_url="https://x.nl/h", types=["*"], oauth2={**good, **oauth2})
        return caught.value.problems

    assert problems(tokenUrl="https://h:99999/t") == ["oauth2.tokenUrl: is not a valid URL (Port out of range 0-65535)"]
    assert problems(tokenUrl="https://u:p@h/t") == ["oauth2.tokenUrl: must not carry credentials; put them in auth"]
    assert problems(tokenUrl="https://[::1/token")[0].startswith("oauth2.tokenUrl: is not a valid URL")
    assert problems(scope="a  b") == ["oauth2.scope: must be scope tokens separated by single spaces (RFC 6749 §3.3)"]
    shown = " ".join(problems(clientSecret="bad\nsecret"))
    assert "bad" not in shown and "oauth2.clientSecret: must be one line" in shown


# -- Open Notificaties' cloudeventFilters, the Subscriptions API's source and headers ----------------

GEKOPPELD = "nl.overheid.zaken.zaak-gekoppeld"


def groups(*items: dict[str, Any], **fields: Any) -> Subscription:
    return Subscription.from_abonnement(
        {"callbackUrl": "https://example.org/hook", "cloudeventFilters": list(items), **fields}
    )


def test_a_cloudevent_filter_group_matches_a_type_substring_case_sensitively() -> None:
    s = groups({"typeSubstring": "zaak-gekoppeld"})
    assert s.wants(event(GEKOPPELD))
    assert not s.wants(event("nl.overheid.zaken.Zaak-Gekoppeld"))
    assert not s.wants(event("nl.overheid.zaken.zaak-ontkoppeld"))


def test_cloudevent_filters_pass_on_absent_keys_equal_values_and_star() -> None:
    s = groups({"typeSubstring": "zaak", "filters": {"vertrouwelijkheid": "openbaar", "domein": "*"}})
    assert s.wants(event(GEKOPPELD, data={"vertrouwelijkheid": "openbaar", "domein": "VTH"}))
    assert s.wants(event(GEKOPPELD, data={"domein": "BRP"})), "an absent key passes (Open Notificaties)"
    assert s.wants(event(GEKOPPELD, data={"vertrouwelijkheid": "openbaar"}))
    assert not s.wants(event(GEKOPPELD, data={"vertrouwelijkheid": "geheim"}))
    assert s.wants(event(GEKOPPELD, data=None)), "no data object: no keys, every filter passes"


def test_cloudevent_filter_values_compare_with_the_json_text_of_data_values() -> None:
    s = groups({"typeSubstring": "zaak", "filters": {"eind": "true", "aantal": "3"}})
    assert s.wants(event(GEKOPPELD, data={"eind": True, "aantal": 3}))
    assert not s.wants(event(GEKOPPELD, data={"eind": False, "aantal": 3}))
    assert not s.wants(event(GEKOPPELD, data={"eind": True, "aantal": [3]}))


def test_kanalen_and_cloudevent_filter_groups_are_ored() -> None:
    s = groups(
        {"typeSubstring": "zaak-gekoppeld"},
        kanalen=[{"naam": "besluiten"}],
    )
    assert s.wants(event(GEKOPPELD)), "the group matches"
    assert s.wants(event("nl.overheid.besluiten.besluit.create")), "the kanaal matches"
    assert not s.wants(event("nl.overheid.documenten.document.create")), "neither"


def test_types_and_source_and_filters_and_on_top_of_the_groups() -> None:
    s = groups(
        {"typeSubstring": "zaak"},
        types=["nl.overheid.zaken.*"],
        source="urn:nld:oin:00000001823288444000:systeem:zrc",
        filters=[{"prefix": {"subject": "a7"}}],
    )
    assert s.wants(event(GEKOPPELD, subject="a7b3"))
    assert not s.wants(event(GEKOPPELD, subject="b7")), "the filter"
    assert not s.wants(event("nl.overheid.besluiten.zaak-besluit", subject="a7")), "the type pattern"
    other = CloudEvent(type=GEKOPPELD, source="urn:nld:oin:1:systeem:ander", subject="a7b3")
    assert not s.wants(other), "the source"


def test_source_alone_narrows_a_subscription() -> None:
    s = Subscription.from_abonnement({"callbackUrl": "https://example.org/hook", "types": ["*"], "source": "urn:a"})
    assert s.wants(CloudEvent(type=GEKOPPELD, source="urn:a"))
    assert not s.wants(CloudEvent(type=GEKOPPELD, source="urn:ab"))


@pytest.mark.parametrize(
    ("fields", "problems"),
    [
        (
            {"cloudeventFilters": [{"typeSubstring": "zaak"}], "sendCloudevents": False},
            ["cloudeventFilters: need sendCloudevents true"],
        ),
        ({"cloudeventFilters": [{"typeSubstring": ""}]}, ["cloudeventFilters[0].typeSubstring: must be a non-empty"]),
        (
            {"cloudeventFilters": [{"typeSubstring": "z", "filters": {"a": 1}, "x": 1}]},
            ["cloudeventFilters[0].x: is not a field", "cloudeventFilters[0].filters.a: the value must be"],
        ),
        ({"types": ["*"], "sendCloudevents": "yes"}, ["sendCloudevents: must be true or false"]),
        ({"types": ["*"], "source": ""}, ["source: must be a non-empty URI-reference"]),
        (
            {"types": ["*"], "headers": {"Authorization": "x", "ce-id": "1", "X-Tenant": "a\nb", "bad name": "v"}},
            ["headers.Authorization: is set by", "headers.ce-id: is set by", "headers.X-Tenant: must be a one-line",
             "headers.bad name: is not an HTTP header name"],
        ),
        ({"types": ["*"], "headers": {"WebHook-Id": "1"}}, ["headers.WebHook-Id: is set by"]),
    ],
)  # fmt: skip
def test_malformed_new_fields_are_refused(fields: dict[str, Any], problems: list[str]) -> None:
    with pytest.raises(InvalidSubscriptionError) as caught:
        Subscription.from_abonnement({"callbackUrl": "https://example.org/hook", **fields})
    assert len(caught.value.problems) == len(problems), caught.value.problems
    for got, want in zip(caught.value.problems, problems, strict=True):
        assert got.startswith(want), got


def test_new_fields_round_trip_through_to_abonnement() -> None:
    s = groups(
        {"typeSubstring": "zaak", "filters": {"a": "b"}},
        source="urn:a",
        headers={"X-Tenant": "utrecht"},
        sendCloudevents=True,
    )
    again = Subscription.from_abonnement(s.to_abonnement())
    assert again.cloudevent_filters == s.cloudevent_filters
    assert again.source == "urn:a"
    assert again.headers == (("X-Tenant", "utrecht"),)
    assert again.send_cloudevents is True
