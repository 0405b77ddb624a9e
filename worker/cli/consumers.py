"""`outbox mappings …` and `outbox consumers …`: inbound webhooks (issue 22).

A consumer is OpenConnector's (`name`, `endpoint`, `mappingId`, `targetType`, `targetId`, `isEnabled`) plus its
`verification`, body size and rate limits; the options set those JSON fields and the store checks the
definition whole. Secrets never come from the command line itself (it stays in the shell history and the
process list): they are read from a file or standard input (`--verification`, `--from-json`), or generated
(`--generate-secret`, printed once). Listings show how many secrets are set, never a value.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets as random_secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import psycopg

from worker.cli.inputs import read_json
from worker.cli.subscriptions import secret_box
from worker.consumers import intake, model, operations
from worker.consumers.mapping import InvalidMapping, try_mapping
from worker.consumers.verification import MAX_SECRETS, METHODS, SECRET_FIELDS, split_secrets
from worker.store import consumers as store
from worker.store.consumers import Consumer, Failure, StoredMapping
from worker.store.secret_box import SecretBox

if TYPE_CHECKING:
    from worker.cli.main import Context

# The secret fields that hold a list (rotation: the newest first); basic's password is one value.
_LIST_SECRETS = ("secrets", "tokens", "keys")


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """The store's refusals as one readable line each (the transaction is rolled back first)."""
    try:
        yield
    except model.InvalidConsumer as exc:
        raise click.ClickException(f"the consumer was refused: {exc}") from None
    except InvalidMapping as exc:
        raise click.ClickException(f"the mapping was refused: {exc}") from None
    except (
        store.ConsumerNotFound,
        store.MappingNotFound,
        store.MappingExists,
        store.MappingInUse,
        store.FailureNotFound,
    ) as exc:
        raise click.ClickException(str(exc)) from None


def _read_bytes(path: str, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{what}: cannot read {path}: {exc.strerror}") from None


def _one_stdin(**paths: str | None) -> None:
    """Standard input can be read once."""
    given = [f"--{name.replace('_', '-')}" for name, path in paths.items() if path == "-"]
    if len(given) > 1:
        raise click.UsageError(f"only one of {' and '.join(given)} can read standard input (-)")


def _headers(values: Sequence[str]) -> list[tuple[str, str]]:
    """`--header 'Name: value'` pairs, in order (a name given twice is sent twice)."""
    pairs = []
    for text in values:
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{text!r} must be 'Name: value'", param_hint="--header")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _print_fields(document: dict[str, Any], width: int = 16) -> None:
    for key, value in document.items():
        if value is None or value == []:
            shown = "-"
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            shown = ", ".join(value)
        else:
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list | bool) else value
        click.echo(f"{key:{width}} {shown}")


def _print_tried(result: dict[str, Any], as_json: bool, name_key: str, reason_key: str) -> None:
    """A try's answer: the event (JSON), or the refusal's code and problems and exit 1."""
    if as_json or "event" in result:
        _echo_json(result if as_json else result["event"])
    else:
        click.echo(f"refused: {result['code']}")
        for problem in result["problems"]:
            click.echo(f"  - {problem[name_key]}: {problem[reason_key]}")
    if "event" not in result:
        sys.exit(1)


# -- mappings ---------------------------------------------------------------------------------------------


@click.group("mappings")
def mappings() -> None:
    """JSONata mappings: a consumer's request ({"body", "headers"}) → the CloudEvent it becomes.

    Every change adds a version; consumers use the current one, a failure names the one it failed with."""


def _expression_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for flag, settings in reversed(
        (
            ("--expression", {"metavar": "TEXT", "help": "The JSONata expression."}),
            ("--expression-file", {"metavar": "FILE", "help": "The JSONata expression from FILE; - = stdin."}),
            (
                "--header",
                {"multiple": True, "metavar": "NAME", "help": "A request header the expression may read as "
                 "headers.<name> (lower case); repeatable. No other header reaches it."},
            ),
            ("--description", {"metavar": "TEXT", "help": "What the mapping is for."}),
        )
    ):  # fmt: skip
        names = (flag, "headers") if flag == "--header" else (flag,)
        command = click.option(*names, default=None, **settings)(command)
    return command


def _expression(expression: str | None, expression_file: str | None) -> str | None:
    if expression is not None and expression_file is not None:
        raise click.UsageError("give the expression once: --expression TEXT or --expression-file FILE")
    if expression_file is not None:
        try:
            return _read_bytes(expression_file, "--expression-file").decode("utf-8")
        except UnicodeDecodeError:
            raise click.ClickException(f"--expression-file: {expression_file} is not UTF-8 text") from None
    return expression


def _print_mapping(found: StoredMapping, as_json: bool) -> None:
    if as_json:
        _echo_json(found.to_json())
        return
    document = found.to_json()
    expression = document.pop("expression")
    document["version"] = f"{found.version}" + ("" if found.version == found.current_version else " (not current)")
    del document["currentVersion"]
    _print_fields(document)
    click.echo("expression")
    for line in expression.splitlines():
        click.echo(f"  {line}")


@mappings.command("add")
@click.argument("mapping_id", metavar="ID")
@_expression_options
@click.pass_obj
def mappings_add(
    obj: Context, mapping_id: str, expression: str | None, expression_file: str | None, headers: tuple[str, ...],
    description: str | None,
) -> None:  # fmt: skip
    """Add a mapping (version 1), compiled first: an expression that does not compile is refused."""
    text = _expression(expression, expression_file)
    if text is None:
        raise click.UsageError("give the expression: --expression TEXT or --expression-file FILE")
    with _refusals(), obj.connect() as conn:
        added = store.add_mapping(conn, obj.schema, mapping_id, text, headers, description)
    click.echo(f"added mapping {added.id} (version {added.version})")


@mappings.command("update")
@click.argument("mapping_id", metavar="ID")
@_expression_options
@click.pass_obj
def mappings_update(
    obj: Context, mapping_id: str, expression: str | None, expression_file: str | None, headers: tuple[str, ...],
    description: str | None,
) -> None:  # fmt: skip
    """Add a version of a mapping: what is not given stays as the current version has it (--header replaces
    the headers); consumers use the new version from their next request."""
    text = _expression(expression, expression_file)
    if text is None and not headers and description is None:
        raise click.UsageError("nothing to change: give --expression, --expression-file, --header or --description")
    with _refusals(), obj.connect() as conn:
        current = store.get_mapping(conn, obj.schema, mapping_id)
        updated = store.update_mapping(
            conn, obj.schema, mapping_id, text if text is not None else current.expression,
            headers or current.headers, description, set_description=description is not None,
        )  # fmt: skip
    click.echo(f"updated mapping {updated.id}: now version {updated.version}")


@mappings.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_obj
def mappings_list(obj: Context, as_json: bool) -> None:
    """Every mapping at its current version, with the consumers that use it."""
    with obj.connect() as conn:
        found = store.list_mappings(conn, obj.schema)
    if as_json:
        _echo_json([m.to_json() for m in found])
        return
    if not found:
        click.echo("no mappings (add one with `outbox mappings add ID --expression …`)")
        return
    click.echo(f"{'id':30}  {'version':7}  {'headers':24}  {'consumers':24}  description")
    for m in found:
        click.echo(
            f"{m.id:30}  {m.version:<7}  {','.join(m.headers) or '-':24}  {','.join(m.consumers) or '-':24}  "
            f"{m.description or '-'}"
        )


@mappings.command("show")
@click.argument("mapping_id", metavar="ID")
@click.option("--version", type=click.IntRange(1), metavar="N", help="That version instead of the current one.")
@click.option("--history", is_flag=True, help="Every version, newest first.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def mappings_show(obj: Context, mapping_id: str, version: int | None, history: bool, as_json: bool) -> None:
    """One mapping: its expression, headers and users."""
    if history and version is not None:
        raise click.UsageError("say which: --version N or --history, not both")
    with _refusals(), obj.connect() as conn:
        found = (
            store.mapping_history(conn, obj.schema, mapping_id)
            if history
            else [store.get_mapping(conn, obj.schema, mapping_id, version)]
        )
    if history and as_json:
        _echo_json([m.to_json() for m in found])
        return
    for index, m in enumerate(found):
        if index and not as_json:
            click.echo()
        _print_mapping(m, as_json)


@mappings.command("remove")
@click.argument("mapping_id", metavar="ID")
@click.pass_obj
def mappings_remove(obj: Context, mapping_id: str) -> None:
    """Remove a mapping with all its versions; refused while a consumer uses it."""
    with _refusals(), obj.connect() as conn:
        store.remove_mapping(conn, obj.schema, mapping_id)
    click.echo(f"removed mapping {mapping_id}")


@mappings.command("try")
@click.argument("mapping_id", metavar="ID")
@click.option("--payload", required=True, metavar="FILE", help="The request body; - = stdin.")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'", help="A request header; repeatable.")
@click.option("--version", type=click.IntRange(1), metavar="N", help="That version instead of the current one.")
@click.option("--json", "as_json", is_flag=True, help='The whole answer: {"event": …} or {"code", "problems"}.')
@click.pass_obj
def mappings_try(
    obj: Context, mapping_id: str, payload: str, headers: tuple[str, ...], version: int | None, as_json: bool
) -> None:
    """The CloudEvent the mapping makes of a payload, or why it cannot (exit 1); stores nothing. The consumer's
    target is not applied: `outbox consumers try` also checks the event type and its schema."""
    pairs = _headers(headers)
    body = _read_bytes(payload, "--payload")
    with _refusals(), obj.connect() as conn:
        found = store.get_mapping(conn, obj.schema, mapping_id, version)
    _print_tried(try_mapping(found.mapping, body, pairs), as_json, "field", "rule")


# -- consumers --------------------------------------------------------------------------------------------


@click.group("consumers")
def consumers() -> None:
    """Inbound webhooks from external systems, served by `outbox serve` at /hooks/{endpoint}: each request is
    verified, mapped to a CloudEvent and taken into the outbox."""


# (flag, click settings, JSON field) of the definition's own options, shared by add and update.
_DEFINITION_OPTIONS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("--endpoint", {"metavar": "PATH", "help": "Served at /hooks/PATH: lowercase letters and digits joined by "
                    "- _ or ."}, "endpoint"),
    ("--mapping", {"metavar": "ID", "help": "The mapping applied to the payload (without one the body must be a "
                   "CloudEvent)."}, "mappingId"),
    ("--target-type", {"type": click.Choice(model.TARGET_TYPES), "help": "event-type: checked against that catalogue "
                       "entry and routed to every matching subscription; source: to one subscription only."},
     "targetType"),
    ("--target-id", {"metavar": "X", "help": "The catalogue entry's slug, or the subscription's id."}, "targetId"),
    ("--max-body-bytes", {"type": int, "metavar": "N", "help": f"Largest body taken [default: "
                          f"{model.DEFAULT_MAX_BODY_BYTES}]."}, "maxBodyBytes"),
    ("--rate-limit", {"type": float, "metavar": "R", "help": "Requests per second (with --rate-burst)."},
     "rateLimit"),
    ("--rate-burst", {"type": int, "metavar": "B", "help": "Requests at once (with --rate-limit)."}, "rateBurst"),
)  # fmt: skip

# Verification options that carry no secret: (flag, click settings, config field).
_VERIFICATION_OPTIONS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("--method", {"type": click.Choice(METHODS), "help": "How requests are verified."}, "method"),
    ("--verification-header", {"metavar": "NAME", "help": "hmac: the signature's header (e.g. X-Hub-Signature-256); "
                               "api-key: the key's header [default: X-API-Key]."}, "header"),
    ("--prefix", {"metavar": "TEXT", "help": "hmac: before the signature, e.g. sha256=."}, "prefix"),
    ("--encoding", {"type": click.Choice(["hex", "base64"]), "help": "hmac: the signature's encoding."}, "encoding"),
    ("--algorithm", {"type": click.Choice(["sha256", "sha512"]), "help": "hmac: the hash."}, "algorithm"),
    ("--timestamp-header", {"metavar": "NAME", "help": "hmac: a signed timestamp's header (Slack, Zoom)."},
     "timestampHeader"),
    ("--tolerance-seconds", {"type": int, "metavar": "N", "help": "standard-webhooks, hmac with a timestamp: how "
                             "far the timestamp may be from now."}, "toleranceSeconds"),
    ("--username", {"metavar": "NAME", "help": "basic: the user name."}, "username"),
    ("--subject", {"multiple": True, "metavar": "DN", "help": "mtls: an accepted certificate subject "
                   "(CN=…,O=…,C=NL); repeatable."}, "subjects"),
    ("--san", {"multiple": True, "metavar": "NAME", "help": "mtls: an accepted subject alternative name "
               "(DNS:…, URI:…, email:…, IP:…); repeatable."}, "sans"),
)  # fmt: skip


def _consumer_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options in the order --help shows them: the definition's, the verification's, the whole JSON."""
    command = click.option("--json", "as_json", is_flag=True, help="Print the stored consumer as JSON.")(command)
    command = click.option(
        "--from-json",
        metavar="FILE",
        help="The definition in the API's JSON names (name, endpoint, mappingId, targetType, targetId, isEnabled, "
        "verification, maxBodyBytes, rateLimit, rateBurst); - = stdin. Options given as well override its fields.",
    )(command)
    command = click.option(
        "--generate-secret",
        is_flag=True,
        help="Make a strong secret of the method's form (standard-webhooks: whsec_…) and print it once.",
    )(command)
    for flag, settings, _ in reversed(_VERIFICATION_OPTIONS):
        command = click.option(flag, default=None, **settings)(command)
    command = click.option(
        "--verification",
        metavar="FILE",
        help='The verification config as JSON, secrets included, e.g. {"method": "hmac", "header": '
        '"X-Hub-Signature-256", "prefix": "sha256=", "secrets": ["…"]}; - = stdin. The options below override '
        "its fields.",
    )(command)
    for flag, settings, _ in reversed(_DEFINITION_OPTIONS):
        command = click.option(flag, default=None, **settings)(command)
    return command


def _definition_fields(options: dict[str, Any]) -> dict[str, Any]:
    return {
        field: options[_param(flag)] for flag, _, field in _DEFINITION_OPTIONS if options.get(_param(flag)) is not None
    }


def _verification_fields(options: dict[str, Any]) -> dict[str, Any]:
    fields = {}
    for flag, _, field in _VERIFICATION_OPTIONS:
        value = options.get(_param(flag))
        if value is not None and value != ():
            fields[field] = list(value) if isinstance(value, tuple) else value
    return fields


def _param(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _json_object(path: str, what: str, kind: str) -> dict[str, Any]:
    document = read_json(path, what)
    if not isinstance(document, dict):
        raise click.ClickException(f"the consumer was refused: {kind}: must be a JSON object")
    return document


def _new_secret(method: str | None) -> tuple[str, str]:
    """(the config's secret field, a new value of the form the method wants)."""
    fields = SECRET_FIELDS.get(method or "")
    if not fields:
        why = "give --method" if method is None else f"method {method} has no secret"
        raise click.UsageError(f"--generate-secret: {why}")
    if method == "standard-webhooks":  # whsec_ + base64 of the key bytes, as Standard Webhooks writes them
        return fields[0], "whsec_" + base64.b64encode(random_secrets.token_bytes(32)).decode()
    return fields[0], random_secrets.token_urlsafe(32)


def _put_secret(verification: dict[str, Any], field: str, value: str, kept: Sequence[str] = ()) -> None:
    verification[field] = [value, *kept][:MAX_SECRETS] if field in _LIST_SECRETS else value


def _announce(stored: Consumer, box: SecretBox, what: str, secret: str | None, as_json: bool) -> None:
    """What was stored, without secrets; a generated secret printed once (stdout, alone on its line)."""
    if stored.secret_count() and not box.encrypts:
        click.echo(
            f"warning: OUTBOX_SECRET_KEY is not set: the secrets of {stored.name} are stored unencrypted", err=True
        )
    if as_json:
        _echo_json({**stored.to_json(), **({"secret": secret} if secret is not None else {})})
        return
    click.echo(
        f"{what} consumer {stored.name} at /hooks/{stored.endpoint} ({stored.method}, {_target(stored)})", err=True
    )
    if secret is not None:
        click.echo("its secret (shown once, it cannot be shown again):", err=True)
        click.echo(secret)


def _target(c: Consumer) -> str:
    return f"{c.target_type} {c.target_id}"


@consumers.command("add")
@click.argument("name")
@_consumer_options
@click.option("--disabled", is_flag=True, help="Add it disabled (its endpoint answers 404 until enabled).")
@click.pass_obj
def consumers_add(
    obj: Context, /, name: str, verification: str | None, generate_secret: bool, from_json: str | None,
    disabled: bool, as_json: bool, **options: Any,
) -> None:  # fmt: skip
    """Add a consumer NAME; the definition is checked whole (the mapping and the target must exist)."""
    _one_stdin(verification=verification, from_json=from_json)
    box = secret_box()
    document = _json_object(from_json, "--from-json", "consumer") if from_json is not None else {}
    document.update(_definition_fields(options))
    document["name"] = name
    if disabled:
        document["isEnabled"] = False
    config = document.get("verification")
    config = dict(config) if isinstance(config, dict) else {}
    if verification is not None:
        config = _json_object(verification, "--verification", "verification")
    config.update(_verification_fields(options))
    secret = None
    if generate_secret:
        field, secret = _new_secret(config.get("method"))
        _put_secret(config, field, secret)
    if config:
        document["verification"] = config
    with _refusals(), obj.connect() as conn:
        stored = store.add(conn, obj.schema, document, box)
    _announce(stored, box, "added", secret, as_json)


@consumers.command("update")
@click.argument("name")
@_consumer_options
@click.option("--name", "new_name", metavar="NEW", help="Rename the consumer.")
@click.option("--enabled/--disabled", "enabled", default=None, help="Enable or disable it.")
@click.option("--no-mapping", is_flag=True, help="Use no mapping (the body must be a CloudEvent).")
@click.option("--no-rate-limit", is_flag=True, help="Remove the rate limit.")
@click.option(
    "--keep-old-secrets",
    is_flag=True,
    help=f"With --generate-secret: keep the current secrets after the new one (a rotation; at most {MAX_SECRETS}).",
)
@click.pass_obj
def consumers_update(
    obj: Context, /, name: str, verification: str | None, generate_secret: bool, from_json: str | None,
    as_json: bool, new_name: str | None, enabled: bool | None, no_mapping: bool, no_rate_limit: bool,
    keep_old_secrets: bool, **options: Any,
) -> None:  # fmt: skip
    """Change a consumer: only what is given changes; its secrets are kept unless new ones are given."""
    _one_stdin(verification=verification, from_json=from_json)
    if no_mapping and options.get("mapping") is not None:
        raise click.UsageError("say which: --mapping ID or --no-mapping, not both")
    if keep_old_secrets and not generate_secret:
        raise click.UsageError("--keep-old-secrets goes with --generate-secret")
    box = secret_box()
    change = _json_object(from_json, "--from-json", "consumer") if from_json is not None else {}
    change.update(_definition_fields(options))
    if new_name is not None:
        change["name"] = new_name
    if enabled is not None:
        change["isEnabled"] = enabled
    if no_mapping:
        change["mappingId"] = None
    if no_rate_limit:
        change.update(rateLimit=None, rateBurst=None)
    given = _verification_fields(options)
    secret = None
    with _refusals(), obj.connect() as conn:
        current = store.get(conn, obj.schema, name)
        config: dict[str, Any] | None = None
        if verification is not None:
            config = _json_object(verification, "--verification", "verification")
        elif isinstance(change.get("verification"), dict):
            config = dict(change["verification"])
        elif given or generate_secret:  # a few fields of the current config change (its secrets are kept)
            same = given.get("method", current.method) == current.method
            config = {k: v for k, v in current.verification_clear.items() if not k.startswith("_")} if same else {}
        if config is not None:
            config.update(given)
            if generate_secret:
                field, secret = _new_secret(config.get("method"))
                kept: list[str] = []
                if keep_old_secrets and config.get("method") == current.method:
                    old = split_secrets(current.verification(box))[1].get(field)
                    kept = list(old) if isinstance(old, list) else []
                _put_secret(config, field, secret, kept)
            change["verification"] = config
        if not change:
            raise click.UsageError("nothing to change: give an option (see --help)")
        stored = store.update(conn, obj.schema, str(current.id), change, box)
    _announce(stored, box, "updated", secret, as_json)


@consumers.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (no secrets: secretCount only).")
@click.pass_obj
def consumers_list(obj: Context, as_json: bool) -> None:
    """Every consumer: its endpoint, method, target, whether enabled, its open failures."""
    with obj.connect() as conn:
        found = store.list_all(conn, obj.schema)
    if as_json:
        _echo_json([c.to_json() for c in found])
        return
    if not found:
        click.echo("no consumers (add one with `outbox consumers add NAME --endpoint … --target-type … …`)")
        return
    click.echo(f"{'name':24}  {'endpoint':30}  {'method':17}  {'target':50}  {'enabled':7}  failures")
    for c in found:
        click.echo(
            f"{c.name:24}  {'/hooks/' + c.endpoint:30}  {c.method:17}  {_target(c):50}  "
            f"{'yes' if c.is_enabled else 'no':7}  {c.open_failures}"
        )


@consumers.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def consumers_show(obj: Context, name: str, as_json: bool) -> None:
    """One consumer (by name, id or endpoint), without its secrets."""
    with _refusals(), obj.connect() as conn:
        found = store.get(conn, obj.schema, name)
    if as_json:
        _echo_json(found.to_json())
        return
    document = found.to_json()
    document["endpoint"] = f"/hooks/{found.endpoint}"
    _print_fields(document)


def _key_change(obj: Context, name: str, action: Callable[..., Consumer], *args: Any) -> Consumer:
    with _refusals(), obj.connect() as conn:
        return action(conn, obj.schema, name, *args)


@consumers.command("remove")
@click.argument("name")
@click.pass_obj
def consumers_remove(obj: Context, name: str) -> None:
    """Remove a consumer with its receipts and kept failures; its endpoint answers 404 from then on."""
    removed = _key_change(obj, name, store.remove)
    click.echo(f"removed consumer {removed.name} (/hooks/{removed.endpoint})")


@consumers.command("enable")
@click.argument("name")
@click.pass_obj
def consumers_enable(obj: Context, name: str) -> None:
    """Take requests at its endpoint again."""
    changed = _key_change(obj, name, store.set_enabled, True)
    click.echo(f"enabled consumer {changed.name} (/hooks/{changed.endpoint})")


@consumers.command("disable")
@click.argument("name")
@click.pass_obj
def consumers_disable(obj: Context, name: str) -> None:
    """Answer 404 at its endpoint; nothing is taken in until it is enabled."""
    changed = _key_change(obj, name, store.set_enabled, False)
    click.echo(f"disabled consumer {changed.name} (/hooks/{changed.endpoint})")


@consumers.command("try")
@click.argument("name")
@click.option("--payload", required=True, metavar="FILE", help="The request body; - = stdin.")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'", help="A request header; repeatable.")
@click.option("--json", "as_json", is_flag=True, help='The whole answer: {"event": …} or {"code", "problems"}.')
@click.pass_obj
def consumers_try(obj: Context, name: str, payload: str, headers: tuple[str, ...], as_json: bool) -> None:
    """The CloudEvent the consumer would make of a payload (its mapping, its target's type and schema), or why
    not (exit 1). Stores nothing; the request is not verified."""
    pairs = _headers(headers)
    body = _read_bytes(payload, "--payload")
    with _refusals(), obj.connect() as conn:
        found = store.get(conn, obj.schema, name)
        result = operations.try_payload(conn, obj.schema, found, body, pairs)
    _print_tried(result, as_json, "name", "reason")


def _body(body: bytes) -> tuple[str, str]:
    """(the body as text when it is UTF-8, else base64; which)."""
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), "base64"


def _problems_text(problems: Sequence[dict[str, str]]) -> str:
    return "; ".join(f"{p.get('name')}: {p.get('reason')}" for p in problems)


def _show_failure(found: Failure, as_json: bool) -> None:
    assert found.body is not None
    text, encoding = _body(found.body)
    if as_json:
        _echo_json({**found.to_json(), "body": text, "bodyEncoding": encoding})
        return
    document = found.to_json()
    problems = document.pop("problems")
    _print_fields(document)
    click.echo("problems")
    for p in problems:
        click.echo(f"  - {p.get('name')}: {p.get('reason')} ({p.get('code')})")
    click.echo(f"body ({encoding})")
    click.echo(text)


@consumers.command("failures")
@click.argument("name")
@click.option("--all", "include_replayed", is_flag=True, help="Also those replayed already.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--before", type=int, metavar="ID", help="Older than failure ID (the next page).")
@click.option("--show", "show_id", type=int, metavar="ID", help="One failure with its headers and body.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def consumers_failures(
    obj: Context, name: str, include_replayed: bool, limit: int, before: int | None, show_id: int | None,
    as_json: bool,
) -> None:  # fmt: skip
    """The requests a consumer kept because they failed the mapping, the schema or the target, newest first:
    those not replayed yet unless --all."""
    with _refusals(), obj.connect() as conn:
        found = store.get(conn, obj.schema, name)
        if show_id is not None:
            one = store.failure(conn, obj.schema, show_id)
            if one.consumer_id != found.id:
                raise store.FailureNotFound(show_id)
        else:
            page = store.failures(conn, obj.schema, found, before=before, limit=limit, open_only=not include_replayed)
    if show_id is not None:
        _show_failure(one, as_json)
        return
    if as_json:
        _echo_json([f.to_json() for f in page])
        return
    if not page:
        click.echo(f"no {'' if include_replayed else 'open '}failures of consumer {found.name}")
        return
    click.echo(f"{'id':>8}  {'received':19}  {'code':18}  {'version':7}  {'bytes':>8}  problems")
    for f in page:
        replayed = f"  (replayed {f.replayed_at:%Y-%m-%d %H:%M:%S}: {f.event_id})" if f.replayed_at else ""
        click.echo(
            f"{f.id:>8}  {f.received_at:%Y-%m-%d %H:%M:%S}  {f.code:18}  {f.mapping_version or '-':<7}  "
            f"{f.body_size:>8}  {_problems_text(f.problems)}{replayed}"
        )


@consumers.command("replay")
@click.argument("name")
@click.argument("failure_ids", metavar="[FAILURE_ID]...", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Every open failure of the consumer, oldest first.")
@click.pass_obj
def consumers_replay(obj: Context, name: str, failure_ids: tuple[int, ...], replay_all: bool) -> None:
    """Map kept failures again with the mapping's current version and store their events, each once; says per
    failure: stored, duplicate (its event was there already) or failed again (exit 1 if any did not go)."""
    if replay_all == bool(failure_ids):
        raise click.UsageError("say which: FAILURE_ID... or --all")
    bad = 0
    with _refusals(), obj.connect() as conn:
        conn.autocommit = True  # replay runs its reads and a failed-again update outside its own transaction
        found = store.get(conn, obj.schema, name)
        ids = list(failure_ids)
        if replay_all:
            ids = [f.id for f in _all_open(conn, obj.schema, found)]
            if not ids:
                click.echo(f"no open failures of consumer {found.name}")
        for failure_id in ids:
            try:
                done = operations.replay(conn, obj.schema, found, failure_id)
            except intake.Refused as refused:
                bad += 1
                click.echo(f"failure {failure_id}: failed again: {refused.code}")
                for p in refused.problems:
                    click.echo(f"  - {p['name']}: {p['reason']}")
                continue
            except (operations.AlreadyReplayed, store.FailureNotFound) as exc:
                bad += 1
                click.echo(f"failure {failure_id}: {exc}")
                continue
            event = f"event {done.event['id']} from {done.event['source']}"
            click.echo(f"failure {failure_id}: {'stored' if done.stored else 'duplicate'} ({event})")
    if bad:
        sys.exit(1)


def _all_open(conn: psycopg.Connection[Any], schema: str, consumer: Consumer) -> list[Failure]:
    """Every open failure, oldest first (keyset pages of the store's newest-first order)."""
    found: list[Failure] = []
    before = None
    while page := store.failures(conn, schema, consumer, before=before, limit=500, open_only=True):
        found += page
        before = page[-1].id
    return found[::-1]
