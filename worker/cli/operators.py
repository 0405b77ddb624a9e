"""`outbox operators …`: the accounts that sign in to `/console/` (viewer: reads; operator: also acts)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from worker.store import operators as operator_store

if TYPE_CHECKING:
    from worker.cli.main import Context

_STDIN_HELP = "Read the password from the first line of standard input (scripts) instead of a prompt."


def _password(from_stdin: bool) -> str:
    """From standard input's first line, or typed twice at a prompt that does not echo it."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.UsageError("password: none given")
    return password


@click.group("operators")
def operators() -> None:
    """Accounts of the console (/console/ of `outbox serve`); passwords are stored as argon2id hashes."""


@operators.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(operator_store.ROLES), help="viewer reads; operator acts.")
@click.option("--password-stdin", is_flag=True, help=_STDIN_HELP)
@click.pass_obj
def operators_add(obj: Context, name: str, role: str, password_stdin: bool) -> None:
    """Create the account NAME (its password from a prompt, or --password-stdin)."""
    try:
        operator_store.check_name(name)
        password = _password(password_stdin)
        operator_store.hash_password(password)  # the rule is checked before the database is reached
        with obj.connect() as conn:
            operator_store.add(conn, obj.schema, name, role, password)
    except operator_store.OperatorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added operator {name} ({role})")


@operators.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help=_STDIN_HELP)
@click.pass_obj
def operators_passwd(obj: Context, name: str, password_stdin: bool) -> None:
    """Give NAME a new password; its sessions end."""
    try:
        password = _password(password_stdin)
        operator_store.hash_password(password)
        with obj.connect() as conn:
            operator_store.set_password(conn, obj.schema, name, password)
    except (operator_store.OperatorError, operator_store.OperatorNotFound) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"changed the password of {name}; its sessions were ended")


@operators.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(operator_store.ROLES))
@click.pass_obj
def operators_role(obj: Context, name: str, role: str) -> None:
    """Make NAME a viewer or an operator (takes effect at its next request)."""
    try:
        with obj.connect() as conn:
            operator_store.set_role(conn, obj.schema, name, role)
    except operator_store.OperatorNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name} is now {role}")


@operators.command("remove")
@click.argument("name")
@click.pass_obj
def operators_remove(obj: Context, name: str) -> None:
    """Remove the account NAME and its sessions (its audit entries stay)."""
    try:
        with obj.connect() as conn:
            operator_store.remove(conn, obj.schema, name)
    except operator_store.OperatorNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed operator {name}")


@operators.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (never a password hash).")
@click.pass_obj
def operators_list(obj: Context, as_json: bool) -> None:
    """Every account: name, role, when created, sessions open."""
    with obj.connect() as conn:
        found = operator_store.list_all(conn, obj.schema)
    if as_json:
        document = [
            {
                "name": o.name,
                "role": o.role,
                "createdAt": o.created_at.isoformat() if o.created_at else None,
                "updatedAt": o.updated_at.isoformat() if o.updated_at else None,
                "sessions": o.sessions,
            }
            for o in found
        ]
        click.echo(json.dumps(document, indent=2))
        return
    if not found:
        click.echo("no operators: add one with `outbox operators add NAME --role operator`")
        return
    click.echo(f"{'name':24}  {'role':8}  {'sessions':>8}  created")
    for o in found:
        created = o.created_at.isoformat(timespec="seconds") if o.created_at else "-"
        click.echo(f"{o.name:24}  {o.role:8}  {o.sessions:>8}  {created}")
