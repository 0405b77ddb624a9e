"""`outbox deliveries list|show` and `outbox events show`: what was delivered where, and why not.
The filters are `outbox._deliveries_filter`'s, shared with `outbox retry` and the console."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from outbox._deliveries_filter import MAX_LIMIT, STATES, DeliveryFilter, FilterError, parse_cursor
from worker.store import deliveries as store

if TYPE_CHECKING:
    from worker.cli.main import Context

_TIME_HELP = "RFC 3339 (2026-12-01T09:00:00Z) or an age (15m, 2h, 7d); the event's enqueue time."


def filter_options(*, with_state: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--state --subscription --type --subject --event-id --source --since --until."""
    state = [
        click.option(
            "--state",
            "states",
            multiple=True,
            metavar="STATE",
            help=f"{', '.join(STATES)}; repeat or comma-separate for several.",
        )
    ]
    options = [
        *(state if with_state else []),
        click.option("--subscription", metavar="ID", help="Only this subscription's deliveries."),
        click.option("--type", "event_type", metavar="TYPE", help="The event's type, exactly."),
        click.option("--subject", metavar="SUBJECT", help="The event's subject, exactly."),
        click.option("--event-id", metavar="ID", help="The event's CloudEvents id."),
        click.option("--source", metavar="SOURCE", help="The event's source, exactly."),
        click.option("--since", metavar="TIME", help=f"Enqueued at or after TIME: {_TIME_HELP}"),
        click.option("--until", metavar="TIME", help=f"Enqueued before TIME: {_TIME_HELP}"),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def parse_filter(flags: dict[str, Any], *, states: tuple[str, ...] | None = None) -> DeliveryFilter:
    """The filter from the options (popped from `flags`), or a usage error naming the option."""
    values = {
        name: flags.pop(name, None)
        for name in ("states", "subscription", "event_type", "subject", "event_id", "source", "since", "until")
    }
    try:
        return DeliveryFilter.parse(
            states=states if states is not None else values["states"],
            subscription=values["subscription"],
            type=values["event_type"],
            subject=values["subject"],
            event_id=values["event_id"],
            source=values["source"],
            since=values["since"],
            until=values["until"],
        )
    except FilterError as exc:
        raise click.BadParameter(exc.rule, param_hint=f"--{exc.field}") from None


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _cell(text: str | None, width: int) -> str:
    text = text or "-"
    return text if len(text) <= width else text[: width - 1] + "…"


@click.group("deliveries")
def deliveries() -> None:
    """Deliveries: one per event and matching subscription, with every attempt."""


@deliveries.command("list")
@filter_options()
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, MAX_LIMIT), help="Deliveries on one page."
)
@click.option(
    "--after", metavar="CURSOR", help="The next page: the cursor the previous one printed (its last delivery's id)."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, per delivery.")
@click.pass_obj
def deliveries_list(obj: Context, /, limit: int, after: str | None, as_json: bool, **flags: Any) -> None:
    """Deliveries newest first, narrowed by every filter given."""
    where = parse_filter(flags)
    try:
        cursor = parse_cursor(after) if after else None
    except FilterError as exc:
        raise click.BadParameter(exc.rule, param_hint="--after") from None
    with obj.connect() as conn:
        page = store.list_deliveries(conn, obj.schema, where, limit=limit, after=cursor)
    if as_json:
        for row in page.rows:
            click.echo(json.dumps(row.to_json(), ensure_ascii=False))
        if page.next:
            click.echo(f"next page: --after {page.next}", err=True)
        return
    if not page.rows:
        click.echo("no deliveries match")
        return
    click.echo(
        f"{'ID':>10}  {'STATE':<10} {'TRIES':>5} {'LAST':<5} {'ENQUEUED':<20}  "
        f"{'TYPE':<40} {'SUBJECT':<36} SUBSCRIPTION"
    )
    for r in page.rows:
        last = str(r.last_status_code) if r.last_status_code is not None else ("err" if r.last_error else "-")
        click.echo(
            f"{r.id:>10}  {r.status:<10} {r.attempts:>5} {last:<5} {_when(r.enqueued_at):<20}  "
            f"{_cell(r.type, 40):<40} {_cell(r.subject, 36):<36} {r.subscription_id}"
        )
    if page.next:
        click.echo(f"more: add --after {page.next}")


def _delivery_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise click.BadParameter(f"{text!r} is not a delivery id (a number)", param_hint="ID")
    return int(text)


@deliveries.command("show")
@click.argument("delivery_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The delivery, its event and its attempts as one JSON document.")
@click.pass_obj
def deliveries_show(obj: Context, delivery_id: str, as_json: bool) -> None:
    """One delivery: its event as JSON and every attempt, oldest first."""
    number = _delivery_id(delivery_id)
    with obj.connect() as conn:
        found = store.get_delivery(conn, obj.schema, number)
    if found is None:
        raise click.ClickException(f"no delivery {number} (it may have been purged)")
    if as_json:
        click.echo(json.dumps(found.to_json(), ensure_ascii=False, indent=2))
        return
    click.echo(f"delivery {found.id}: {found.status}, {found.attempts} attempt{'' if found.attempts == 1 else 's'}")
    click.echo(f"  subscription  {found.subscription_id}  {found.callback_url}")
    if found.ordering_key:
        click.echo(f"  ordering key  {found.ordering_key}")
    click.echo(f"  enqueued      {_when(found.enqueued_at)}")
    if found.status in ("blocked", "pending", "delivering"):
        click.echo(f"  next attempt  {_when(found.next_attempt_at)}")
    else:
        click.echo(f"  finished      {_when(found.finished_at)}")
    click.echo("event:")
    for line in json.dumps(found.event, ensure_ascii=False, indent=2).splitlines():
        click.echo(f"  {line}")
    click.echo("attempts:" if found.tries else "attempts: none yet")
    for n, a in enumerate(found.tries, 1):
        outcome = f"HTTP {a.status_code}" if a.status_code is not None else f"error: {a.error}"
        click.echo(f"  {n:>3}. {_when(a.attempted_at)}  {a.duration_ms:8.1f} ms  {outcome}")
        if a.response_excerpt:
            excerpt = " ".join(a.response_excerpt.split())
            click.echo(f"       answer: {_cell(excerpt, 200)}")


@click.group("events")
def events() -> None:
    """Events in the outbox and where each went."""


@events.command("show")
@click.argument("event_id", metavar="[ID]", required=False)
@click.option("--id", "id_option", metavar="ID", help="The CloudEvents id (the same as the argument).")
@click.option("--source", metavar="SOURCE", help="Its source, where several sources used the same id.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array: each event with its deliveries.")
@click.pass_obj
def events_show(obj: Context, event_id: str | None, id_option: str | None, source: str | None, as_json: bool) -> None:
    """An event by its CloudEvents id (or --source S --id ID): the event and each delivery with its state."""
    if event_id and id_option and event_id != id_option:
        raise click.UsageError("give the id once: as the argument or as --id")
    wanted = event_id or id_option
    if not wanted:
        raise click.UsageError("say which event: outbox events show ID (or --source S --id ID)")
    with obj.connect() as conn:
        found = store.find_events(conn, obj.schema, event_id=wanted, source=source)
    if not found:
        where = f" from source {source!r}" if source else ""
        raise click.ClickException(f"no event with id {wanted!r}{where} (it may have been purged)")
    if as_json:
        click.echo(json.dumps([f.to_json() for f in found], ensure_ascii=False, indent=2))
        return
    if len(found) > 1:
        click.echo(f"{len(found)} events have id {wanted!r} (narrow with --source):")
    for f in found:
        click.echo(f"event {f.event.get('id')} from {f.event.get('source')}, enqueued {_when(f.enqueued_at)}")
        for line in json.dumps(f.event, ensure_ascii=False, indent=2).splitlines():
            click.echo(f"  {line}")
        if not f.deliveries:
            click.echo("  not routed yet" if f.routed_at is None else "  no subscription matched it")
        for d in f.deliveries:
            last = f" (last: HTTP {d.last_status_code})" if d.last_status_code is not None else ""
            if d.last_status_code is None and d.last_error:
                last = f" (last: {_cell(d.last_error, 60)})"
            click.echo(
                f"  delivery {d.id}: {d.status}, {d.attempts} attempt(s){last} → {d.callback_url} ({d.subscription_id})"
            )
