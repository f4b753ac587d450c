"""`annex tokens create | list | revoke`: API tokens for the REST service (api/auth.py).

The token is printed once, at creation; only its SHA-256 is kept, in the data directory.
"""

from __future__ import annotations

from typing import Annotated

import typer

from api.auth import Scope, TokenFile
from api.cli_base import HomeOpt, JsonOpt, app, command, open_home
from api.output import print_json, stdout

tokens_app = typer.Typer(help="API tokens for `annex serve`: create, list, revoke.")
app.add_typer(tokens_app, name="tokens", no_args_is_help=True)


def _tokens(home: HomeOpt) -> TokenFile:
    target = open_home(home)
    target.trust()  # a clear error when the directory is not initialised
    return TokenFile(target.path)


@command(tokens_app, "create")
def tokens_create(
    scope: Annotated[Scope, typer.Option(help="read, write, report or admin (admin implies all).")],
    name: Annotated[str | None, typer.Option(help="A label to tell tokens apart.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a token and print it once: it cannot be shown again."""
    record, secret = _tokens(home).create(scope, name)
    if json_out:
        print_json({**record.public(), "token": secret})
        return
    stdout.print(f"token {record.id} ({record.name}), scope {record.scope}:")
    stdout.print(secret)
    stdout.print("store it now: Annex keeps only its hash and cannot show it again")


@command(tokens_app, "list")
def tokens_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Every token: id, name, scope, created, revoked (never the token itself)."""
    records = _tokens(home).records()
    if json_out:
        print_json([r.public() for r in records])
        return
    if not records:
        stdout.print("no tokens yet: annex tokens create --scope read")
    for r in records:
        state = "active" if r.revoked_at is None else f"revoked {r.revoked_at.isoformat()}"
        stdout.print(f"{r.id}  {r.scope:<6}  {r.name}  created {r.created_at.isoformat()}  {state}")


@command(tokens_app, "revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (tokens list).")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    record = _tokens(home).revoke(token_id)
    if json_out:
        print_json(record.public())
        return
    stdout.print(f"revoked token {record.id} ({record.name})")
