"""OSCAL assessment-results of one AI system, for GRC tools: the Annex IV points as findings, the
log entries they rest on as observations that carry their own proof.

One export is one result, cut at one signed checkpoint. Every entry the Annex IV document cites
(reports/annex_iv.py) becomes one observation: method TEST for eval runs, EXAMINE for the rest;
props naming the entry index, its RFC 9162 leaf hash, predicate type and signer keyid; a link to a
back-matter resource holding its C2SP tlog-proof against the checkpoint (base64 of the exact text
`annex verify-entry` reads). Every Annex IV point becomes one finding whose target is the point:
`satisfied` when it is complete, otherwise `not-satisfied` with implementation status `partial`
(some evidence, some gaps) or `planned` (nothing yet), each gap written out as text, and related
observations naming the entries it cites (declared items rest on the card's own entry).

Deterministic: UUIDs are uuid5 over the log origin and what they name (an entry by index and leaf
hash, a finding by system and point, the result by system and checkpoint size) and every time is
one the log recorded, so two exports at the same checkpoint are byte for byte the same. At most
`max_entries` entries become observations (the newest); findings say how many of theirs were left
out, and the Annex IV dossier's evidence bundle holds them all.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from trestle.oscal import OSCAL_VERSION
from trestle.oscal import common as oscal
from trestle.oscal.assessment_results import AssessmentResults, ImportAp, Model, Result

from evidence.store import Store
from reports.annex_iv import build_annex_iv
from reports.document import Citation, Coverage, Document, Point, Source
from schemas.policy import EVAL_RUN

NS = "https://annex.dev/ns/oscal"
_ROOT = uuid.UUID("6f0c3f0e-7d4b-5a8e-9a51-8e7b1b0f5a11")  # fixed: the namespace of every uuid5
TEST_KINDS = frozenset({EVAL_RUN})  # entries that record a test run rather than an observation


def uid(origin: str, *parts: object) -> str:
    """A uuid5 over the log origin and the parts, stable across exports."""
    return str(uuid.uuid5(_ROOT, "\n".join([origin, *(str(p) for p in parts)])))


def prop(name: str, value: object) -> oscal.Property:
    return oscal.Property(name=name, value=str(value), ns=NS)


def ms(moment: datetime) -> datetime:
    """The time cut to milliseconds, the precision trestle writes: a time with fewer than 1000
    microseconds would be written as .000 and read back as a whole second, breaking the round
    trip (the exact times stay in the observations' `logged-at` props)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def target_id(point: Point) -> str:
    """`annex-iv-2-g` for point 2(g): an OSCAL token naming the requirement."""
    return "annex-iv-" + point.anchor.removeprefix("pt-")


@dataclass(frozen=True)
class Cited:
    """An entry the export cites, with its proof against the export's checkpoint."""

    citation: Citation
    proof: str  # C2SP tlog-proof text
    size: int  # the checkpoint it proves inclusion in

    @property
    def index(self) -> int:
        return self.citation.index


def assessment_results(
    store: Store, system_id: str, at: int | None = None, *, max_entries: int | None = None
) -> AssessmentResults:
    """The system's Annex IV assessment at checkpoint `at` (default: the latest)."""
    doc = build_annex_iv(store, system_id, at=at)
    cp = doc.checkpoint
    cited = _cite(store, doc, max_entries)
    by_index = {c.index: c for c in cited}
    card_entry = doc.system.card_entry if doc.system is not None else None
    findings = [_finding(doc, p, by_index, card_entry) for p in doc.points()]
    observations = [_observation(cp.origin, c) for c in cited]
    total = len(doc.citations())
    result = Result(
        uuid=uid(cp.origin, "result", system_id, cp.size),
        title=f"Annex IV assessment at checkpoint {cp.size}",
        description=_result_text(doc, len(cited), total),
        start=_start(doc, cited),
        end=ms(cp.issued_at),
        props=[
            prop("checkpoint-size", cp.size),
            prop("checkpoint-root", cp.root_hex),
            prop("cited-entries", total),
            prop("observed-entries", len(cited)),
            *(prop(f"points-{c.value}", n) for c, n in doc.coverage().items()),
        ],
        links=[
            oscal.Link(
                href=f"#{_checkpoint_uuid(doc)}",
                rel="checkpoint",
                media_type="text/plain",
                text=f"The signed checkpoint of {cp.size} entries",
            )
        ],
        reviewed_controls=_reviewed(doc),
        observations=observations or None,
        findings=findings,
    )
    return AssessmentResults(
        uuid=uid(cp.origin, "assessment-results", system_id, cp.size),
        metadata=_metadata(doc),
        import_ap=ImportAp(
            href=f"#{_plan_uuid(doc)}",
            remarks="No separate assessment plan: the points assessed are those of EU AI Act "
            "Annex IV, as Annex's technical documentation builds them.",
        ),
        results=[result],
        back_matter=oscal.BackMatter(resources=_resources(doc, cited)),
    )


def to_json(results: AssessmentResults) -> str:
    """The OSCAL JSON document (wrapped in `assessment-results`), checked by a round trip: what
    trestle reads back from it writes the same text (OSCAL times keep milliseconds)."""
    text = results.oscal_serialize_json(pretty=True)
    back = Model.model_validate_json(text).assessment_results
    if back.oscal_serialize_json(pretty=True) != text:
        raise RuntimeError("the OSCAL document does not read back as the one written (a bug)")
    return text + "\n"


# -- observations -------------------------------------------------------------------------------


def _cite(store: Store, doc: Document, max_entries: int | None) -> list[Cited]:
    """The newest `max_entries` cited entries (all when None), each with its inclusion proof."""
    citations = list(doc.citations())
    if max_entries is not None:
        citations = citations[-max_entries:] if max_entries > 0 else []
    size = doc.checkpoint.size
    return [Cited(c, store.inclusion_proof(c.index, size).format(), size) for c in citations]


def _observation(origin: str, cited: Cited) -> oscal.Observation:
    c = cited.citation
    method = oscal.Methods.TEST if c.predicate_type in TEST_KINDS else oscal.Methods.EXAMINE
    when = ms(c.observed_at or c.logged_at)
    return oscal.Observation(
        uuid=_observation_uuid(origin, c),
        title=f"Log entry {c.index}: {c.kind}",
        description=(
            f"Signed {c.kind} statement at index {c.index} of log {origin}, signed by key "
            f"{c.signer}; its leaf hash is {c.digest}. The linked tlog-proof shows it is in the "
            "checkpoint this result was built at."
        ),
        props=[
            prop("log-origin", origin),
            prop("entry-index", c.index),
            prop("leaf-hash", c.digest),
            prop("predicate-type", c.predicate_type),
            prop("signer-keyid", c.signer),
            prop("logged-at", _time(c.logged_at)),
        ],
        links=[
            oscal.Link(
                href=f"#{_proof_uuid(origin, cited)}",
                rel="proof",
                media_type="text/plain",
                text=f"C2SP tlog-proof of entry {c.index}",
            )
        ],
        methods=[method],
        types=[oscal.ObservationTypeValidValues.control_objective],
        relevant_evidence=[
            oscal.RelevantEvidence(
                href=f"/api/v1/entries/{c.index}",
                description=f"The DSSE envelope of entry {c.index} (GET it from the Annex API).",
            )
        ],
        collected=when,
    )


def _observation_uuid(origin: str, c: Citation) -> str:
    return uid(origin, "entry", c.index, c.digest)


def _proof_uuid(origin: str, cited: Cited) -> str:
    return uid(origin, "tlog-proof", cited.index, cited.citation.digest, cited.size)


# -- findings -----------------------------------------------------------------------------------

_STATES = {
    Coverage.COMPLETE: ("satisfied", "pass", "implemented"),
    Coverage.PARTIAL: ("not-satisfied", "fail", "partial"),
    Coverage.MISSING: ("not-satisfied", "fail", "planned"),
}


def _finding(
    doc: Document, point: Point, cited: dict[int, Cited], card_entry: int | None
) -> oscal.Finding:
    origin = doc.checkpoint.origin
    state, reason, implementation = _STATES[point.coverage]
    wanted = _point_entries(point, card_entry)
    related = [
        oscal.RelatedObservation(observation_uuid=_observation_uuid(origin, cited[i].citation))
        for i in wanted
        if i in cited
    ]
    left_out = len([i for i in wanted if i not in cited])
    props = [
        prop("coverage", point.coverage.value),
        prop("gaps", len(point.gaps)),
        prop("cited-entries", len(wanted)),
    ]
    if left_out:
        props.append(prop("observations-left-out", left_out))
    return oscal.Finding(
        uuid=uid(origin, "finding", _system_id(doc), point.ref),
        title=f"Annex IV {point.ref}: {point.title}",
        description=_finding_text(point, left_out),
        props=props,
        target=oscal.FindingTarget(
            type=oscal.FindingTargetTypeValidValues.objective_id,
            target_id=target_id(point),
            title=f"Annex IV {point.ref}",
            description=point.asks,
            status=oscal.ObjectiveStatus(state=state, reason=reason),
            implementation_status=oscal.ImplementationStatus(state=implementation),
        ),
        related_observations=related or None,
        remarks=_gaps_text(point) or None,
    )


def _point_entries(point: Point, card_entry: int | None) -> list[int]:
    """Entries the point cites; a point with declared items also rests on the card's entry."""
    found = {c.index for item in point.items for c in item.citations}
    if card_entry is not None and any(i.source is Source.DECLARED for i in point.items):
        found.add(card_entry)
    return sorted(found)


def _finding_text(point: Point, left_out: int) -> str:
    heads = [f"{i.source.value}: {i.heading}" for i in point.items]
    text = f"Coverage {point.coverage.value}. "
    text += ("Holds " + "; ".join(heads) + ".") if heads else "Nothing collected or declared."
    if point.gaps:
        text += f" {len(point.gaps)} gap(s): " + " ".join(f"Missing: {g.what}." for g in point.gaps)
    if left_out:
        text += (
            f" {left_out} cited entries are not observations of this export (its entry cap); "
            "the Annex IV dossier's evidence bundle lists them."
        )
    return text


def _gaps_text(point: Point) -> str:
    return "\n".join(f"Missing: {g.what}. To fill: {g.fill}." for g in point.gaps)


# -- the rest of the document -------------------------------------------------------------------


def _system_id(doc: Document) -> str:
    return doc.system.id if doc.system is not None else "unknown"


def _metadata(doc: Document) -> oscal.Metadata:
    cp = doc.checkpoint
    props = [prop("log-origin", cp.origin), prop("checkpoint-size", cp.size)]
    if doc.system is not None:
        props += [
            prop("system-id", doc.system.id),
            prop("system-version", doc.system.version),
            prop("provider", doc.system.provider),
        ]
        if doc.system.card_entry is not None:
            props.append(prop("card-entry", doc.system.card_entry))
    name = doc.system.name if doc.system is not None else _system_id(doc)
    return oscal.Metadata(
        title=f"EU AI Act Annex IV assessment results: {name}",
        last_modified=ms(cp.issued_at),
        version=f"checkpoint-{cp.size}",
        oscal_version=oscal.OscalVersion(OSCAL_VERSION),
        props=props,
        remarks=" ".join(doc.notes) or None,
    )


def _reviewed(doc: Document) -> oscal.ReviewedControls:
    return oscal.ReviewedControls(
        description="The points of EU AI Act Annex IV (technical documentation).",
        control_selections=[
            oscal.ControlSelections(
                description="Every Annex IV point, 1(a) to 9.",
                include_controls=[
                    oscal.SelectControlById(control_id=target_id(p)) for p in doc.points()
                ],
            )
        ],
    )


def _result_text(doc: Document, observed: int, total: int) -> str:
    c = doc.coverage()
    text = (
        f"{doc.title}, {doc.subtitle}, from log {doc.checkpoint.origin} as it stood at its signed "
        f"checkpoint of {doc.checkpoint.size} entries. Points: {c[Coverage.COMPLETE]} satisfied, "
        f"{c[Coverage.PARTIAL]} partial, {c[Coverage.MISSING]} missing. "
        f"{total} entries cited"
    )
    if observed < total:
        return text + f"; the newest {observed} are observations (the export's entry cap)."
    return text + ", each an observation with its inclusion proof."


def _start(doc: Document, cited: Sequence[Cited]) -> datetime:
    times = [c.citation.logged_at for c in cited]
    return ms(min(times, default=doc.checkpoint.issued_at))


def _resources(doc: Document, cited: Iterable[Cited]) -> list[oscal.Resource]:
    cp = doc.checkpoint
    resources = [
        oscal.Resource(
            uuid=_plan_uuid(doc),
            title="What was assessed",
            description=(
                f"System {_system_id(doc)} against EU AI Act Annex IV, from log {cp.origin} at "
                f"checkpoint {cp.size}. Verify an observation with the log's trust file alone: "
                "save its entry (GET /api/v1/entries/N) and its tlog-proof (the base64 of the "
                "resource its link names), then `annex verify-entry ENTRY PROOF --trust TRUST`."
            ),
        ),
        oscal.Resource(
            uuid=_checkpoint_uuid(doc),
            title=f"Signed checkpoint of {cp.size} entries",
            description="The C2SP signed note every tlog-proof in this document leads to.",
            props=[prop("checkpoint-size", cp.size), prop("checkpoint-root", cp.root_hex)],
            base64=_b64(f"checkpoint-{cp.size}.txt", cp.note),
        ),
    ]
    for c in cited:
        resources.append(
            oscal.Resource(
                uuid=_proof_uuid(cp.origin, c),
                title=f"tlog-proof of entry {c.index}",
                description=(
                    f"C2SP tlog-proof of entry {c.index} (leaf hash {c.citation.digest}) in the "
                    f"tree of checkpoint {cp.size}."
                ),
                props=[prop("entry-index", c.index), prop("leaf-hash", c.citation.digest)],
                base64=_b64(f"entry-{c.index}.tlog-proof", c.proof),
            )
        )
    return resources


def _checkpoint_uuid(doc: Document) -> str:
    cp = doc.checkpoint
    return uid(cp.origin, "checkpoint", cp.size, cp.root_hex)


def _plan_uuid(doc: Document) -> str:
    return uid(doc.checkpoint.origin, "scope", _system_id(doc))


def _b64(filename: str, text: str) -> oscal.Base64:
    value = base64.b64encode(text.encode()).decode()
    return oscal.Base64(filename=filename, media_type="text/plain", value=value)


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
