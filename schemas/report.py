"""Report evidence: the log remembers every dossier it issued.

`REPORT` (https://annex.dev/predicates/report/v1) is logged after a report's PDF is written:
which report (kind, system and card version, period), the checkpoint its evidence was cut at,
the SHA-256 of the PDF exactly as written (after any PAdES signature) and of its evidence bundle,
and the coverage it found. Subject: `report:<kind>:<system or "all">` with the PDF's SHA-256, so a
PDF handed to an auditor is found in the log by its digest alone.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from schemas.statement import predicate_type

REPORT = predicate_type("report")
SUBJECT_PREFIX = "report:"

ReportKind = Literal["annex-iv", "oversight", "ropa", "dpia-inputs"]
_SHA256 = r"^[0-9a-f]{64}$"


class _Shape(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, alias_generator=to_camel
    )


class ReportSystem(_Shape):
    id: str
    version: str
    card_entry: int | None = None


class ReportCheckpoint(_Shape):
    size: int = Field(ge=0)
    root: str = Field(pattern=_SHA256)


class ReportFile(_Shape):
    name: str
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0, alias="bytes")


class Coverage(_Shape):
    complete: int = Field(ge=0)
    partial: int = Field(ge=0)
    missing: int = Field(ge=0)
    gaps: int = Field(ge=0)


class ReportPredicate(_Shape):
    observed_at: str
    kind: ReportKind
    title: str
    system: ReportSystem | None = None
    period: tuple[str, str] | None = None
    checkpoint: ReportCheckpoint
    pdf: ReportFile
    bundle: ReportFile
    citations: int = Field(ge=0)
    coverage: Coverage
    pdf_signed: bool = False
