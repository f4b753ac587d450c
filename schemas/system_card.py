"""System card: how a person declares an AI system (the unit the AI Act regulates).

A card is YAML written by people (see docs/system-card.example.yaml). Unknown keys are refused
so a typo is never silently lost; every field but the identity is optional, because what a card
does not declare and the log does not hold is shown in the reports as a gap, never guessed.

`SYSTEM_CARD` (https://annex.dev/predicates/system-card/v1) records one version of a card: the
card as parsed (camelCase, as written), the SHA-256 of the YAML file it came from, and the
components resolved to manifest or dataset digests. Subject: `system:<id>` with the SHA-256 of
the canonical card. A new version of the card is a new entry; the card's history is Annex IV 6.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from schemas.statement import predicate_type

SYSTEM_CARD = predicate_type("system-card")
API_VERSION = "annex.dev/system-card/v1"
SUBJECT_PREFIX = "system:"

_ID = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_SHA256 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


class _Card(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, alias_generator=to_camel
    )


Text = str


class Party(_Card):
    name: str = Field(min_length=1)
    address: str | None = None
    contact: str | None = None


class Provider(Party):
    authorised_representative: Party | None = None


class RiskClassification(_Card):
    """Art 6: high-risk via Annex I or III, or an Annex III use documented as not high-risk."""

    level: Literal["high-risk", "not-high-risk", "limited-risk", "minimal-risk"]
    grounds: Text = Field(min_length=1)
    annex_iii_point: str | None = None


class ComponentRef(_Card):
    """A model, adapter or dataset by path (hashed when the card is added) or by digest."""

    name: str = Field(min_length=1)
    path: str | None = None
    digest: str | None = None

    @field_validator("digest")
    @classmethod
    def _is_sha256(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value):
            raise ValueError("must be a SHA-256 digest: 64 lowercase hex, optionally sha256:")
        return None if value is None else value.removeprefix("sha256:")

    @model_validator(mode="after")
    def _path_or_digest(self) -> ComponentRef:
        if (self.path is None) == (self.digest is None):
            raise ValueError(f"{self.name}: give exactly one of path or digest")
        return self


class DatasetRef(ComponentRef):
    role: Literal["training", "validation", "test", "other"] = "training"


class Components(_Card):
    base_model: ComponentRef | None = None
    adapters: tuple[ComponentRef, ...] = ()
    datasets: tuple[DatasetRef, ...] = ()


class Deployer(Party):
    pass


class Oversight(_Card):
    """Art 14 measures as designed (2(e)); what reviewers actually did is collected evidence."""

    measures: tuple[Text, ...] = ()
    assessment: Text | None = None
    stop_procedure: Text | None = None
    interpretation_aids: Text | None = None
    reviewer_training: Text | None = None


class Risk(_Card):
    id: str = Field(min_length=1)
    description: Text = Field(min_length=1)
    severity: Literal["low", "medium", "high", "critical"]
    likelihood: Literal["rare", "unlikely", "possible", "likely", "almost-certain"] | None = None
    mitigation: Text | None = None
    residual: Text | None = None
    # predicate kinds (e.g. eval-run, oversight-event) whose evidence monitors this risk
    evidence: tuple[str, ...] = ()


class Standard(_Card):
    reference: str = Field(min_length=1)
    title: str | None = None
    applied: Literal["full", "partial"] = "full"
    parts: Text | None = None


class PostMarketMonitoring(_Card):
    plan: Text = Field(min_length=1)
    review_interval_days: int | None = Field(default=None, ge=1)
    metrics: tuple[str, ...] = ()


class DeclarationOfConformity(_Card):
    """Annex V fields; the signed declaration itself is a document kept by the provider."""

    number: str | None = None
    signatory: str | None = None
    role: str | None = None
    place: str | None = None
    date: dt.date | None = None
    notified_body: str | None = None
    conformity_procedure: Literal["annex-vi", "annex-vii"] | None = None


class Documentation(_Card):
    """Annex IV narratives only a person can write, keyed by what they describe."""

    integration: Text | None = None  # 1(b)
    update_policy: Text | None = None  # 1(c)
    hardware_requirements: Text | None = None  # 1(e)
    product_illustrations: Text | None = None  # 1(f)
    user_interface: Text | None = None  # 1(g)
    instructions_for_use: Text | None = None  # 1(h)
    development_methods: Text | None = None  # 2(a)
    design_choices: Text | None = None  # 2(b)
    architecture: Text | None = None  # 2(c)
    data_governance: Text | None = None  # 2(d)
    validation: Text | None = None  # 2(g)
    cybersecurity: Text | None = None  # 2(h)
    limitations: Text | None = None  # 3
    foreseeable_misuse: Text | None = None  # 3
    input_specification: Text | None = None  # 3
    metrics_rationale: Text | None = None  # 4
    risk_management: Text | None = None  # 5
    change_rationale: Text | None = None  # 6
    no_standards_solutions: Text | None = None  # 7, when no harmonised standard is applied


class Gdpr(_Card):
    """Art 30 record facts for the inference logging and the evidence store."""

    controller: Party | None = None
    dpo: Party | None = None
    purposes: tuple[Text, ...] = ()
    legal_basis: Text | None = None
    data_subjects: tuple[Text, ...] = ()
    personal_data: tuple[Text, ...] = ()
    recipients: tuple[Text, ...] = ()
    transfers: Text | None = None
    security_measures: tuple[Text, ...] = ()
    dpia_reference: Text | None = None


class SystemCard(_Card):
    api_version: Literal["annex.dev/system-card/v1"]
    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    previous_version: str | None = None
    provider: Provider
    intended_purpose: Text | None = None
    risk: RiskClassification | None = None
    release_forms: tuple[str, ...] = ()
    deployers: tuple[Deployer, ...] = ()
    components: Components = Components()
    oversight: Oversight = Oversight()
    predetermined_changes: tuple[Text, ...] = ()
    risk_register: tuple[Risk, ...] = ()
    standards: tuple[Standard, ...] = ()
    post_market_monitoring: PostMarketMonitoring | None = None
    declaration_of_conformity: DeclarationOfConformity | None = None
    documentation: Documentation = Documentation()
    gdpr: Gdpr = Gdpr()

    def to_json(self) -> dict[str, Any]:
        dumped: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped


class ResolvedComponent(_Card):
    """A card component as the log knows it: its digest, and the entry that recorded it."""

    role: Literal["base-model", "adapter", "dataset"]
    name: str
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    path: str | None = None
    entry: int | None = None  # the manifest or dataset entry, when the log holds one
    dataset_role: str | None = None


class CardSource(_Card):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SystemCardPredicate(_Card):
    observed_at: str
    card: dict[str, Any]
    source: CardSource
    components: tuple[ResolvedComponent, ...] = ()
    previous_entry: int | None = None  # the last card of this system, if any

    def parsed(self) -> SystemCard:
        return SystemCard.model_validate(self.card)
