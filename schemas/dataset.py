"""Dataset evidence: a snapshot of data files and what their datasheet declares.

A DATASET statement binds the files (the same manifest as models: per-file SHA-256, its digest
over names, sizes and contents) to what each file holds (format, record count, schema) and to
the datasheet beside it: source, licence, the GDPR Art 6 legal basis and the Art 9 special
categories of personal data. A field the datasheet does not give is null here and named in
`missing`: Annex records the gap, it never guesses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from schemas.model import Manifest
from schemas.statement import predicate_type

DATASET = predicate_type("dataset")

DataFormat = Literal["jsonl", "csv", "tsv", "parquet", "binary", "documentation"]

# GDPR Art 6(1)(a)-(f).
LegalBasis = Literal[
    "consent",
    "contract",
    "legal-obligation",
    "vital-interests",
    "public-task",
    "legitimate-interests",
]

# GDPR Art 9(1): the special categories of personal data.
SpecialCategory = Literal[
    "racial-or-ethnic-origin",
    "political-opinions",
    "religious-or-philosophical-beliefs",
    "trade-union-membership",
    "genetic",
    "biometric",
    "health",
    "sex-life-or-sexual-orientation",
]

# The datasheet fields a dataset statement reports as given or missing.
DECLARED_FIELDS = (
    "description",
    "source",
    "licence",
    "legalBasis",
    "personalData",
    "specialCategories",
)


class Datasheet(BaseModel):
    """datasheet.yaml as written by people: unknown keys are refused so a typo is never lost."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, min_length=1)
    description: str | None = None
    source: str | None = None
    licence: str | None = Field(default=None, alias="license")
    legal_basis: LegalBasis | None = None
    personal_data: StrictBool | None = None  # "yes" is not a boolean: refused
    special_categories: tuple[SpecialCategory, ...] | None = None  # [] declares none
    format: Literal["binary"] | None = None  # accept files of formats Annex cannot read


class FileSummary(BaseModel):
    """One file of the dataset: its format and, where the format says, records and schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    format: DataFormat
    records: int | None = Field(default=None, ge=0)
    # column or top-level key -> type(s): JSON types for JSONL, sniffed types for CSV,
    # Arrow types for Parquet.
    schema_: dict[str, str] | None = Field(default=None, alias="schema")


class DatasetPredicate(BaseModel):
    """Predicate of DATASET."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    observed_at: str = Field(alias="observedAt")
    name: str = Field(min_length=1)
    host: str
    path: str
    manifest: Manifest
    files: tuple[FileSummary, ...]
    records: int | None = None  # all records, when every data file has a count
    datasheet: str | None = None  # the datasheet's path in the manifest, or an absolute path
    datasheet_sha256: str | None = Field(default=None, alias="datasheetSha256")
    description: str | None = None
    source: str | None = None
    licence: str | None = None
    legal_basis: LegalBasis | None = Field(default=None, alias="legalBasis")
    personal_data: bool | None = Field(default=None, alias="personalData")
    special_categories: tuple[SpecialCategory, ...] | None = Field(
        default=None, alias="specialCategories"
    )
    missing: tuple[str, ...] = ()  # datasheet fields not given (DECLARED_FIELDS)

    def to_predicate(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True)
        # Keep the declared fields even when null, so a missing one is visible in the log.
        keep = set(DECLARED_FIELDS) | {"records", "datasheet"}
        return {k: v for k, v in data.items() if v is not None or k in keep}
