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
