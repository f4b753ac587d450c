"""Issuing a report: render, attach the evidence, optionally sign, write, and log it.

The order is the contract. The evidence bundle is cut from the document's citations and attached
to the PDF; the PDF is signed (PAdES) if a certificate is configured; only then is the PDF written
(atomically, beside its bundle) and its SHA-256 logged as a REPORT entry, whose envelope and
inclusion proof are written beside it as the receipt. A failure before the log append leaves no
PDF, bundle or receipt behind; a crash after it leaves a logged digest whose PDF may be missing,
which the log's report list shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from evidence.entry import rfc3339
from evidence.keys import utc_now
from evidence.store import Store
from reports.bundle import build_bundle
from reports.document import Coverage, Document
from reports.render import (
    BUNDLE_NAME,
    Attachment,
    RenderLimits,
    render_pdf_bytes,
    write_atomically,
)
from schemas.report import (
    REPORT,
    SUBJECT_PREFIX,
    ReportCheckpoint,
    ReportFile,
    ReportPredicate,
    ReportSystem,
)
from schemas.report import Coverage as CoverageCounts
from schemas.statement import STATEMENT_TYPE

PdfSigner = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Issued:
    pdf: Path
    bundle: Path
    receipt: Path
    index: int
    sha256: str
    citations: int
    coverage: dict[Coverage, int]
    gaps: int
    signed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "pdf": str(self.pdf),
            "bundle": str(self.bundle),
            "receipt": str(self.receipt),
            "index": self.index,
            "sha256": self.sha256,
            "citations": self.citations,
            "coverage": {str(k): v for k, v in self.coverage.items()},
            "gaps": self.gaps,
            "signed": self.signed,
        }


def beside(pdf: Path, suffix: str) -> Path:
    """`dossier.pdf` -> `dossier.bundle.json` / `dossier.receipt.json`."""
    return pdf.with_name(pdf.stem + suffix)


def issue(
    store: Store,
    doc: Document,
    out: Path,
    *,
    trust_json: bytes,
    sign: PdfSigner | None = None,
    limits: RenderLimits | None = None,
    now: datetime | None = None,
) -> Issued:
    """Renders `doc` to `out` with its evidence bundle, logs the PDF's digest, writes a receipt."""
    bundle = build_bundle(store, doc, trust_json)
    attachment = Attachment(
        name=BUNDLE_NAME,
        data=bundle,
        description="Annex evidence bundle: every cited envelope, its inclusion proof, "
        "the checkpoint and the trust file",
    )
    pdf = render_pdf_bytes(
        doc, attachments=[attachment], limits=limits or RenderLimits(), workdir=out.parent
    )
    if sign is not None:
        pdf = sign(pdf)
    statement = report_statement(doc, out.name, pdf, bundle, signed=sign is not None, now=now)
    bundle_path, receipt_path = beside(out, ".bundle.json"), beside(out, ".receipt.json")
    write_atomically(bundle_path, bundle)
    write_atomically(out, pdf)
    index = store.append([statement]).first_index
    proof = store.inclusion_proof(index)
    receipt = {"envelope": json.loads(store.get(index).envelope_bytes), "proof": proof.format()}
    write_atomically(receipt_path, json.dumps(receipt, indent=2).encode() + b"\n")
    return Issued(
        pdf=out,
        bundle=bundle_path,
        receipt=receipt_path,
        index=index,
        sha256=hashlib.sha256(pdf).hexdigest(),
        citations=len(doc.citations()),
        coverage=doc.coverage(),
        gaps=len(doc.gaps()),
        signed=sign is not None,
    )


def report_statement(
    doc: Document,
    name: str,
    pdf: bytes,
    bundle: bytes,
    *,
    signed: bool,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The REPORT statement: subject `report:<kind>:<system|all>` with the PDF's SHA-256."""
    counts = doc.coverage()
    predicate = ReportPredicate(
        observed_at=rfc3339(now or utc_now()),
        kind=doc.kind,
        title=doc.title,
        system=None
        if doc.system is None
        else ReportSystem(
            id=doc.system.id, version=doc.system.version, card_entry=doc.system.card_entry
        ),
        period=None if doc.period is None else (rfc3339(doc.period[0]), rfc3339(doc.period[1])),
        checkpoint=ReportCheckpoint(size=doc.checkpoint.size, root=doc.checkpoint.root_hex),
        pdf=_file(name, pdf),
        bundle=_file(BUNDLE_NAME, bundle),
        citations=len(doc.citations()),
        coverage=CoverageCounts(
            complete=counts[Coverage.COMPLETE],
            partial=counts[Coverage.PARTIAL],
            missing=counts[Coverage.MISSING],
            gaps=len(doc.gaps()),
        ),
        pdf_signed=signed,
    )
    scope = "all" if doc.system is None else doc.system.id
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": f"{SUBJECT_PREFIX}{doc.kind}:{scope}",
                "digest": {"sha256": hashlib.sha256(pdf).hexdigest()},
            }
        ],
        "predicateType": REPORT,
        "predicate": predicate.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def _file(name: str, data: bytes) -> ReportFile:
    return ReportFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
