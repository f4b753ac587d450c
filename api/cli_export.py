"""Exports for GRC tools: `annex export oscal | mlbom --system ID [--at N] [-o FILE]`.

Both read the log only (nothing is appended) and are cut at one signed checkpoint, so the same
command at the same `--at` writes the same bytes. The document goes to stdout, or with `-o` to a
file written atomically (a temporary file beside it, fsync, rename).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from api.cli_base import HomeOpt, app, command, open_home
from api.output import stderr
from evidence.errors import InputError
from evidence.store import Store
from reports.render import write_atomically

export_app = typer.Typer(help="Exports for GRC tools: OSCAL assessment results, CycloneDX ML-BOM.")
app.add_typer(export_app, name="export", no_args_is_help=True)

SystemOpt = Annotated[str, typer.Option("--system", help="The AI system's id (annex system list).")]
AtOpt = Annotated[
    int | None,
    typer.Option("--at", help="Export at this checkpoint (a tree size). Default: the latest."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("-o", "--output", help="File to write (atomically). Default: stdout."),
]


def _export(home: Path | None, build: Callable[[Store], str], output: Path | None) -> None:
    """Builds the document from a read-only store, then writes it to stdout or `output`."""
    if output is not None and not output.parent.is_dir():
        raise InputError(f"{output.parent} is not a directory")
    with open_home(home).open_store() as store:
        text = build(store)
    data = text.encode()
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_atomically(output, data)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror}") from None
    stderr.print(f"wrote {output} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()})")


@command(export_app, "oscal")
def export_oscal(
    system: SystemOpt, at: AtOpt = None, output: OutOpt = None, home: HomeOpt = None
) -> None:
    """OSCAL assessment-results: Annex IV points as findings, cited entries with their proofs."""
    from reports.oscal import assessment_results, to_json

    _export(home, lambda store: to_json(assessment_results(store, system, at)), output)


@command(export_app, "mlbom")
def export_mlbom(
    system: SystemOpt, at: AtOpt = None, output: OutOpt = None, home: HomeOpt = None
) -> None:
    """CycloneDX 1.6 ML-BOM: models, adapters, datasets and GPU hosts, each naming its entry."""
    from reports.mlbom import ml_bom_json

    _export(home, lambda store: ml_bom_json(store, system, at), output)
