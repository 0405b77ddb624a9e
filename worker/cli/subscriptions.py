"""`outbox subscriptions …` and `outbox secrets …`: registering webhooks and what they want.

`add` and `update` take the same options; every subscription is validated whole (the model lists
every fault) before anything is written, and the OPTIONS handshake runs before it is stored.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from outbox import InvalidSubscriptionError, Subscription
from worker.cli import status
from worker.cli.inputs import read_json
from worker.delivery.handshake import Agreement, HandshakeRefused, handshake
from worker.delivery.safety import AddressPolicy, policy_from_environment
from worker.delivery.targets import target_problems
from worker.delivery.tls import tls_context
from worker.delivery.verification import VerificationRefused, Verified, verify
from worker.store import clients as client_store
from worker.store import consumers as consumer_store
from worker.store import subscriptions as subscription_store
from worker.store.secret_box import KEY_VARIABLE, SecretBox, SecretKeyError, new_key

if TYPE_CHECKING:
    from worker.cli.main import Context


def secret_box() -> SecretBox:
    """The box for OUTBOX_SECRET_KEY; a bad key is one readable line."""
    try:
        return SecretBox.from_setting(os.environ.get(KEY_VARIABLE))
    except SecretKeyError as exc:
        raise click.ClickException(str(exc)) from None


def _origin_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--origin",
        envvar="OUTBOX_WEBHOOK_ORIGIN",
        metavar="DNS_NAME",
        help="Our WebHook-Request-Origin for the handshake, e.g. outbox.gemeente.nl [env OUTBOX_WEBHOOK_ORIGIN].",
    )(command)


# (flag, help) of every option `add` and `update` share; the parameter name is the flag's.
_VALUE_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--callback-url", {"help": "Webhook URL the events are POSTed to (https)."}),
    ("--auth", {"help": "Authorization header value, e.g. 'Bearer <token>'. A secret: never printed (give secrets in "
                "--from-json - on standard input to keep them out of the process list)."}),
    ("--content-mode", {"type": click.Choice(["structured", "binary", "batched"]), "help": "HTTP content mode "
                        "[default: structured]."}),
    ("--batch-max", {"type": click.IntRange(1, 1000), "metavar": "N", "help": "Batched mode: events per POST at "
                     "most [default: 100]; a worker claims at most OUTBOX_BATCH_SIZE per pass, so batches are "
                     "no larger than that. Per-key order is kept."}),
    ("--content-type", {"metavar": "VALUE", "help": "Content-Type to send instead of the mode's, e.g. "
                        "application/cloudevents+json for receivers that compare it exactly."}),
    ("--ordering-key", {"metavar": "ATTRIBUTE", "help": "Event attribute to order by [default: subject]."}),
    ("--rate", {"type": click.IntRange(1), "metavar": "PER_MINUTE", "help": "Requests per minute at most, across "
                "all workers; asked of the target in the handshake (WebHook-Request-Rate)."}),
    ("--oauth2-token-url", {"metavar": "URL", "help": "OAuth 2.0 client credentials: the token endpoint."}),
    ("--oauth2-client-id", {"metavar": "ID", "help": "OAuth 2.0 client id."}),
    ("--oauth2-client-secret", {"metavar": "SECRET", "help": "OAuth 2.0 client secret. A secret."}),
    ("--oauth2-scope", {"metavar": "SCOPE", "help": "OAuth 2.0 scope to ask for (optional)."}),
    ("--zgw-client-id", {"metavar": "ID", "help": "ZGW JWT (as Open Notificaties sends): the client id."}),
    ("--zgw-secret", {"metavar": "SECRET", "help": "ZGW JWT: the HS256 secret. A secret."}),
    ("--ca-bundle", {"type": click.Path(dir_okay=False, exists=True), "metavar": "PEM_FILE",
                     "help": "CA certificates to trust for this target instead of the default ones."}),
    ("--client-cert", {"type": click.Path(dir_okay=False, exists=True), "metavar": "PEM_FILE",
                       "help": "Client certificate for mutual TLS (with --client-key)."}),
    ("--client-key", {"type": click.Path(dir_okay=False, exists=True), "metavar": "PEM_FILE",
                      "help": "Private key of --client-cert. Stored as a secret."}),
)  # fmt: skip


def _delivery_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--signing-secret",
        "signing_secrets",
        multiple=True,
        metavar="whsec_…",
        help="Standard Webhooks signing secret; give two during a rotation (the new one first). "
        "`outbox secrets new-signing-secret` makes one.",
    )(command)
    command = click.option(
        "--no-auth",
        is_flag=True,
        help="Deliver without an access token, though the guideline says MUST (§3.1.2): for targets protected "
        "otherwise (mutual TLS, a private network).",
    )(command)
    command = click.option(
        "--type", "types", multiple=True, metavar="PATTERN", help="Event type pattern; * is a wildcard. Repeatable."
    )(command)
    command = click.option(
        "--filter",
        "filters",
        multiple=True,
        metavar="JSON",
        help='A filter expression of the CloudEvents Subscriptions API, e.g. \'{"prefix": {"subject": "a7"}}\' '
        "(exact, prefix, suffix, all, any, not, sql = CESQL; jsonlogic). Repeatable: all must hold. "
        "On update, the given filters replace the old ones.",
    )(command)
    command = click.option(
        "--preflight/--no-preflight",
        default=None,
        help="Run the handshake before deliveries (pre-flight) instead of once now.",
    )(command)
    command = click.option(
        "--allow-query-token/--no-allow-query-token",
        default=None,
        help="Allow an access_token in the callback URL's query string (the guideline: SHOULD NOT).",
    )(command)
    command = click.option(
        "--allow-insecure",
        is_flag=True,
        default=None,
        help="Allow http:// callback and token URLs (local tests and demos). Private addresses are "
        "OUTBOX_ALLOWED_NETWORKS' to allow.",
    )(command)
    for flag, settings in reversed(_VALUE_OPTIONS):
        command = click.option(flag, default=None, **settings)(command)
    return command


def _read_pem(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint=flag) from None


def _pem_or_path(value: object, field: str) -> object:
    """In --from-json, PEM fields hold the PEM text or a path to it."""
    if isinstance(value, str) and value and "-----BEGIN" not in value:
        return _read_pem(value, f"--from-json {field}")
    return value


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The abonnement fields the command-line options set (None = not given)."""
    fields: dict[str, Any] = {}
    simple = {
        "callback_url": "callbackUrl",
        "auth": "auth",
        "content_mode": "contentMode",
        "batch_max": "batchMax",
        "content_type": "contentType",
        "ordering_key": "orderingKey",
        "rate": "rate",
        "preflight": "preflight",
        "allow_query_token": "allowQueryToken",
    }
    for name, key in simple.items():
        if options.get(name) is not None:
            fields[key] = options[name]
    if options.get("types"):
        fields["types"] = list(options["types"])
    if options.get("filters"):
        fields["filters"] = [_filter_json(text, index) for index, text in enumerate(options["filters"])]
    if options.get("signing_secrets"):
        fields["signingSecrets"] = list(options["signing_secrets"])
    oauth2 = {
        key: options[name]
        for name, key in (
            ("oauth2_token_url", "tokenUrl"),
            ("oauth2_client_id", "clientId"),
            ("oauth2_client_secret", "clientSecret"),
            ("oauth2_scope", "scope"),
        )
        if options.get(name) is not None
    }
    if oauth2:
        fields["oauth2"] = oauth2
    zgw = {
        key: options[name]
        for name, key in (("zgw_client_id", "clientId"), ("zgw_secret", "secret"))
        if options.get(name) is not None
    }
    if zgw:
        fields["zgw"] = zgw
    for name, key, flag in (
        ("ca_bundle", "caBundle", "--ca-bundle"),
        ("client_cert", "clientCert", "--client-cert"),
        ("client_key", "clientKey", "--client-key"),
    ):
        if options.get(name) is not None:
            fields[key] = _read_pem(options[name], flag)
    return fields


def _filter_json(text: str, index: int) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _refused(InvalidSubscriptionError([f"filters[{index}]: --filter is not valid JSON ({exc})"])) from None


def _refused(exc: InvalidSubscriptionError) -> click.ClickException:
    return click.ClickException("the subscription was refused:\n" + "\n".join(f"  - {p}" for p in exc.problems))


def _checked_target(subscription: Subscription) -> Subscription:
    """Beyond the model's checks: certificates that load, a client certificate not expired, a key
    that belongs to it, an address the worker may go to. Refused whole, naming each field (never
    showing the key)."""
    try:
        policy = policy_from_environment()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    problems = target_problems(subscription, policy)
    if problems:
        raise _refused(InvalidSubscriptionError(problems))
    return subscription


def _require_auth(subscription: Subscription, no_auth: bool) -> None:
    """The guideline (004 §3.1.2): a delivery request MUST carry an access token. Without one the
    subscription is refused, unless the operator says the target is protected otherwise."""
    if subscription.auth_kind == "none" and not subscription.allow_query_token and not no_auth:
        raise _refused(
            InvalidSubscriptionError(
                [
                    "auth: the webhook guideline (§3.1.2) says deliveries MUST carry an access token: give --auth, "
                    "--oauth2-… or --zgw-… (or force one in the URL with --allow-query-token); --no-auth if the "
                    "target is protected otherwise (mutual TLS, a private network)"
                ]
            )
        )


def _load_abonnement(path: str) -> dict[str, Any]:
    document = read_json(path, "--from-json")
    if not isinstance(document, dict):
        raise click.ClickException("the subscription was refused:\n  - abonnement: must be a JSON object")
    for key in ("caBundle", "clientCert", "clientKey"):
        if key in document:
            document[key] = _pem_or_path(document[key], key)
    return document


def _reach(subscription: Subscription) -> tuple[AddressPolicy, ssl.SSLContext | None, float]:
    """How the CLI reaches a target as the worker would: the operator's address policy, the
    subscription's TLS options, the worker's HTTP timeout if set. Raises ValueError for an option
    that cannot be used."""
    policy = policy_from_environment()
    tls = None
    if subscription.ca_bundle or subscription.client_cert:
        tls = tls_context(subscription.ca_bundle, subscription.client_cert, subscription.client_key)
    return policy, tls, float(os.environ.get("OUTBOX_REQUEST_TIMEOUT") or 10.0)


def handshake_for(subscription: Subscription, origin: str | None, rate: int | None) -> Agreement:
    """The OPTIONS handshake towards the subscription's target, with its TLS options and the
    operator's address policy; a refusal is one ClickException saying what the target answered."""
    if not origin:
        raise click.UsageError(
            "the OPTIONS handshake needs our origin: set OUTBOX_WEBHOOK_ORIGIN (or --origin), "
            "or pass --skip-handshake when delivery was agreed out of band"
        )
    try:
        policy, tls, timeout = _reach(subscription)
        return handshake(subscription.callback_url, origin, rate, timeout, policy=policy, tls=tls)
    except HandshakeRefused as exc:
        raise click.ClickException(f"the subscription was refused: {exc}") from None
    except ValueError as exc:  # a TLS option or OUTBOX_ALLOWED_NETWORKS that cannot be used
        raise click.ClickException(f"the subscription was refused: {exc}") from None


def _agreed(subscription: Subscription, skip_handshake: bool, origin: str | None) -> Subscription:
    """The subscription with how delivery was agreed: handshake now, pre-flight later, or out of band."""
    if subscription.preflight:
        return replace(subscription, agreement="preflight", handshake_at=None, allowed_rate=None)
    if skip_handshake:
        return replace(subscription, agreement="out-of-band", handshake_at=None, allowed_rate=None)
    verified = verify_for(subscription, origin)
    return replace(
        subscription, agreement=verified.method, handshake_at=datetime.now(UTC), allowed_rate=verified.allowed_rate
    )


def verify_for(subscription: Subscription, origin: str | None) -> Verified:
    """The OPTIONS handshake, else (a target that does not speak it) the probe event; a refusal is
    one ClickException naming the step that failed and what the target answered."""
    if not origin:
        raise click.UsageError(
            "verifying the callback needs our origin: set OUTBOX_WEBHOOK_ORIGIN (or --origin), "
            "or pass --skip-handshake when delivery was agreed out of band"
        )
    try:
        policy, tls, timeout = _reach(subscription)
        return verify(subscription, origin, timeout, policy, tls)
    except VerificationRefused as exc:
        raise click.ClickException(f"the subscription was refused: {exc}") from None
    except ValueError as exc:  # a TLS option or OUTBOX_ALLOWED_NETWORKS that cannot be used
        raise click.ClickException(f"the subscription was refused: {exc}") from None


def _describe(sub: Subscription) -> str:
    parts = [f"{k.naam}{json.dumps(dict(k.filters), ensure_ascii=False) if k.filters else ''}" for k in sub.kanalen]
    parts += [f"type {t}" for t in sub.types]
    parts += [f"filter {json.dumps(f.to_json(), ensure_ascii=False)}" for f in sub.filters]
    return "; ".join(parts)


def _print(sub: Subscription, as_json: bool, limit: dict[str, Any] | None = None) -> None:
    """`limit`: the subscription's concurrency (show), printed after its fields."""
    document = sub.to_public_dict()
    if as_json:
        click.echo(json.dumps({**document, "concurrency": limit} if limit else document, indent=2))
        return
    for key, value in document.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value
        click.echo(f"{key:16} {'-' if shown is None else shown}")
    if limit:
        click.echo(f"{'concurrency':16} {status.describe_limit(limit)}")


@click.group("subscriptions")
def subscriptions() -> None:
    """Manage subscriptions (webhooks and what they want)."""


@subscriptions.command("add")
@_delivery_options
@click.option(
    "--from-json",
    "from_json",
    metavar="FILE",
    help="Abonnement JSON (callbackUrl, auth, kanalen[].naam/filters, filters[] (Subscriptions API dialects), "
    "and the camelCase names of these options: "
    "contentMode, batchMax, contentType, rate, preflight, oauth2{tokenUrl, clientId, clientSecret, scope}, "
    "zgw{clientId, secret}, signingSecrets[], caBundle/clientCert/clientKey (PEM or a path), allowQueryToken); "
    "- reads standard input. Options given as well override its fields.",
)
@click.option("--skip-handshake", is_flag=True, help="The delivery was agreed out of band: no OPTIONS handshake.")
@_origin_option
@click.option("--json", "as_json", is_flag=True, help="Print the stored subscription as JSON (the id stays last).")
@click.pass_obj
def subscriptions_add(
    obj: Context, /, from_json: str | None, skip_handshake: bool, origin: str | None, as_json: bool, **options: Any
) -> None:
    """Register a subscription, after the OPTIONS handshake of the webhook guideline (unless
    --skip-handshake: agreed out of band; or --preflight: before deliveries). Prints the new
    subscription's id alone on the last line. Secrets are stored encrypted when OUTBOX_SECRET_KEY is set."""
    box = secret_box()
    document: dict[str, Any] = _load_abonnement(from_json) if from_json is not None else {}
    document.update(_given(options))
    if "callbackUrl" not in document:
        raise click.UsageError("give --callback-url (or --from-json FILE)")
    try:
        subscription = Subscription.from_abonnement(document, allow_insecure=bool(options.get("allow_insecure")))
    except InvalidSubscriptionError as exc:
        raise _refused(exc) from None
    _require_auth(subscription, bool(options.get("no_auth")))
    subscription = _agreed(_checked_target(subscription), skip_handshake, origin)
    if subscription.secrets() and not box.encrypts:
        click.echo(f"warning: {KEY_VARIABLE} is not set: this subscription's secrets are stored unencrypted", err=True)
    with obj.connect() as conn:
        new_id = subscription_store.add(conn, subscription, obj.schema, box)
        stored = subscription_store.get(conn, obj.schema, new_id, None)  # to show: not opened
    if as_json:
        click.echo(json.dumps(stored.to_public_dict(), indent=2))
    else:
        click.echo(f"added subscription for {stored.to_public_dict()['callbackUrl']} ({stored.content_mode} mode)")
    click.echo(new_id)


_CLEARABLE = ("auth", "rate", "content-type", "ordering-key", "signing", "tls", "types", "kanalen", "filters")


@subscriptions.command("update")
@click.argument("subscription_id")
@_delivery_options
@click.option(
    "--clear",
    "clear",
    multiple=True,
    type=click.Choice(_CLEARABLE),
    help="Remove a setting: auth (every kind), rate, content-type, ordering-key, signing, tls, types, kanalen, "
    "filters.",
)
@click.option("--skip-handshake", is_flag=True, help="Do not run the handshake again (agreed out of band).")
@_origin_option
@click.option("--json", "as_json", is_flag=True, help="Print the stored subscription as JSON.")
@click.pass_obj
def subscriptions_update(
    obj: Context,
    /,
    subscription_id: str,
    clear: tuple[str, ...],
    skip_handshake: bool,
    origin: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Change any option of a subscription; the rest stays. The whole subscription is checked again,
    and the handshake runs again when the target, its TLS options or the rate change."""
    box = secret_box()
    with obj.connect() as conn:
        current = subscription_store.get(conn, obj.schema, subscription_id, box)
    document = current.to_abonnement()
    changes = _given(options)
    if any(key in changes for key in ("auth", "oauth2", "zgw")) or "auth" in clear:
        document.update(auth=None, oauth2=None, zgw=None)
    cleared: dict[str, dict[str, Any]] = {
        "rate": {"rate": None},
        "content-type": {"contentType": None},
        "ordering-key": {"orderingKey": None},
        "signing": {"signingSecrets": []},
        "tls": {"caBundle": None, "clientCert": None, "clientKey": None},
        "types": {"types": []},
        "kanalen": {"kanalen": []},
        "filters": {"filters": []},
    }
    for name in clear:
        document.update(cleared.get(name, {}))
    before = current.to_abonnement()
    for kind in ("oauth2", "zgw"):  # a new secret alone keeps the rest of that kind's settings
        if kind in changes and before[kind] is not None:
            changes[kind] = {**before[kind], **changes[kind]}
    document.update(changes)
    allow_insecure = current.allow_insecure if options.get("allow_insecure") is None else options["allow_insecure"]
    try:
        updated = Subscription.from_abonnement(document, allow_insecure=allow_insecure)
    except InvalidSubscriptionError as exc:
        raise _refused(exc) from None
    if current.auth_kind != "none" or current.allow_query_token:  # taking the token away needs --no-auth too
        _require_auth(updated, bool(options.get("no_auth")))
    updated = replace(
        _checked_target(updated),
        id=current.id,
        agreement=current.agreement,
        handshake_at=current.handshake_at,
        allowed_rate=current.allowed_rate,
    )
    target_changed = (
        updated.callback_url != current.callback_url
        or updated.requested_rate != current.requested_rate
        or (updated.ca_bundle, updated.client_cert, updated.client_key)
        != (current.ca_bundle, current.client_cert, current.client_key)
        or updated.preflight != current.preflight
    )
    if target_changed or skip_handshake:
        updated = _agreed(updated, skip_handshake or (current.agreement == "out-of-band" and not origin), origin)
    with obj.connect() as conn:
        subscription_store.update(conn, obj.schema, updated, box, current.updated_at)
        stored = subscription_store.get(conn, obj.schema, subscription_id, None)  # to show: not opened
    if as_json:
        click.echo(json.dumps(stored.to_public_dict(), indent=2))
    else:
        click.echo(f"updated {subscription_id}")


@subscriptions.command("verify")
@click.argument("subscription_id")
@click.option("--rate", type=click.IntRange(1), metavar="PER_MINUTE", help="Ask the target for this rate.")
@_origin_option
@click.pass_obj
def subscriptions_verify(obj: Context, subscription_id: str, rate: int | None, origin: str | None) -> None:
    """Run the OPTIONS handshake again (else, for a target that does not speak it, the probe
    event) and record what the target agreed to."""
    box = secret_box()
    with obj.connect() as conn:
        sub = subscription_store.get(conn, obj.schema, subscription_id, box)
    asked = rate if rate is not None else sub.requested_rate
    if sub.preflight:  # a pre-flight subscription needs the handshake itself: no probe
        agreement = handshake_for(sub, origin, asked)
        method, allowed_rate, detail = (
            "handshake",
            agreement.allowed_rate,
            (f"the target allows origin {agreement.allowed_origin!r}"),
        )
    else:
        verified = verify_for(replace(sub, requested_rate=asked), origin)
        method, allowed_rate, detail = verified.method, verified.allowed_rate, verified.detail
    with obj.connect() as conn:
        subscription_store.record_handshake(conn, obj.schema, subscription_id, asked, allowed_rate, method)
    click.echo(f"verified {subscription_id}{' by the probe' if method == 'probe' else ''}: {detail}"
               + (f", rate {allowed_rate} per minute" if allowed_rate else ""))  # fmt: skip


@subscriptions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def subscriptions_list(obj: Context, as_json: bool) -> None:
    """List subscriptions (secrets and header values are never shown, nor opened: no key needed)."""
    with obj.connect() as conn:
        subs = subscription_store.list_all(conn, obj.schema)
        limits = status.concurrency(conn, obj.schema)
    if as_json:
        click.echo(json.dumps([{**s.to_public_dict(), "concurrency": limits.get(s.id or "")} for s in subs], indent=2))
        return
    if not subs:
        click.echo("no subscriptions")
        return
    click.echo(f"{'id':36}  {'status':6}  {'mode':10}  {'auth':12}  {'limit':>7}  {'callbackUrl':40}  wants")
    for s in subs:
        auth = s.auth_hint or (s.auth_kind if s.auth_kind != "none" else "-")
        limit = (limits.get(s.id or "") or {}).get("concurrencyLimit")
        click.echo(
            f"{s.id or '':36}  {s.status:6}  {s.content_mode:10}  {auth:12}  "
            f"{'initial' if limit is None else f'{limit:g}':>7}  {s.to_public_dict()['callbackUrl']:40}  {_describe(s)}"
        )


@subscriptions.command("show")
@click.argument("subscription_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def subscriptions_show(obj: Context, subscription_id: str, as_json: bool) -> None:
    """Show one subscription (secrets and header values are never shown, nor opened: no key needed)."""
    with obj.connect() as conn:
        sub = subscription_store.get(conn, obj.schema, subscription_id, None)
        limit = status.concurrency(conn, obj.schema, sub.id).get(sub.id or "")
    _print(sub, as_json, limit)


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


# -- secrets -----------------------------------------------------------------------------


@click.group("secrets")
def secrets() -> None:
    """Secrets at rest: subscription secrets are encrypted with OUTBOX_SECRET_KEY (Fernet) when it is set."""


@secrets.command("new-key")
def secrets_new_key() -> None:
    """Print a new random key for OUTBOX_SECRET_KEY."""
    click.echo(new_key())


@secrets.command("new-signing-secret")
def secrets_new_signing_secret() -> None:
    """Print a new Standard Webhooks signing secret (whsec_…) for --signing-secret."""
    from worker.delivery.credentials import new_signing_secret

    click.echo(new_signing_secret())


@secrets.command("rotate")
@click.pass_obj
def secrets_rotate(obj: Context) -> None:
    """Re-encrypt every subscription's and API client's secrets with the first key of OUTBOX_SECRET_KEY.

    To rotate: set OUTBOX_SECRET_KEY="NEW,OLD", run this, then set OUTBOX_SECRET_KEY=NEW.
    Plain-text secrets (stored before a key was set) are encrypted too. One transaction: all or nothing."""
    box = secret_box()
    if not box.encrypts:
        raise click.UsageError(f"set {KEY_VARIABLE} first (the new key, then the old one, comma-separated)")
    with obj.connect() as conn:
        try:
            count = subscription_store.rotate_secrets(conn, obj.schema, box)
            clients = client_store.reseal_all(conn, obj.schema, box)
            consumers = consumer_store.reseal_all(conn, obj.schema, box)
        except SecretKeyError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"re-encrypted the secrets of {count} subscription{'s' if count != 1 else ''}, "
        f"{clients} API client{'s' if clients != 1 else ''} "
        f"and {consumers} consumer{'s' if consumers != 1 else ''}"
    )
