"""The `outbox` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg

from outbox import InvalidSubscriptionError, Subscription, migrate
from outbox._sql import DEFAULT_SCHEMA, check_schema_name, migrations
from worker import logs, maintenance, subscription_store
from worker import status as status_report
from worker.daemon import run_worker
from worker.database import DEFAULT_DATA_DIR, database_url
from worker.handshake import Agreement, HandshakeRefused, handshake
from worker.settings import SettingsError, WorkerSettings


@dataclass
class Context:
    database_url: str | None
    schema: str
    data_dir: Path

    @contextlib.contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection that commits when the block ends well; database trouble becomes one readable line."""
        with database_url(self.database_url, self.data_dir) as url:
            try:
                conn = psycopg.connect(url, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise click.ClickException(f"cannot connect to the database: {_first_line(exc)}") from None
            try:
                with conn:
                    yield conn
            except subscription_store.SubscriptionNotFound as exc:
                raise click.ClickException(str(exc)) from None
            except psycopg.errors.UndefinedTable:
                raise click.ClickException(
                    f"the outbox schema {self.schema!r} is missing or incomplete: run `outbox migrate` first"
                ) from None
            except psycopg.Error as exc:
                raise click.ClickException(f"database error: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _check_schema(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_schema_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--database-url",
    envvar="OUTBOX_DATABASE_URL",
    help="libpq URL of the PostgreSQL to use [env OUTBOX_DATABASE_URL]. "
    "Without it, an embedded PostgreSQL runs in --data-dir.",
)
@click.option(
    "--schema",
    envvar="OUTBOX_SCHEMA",
    default=DEFAULT_SCHEMA,
    show_default=True,
    callback=_check_schema,
    help="PostgreSQL schema holding the outbox tables [env OUTBOX_SCHEMA].",
)
@click.option(
    "--data-dir",
    envvar="OUTBOX_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Data folder of the embedded PostgreSQL [env OUTBOX_DATA_DIR].",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, schema: str, data_dir: Path) -> None:
    """A transactional outbox for NL GOV CloudEvents on PostgreSQL."""
    ctx.obj = Context(database_url=database_url, schema=schema, data_dir=data_dir)


# -- schema -------------------------------------------------------------------------


@cli.command("migrate")
@click.pass_obj
def migrate_command(obj: Context) -> None:
    """Create or upgrade the outbox schema (idempotent; safe to run concurrently)."""
    with database_url(obj.database_url, obj.data_dir) as url:
        try:
            applied = migrate(url, schema=obj.schema)
        except psycopg.OperationalError as exc:
            raise click.ClickException(f"cannot connect to the database: {_first_line(exc)}") from None
        except (psycopg.Error, RuntimeError) as exc:
            raise click.ClickException(f"migration failed: {_first_line(exc)}") from None
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:03d}_{m.name}")
    else:
        click.echo(f"schema {obj.schema!r} is up to date")


@cli.command("sql")
def sql_command() -> None:
    """Print the migrations, for a DBA to read (no database needed)."""
    for m in migrations():
        click.echo(f"-- ==== {m.version:03d}_{m.name}.sql ====")
        click.echo(m.text)


# -- subscriptions -----------------------------------------------------------------


def _origin_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--origin",
        envvar="OUTBOX_WEBHOOK_ORIGIN",
        metavar="DNS_NAME",
        help="Our WebHook-Request-Origin for the handshake, e.g. outbox.gemeente.nl [env OUTBOX_WEBHOOK_ORIGIN].",
    )(command)


@cli.group("subscriptions")
def subscriptions() -> None:
    """Manage subscriptions (webhooks and what they want)."""


def _load_abonnement(path: str) -> object:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"--from-json: cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.ClickException(f"--from-json: {path} is not valid JSON ({exc})") from None


@subscriptions.command("add")
@click.option("--callback-url", help="Webhook URL the events are POSTed to (https).")
@click.option("--auth", help="Authorization header value, e.g. 'Bearer <token>'. A secret: never printed.")
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="PATTERN",
    help="Event type pattern; * is a wildcard. Repeatable.",
)
@click.option(
    "--content-mode",
    type=click.Choice(["structured", "binary", "batched"]),
    default=None,
    help="HTTP content mode [default: structured].",
)
@click.option("--ordering-key", metavar="ATTRIBUTE", help="Event attribute to order by [default: subject].")
@click.option(
    "--from-json",
    "from_json",
    metavar="FILE",
    help="Abonnement JSON (callbackUrl, auth, kanalen[].naam/filters); - reads standard input.",
)
@click.option("--allow-insecure", is_flag=True, help="Allow http:// and loopback/private callback addresses.")
@click.option("--skip-handshake", is_flag=True, help="The delivery was agreed out of band: no OPTIONS handshake.")
@click.option(
    "--rate", type=click.IntRange(1), metavar="PER_MINUTE", help="Ask the target for this rate in the handshake."
)
@_origin_option
@click.option("--json", "as_json", is_flag=True, help="Print the stored subscription as JSON (the id stays last).")
@click.pass_obj
def subscriptions_add(
    obj: Context,
    callback_url: str | None,
    auth: str | None,
    types: tuple[str, ...],
    content_mode: str | None,
    ordering_key: str | None,
    from_json: str | None,
    allow_insecure: bool,
    skip_handshake: bool,
    rate: int | None,
    origin: str | None,
    as_json: bool,
) -> None:
    """Register a subscription, after the OPTIONS handshake of the webhook guideline (unless
    --skip-handshake: agreed out of band). Prints the new subscription's id alone on the last line."""
    try:
        if from_json is not None:
            clashing = [
                flag
                for flag, value in (
                    ("--callback-url", callback_url),
                    ("--auth", auth),
                    ("--type", types),
                    ("--content-mode", content_mode),
                    ("--ordering-key", ordering_key),
                )
                if value
            ]
            if clashing:
                raise click.UsageError(f"--from-json gives the whole subscription; drop {', '.join(clashing)}")
            subscription = Subscription.from_abonnement(_load_abonnement(from_json), allow_insecure=allow_insecure)
        else:
            if not callback_url:
                raise click.UsageError("give --callback-url (or --from-json FILE)")
            subscription = Subscription.create(
                callback_url=callback_url,
                auth=auth,
                types=list(types),
                content_mode=content_mode or "structured",
                ordering_key=ordering_key,
                allow_insecure=allow_insecure,
            )
    except InvalidSubscriptionError as exc:
        raise click.ClickException(
            "the subscription was refused:\n" + "\n".join(f"  - {p}" for p in exc.problems)
        ) from None
    if not skip_handshake:
        agreement = _handshake(subscription.callback_url, origin, rate)
        subscription = replace(
            subscription,
            agreement="handshake",
            handshake_at=datetime.now(UTC),
            requested_rate=rate,
            allowed_rate=agreement.allowed_rate,
        )
    with obj.connect() as conn:
        new_id = subscription_store.add(conn, subscription, obj.schema)
        stored = subscription_store.get(conn, obj.schema, new_id)
    if as_json:
        click.echo(json.dumps(stored.to_public_dict(), indent=2))
    else:
        click.echo(f"added subscription for {stored.callback_url} ({stored.content_mode} mode)")
    click.echo(new_id)


def _handshake(callback_url: str, origin: str | None, rate: int | None) -> Agreement:
    if not origin:
        raise click.UsageError(
            "the OPTIONS handshake needs our origin: set OUTBOX_WEBHOOK_ORIGIN (or --origin), "
            "or pass --skip-handshake when delivery was agreed out of band"
        )
    try:
        return handshake(callback_url, origin, rate)
    except HandshakeRefused as exc:
        raise click.ClickException(f"the subscription was refused: {exc}") from None


@subscriptions.command("verify")
@click.argument("subscription_id")
@click.option("--rate", type=click.IntRange(1), metavar="PER_MINUTE", help="Ask the target for this rate.")
@_origin_option
@click.pass_obj
def subscriptions_verify(obj: Context, subscription_id: str, rate: int | None, origin: str | None) -> None:
    """Run the OPTIONS handshake again and record what the target agreed to."""
    with obj.connect() as conn:
        sub = subscription_store.get(conn, obj.schema, subscription_id)
    asked = rate if rate is not None else sub.requested_rate
    agreement = _handshake(sub.callback_url, origin, asked)
    with obj.connect() as conn:
        subscription_store.record_handshake(conn, obj.schema, subscription_id, asked, agreement.allowed_rate)
    click.echo(f"verified {subscription_id}: the target allows origin {agreement.allowed_origin!r}"
               + (f", rate {agreement.allowed_rate} per minute" if agreement.allowed_rate else ""))  # fmt: skip


def _summary(sub: Subscription) -> str:
    parts = [f"{k.naam}{json.dumps(dict(k.filters), ensure_ascii=False) if k.filters else ''}" for k in sub.kanalen]
    parts += [f"type {t}" for t in sub.types]
    return "; ".join(parts)


@subscriptions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def subscriptions_list(obj: Context, as_json: bool) -> None:
    """List subscriptions (the auth secret is never shown)."""
    with obj.connect() as conn:
        subs = subscription_store.list_all(conn, obj.schema)
    if as_json:
        click.echo(json.dumps([s.to_public_dict() for s in subs], indent=2))
        return
    if not subs:
        click.echo("no subscriptions")
        return
    click.echo(f"{'id':36}  {'status':6}  {'mode':10}  {'auth':12}  {'callbackUrl':40}  wants")
    for s in subs:
        click.echo(
            f"{s.id or '':36}  {s.status:6}  {s.content_mode:10}  {s.auth_hint or '-':12}  "
            f"{s.callback_url:40}  {_summary(s)}"
        )


@subscriptions.command("show")
@click.argument("subscription_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def subscriptions_show(obj: Context, subscription_id: str, as_json: bool) -> None:
    """Show one subscription (the auth secret is never shown)."""
    with obj.connect() as conn:
        sub = subscription_store.get(conn, obj.schema, subscription_id)
    document = sub.to_public_dict()
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    for key, value in document.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value
        click.echo(f"{key:14} {'-' if shown is None else shown}")


def _set_status(obj: Context, subscription_id: str, status: str, reason: str | None) -> None:
    with obj.connect() as conn:
        subscription_store.set_status(conn, obj.schema, subscription_id, status, reason)


@subscriptions.command("pause")
@click.argument("subscription_id")
@click.option("--reason", default="paused by operator", show_default=True, help="Why (shown in list/show).")
@click.pass_obj
def subscriptions_pause(obj: Context, subscription_id: str, reason: str) -> None:
    """Stop delivering to a subscription; its deliveries wait."""
    _set_status(obj, subscription_id, "paused", reason)
    click.echo(f"paused {subscription_id}")


@subscriptions.command("resume")
@click.argument("subscription_id")
@click.pass_obj
def subscriptions_resume(obj: Context, subscription_id: str) -> None:
    """Deliver to a paused subscription again."""
    _set_status(obj, subscription_id, "active", None)
    click.echo(f"resumed {subscription_id}")


@subscriptions.command("remove")
@click.argument("subscription_id")
@click.pass_obj
def subscriptions_remove(obj: Context, subscription_id: str) -> None:
    """Delete a subscription with its deliveries and their history."""
    with obj.connect() as conn:
        subscription_store.remove(conn, obj.schema, subscription_id)
    click.echo(f"removed {subscription_id}")


# -- operations ---------------------------------------------------------------------


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the stable JSON document.")
@click.pass_obj
def status_command(obj: Context, as_json: bool) -> None:
    """Counts per state and per subscription; the age of the oldest pending event."""
    with obj.connect() as conn:
        document = status_report.collect(conn, obj.schema)
    click.echo(json.dumps(document, indent=2) if as_json else status_report.render(document))


@cli.command("retry")
@click.option("--subscription", "subscription_id", metavar="ID", help="Only this subscription's deliveries.")
@click.option("--all-failed", is_flag=True, help="Every failed delivery (of --subscription, if given).")
@click.option("--delivery", "delivery_id", type=int, metavar="ID", help="Only this delivery.")
@click.pass_obj
def retry_command(obj: Context, subscription_id: str | None, all_failed: bool, delivery_id: int | None) -> None:
    """Put failed deliveries back to pending, with a fresh set of attempts."""
    if all_failed == (delivery_id is not None):
        raise click.UsageError("say which: --all-failed or --delivery ID")
    if subscription_id:
        try:
            uuid.UUID(subscription_id)
        except ValueError:
            raise click.BadParameter(
                f"{subscription_id!r} is not a subscription id", param_hint="--subscription"
            ) from None
    with obj.connect() as conn:
        count = maintenance.retry_failed(conn, obj.schema, subscription_id=subscription_id, delivery_id=delivery_id)
    click.echo(f"{count} failed deliver{'y' if count == 1 else 'ies'} back to pending")


@cli.command("purge")
@click.option("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h, 90m, 2w.")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_obj
def purge_command(obj: Context, older_than: str, batch_size: int) -> None:
    """Delete delivered deliveries, their attempts and fully delivered events older than DURATION."""
    try:
        age = maintenance.parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    with obj.connect() as conn:
        deliveries, events = maintenance.purge(conn, obj.schema, age, batch_size)
    click.echo(f"purged {deliveries} deliveries and {events} events older than {older_than}")


def _setting_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """A flag for every worker setting; each overrides its OUTBOX_* environment variable."""
    for name in reversed(RUN_FLAGS):
        field = WorkerSettings.model_fields[name]
        kind = int if field.annotation is int else float
        command = click.option(
            f"--{name.replace('_', '-')}",
            name,
            type=kind,
            default=None,
            help=f"{field.description} [env OUTBOX_{name.upper()}, default {field.default}]",
        )(command)
    return command


RUN_FLAGS = (
    "concurrency",
    "subscription_concurrency",
    "batch_size",
    "poll_interval",
    "lease_seconds",
    "retry_base_delay",
    "retry_max_delay",
    "retry_max_attempts",
    "retry_after_max",
    "request_timeout",
    "shutdown_grace",
)


@cli.command("run")
@_setting_options
@click.option(
    "--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"])
)
@click.pass_obj
def run_command(obj: Context, /, log_level: str, **flags: Any) -> None:
    """The worker daemon: route, claim, deliver, record, retry. SIGTERM/SIGINT stop it cleanly."""
    try:
        settings = WorkerSettings.load(database_url=obj.database_url, db_schema=obj.schema, **flags)
    except SettingsError as exc:
        for line in exc.lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(2)
    logs.setup(log_level)
    with database_url(settings.database_url, obj.data_dir) as url:
        runner = asyncio.run
        try:  # libuv's event loop: a good deal less CPU per request than asyncio's own
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        runner(run_worker(settings, url))


@cli.command("demo")
@click.pass_obj
def demo_command(obj: Context) -> None:
    """The main job, end to end, on the embedded PostgreSQL (schema outbox_demo)."""
    from worker import demo

    with database_url(obj.database_url, obj.data_dir) as url:
        demo.run(url)


@cli.command("receiver")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--auth", envvar="OUTBOX_RECEIVER_AUTH", help="Authorization value to require [env OUTBOX_RECEIVER_AUTH]."
)
@click.option("--allowed-origin", default="*", show_default=True, help="Origin to allow in the handshake.")
@click.option("--quiet", is_flag=True, help="Do not print a line per event.")
def receiver_command(host: str, port: int, auth: str | None, allowed_origin: str, quiet: bool) -> None:
    """A reference webhook receiver (handshake, bearer token, the three content modes, 415)."""
    from worker.receiver import ReceiverConfig, serve

    serve(host, port, ReceiverConfig(auth=auth, allowed_origin=allowed_origin, quiet=quiet))


def main() -> None:
    cli(prog_name="outbox")
