"""What every `annex` command shares: the Typer apps, common options, the error-to-exit mapping.

Command modules (api/cli.py and the cli_* modules beside it) register on these apps; api/cli.py
imports them all, so `annex --help` lists every command.
"""

from __future__ import annotations

import base64
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from api.output import report_error
from api.settings import get_settings
from evidence.errors import AnnexError, InputError
from evidence.home import Home

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}  # every command, every group

app = typer.Typer(
    help="Annex: signed, append-only evidence for AI systems, verifiable by an auditor alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"annex {version('annex')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("annex (not installed: no version)")
        raise typer.Exit(0)


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Annex: signed, append-only evidence for AI systems, verifiable by an auditor alone."""


log_app = typer.Typer(help="The Merkle log: checkpoints, proofs, export.")
keys_app = typer.Typer(help="Signing keys and the trust file.")
app.add_typer(log_app, name="log", no_args_is_help=True)
app.add_typer(keys_app, name="keys", no_args_is_help=True)
collect_app = typer.Typer(help="Collectors: observe GPUs and models and log what they saw.")
sign_app = typer.Typer(help="Sign releases: a logged approval plus a portable signature file.")
app.add_typer(collect_app, name="collect", no_args_is_help=True)
app.add_typer(sign_app, name="sign", no_args_is_help=True)

F = TypeVar("F", bound=Callable[..., Any])

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Data directory (default: $ANNEX_HOME or ~/.annex)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for machines.")]


def command(group: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Registers a command whose AnnexErrors become a message and an exit code, in one place."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except AnnexError as error:
                report_error(error, kwargs.get("json_out", False))
                raise typer.Exit(error.exit_code) from None

        group.command(name)(run)
        return fn

    return register


def open_home(home: Path | None) -> Home:
    return get_settings(home).open_home()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def write_output(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror}") from exc
