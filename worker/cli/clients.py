"""`outbox clients …`: who may call `outbox serve`, with which scopes, signing JWTs with which secret."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from worker.cli.subscriptions import secret_box
from worker.store import clients as client_store

if TYPE_CHECKING:
    from worker.cli.main import Context

_OWN_SECRET_HELP = "Use this secret instead of a generated one (at least 16 characters) [env OUTBOX_CLIENT_SECRET]."  # noqa: S105


def _refuse(problems: list[str]) -> None:
    if problems:
        raise click.UsageError("; ".join(problems))


@click.group("clients")
def clients() -> None:
    """API clients of `outbox serve`: they sign a ZGW JWT (HS256) with their secret.

    Scopes: notificaties.publiceren (POST cloud events), notificaties.consumeren (their own
    abonnementen, the catalogue), outbox.beheer (every subscription, catalogue changes)."""


@clients.command("add")
@click.argument("client_id")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(client_store.SCOPES))
@click.option("--secret", envvar="OUTBOX_CLIENT_SECRET", help=_OWN_SECRET_HELP)
@click.pass_obj
def clients_add(obj: Context, client_id: str, scopes: tuple[str, ...], secret: str | None) -> None:
    """Register CLIENT_ID; prints its secret once (it cannot be shown again: rotate to get a new one)."""
    _refuse(client_store.check(client_id, scopes, secret))
    box = secret_box()
    generated = secret is None
    client = client_store.ApiClient(client_id, frozenset(scopes), secret or client_store.new_secret())
    with obj.connect() as conn:
        try:
            client_store.add(conn, obj.schema, client, box)
        except client_store.ClientExists as exc:
            raise click.ClickException(str(exc)) from None
    if not box.encrypts:
        click.echo("warning: the secret is stored unencrypted: set OUTBOX_SECRET_KEY", err=True)
    click.echo(f"added API client {client_id} ({', '.join(sorted(scopes))})", err=True)
    if generated:
        click.echo("its secret (shown once):", err=True)
        click.echo(client.secret)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (no secrets).")
@click.pass_obj
def clients_list(obj: Context, as_json: bool) -> None:
    """Every API client with its scopes (never its secret)."""
    with obj.connect() as conn:
        found = client_store.list_all(conn, obj.schema)
    if as_json:
        document = [
            {
                "clientId": c.client_id,
                "scopes": sorted(c.scopes),
                "createdAt": c.created_at.isoformat() if c.created_at else None,
                "rotatedAt": c.rotated_at.isoformat() if c.rotated_at else None,
            }
            for c in found
        ]
        click.echo(json.dumps(document, indent=2))
        return
    if not found:
        click.echo("no API clients (add one with `outbox clients add CLIENT_ID --scope …`)")
    for c in found:
        rotated = f", rotated {c.rotated_at:%Y-%m-%d %H:%M}" if c.rotated_at else ""
        click.echo(f"{c.client_id}  {' '.join(sorted(c.scopes))}  (added {c.created_at:%Y-%m-%d %H:%M}{rotated})")


@clients.command("rotate")
@click.argument("client_id")
@click.option("--secret", envvar="OUTBOX_CLIENT_SECRET", help=_OWN_SECRET_HELP)
@click.pass_obj
def clients_rotate(obj: Context, client_id: str, secret: str | None) -> None:
    """Give CLIENT_ID a new secret (printed once); the old one stops working within OUTBOX_CLIENT_CACHE_TTL."""
    if secret is not None:
        _refuse(client_store.check_secret(secret))
    box = secret_box()
    new = secret or client_store.new_secret()
    with obj.connect() as conn:
        try:
            client_store.rotate(conn, obj.schema, client_id, new, box)
        except client_store.ClientNotFound as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"rotated the secret of API client {client_id}", err=True)
    if secret is None:
        click.echo("its new secret (shown once):", err=True)
        click.echo(new)


@clients.command("remove")
@click.argument("client_id")
@click.pass_obj
def clients_remove(obj: Context, client_id: str) -> None:
    """Remove CLIENT_ID; its subscriptions stay, as the operator's (a client added later with the same id gets none)."""
    with obj.connect() as conn:
        try:
            client_store.remove(conn, obj.schema, client_id)
        except client_store.ClientNotFound as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"removed API client {client_id}")
