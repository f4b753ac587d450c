"""`annex gate DIR`: the CI gate. Exit 0 when the model passes its policy, 1 if not, 2 bad input."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.cli_base import HomeOpt, JsonOpt, app, command, open_home, read_input, write_output
from api.output import print_json, progress_bar, stderr, stdout
from evidence.errors import InputError
from evidence.keys import TrustIndex, load_trust
from evidence.store import Store
from reports.gate import Verdict, run_gate
from reports.policy import default_requirement, load_policy, requirement_of
from reports.sarif import to_sarif

PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        help="Policy YAML. Default: a trusted, unrevoked release in the log of these exact files.",
    ),
]
SarifOpt = Annotated[
    str | None,
    typer.Option("--sarif", metavar="FILE", help="Also write SARIF 2.1.0 to FILE ('-': stdout)."),
]
PinOpt = Annotated[
    Path | None,
    typer.Option(
        "--trusted-checkpoint",
        help="A checkpoint saved earlier (annex log checkpoint): the log must extend it.",
    ),
]
TrustOpt = Annotated[
    Path | None, typer.Option("--trust", help="Trust file to use instead of the data directory's.")
]


def _annex_version() -> str:
    try:
        return version("annex")
    except PackageNotFoundError:
        return "0+unknown"


@command(app, "gate")
def gate(
    directory: Annotated[Path, typer.Argument(help="The model or adapter directory to check.")],
    policy: PolicyOpt = None,
    sarif: SarifOpt = None,
    trust: TrustOpt = None,
    trusted_checkpoint: PinOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a model or adapter directory against a policy: exit 0 pass, 1 fail, 2 bad input.

    Every file is re-read and compared with the release in the log.

    Every log entry the verdict relies on is proven against the trust file.

    In CI without a data directory: give --trust and ANNEX_DATABASE_URL.
    """
    if sarif == "-" and json_out:
        raise InputError("--sarif - and --json both want stdout: give --sarif a file name")
    chosen = load_policy(policy) if policy else None
    requirement = default_requirement() if chosen is None else requirement_of(chosen.require)
    label = str(policy) if policy else "default (signed)"
    pinned = None if trusted_checkpoint is None else read_input(str(trusted_checkpoint))
    target = open_home(home)
    index = TrustIndex(load_trust(trust)) if trust else target.trust()
    quiet = json_out or sarif == "-"
    with (
        Store.open(target.db_url) if trust else target.open_store() as store,
        progress_bar("hashing", enabled=not quiet) as progress,
    ):
        verdict = run_gate(
            directory,
            requirement,
            store=store,
            trust=index,
            policy=label,
            progress=progress,
            trusted_checkpoint=pinned,
        )
    if sarif is not None:
        document = json.dumps(to_sarif(verdict, version=_annex_version()), indent=2) + "\n"
        write_output(document, None if sarif == "-" else Path(sarif))
    if json_out:
        print_json(verdict.to_json())
    else:
        _print_verdict(verdict, stderr if sarif == "-" else stdout)
    if not verdict.passed:
        raise typer.Exit(1)


def _print_verdict(verdict: Verdict, console: Console) -> None:
    manifest = verdict.manifest
    what = (
        f"{verdict.kind} {verdict.directory} (sha256:{manifest.digest[:16]}…, "
        f"{len(manifest.files)} files)"
    )
    failed = verdict.failures()
    if failed:
        table = Table(title=f"failed requirements ({verdict.policy})", show_lines=True)
        widest = max(len(f.path) for f in failed)
        table.add_column("requirement", overflow="fold", min_width=min(widest, 48))
        table.add_column("reason", overflow="fold")
        for f in failed:
            table.add_row(f"{f.path}\n{f.outcome.requirement}", f.outcome.reason)
        console.print(table)
        console.print(f"FAIL: {what}: {len(failed)} requirement(s) failed")
        return
    entries = ", ".join(str(i) for i in verdict.outcome.entries) or "none"
    console.print(f"PASS: {what} meets {verdict.policy}")
    console.print(f"  {verdict.outcome.reason}; log entries relied on: {entries}")
