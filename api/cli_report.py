"""Reports: `annex report annex-iv | oversight | ropa | dpia-inputs | list`, `annex verify-dossier`.

Each report command builds its document from the log (cut at a checkpoint), then issues it
(reports/dossier.py): a PDF/A-3b with the evidence bundle attached, the same bundle and a log
receipt beside it, and a REPORT entry holding the PDF's digest. `annex verify-dossier` needs
none of the operator's systems: the PDF, its bundle and, ideally, the auditor's own trust file.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_base import HomeOpt, JsonOpt, app, command, open_home
from api.output import count, print_json, stdout
from api.settings import get_settings
from evidence.errors import InputError
from evidence.keys import TrustIndex, load_trust
from reports.document import Coverage, Document
from reports.dossier import Issued, PdfSigner, beside, issue
from reports.lineage import entries_of
from reports.render import render_html, write_atomically
from schemas.report import REPORT

report_app = typer.Typer(help="Reports: Annex IV dossiers, oversight reports, GDPR records.")
app.add_typer(report_app, name="report", no_args_is_help=True)

SystemOpt = Annotated[str, typer.Option("--system", help="The AI system's id (annex system list).")]
AtOpt = Annotated[
    int | None,
    typer.Option("--at", help="Build at this checkpoint (a tree size). Default: the latest."),
]
OutOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="PDF to write. Default: <kind>-<system>.pdf.")
]
HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="Also write the report as one HTML file.")
]
CertOpt = Annotated[
    Path | None,
    typer.Option("--sign-cert", help="PEM certificate to sign the PDF with (PAdES)."),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--sign-key", help="PEM private key of --sign-cert (passphrase: ANNEX_KEY_PASSPHRASE)."
    ),
]


def _signer(home: Path | None, cert: Path | None, key: Path | None) -> PdfSigner | None:
    """The PAdES signer from the options, else from ANNEX_PDF_SIGN_CERT/KEY, else none."""
    settings = get_settings(home)
    cert = cert or settings.pdf_sign_cert
    key = key or settings.pdf_sign_key
    if (cert is None) != (key is None):
        raise InputError("give both --sign-cert and --sign-key, or neither")
    if cert is None or key is None:
        return None
    from reports.pades import sign_pdf

    chosen_cert, chosen_key, passphrase = cert, key, settings.passphrase

    def sign(data: bytes) -> bytes:
        return sign_pdf(data, cert=chosen_cert, key=chosen_key, passphrase=passphrase)

    return sign


def _issue(
    home: Path | None,
    build: Any,
    out: Path | None,
    html: Path | None,
    sign: tuple[Path | None, Path | None],
    json_out: bool,
) -> None:
    """Checks the signing options, then builds the document, issues it and reports."""
    signer = _signer(home, *sign)
    target = open_home(home)
    with target.open_store(write=True) as store:
        doc: Document = build(store)
        path = out or Path(f"{doc.kind}-{doc.system.id if doc.system else 'all'}.pdf")
        if path.suffix.lower() != ".pdf":
            raise InputError(f"{path}: the output must be a .pdf file")
        if not path.parent.is_dir():
            raise InputError(f"{path.parent} is not a directory")
        issued = issue(store, doc, path, trust_json=target.trust_path.read_bytes(), sign=signer)
    if html is not None:
        write_atomically(html, render_html(doc).encode())
    _report(doc, issued, html, json_out)


def _report(doc: Document, issued: Issued, html: Path | None, json_out: bool) -> None:
    if json_out:
        print_json(
            {**issued.to_json(), "kind": doc.kind, "html": None if html is None else str(html)}
        )
        return
    c = issued.coverage
    stdout.print(f"{doc.title}: {issued.pdf}")
    stdout.print(
        f"  points: {c[Coverage.COMPLETE]} complete, {c[Coverage.PARTIAL]} partial, "
        f"{c[Coverage.MISSING]} missing; {count(issued.gaps, 'gap')}; "
        f"{count(issued.citations, 'entry', 'entries')} cited"
    )
    stdout.print(f"  built at checkpoint {doc.checkpoint.size}; logged as entry {issued.index}")
    stdout.print(f"  evidence bundle: {issued.bundle} (also attached to the PDF)")
    stdout.print(f"  receipt: {issued.receipt}")
    if issued.signed:
        stdout.print("  PDF signed (PAdES)")
    if html is not None:
        stdout.print(f"  HTML: {html}")
    stdout.print(f"  verify: annex verify-dossier {issued.pdf} --trust TRUST.json")


@command(report_app, "annex-iv")
def report_annex_iv(
    system: SystemOpt,
    at: AtOpt = None,
    output: OutOpt = None,
    html: HtmlOpt = None,
    sign_cert: CertOpt = None,
    sign_key: KeyOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """EU AI Act Annex IV technical documentation of a system, as a verifiable PDF dossier."""
    from reports.annex_iv import build_annex_iv

    _issue(
        home,
        lambda store: build_annex_iv(store, system, at=at),
        output,
        html,
        (sign_cert, sign_key),
        json_out,
    )


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option} {value!r}: give a date as YYYY-MM-DD") from None


@command(report_app, "oversight")
def report_oversight(
    system: SystemOpt,
    start: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD, UTC).")],
    end: Annotated[str, typer.Option("--to", help="Last day, included (YYYY-MM-DD, UTC).")],
    at: AtOpt = None,
    output: OutOpt = None,
    html: HtmlOpt = None,
    sign_cert: CertOpt = None,
    sign_key: KeyOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Human oversight of a system over a period (Art 14, 26): what reviewers did, per week."""
    from reports.oversight import build_oversight

    first, last = _day(start, "--from"), _day(end, "--to")
    if last < first:
        raise InputError(f"--to {end} is before --from {start}")
    since = datetime.combine(first, time(), UTC)
    until = datetime.combine(last + timedelta(days=1), time(), UTC)
    _issue(
        home,
        lambda store: build_oversight(store, system, since, until, at=at),
        output,
        html,
        (sign_cert, sign_key),
        json_out,
    )


@command(report_app, "ropa")
def report_ropa(
    system: Annotated[
        str | None, typer.Option("--system", help="One system only. Default: every system.")
    ] = None,
    at: AtOpt = None,
    output: OutOpt = None,
    html: HtmlOpt = None,
    sign_cert: CertOpt = None,
    sign_key: KeyOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """GDPR Art 30 record of processing: the inference logging and the evidence store itself."""
    from reports.gdpr import build_ropa

    _issue(
        home,
        lambda store: build_ropa(store, system_id=system, at=at),
        output,
        html,
        (sign_cert, sign_key),
        json_out,
    )


@command(report_app, "dpia-inputs")
def report_dpia_inputs(
    system: SystemOpt,
    at: AtOpt = None,
    output: OutOpt = None,
    html: HtmlOpt = None,
    sign_cert: CertOpt = None,
    sign_key: KeyOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The facts a GDPR Art 35 DPIA needs that the log holds, and what it lacks."""
    from reports.gdpr import build_dpia_inputs

    _issue(
        home,
        lambda store: build_dpia_inputs(store, system, at=at),
        output,
        html,
        (sign_cert, sign_key),
        json_out,
    )


@command(report_app, "list")
def report_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Every report the log has issued: kind, system, PDF digest, checkpoint."""
    rows: list[dict[str, Any]] = []
    with open_home(home).open_store() as store:
        for entry in entries_of(store, REPORT):
            p = entry.statement["predicate"]
            rows.append(
                {
                    "index": entry.index,
                    "kind": p["kind"],
                    "system": (p.get("system") or {}).get("id"),
                    "pdf": p["pdf"],
                    "checkpoint": p["checkpoint"]["size"],
                    "loggedAt": entry.logged_at.isoformat(),
                }
            )
    if json_out:
        print_json(rows)
        return
    if not rows:
        stdout.print("no reports yet: annex report annex-iv --system ID")
    for r in rows:
        stdout.print(
            f"entry {r['index']}: {r['kind']} {r['system'] or 'all'}  {r['pdf']['name']}  "
            f"sha256 {r['pdf']['sha256'][:16]}…  at checkpoint {r['checkpoint']}"
        )


@command(app, "verify-dossier")
def verify_dossier_cmd(
    pdf: Annotated[Path, typer.Argument(help="The dossier PDF.")],
    trust: Annotated[
        Path | None,
        typer.Option("--trust", help="Your copy of the log's trust file. Default: the bundle's."),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle", help="The bundle written beside it. Default: NAME.bundle.json if present."
        ),
    ] = None,
    receipt: Annotated[
        Path | None,
        typer.Option("--receipt", help="The log receipt. Default: NAME.receipt.json if present."),
    ] = None,
    signature_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--signature-root",
            help="A PEM certificate to trust for the PDF's PAdES signature (repeatable).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a dossier offline: every citation, its proof, the checkpoint, signature, receipt."""
    from reports.bundle import verify_dossier

    if pdf.is_dir():
        raise InputError(f"{pdf} is a directory: give the dossier's PDF file")
    if not pdf.is_file():
        raise InputError(f"{pdf}: no such file")
    found_bundle = bundle or _if_exists(beside(pdf, ".bundle.json"))
    found_receipt = receipt or _if_exists(beside(pdf, ".receipt.json"))
    index = None if trust is None else TrustIndex(load_trust(trust))
    result = verify_dossier(
        pdf,
        trust=index,
        beside=found_bundle,
        receipt=found_receipt,
        signature_roots=tuple(signature_root or ()),
    )
    if json_out:
        print_json(result.to_json())
        return
    for line in result.summary():
        stdout.print(line)


def _if_exists(path: Path) -> Path | None:
    return path if path.exists() else None
