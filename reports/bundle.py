"""The evidence bundle of a dossier, and `verify-dossier`: every citation checked offline.

A bundle (`annex-evidence-bundle/v1`, canonical JSON) holds what an auditor needs to check a
report without the operator's database: the signed checkpoint the report was cut at, the trust
file, the report's identity and citations, and for every cited entry its DSSE envelope as logged
and its inclusion proof against that one checkpoint. It is embedded in the PDF as a PDF/A-3
associated file and written beside it (reports/dossier.py issues the files).

`verify_dossier` re-checks all of it with public keys only: the checkpoint's signatures, each
envelope's signature and inclusion proof, that each citation names the bundled entry's leaf hash,
and that every citation printed in the PDF's text is in the bundle, whose count the PDF states.
Optionally: the copy beside the PDF is byte-identical, a logged receipt names the PDF's SHA-256,
and a PAdES signature on the PDF is intact. Any failure raises `VerificationError` naming it.

The trust file carried in the bundle is the operator's own claim: a bundle verified against it
proves only that it is self-consistent. An auditor passes the trust file obtained from the
operator out of band (`trust=`), and the report says which was used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from evidence.canonical import canonical_bytes, parse_json
from evidence.dsse import Envelope
from evidence.entry import rfc3339
from evidence.errors import InputError, VerificationError
from evidence.keys import TrustIndex, parse_trust
from evidence.merkle import leaf_hash
from evidence.note import TlogProof
from evidence.store import Store
from evidence.verify import EntryReport, open_checkpoint, verify_entry
from reports.document import Document
from reports.pades import SignatureStatus, check_signatures
from reports.render import BUNDLE_NAME

FORMAT = "annex-evidence-bundle/v1"
_CITED = re.compile(r"#(\d+)\s+([0-9a-f]{12})\b")
# The cover page's count of cited entries: items print only their newest citations, so this is
# how the text commits to the bundle's full list.
_STATED = re.compile(r"Entries cited\s+([\d,]+)")


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class BundleCitation(_Model):
    index: int = Field(ge=0)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")


class BundleSystem(_Model):
    id: str
    name: str
    version: str
    provider: str


class BundleDocument(_Model):
    kind: str
    title: str
    system: BundleSystem | None
    generated_at: str
    checkpoint_size: int = Field(ge=0)
    citations: tuple[BundleCitation, ...]


class BundleEntry(_Model):
    index: int = Field(ge=0)
    envelope: dict[str, Any]
    proof: str


class Bundle(_Model):
    """The bundle as read back; field names are camelCase in the JSON."""

    format: Literal["annex-evidence-bundle/v1"]
    origin: str
    checkpoint: str
    trust: str
    document: BundleDocument
    entries: tuple[BundleEntry, ...]


# -- building -----------------------------------------------------------------------------------


def _bundled_entry(store: Store, doc: Document, index: int, digest: str) -> dict[str, Any]:
    if index >= doc.checkpoint.size:
        raise InputError(
            f"citation #{index} lies beyond the document's checkpoint (size {doc.checkpoint.size})"
        )
    entry = store.get(index)
    if entry.leaf_hash.hex() != digest:
        raise InputError(
            f"citation #{index} names leaf hash {digest[:12]}, the log holds "
            f"{entry.leaf_hash.hex()[:12]}"
        )
    proof = store.inclusion_proof(index, doc.checkpoint.size)
    if proof.checkpoint != doc.checkpoint.note:
        raise InputError(
            f"the log's checkpoint at size {doc.checkpoint.size} is not the document's"
        )
    return {
        "index": index,
        "envelope": json.loads(entry.envelope_bytes),
        "proof": proof.format(),
    }


def build_bundle(store: Store, doc: Document, trust_json: bytes) -> bytes:
    """The canonical bundle of a document: same document and log, same bytes."""
    citations = doc.citations()
    system = doc.system
    body = {
        "format": FORMAT,
        "origin": doc.checkpoint.origin,
        "checkpoint": doc.checkpoint.note,
        "trust": trust_json.decode("utf-8"),
        "document": {
            "kind": doc.kind,
            "title": doc.title,
            "system": None
            if system is None
            else {
                "id": system.id,
                "name": system.name,
                "version": system.version,
                "provider": system.provider,
            },
            "generatedAt": rfc3339(doc.generated_at),
            "checkpointSize": doc.checkpoint.size,
            "citations": [{"index": c.index, "digest": c.digest} for c in citations],
        },
        "entries": [_bundled_entry(store, doc, c.index, c.digest) for c in citations],
    }
    return canonical_bytes(body, what="evidence bundle")


# -- verifying ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptReport:
    index: int
    tree_size: int
    keyid: str


@dataclass(frozen=True)
class DossierReport:
    pdf_sha256: str
    origin: str
    checkpoint_size: int
    checkpoint_root: str
    checkpoint_issued_at: datetime
    document: BundleDocument
    entries_checked: int
    citations_in_text: int
    trust_source: Literal["given", "bundle"]
    bundle_trust_matches: bool
    beside_checked: bool
    signatures: tuple[SignatureStatus, ...]
    receipt: ReceiptReport | None

    def summary(self) -> list[str]:
        """What was checked, in lines for a terminal."""
        doc = self.document
        lines = [
            f"OK: {doc.title}"
            + (f" ({doc.system.name} {doc.system.version})" if doc.system else ""),
            f"  checkpoint: {self.origin} size {self.checkpoint_size}, root "
            f"{self.checkpoint_root[:16]}…, issued {rfc3339(self.checkpoint_issued_at)}",
            f"  {self.entries_checked} cited entries verified (signature and inclusion proof); "
            f"{self.citations_in_text} citations printed in the PDF, all in the bundle",
        ]
        if self.trust_source == "given":
            same = "the same as" if self.bundle_trust_matches else "DIFFERENT from"
            lines.append(f"  trust: your trust file ({same} the one in the bundle)")
        else:
            lines.append(
                "  trust: the bundle's own trust file (self-asserted: pass --trust with the "
                "operator's published trust file to check against keys you trust)"
            )
        if self.beside_checked:
            lines.append("  the bundle beside the PDF is identical to the attached one")
        for s in self.signatures:
            trusted = "trusted" if s.trusted else "NOT trusted (no trusted root given)"
            lines.append(f"  PDF signature by {s.signer}: intact, {trusted}")
        if self.receipt is not None:
            lines.append(
                f"  receipt: the PDF's SHA-256 is logged as entry {self.receipt.index} "
                f"(proven in the tree of size {self.receipt.tree_size})"
            )
        lines.append(f"  PDF SHA-256 {self.pdf_sha256}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "pdf_sha256": self.pdf_sha256,
            "origin": self.origin,
            "checkpoint": {
                "size": self.checkpoint_size,
                "root": self.checkpoint_root,
                "issued_at": rfc3339(self.checkpoint_issued_at),
            },
            "document": self.document.model_dump(by_alias=True),
            "entries_checked": self.entries_checked,
            "citations_in_text": self.citations_in_text,
            "trust_source": self.trust_source,
            "bundle_trust_matches": self.bundle_trust_matches,
            "bundle_beside_checked": self.beside_checked,
            "signatures": [s.to_json() for s in self.signatures],
            "receipt": None
            if self.receipt is None
            else {
                "index": self.receipt.index,
                "tree_size": self.receipt.tree_size,
                "keyid": self.receipt.keyid,
            },
        }


def _read_pdf(data: bytes, where: Path) -> tuple[bytes, str, str]:
    """The attached bundle, the PDF's title and its text."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    # pypdf logs what it repairs; a damaged PDF is reported once, below, as a failure
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        attached = reader.attachments.get(BUNDLE_NAME, [])
        title = (reader.metadata.title if reader.metadata else None) or ""
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise VerificationError(f"{where} cannot be read as a PDF: {exc}") from None
    if len(attached) != 1:
        raise VerificationError(
            f"{where} carries {len(attached)} attachments named {BUNDLE_NAME}: need exactly one"
        )
    return bytes(attached[0]), str(title), text


def _parse_bundle(data: bytes) -> Bundle:
    try:
        return Bundle.model_validate(parse_json(data, what="evidence bundle"))
    except InputError as exc:
        raise VerificationError(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise VerificationError(f"evidence bundle: {where}: {first['msg']}") from None


def _bundle_trust(bundle: Bundle) -> TrustIndex:
    try:
        return TrustIndex(parse_trust(bundle.trust, what="bundled trust"))
    except InputError as exc:
        raise VerificationError(f"the bundle's trust file is malformed: {exc}") from None


def _check_entry(entry: BundleEntry, bundle: Bundle, trust: TrustIndex) -> tuple[str, EntryReport]:
    """Verifies one bundled entry against the bundle's checkpoint; returns its leaf hash hex."""
    where = f"bundled entry #{entry.index}"
    try:
        envelope = Envelope.from_dict(entry.envelope, what=f"{where} envelope")
        proof = TlogProof.parse(entry.proof)
    except InputError as exc:
        raise VerificationError(f"{where}: {exc}", index=entry.index) from None
    if proof.index != entry.index:
        raise VerificationError(f"{where}: its proof is for entry {proof.index}", index=entry.index)
    if proof.checkpoint != bundle.checkpoint:
        raise VerificationError(
            f"{where}: its proof is against another checkpoint than the dossier's",
            index=entry.index,
        )
    try:
        report = verify_entry(envelope, proof, trust)
    except VerificationError as exc:
        raise VerificationError(f"{where}: {exc}", index=entry.index) from None
    return leaf_hash(envelope.canonical()).hex(), report


def _check_citations(bundle: Bundle, leaves: dict[int, str], text: str) -> int:
    """Listed citations resolve to bundled leaves; printed ones are among them, and the count the
    PDF states is the bundle's."""
    listed = {c.index: c.digest for c in bundle.document.citations}
    for index, digest in listed.items():
        if index not in leaves:
            raise VerificationError(f"citation #{index} has no entry in the bundle", index=index)
        if leaves[index] != digest:
            raise VerificationError(
                f"citation #{index} names leaf hash {digest[:12]}, the bundled entry is "
                f"{leaves[index][:12]}",
                index=index,
            )
    printed = {(int(i), d) for i, d in _CITED.findall(text)}
    for index, prefix in sorted(printed):
        if index not in listed:
            raise VerificationError(
                f"the PDF cites entry #{index} ({prefix}), which is not in the evidence bundle",
                index=index,
            )
        if not listed[index].startswith(prefix):
            raise VerificationError(
                f"the PDF cites entry #{index} as {prefix}, the bundle as {listed[index][:12]}",
                index=index,
            )
    stated = _STATED.search(text)
    if stated is None:
        raise VerificationError("the PDF does not state how many entries it cites")
    if int(stated.group(1).replace(",", "")) != len(listed):
        raise VerificationError(
            f"the PDF says it cites {stated.group(1)} entries, the bundle lists {len(listed)}"
        )
    return len(printed)


def _check_receipt(path: Path, pdf_sha256: str, trust: TrustIndex) -> ReceiptReport:
    try:
        obj = parse_json(path.read_bytes(), what=f"receipt {path}")
        if not isinstance(obj, dict) or set(obj) != {"envelope", "proof"}:
            raise InputError(f"receipt {path} must be an object with envelope and proof")
        envelope = Envelope.from_dict(obj["envelope"], what=f"receipt {path} envelope")
        proof = TlogProof.parse(str(obj["proof"]))
    except OSError as exc:
        raise InputError(f"cannot read receipt {path}: {exc.strerror}") from None
    try:
        report = verify_entry(envelope, proof, trust)
    except VerificationError as exc:
        raise VerificationError(f"receipt {path}: {exc}", index=proof.index) from None
    digests = [s.get("digest", {}).get("sha256") for s in report.statement.get("subject", [])]
    if pdf_sha256 not in digests:
        raise VerificationError(
            f"receipt {path} (entry {report.index}) is for a file with SHA-256 "
            f"{(digests or ['none'])[0]}, not this PDF ({pdf_sha256})",
            index=report.index,
        )
    return ReceiptReport(report.index, report.tree_size, report.keyid)


def verify_dossier(
    pdf: Path,
    *,
    trust: TrustIndex | None = None,
    beside: Path | None = None,
    receipt: Path | None = None,
    signature_roots: tuple[Path, ...] = (),
) -> DossierReport:
    """Checks a dossier PDF and its attached evidence bundle offline; raises on any failure."""
    try:
        data = pdf.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {pdf}: {exc.strerror}") from None
    attached, title, text = _read_pdf(data, pdf)
    beside_checked = _check_beside(attached, beside)
    bundle = _parse_bundle(attached)
    if title != bundle.document.title:
        raise VerificationError(
            f"the PDF is titled {title!r}, its evidence bundle {bundle.document.title!r}"
        )
    bundled_trust = _bundle_trust(bundle)
    chosen = trust if trust is not None else bundled_trust
    head = open_checkpoint(bundle.checkpoint, chosen)
    _check_head(bundle, head.checkpoint.origin, head.checkpoint.size)
    leaves: dict[int, str] = {}
    for entry in bundle.entries:
        if entry.index in leaves:
            raise VerificationError(f"entry #{entry.index} is bundled twice", index=entry.index)
        leaves[entry.index], _ = _check_entry(entry, bundle, chosen)
    printed = _check_citations(bundle, leaves, text)
    pdf_sha256 = hashlib.sha256(data).hexdigest()
    signatures = tuple(check_signatures(data, roots=signature_roots))
    for s in signatures:
        if not s.ok:
            raise VerificationError(
                f"the PDF signature {s.field!r} by {s.signer} does not verify: the signed "
                "bytes were changed or the signature is broken"
            )
    return DossierReport(
        pdf_sha256=pdf_sha256,
        origin=head.checkpoint.origin,
        checkpoint_size=head.checkpoint.size,
        checkpoint_root=head.checkpoint.root.hex(),
        checkpoint_issued_at=head.issued_at,
        document=bundle.document,
        entries_checked=len(leaves),
        citations_in_text=printed,
        trust_source="given" if trust is not None else "bundle",
        bundle_trust_matches=trust is None or trust.trust == bundled_trust.trust,
        beside_checked=beside_checked,
        signatures=signatures,
        receipt=None if receipt is None else _check_receipt(receipt, pdf_sha256, chosen),
    )


def _check_beside(attached: bytes, beside: Path | None) -> bool:
    if beside is None:
        return False
    try:
        copy = beside.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {beside}: {exc.strerror}") from None
    if copy != attached:
        raise VerificationError(
            f"{beside} differs from the evidence bundle attached to the PDF "
            f"(SHA-256 {hashlib.sha256(copy).hexdigest()[:16]} vs "
            f"{hashlib.sha256(attached).hexdigest()[:16]})"
        )
    return True


def _check_head(bundle: Bundle, origin: str, size: int) -> None:
    if origin != bundle.origin:
        raise VerificationError(
            f"the bundle names log {bundle.origin!r}, its checkpoint {origin!r}"
        )
    if size != bundle.document.checkpoint_size:
        raise VerificationError(
            f"the document was cut at size {bundle.document.checkpoint_size}, the bundled "
            f"checkpoint has size {size}"
        )
