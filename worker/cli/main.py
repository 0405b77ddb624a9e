"""The `outbox` command line."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import psycopg
from pydantic_settings import BaseSettings

from outbox import migrate
from outbox._operations import retry_failed
from outbox._sql import DEFAULT_SCHEMA, check_schema_name, migrations
from worker.cli import status as status_report
from worker.cli.clients import clients
from worker.cli.consumers import consumers, mappings
from worker.cli.deliveries import deliveries, events, filter_options, parse_filter
from worker.cli.event_types import event_types
from worker.cli.operators import operators
from worker.cli.subscriptions import secret_box, secrets, subscriptions
from worker.daemon import maintenance
from worker.daemon.runner import StartupError, run_worker
from worker.daemon.settings import SettingsError, WorkerSettings
from worker.runtime import logs, tracing
from worker.runtime.database import DEFAULT_DATA_DIR, database_url
from worker.runtime.env_files import EnvFileError, load_env_files
from worker.runtime.writable import read_write
from worker.service.settings import ServeSettings
from worker.store import catalogue as catalogue_store
from worker.store import deliveries as deliveries_store
from worker.store import subscriptions as subscription_store
from worker.store.secret_box import KEY_VARIABLE, SecretKeyError


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
                # No prepared statements: the URL may go through PgBouncer (docs/deploy/pgbouncer.md).
                # target_session_attrs=read-write unless the URL chooses: a multi-host URL finds the primary.
                conn = psycopg.connect(url, connect_timeout=10, prepare_threshold=None, **read_write(url))
            except psycopg.OperationalError as exc:
                raise click.ClickException(f"cannot connect to the database: {_first_line(exc)}") from None
            try:
                with conn:
                    yield conn
            except (
                subscription_store.SubscriptionNotFound,
                subscription_store.SubscriptionChanged,
                catalogue_store.EventTypeNotFound,
                SecretKeyError,
            ) as exc:
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
@click.version_option(package_name="nlgov-outbox", prog_name="outbox", message="%(prog)s %(version)s")
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
    _complete_subscriptions(obj)


def _complete_subscriptions(obj: Context) -> None:
    """Rows from before 015 get their header values sealed with OUTBOX_SECRET_KEY, which SQL cannot
    know (sql/015_sealed_headers.sql); nothing to do once they all have."""
    box = secret_box()
    with obj.connect() as conn:
        done, left = subscription_store.seal_unsealed(conn, obj.schema, box)
    if done:
        click.echo(f"sealed the header values of {done} subscription{'s' if done != 1 else ''} with their secrets")
    for owner in left:
        click.echo(
            f"warning: {owner}: its secrets do not open with {KEY_VARIABLE}, so its header values are not "
            "sealed yet: run `outbox migrate` again with the key (the worker does it too when it starts)",
            err=True,
        )


@cli.command("sql")
def sql_command() -> None:
    """Print the migrations, for a DBA to read (no database needed)."""
    for m in migrations():
        click.echo(f"-- ==== {m.version:03d}_{m.name}.sql ====")
        click.echo(m.text)


# -- subscriptions and secrets: worker/cli_subscriptions.py -----------------------

cli.add_command(subscriptions)
cli.add_command(secrets)
cli.add_command(event_types)
cli.add_command(clients)
cli.add_command(operators)
cli.add_command(deliveries)
cli.add_command(events)
cli.add_command(consumers)
cli.add_command(mappings)


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
@click.option("--all-failed", is_flag=True, help="Every failed delivery (that the filters match, if given).")
@click.option("--delivery", "delivery_id", type=int, metavar="ID", help="Only this delivery.")
@filter_options(with_state=False)  # a retry takes failed deliveries only
@click.option("--dry-run", is_flag=True, help="Only say how many would go back.")
@click.pass_obj
def retry_command(obj: Context, /, all_failed: bool, delivery_id: int | None, dry_run: bool, **flags: Any) -> None:
    """Put failed deliveries back to pending, with a fresh set of attempts; says how many."""
    where = parse_filter(flags, states=("failed",))
    narrowed = not where.with_states().is_empty()
    if all_failed and delivery_id is not None:
        raise click.UsageError("say which: --all-failed or --delivery ID, not both")
    if not (all_failed or narrowed or delivery_id is not None):
        raise click.UsageError(
            "say which: --all-failed or --delivery ID, or narrow with --subscription, --type, --subject, "
            "--event-id, --source, --since or --until"
        )
    with obj.connect() as conn:
        if dry_run:
            if delivery_id is not None:
                found = deliveries_store.get_delivery(conn, obj.schema, delivery_id)
                count = int(found is not None and found.status == "failed")
            else:
                count = deliveries_store.count_deliveries(conn, obj.schema, where)
            click.echo(f"{count} failed deliver{'y' if count == 1 else 'ies'} would go back to pending")
            return
        count = retry_failed(conn, obj.schema, delivery_id=delivery_id, where=where)
    click.echo(f"{count} failed deliver{'y' if count == 1 else 'ies'} back to pending")


@cli.command("purge")
@click.option(
    "--older-than", required=True, metavar="DURATION", help="delivered deliveries and events: e.g. 30d, 12h, 2w."
)
@click.option(
    "--failed-older-than",
    metavar="DURATION",
    help=f"failed deliveries [default: {maintenance.FAILED_RETENTION_FACTOR} × --older-than].",
)
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_obj
def purge_command(obj: Context, older_than: str, failed_older_than: str | None, batch_size: int) -> None:
    """Retention: drop the partition leaves of delivered deliveries and events older than DURATION,
    of failed deliveries older than --failed-older-than, of attempts older than the longer of the
    two; delete the few rows outside those leaves. Live deliveries and the events they need stay.
    Consumers' webhook ids (replay protection) go after twice the longest tolerance window (2 h)."""
    ages = {}
    for hint, text in (("--older-than", older_than), ("--failed-older-than", failed_older_than)):
        if text is None:
            continue
        try:
            ages[hint] = maintenance.parse_duration(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from None
    with obj.connect() as conn:
        report = maintenance.purge(conn, obj.schema, ages["--older-than"], ages.get("--failed-older-than"), batch_size)
    for line in report.lines():
        click.echo(line)


Settings = TypeVar("Settings", WorkerSettings, ServeSettings)


def _settings_or_exit(model: type[Settings], obj: Context, flags: dict[str, Any]) -> Settings:
    """The daemon's settings from flags, OUTBOX_* and defaults; else one `error:` line per fault and exit 2."""
    try:
        return model.load(database_url=obj.database_url, db_schema=obj.schema, **flags)
    except SettingsError as exc:
        for line in exc.lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(2)


def _tracing_or_exit(service_name: str) -> None:
    """Traces when OTEL_EXPORTER_OTLP_ENDPOINT asks for them (worker/runtime/tracing.py); else nothing
    (the SDK is not even imported). Asked for but impossible: one `error:` line and exit 2."""
    try:
        tracing.configure(service_name)
    except tracing.TracingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _setting_flags(
    model: type[BaseSettings], names: tuple[str, ...]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A flag for each of `names`, fields of `model`; each overrides its OUTBOX_* environment variable."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            field = model.model_fields[name]
            kind = int if field.annotation is int else float
            command = click.option(
                f"--{name.replace('_', '-')}",
                name,
                type=kind,
                default=None,
                help=f"{field.description} [env OUTBOX_{name.upper()}, default {field.default}]",
            )(command)
        return command

    return decorate


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
@_setting_flags(WorkerSettings, RUN_FLAGS)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics (Prometheus), /healthz and /readyz on this port [env OUTBOX_METRICS_PORT].",
)
@click.option(
    "--metrics-host",
    default=None,
    help='Address for --metrics-port [env OUTBOX_METRICS_HOST, default: 127.0.0.1; "" for every interface].',
)
@click.option(
    "--direct-database-url",
    default=None,
    help="PostgreSQL itself, for LISTEN, when --database-url goes through PgBouncer (without it such a worker "
    "polls) [env OUTBOX_DIRECT_DATABASE_URL].",
)
@click.option(
    "--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"])
)
@click.pass_obj
def run_command(obj: Context, /, log_level: str, **flags: Any) -> None:
    """The worker daemon: route, claim, deliver, record, retry. SIGTERM/SIGINT stop it cleanly."""
    settings = _settings_or_exit(WorkerSettings, obj, flags)
    logs.setup(log_level)
    _tracing_or_exit("outbox-run")
    with database_url(settings.database_url, obj.data_dir) as url:
        runner = asyncio.run
        try:  # libuv's event loop: a good deal less CPU per request than asyncio's own
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        # What start-up made (modules, settings) lives as long as the daemon: out of the collector's
        # sight, so its collections stay short (the idle worker's tail latency: a delivery waited
        # behind them).
        gc.collect()
        gc.freeze()
        try:
            runner(run_worker(settings, url))
        except StartupError as exc:  # e.g. the metrics port is taken: one line, not a traceback
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        finally:
            tracing.shutdown()  # the spans still in hand, a few seconds at most


# The service settings operators tune most; every setting is also an OUTBOX_* variable.
SERVE_FLAGS = ("pool_size", "rate_limit", "max_event_bytes", "max_batch_events", "jwt_max_age", "jwt_leeway")


@cli.command("serve")
@click.option("--host", default=None, help="Address to listen on [env OUTBOX_HOST, default 127.0.0.1].")
@click.option("--port", default=None, type=int, help="Port to listen on [env OUTBOX_PORT, default 8000].")
@_setting_flags(ServeSettings, SERVE_FLAGS)
@click.option(
    "--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"])
)
@click.pass_obj
def serve_command(obj: Context, /, log_level: str, **flags: Any) -> None:
    """The Notificaties API over HTTP: cloud-event intake, abonnementen, subscriptions, the catalogue.

    Run as many as needed, on as many machines; SIGTERM finishes the requests in flight and exits 0."""
    from worker.service.server import StartupError, serve  # FastAPI and uvicorn: only when serving

    settings = _settings_or_exit(ServeSettings, obj, flags)
    logs.setup(log_level)
    _tracing_or_exit("outbox-serve")
    with database_url(settings.database_url, obj.data_dir) as url:
        try:
            serve(settings, url)
        except StartupError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        finally:
            tracing.shutdown()


@cli.command("demo")
@click.pass_obj
def demo_command(obj: Context) -> None:
    """The main job, end to end, on the embedded PostgreSQL (schema outbox_demo)."""
    from worker.cli import demo

    with database_url(obj.database_url, obj.data_dir) as url:
        demo.run(url)


@cli.command("receiver")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--auth", envvar="OUTBOX_RECEIVER_AUTH", help="Authorization value to require [env OUTBOX_RECEIVER_AUTH]."
)
@click.option("--allowed-origin", default="*", show_default=True, help="Origin to allow in the handshake.")
@click.option("--allowed-rate", metavar="PER_MINUTE|*", help="WebHook-Allowed-Rate to answer [default: as asked].")
@click.option("--answer", default=204, show_default=True, type=click.IntRange(100, 599), help="Status of a delivery.")
@click.option("--retry-after", default=1, show_default=True, type=click.IntRange(0), help="Retry-After of a 429.")
@click.option("--no-batch", is_flag=True, help="Refuse batched mode (415), as receivers of one format do.")
@click.option("--require-https", is_flag=True, help="Record deliveries over plain HTTP as violations.")
@click.option("--require-handshake", is_flag=True, help="Record deliveries without a handshake first as violations.")
@click.option("--oauth-client-id", help="Serve POST /oauth/token for this client; deliveries need its tokens.")
@click.option("--oauth-client-secret", envvar="OUTBOX_RECEIVER_OAUTH_SECRET", help="[env OUTBOX_RECEIVER_OAUTH_SECRET]")
@click.option("--oauth-token-lifetime", default=3600, show_default=True, type=click.IntRange(1))
@click.option("--jwt-client-id", help="Require a ZGW JWT (HS256) with this client_id.")
@click.option("--jwt-secret", envvar="OUTBOX_RECEIVER_JWT_SECRET", help="[env OUTBOX_RECEIVER_JWT_SECRET]")
@click.option(
    "--webhook-secret", envvar="OUTBOX_RECEIVER_WEBHOOK_SECRET", help="Require Standard Webhooks signatures (whsec_…)."
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="Serve HTTPS with this certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="Private key of --tls-cert.")
@click.option(
    "--tls-client-ca", type=click.Path(dir_okay=False, exists=True), help="Require client certificates (mTLS)."
)
@click.option("--quiet", is_flag=True, help="Do not print a line per event.")
def receiver_command(
    host: str,
    port: int,
    tls_cert: str | None,
    tls_key: str | None,
    tls_client_ca: str | None,
    no_batch: bool,
    **options: Any,
) -> None:
    """A reference webhook receiver that checks the NL GOV webhook guideline on the wire: the
    handshake, the three content modes, every auth kind, signatures. GET /violations lists what
    a sender broke; GET /events what arrived."""
    from worker.receiver.server import ReceiverConfig, serve, tls_context

    context = tls_context(tls_cert, tls_key, tls_client_ca) if tls_cert else None
    serve(host, port, ReceiverConfig(accept_batch=not no_batch, **options), ssl_context=context)


def main() -> None:
    try:
        load_env_files()
    except EnvFileError as exc:  # one readable line, as for every other bad setting
        raise SystemExit(f"outbox: {exc}") from None
    cli(prog_name="outbox")
