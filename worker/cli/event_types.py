"""`outbox event-types …`: the event catalogue (OpenConnector's Events), in its JSON form:

{"name": …, "slug": …, "type": …, "source": … | null, "schema": {JSON Schema} | null,
 "isEnabled": true, "description": … | null}
"""

from __future__ import annotations

import json
from typing import Any

import click

from outbox._catalogue import EventType, InvalidEventTypeError
from worker.cli.inputs import read_json
from worker.store import catalogue as catalogue_store


def _refused(exc: InvalidEventTypeError | catalogue_store.EventTypeConflict) -> click.ClickException:
    problems = exc.problems if isinstance(exc, InvalidEventTypeError) else [str(exc)]
    return click.ClickException("the event type was refused:\n" + "\n".join(f"  - {p}" for p in problems))


def _options(command: Any) -> Any:
    options: tuple[tuple[str, dict[str, Any]], ...] = (
        ("--name", {"help": "Human name, e.g. 'Zaak gekoppeld'."}),
        ("--slug", {"help": "Unique short name: lowercase letters and digits joined by - _ or ."}),
        ("--type", {"help": "The CloudEvents type, e.g. nl.overheid.zaken.zaak-gekoppeld (unique)."}),
        ("--source", {"help": "The source every event of this type must have (default: any)."}),
        ("--schema", {"metavar": "FILE", "help": "JSON Schema (draft 2020-12 or draft-07) for `data`; - = stdin."}),
        ("--description", {"help": "What the event means."}),
    )
    for flag, settings in reversed(options):
        command = click.option(flag, default=None, **settings)(command)
    return command


def _given(options: dict[str, Any]) -> dict[str, Any]:
    fields = {
        key: options[key] for key in ("name", "slug", "type", "source", "description") if options.get(key) is not None
    }
    if options.get("schema") is not None:
        fields["schema"] = read_json(options["schema"], "--schema")
    return fields


def _print(entry: EventType, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(entry.to_json(), indent=2, ensure_ascii=False))
        return
    for key, value in entry.to_json().items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list | bool) else value
        click.echo(f"{key:12} {'-' if shown is None else shown}")


@click.group("event-types")
def event_types() -> None:
    """The event catalogue: CloudEvent types, their data schema, source, and whether they are enabled."""


@event_types.command("add")
@_options
@click.option("--disabled", is_flag=True, help="Register it disabled (events of this type are not written).")
@click.option(
    "--from-json", "from_json", metavar="FILE", help="The entry as JSON (flags override its fields); - = stdin."
)
@click.pass_obj
def add_command(obj: Any, /, from_json: str | None, disabled: bool, **options: Any) -> None:
    """Register an event type."""
    document = read_json(from_json, "--from-json") if from_json else {}
    if not isinstance(document, dict):
        raise click.ClickException("the event type was refused:\n  - event type: must be a JSON object")
    document.update(_given(options))
    if disabled:
        document["isEnabled"] = False
    try:
        entry = EventType.from_json(document)
        with obj.connect() as conn:
            catalogue_store.add(conn, obj.schema, entry)
    except (InvalidEventTypeError, catalogue_store.EventTypeConflict) as exc:
        raise _refused(exc) from None
    click.echo(f"added {entry.slug} ({entry.type})")


@event_types.command("list")
@click.option("--json", "as_json", is_flag=True, help="The whole catalogue as a JSON array.")
@click.pass_obj
def list_command(obj: Any, as_json: bool) -> None:
    """Every event type."""
    with obj.connect() as conn:
        entries = catalogue_store.all_types(conn, obj.schema)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], indent=2, ensure_ascii=False))
        return
    click.echo(f"{'slug':30}  {'enabled':7}  {'schema':6}  type")
    for e in entries:
        built_in = "  (operational, built in)" if e.operational else ""
        click.echo(
            f"{e.slug:30}  {'yes' if e.is_enabled else 'no':7}  {'yes' if e.schema is not None else '-':6}  {e.type}"
            f"{built_in}"
        )


@event_types.command("show")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show_command(obj: Any, slug: str, as_json: bool) -> None:
    """One event type."""
    with obj.connect() as conn:
        _print(catalogue_store.get(conn, obj.schema, slug), as_json)


@event_types.command("update")
@click.argument("slug")
@_options
@click.option("--clear", multiple=True, type=click.Choice(["source", "schema", "description"]), help="Remove a field.")
@click.option("--from-json", "from_json", metavar="FILE", help="Fields to change, as JSON; - = stdin.")
@click.pass_obj
def update_command(obj: Any, /, slug: str, clear: tuple[str, ...], from_json: str | None, **options: Any) -> None:
    """Change an event type; the rest stays, and the whole entry is checked again."""
    changes = read_json(from_json, "--from-json") if from_json else {}
    if not isinstance(changes, dict):
        raise click.ClickException("the event type was refused:\n  - event type: must be a JSON object")
    changes = {**dict.fromkeys(clear), **changes, **_given(options)}
    _change(obj, slug, changes)
    click.echo(f"updated {slug}")


def _change(obj: Any, slug: str, changes: dict[str, Any]) -> None:
    """Read the entry, apply `changes`, check it whole and write it back, in one transaction with the row
    locked: two operators changing one entry at once do not lose either's change."""
    try:
        with obj.connect() as conn:
            document = catalogue_store.get(conn, obj.schema, slug, lock=True).to_json()
            catalogue_store.replace(conn, obj.schema, slug, EventType.from_json({**document, **changes}))
    except (InvalidEventTypeError, catalogue_store.EventTypeConflict) as exc:
        raise _refused(exc) from None


def _set_enabled(obj: Any, slug: str, enabled: bool) -> None:
    _change(obj, slug, {"isEnabled": enabled})


@event_types.command("enable")
@click.argument("slug")
@click.pass_obj
def enable_command(obj: Any, slug: str) -> None:
    """Events of this type are written again."""
    _set_enabled(obj, slug, True)
    click.echo(f"enabled {slug}")


@event_types.command("disable")
@click.argument("slug")
@click.pass_obj
def disable_command(obj: Any, slug: str) -> None:
    """Stop writing events of this type (enqueue returns None for them), without a deploy of the hosts."""
    _set_enabled(obj, slug, False)
    click.echo(f"disabled {slug} (hosts see it within OUTBOX_CATALOGUE_TTL seconds)")


@event_types.command("remove")
@click.argument("slug")
@click.pass_obj
def remove_command(obj: Any, slug: str) -> None:
    """Take an event type out of the catalogue (its events are then written unchecked, or refused when strict)."""
    try:
        with obj.connect() as conn:
            catalogue_store.remove(conn, obj.schema, slug)
    except catalogue_store.EventTypeConflict as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {slug}")


@event_types.command("import")
@click.argument("file")
@click.pass_obj
def import_command(obj: Any, file: str) -> None:
    """Add or update the event types of FILE (a JSON array, as `export` writes; - = stdin), by slug, in one
    transaction; all are checked first. Importing the same file again changes nothing."""
    document = read_json(file, "import")
    if not isinstance(document, list):
        raise click.ClickException("import: the file must hold a JSON array of event types")
    entries, problems = [], []
    for index, item in enumerate(document):
        try:
            entries.append(EventType.from_json(item))
        except InvalidEventTypeError as exc:
            problems += [f"[{index}].{p}" for p in exc.problems]
    slugs = [e.slug for e in entries]
    problems += [f"slug: {s!r} is in the file twice" for s in sorted({s for s in slugs if slugs.count(s) > 1})]
    if problems:
        raise click.ClickException("the catalogue was refused:\n" + "\n".join(f"  - {p}" for p in problems))
    try:
        with obj.connect() as conn:
            changed = catalogue_store.import_all(conn, obj.schema, entries)
    except catalogue_store.EventTypeConflict as exc:
        raise _refused(exc) from None
    click.echo(f"imported {len(entries)} event types ({changed} added or changed)")


@event_types.command("export")
@click.pass_obj
def export_command(obj: Any) -> None:
    """The whole catalogue as one JSON array (what `import` reads), without the built-in operational
    entries (every schema has them)."""
    with obj.connect() as conn:
        entries = catalogue_store.all_types(conn, obj.schema)
    documents = [{k: v for k, v in e.to_json().items() if k != "operational"} for e in entries if not e.operational]
    click.echo(json.dumps(documents, indent=2, ensure_ascii=False))
