"""The outbox in the Django admin: subscriptions, deliveries with their attempts, events.

Everything is read-only; the actions are the only writes, and they run the SQL
of `outbox retry` and `outbox subscriptions pause|resume` (`outbox._operations`).
They need the permissions `outbox.retry_delivery` / `outbox.pause_subscription`
(superusers have them). No secret is mapped by the models, so none can show.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from outbox._operations import retry_failed, set_subscription_status
from outbox.django import conf
from outbox.django.models import Delivery, DeliveryAttempt, Event, Subscription


def _psycopg() -> Any:
    connection = connections[conf.database()]
    connection.ensure_connection()
    return connection.connection


def _events_matching(term: str) -> QuerySet[Event]:
    """Events whose id or subject is `term` (exact: both are identifiers)."""
    return (
        Event.objects.annotate(
            _event_id=RawSQL("(event->>'id')", ()),
            _subject=RawSQL("(event->>'subject')", ()),
        )
        .filter(Q(_event_id=term) | Q(_subject=term))
        .values("position")
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False  # no second COUNT(*) over millions of rows

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventSearch:
    """The search box takes an event id or subject: `event_field` is the lookup that points at events."""

    event_field = "event"
    search_fields = ("pk",)  # shows the box; the search itself is below
    search_help_text = "an event id or subject (exact)"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> tuple[Any, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(**{f"{self.event_field}__in": _events_matching(term)}), False


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ("public_url", "status", "paused_reason", "content_mode", "auth_kind", "agreement", "created_at")
    list_filter = ("status", "content_mode", "auth_kind")
    # No search over callback_url: it would let a search confirm a guessed access_token in a query string.
    fields = (
        "id",
        "public_url",
        "status",
        "paused_reason",
        "kanalen_json",
        "types",
        "filters_json",
        "content_mode",
        "batch_max",
        "ordering_key",
        "auth_kind",
        "header_names",
        "agreement",
        "handshake_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    actions = ("pause", "resume")

    @admin.display(description="callback URL")
    def public_url(self, obj: Subscription) -> str:
        return obj.public_url

    @admin.display(description="kanalen")
    def kanalen_json(self, obj: Subscription) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.kanalen, indent=2, ensure_ascii=False))

    @admin.display(description="filters")
    def filters_json(self, obj: Subscription) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.filters, indent=2, ensure_ascii=False))

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("outbox.pause_subscription"))

    def _set(self, request: HttpRequest, queryset: QuerySet[Subscription], status: str, reason: str | None) -> int:
        pg = _psycopg()
        by = str(request.user)  # named in the subscription-paused event
        return sum(set_subscription_status(pg, conf.schema(), sub.pk, status, reason, by=by) for sub in queryset)

    @admin.action(description="Pause the selected subscriptions (their deliveries wait)", permissions=["pause"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = self._set(request, queryset, "paused", f"paused by {request.user} in the Django admin")
        self.message_user(request, f"paused {count} subscription{'' if count == 1 else 's'}", messages.SUCCESS)

    @admin.action(description="Resume the selected subscriptions", permissions=["pause"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = self._set(request, queryset, "active", None)
        self.message_user(request, f"resumed {count} subscription{'' if count == 1 else 's'}", messages.SUCCESS)


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("attempted_at", "status_code", "error", "duration_ms", "response_excerpt")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    @admin.display(description="answer (excerpt)")
    def response_excerpt(self, obj: DeliveryAttempt) -> str:
        body = obj.response_body or ""
        return body if len(body) <= 300 else body[:300] + "…"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(EventSearch, ReadOnlyAdmin):
    list_display = (
        "id",
        "event_type",
        "event_subject",
        "subscription_url",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "subscription")
    list_select_related = ("event", "subscription")
    fields = (
        "id",
        "event_link",
        "subscription_url",
        "status",
        "ordering_key",
        "attempts",
        "next_attempt_at",
        "leased_until",
        "last_status_code",
        "last_error",
        "created_at",
        "updated_at",
        "delivered_at",
    )
    readonly_fields = fields
    inlines = (AttemptInline,)
    actions = ("retry",)

    @admin.display(description="type")
    def event_type(self, obj: Delivery) -> str | None:
        return obj.event.event_type

    @admin.display(description="subject")
    def event_subject(self, obj: Delivery) -> str | None:
        return obj.event.subject

    @admin.display(description="subscription")
    def subscription_url(self, obj: Delivery) -> str:
        return obj.subscription.public_url

    @admin.display(description="event")
    def event_link(self, obj: Delivery) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:outbox_event_change", args=[obj.event.pk]),
            f"{obj.event.event_type} {obj.event.event_id}",
        )

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("outbox.retry_delivery"))

    @admin.action(description="Retry the selected failed deliveries", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        selected = list(queryset.values_list("id", flat=True))
        count = retry_failed(_psycopg(), conf.schema(), delivery_ids=selected)
        skipped = len(selected) - count
        text = f"{count} failed deliver{'y' if count == 1 else 'ies'} back to pending"
        if skipped:
            text += f"; {skipped} of the selection {'was' if skipped == 1 else 'were'} not failed and left as is"
        self.message_user(request, text, messages.SUCCESS if count else messages.WARNING)


@admin.register(Event)
class EventAdmin(EventSearch, ReadOnlyAdmin):
    event_field = "position"
    list_display = ("position", "event_type", "event_id", "subject", "enqueued_at", "routed_at")
    fields = ("position", "event_id", "event_type", "subject", "enqueued_at", "routed_at", "event_json")
    readonly_fields = fields

    @admin.display(description="type")
    def event_type(self, obj: Event) -> str | None:
        return obj.event_type

    @admin.display(description="id")
    def event_id(self, obj: Event) -> str | None:
        return obj.event_id

    @admin.display(description="subject")
    def subject(self, obj: Event) -> str | None:
        return obj.subject

    @admin.display(description="event (JSON)")
    def event_json(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.event, indent=2, ensure_ascii=False))
