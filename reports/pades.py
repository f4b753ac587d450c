"""PAdES signatures on a dossier PDF, with pyHanko.

The signature is an incremental update: the PDF/A-3b bytes WeasyPrint wrote stay as they are
(the attached evidence bundle included) and the signature covers them. Whether a signature is
*trusted* depends on the roots the checker is given: a self-signed certificate, or one from a
private CA, is reported intact but untrusted unless its root is passed to `check_signatures`.
No revocation information is fetched (everything here is offline).

pyHanko's synchronous API runs its own event loop: call these functions from plain threads,
not from inside a running asyncio loop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evidence.entry import rfc3339
from evidence.errors import ConfigError, VerificationError

FIELD_NAME = "AnnexDossierSignature"


@dataclass(frozen=True)
class SignatureStatus:
    """One embedded signature as checked: intact bytes, valid maths, trusted chain."""

    field: str
    intact: bool
    valid: bool
    trusted: bool
    signer: str
    signing_time: datetime | None
    coverage: str

    @property
    def ok(self) -> bool:
        return self.intact and self.valid

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "intact": self.intact,
            "valid": self.valid,
            "trusted": self.trusted,
            "signer": self.signer,
            "signing_time": None if self.signing_time is None else rfc3339(self.signing_time),
            "coverage": self.coverage,
        }


def sign_pdf(data: bytes, *, cert: Path, key: Path, passphrase: bytes | None) -> bytes:
    """The PDF with a PAdES signature appended as an incremental update."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    for path in (cert, key):
        if not path.is_file():
            raise ConfigError(f"cannot read PDF signing material {path}: no such file")
    signer = signers.SimpleSigner.load(  # type: ignore[no-untyped-call]
        str(key), str(cert), key_passphrase=passphrase
    )
    if signer is None:
        raise ConfigError(
            f"cannot load the PDF signing key {key} with certificate {cert}: "
            "wrong passphrase, or not a PEM/DER key and certificate"
        )
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason="Annex evidence dossier",
    )
    out = signers.sign_pdf(writer, meta, signer=signer)
    return bytes(out.getvalue())


def _load_roots(roots: Sequence[Path]) -> list[Any]:
    from pyhanko.keys import load_cert_from_pemder

    loaded = []
    for path in roots:
        try:
            loaded.append(load_cert_from_pemder(str(path)))  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read trusted certificate {path}: {exc}") from None
    return loaded


def check_signatures(data: bytes, *, roots: Sequence[Path] = ()) -> list[SignatureStatus]:
    """Every signature in the PDF, checked offline; an empty list for an unsigned PDF."""
    from pyhanko.pdf_utils.misc import PdfReadError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        embedded = list(reader.embedded_signatures)
    except PdfReadError as exc:
        raise VerificationError(f"the PDF cannot be read for its signatures: {exc}") from None
    context = ValidationContext(trust_roots=_load_roots(roots), allow_fetching=False)
    found = []
    for sig in embedded:
        status = validate_pdf_signature(sig, context)
        when = status.signer_reported_dt
        found.append(
            SignatureStatus(
                field=str(sig.field_name),
                intact=bool(status.intact),
                valid=bool(status.valid),
                trusted=bool(status.trusted),
                signer=status.signing_cert.subject.human_friendly,
                signing_time=None if when is None else when.astimezone(UTC),
                coverage=status.coverage.name if status.coverage is not None else "unknown",
            )
        )
    return found
