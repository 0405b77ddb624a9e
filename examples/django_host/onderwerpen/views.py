"""Create / update / delete shaped like Open Klant's OnderwerpobjectViewSet, emitting through the outbox.

Each change and its events are one `transaction.atomic()`: the events exist exactly when the change
commits. Before the switch this module imported notifications-api-common's `process_cloudevent`
(see ../README.md); nothing else changed.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from onderwerpen.models import Klantcontact, Onderwerpobject
from outbox.django import enqueue_zaak_links, process_cloudevent

KLANTCONTACT_GEREGISTREERD = "nl.overheid.klantinteracties.klantcontact-geregistreerd"
IDENTIFICATOR_FIELDS = {
    "codeObjecttype": "onderwerpobjectidentificator_code_objecttype",
    "codeSoortObjectId": "onderwerpobjectidentificator_code_soort_object_id",
    "objectId": "onderwerpobjectidentificator_object_id",
    "codeRegister": "onderwerpobjectidentificator_code_register",
}


class BadRequest(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def _authorized(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    return hmac.compare_digest(header.encode(), f"Token {settings.API_TOKEN}".encode())


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise BadRequest("body", "must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("body", "must be a JSON object")
    return body


def api(view: Any) -> Any:
    """Token auth, JSON errors that name the field, no CSRF (a token API, as DRF's)."""

    @csrf_exempt
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not _authorized(request):
            return JsonResponse({"detail": "Authorization: Token … required"}, status=401)
        try:
            return view(request, *args, **kwargs)  # type: ignore[no-any-return]
        except BadRequest as exc:
            return JsonResponse({"invalidParams": [{"name": exc.field, "reason": exc.reason}]}, status=400)

    return wrapper


def _url(request: HttpRequest, instance: Onderwerpobject) -> str:
    return request.build_absolute_uri(reverse("onderwerpobject-detail", kwargs={"uuid": instance.uuid}))


def _as_json(request: HttpRequest, instance: Onderwerpobject) -> dict[str, Any]:
    return {
        "url": _url(request, instance),
        "uuid": str(instance.uuid),
        "klantcontact": str(instance.klantcontact.uuid) if instance.klantcontact else None,
        "onderwerpobjectidentificator": {api: getattr(instance, field) for api, field in IDENTIFICATOR_FIELDS.items()},
    }


def _apply(instance: Onderwerpobject, body: dict[str, Any]) -> None:
    if "klantcontact" in body:
        value = body["klantcontact"]
        instance.klantcontact = Klantcontact.objects.filter(uuid=value).first() if value else None
        if value and instance.klantcontact is None:
            raise BadRequest("klantcontact", "no Klantcontact with this uuid")
    if "onderwerpobjectidentificator" in body:
        ident = body["onderwerpobjectidentificator"] or {}
        if not isinstance(ident, dict):
            raise BadRequest("onderwerpobjectidentificator", "must be an object")
        for api, field in IDENTIFICATOR_FIELDS.items():
            value = ident.get(api) or ""
            if not isinstance(value, str):
                raise BadRequest(f"onderwerpobjectidentificator.{api}", "must be a string")
            setattr(instance, field, value)


@api
@require_http_methods(["POST"])
def klantcontact_create(request: HttpRequest) -> HttpResponse:
    body = _body(request)
    onderwerp = body.get("onderwerp")
    if not isinstance(onderwerp, str) or not onderwerp:
        raise BadRequest("onderwerp", "must be a non-empty string")
    with transaction.atomic():
        klantcontact = Klantcontact.objects.create(onderwerp=onderwerp)
        process_cloudevent(KLANTCONTACT_GEREGISTREERD, subject=str(klantcontact.uuid), data={"onderwerp": onderwerp})
    return JsonResponse({"uuid": str(klantcontact.uuid), "onderwerp": onderwerp}, status=201)


@api
@require_http_methods(["POST"])
def onderwerpobject_create(request: HttpRequest) -> HttpResponse:
    body = _body(request)
    with transaction.atomic():
        instance = Onderwerpobject()
        _apply(instance, body)
        instance.save()
        enqueue_zaak_links(None, instance, url=_url(request, instance))
    return JsonResponse(_as_json(request, instance), status=201)


@api
@require_http_methods(["GET", "PUT", "PATCH", "DELETE"])
def onderwerpobject_detail(request: HttpRequest, uuid: str) -> HttpResponse:
    with transaction.atomic():
        instance = get_object_or_404(Onderwerpobject.objects.select_for_update(), uuid=uuid)
        if request.method == "GET":
            return JsonResponse(_as_json(request, instance))
        url = _url(request, instance)
        if request.method == "DELETE":
            enqueue_zaak_links(instance, None, url=url)
            instance.delete()
            return HttpResponse(status=204)
        before = Onderwerpobject.objects.get(pk=instance.pk)  # the state before, as Open Klant's perform_update
        body = _body(request)
        if request.method == "PUT":
            body.setdefault("onderwerpobjectidentificator", None)
        _apply(instance, body)
        instance.save()
        enqueue_zaak_links(before, instance, url=url)
    return JsonResponse(_as_json(request, instance))
