"""A dossier check for the web page: `verify_dossier` on an upload, as a list of checks.

The upload is written to a private temporary directory only because `verify_dossier` reads a
path; the directory is removed when the check ends, so nothing uploaded is kept. The check is
the CLI's (`annex verify-dossier`): offline, public keys only, the first failure stops it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from api.problems import Unprocessable
from evidence.entry import rfc3339
from evidence.errors import InputError, VerificationError
from evidence.keys import TrustIndex, parse_trust
from reports.bundle import DossierReport, verify_dossier

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Outcome:
    verified: bool
    checks: tuple[Check, ...]
    report: DossierReport | None


def trust_index(data: bytes) -> TrustIndex:
    """The auditor's trust file, or 422 naming what is wrong with it."""
    try:
        return TrustIndex(parse_trust(data, what="the trust file"))
    except InputError as exc:
        raise Unprocessable(str(exc)) from None


def check_upload(pdf: bytes, trust: bytes | None) -> Outcome:
    index = None if trust is None else trust_index(trust)
    with tempfile.TemporaryDirectory(prefix=".annex-web-verify-") as tmp:
        path = Path(tmp) / "dossier.pdf"
        path.write_bytes(pdf)
        try:
            report = verify_dossier(path, trust=index)
        except VerificationError as exc:
            message = str(exc).replace(str(path), "the uploaded PDF")
            return Outcome(False, (Check("Dossier", "fail", message),), None)
    return Outcome(True, checks(report), report)


def checks(r: DossierReport) -> tuple[Check, ...]:
    """What `verify_dossier` checked, one line each (it raises on the first failure)."""
    found = [
        Check("PDF title", "pass", f"{r.document.title!s} — the same as the evidence bundle's"),
        Check(
            "Checkpoint",
            "pass",
            f"{r.origin} at size {r.checkpoint_size}, root {r.checkpoint_root[:16]}…, issued "
            f"{rfc3339(r.checkpoint_issued_at)}: signature verified",
        ),
        Check(
            "Cited entries",
            "pass",
            f"{r.entries_checked} envelopes: signature and inclusion proof verified",
        ),
        Check(
            "Citations in the text",
            "pass",
            f"{r.citations_in_text} printed in the PDF, all in the bundle; the stated count "
            "matches",
        ),
        _trust_check(r),
    ]
    for s in r.signatures:
        found.append(
            Check(
                f"PDF signature {s.field}",
                "pass" if s.trusted else "warn",
                f"by {s.signer}: intact"
                + ("" if s.trusted else "; not trusted: no trusted root was given here"),
            )
        )
    found.append(Check("PDF SHA-256", "pass", r.pdf_sha256))
    return tuple(found)


def _trust_check(r: DossierReport) -> Check:
    if r.trust_source == "bundle":
        return Check(
            "Trust",
            "warn",
            "checked against the bundle's own trust file, which is the operator's claim: "
            "upload the trust file you obtained from the operator",
        )
    same = "the same as" if r.bundle_trust_matches else "DIFFERENT from"
    status: Status = "pass" if r.bundle_trust_matches else "warn"
    return Check("Trust", status, f"your trust file ({same} the bundle's)")
