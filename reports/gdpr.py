"""GDPR records built from the log: the Art 30 record of processing and the Art 35 DPIA inputs.

Two processing activities are recorded: the inference logging of each AI system (what its
INFERENCE_BATCH entries show: retention, retained content, pseudonymous callers, encryption, and
the ERASURE receipts of its callers) and the evidence store itself (pseudonyms of callers and
reviewers in signed, append-only entries; erasure by crypto-shredding, DESIGN.md: destroying the
per-subject vault secret unlinks every pseudonym, destroying content keys shreds the content).

What a person must decide (controller, purposes, legal basis, recipients, transfers) comes from
the system card's `gdpr` section and is marked declared; what the log shows is collected and
cited. Anything neither declared nor collected is a gap naming the card field or command that
fills it. Personal data appears only as pseudonyms, never as a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from evidence.entry import Entry
from evidence.keys import utc_now
from evidence.store import Store
from reports.document import Block, Document, Facts, Gap, Item, Paragraph, Point, Section, Table
from reports.evidence_query import (
    MAX_ROWS,
    SIX_MONTHS_DAYS,
    Served,
    bullets,
    checkpoint_ref,
    collected,
    declared,
    history,
    model_digests,
    retention_text,
    scan,
    served_batches,
    system_ref,
)
from reports.systems import CardVersion, system_ids
from schemas.dataset import DATASET, DatasetPredicate
from schemas.incident import INCIDENT, IncidentPredicate
from schemas.inference import ERASURE, INFERENCE_BATCH, ErasurePredicate
from schemas.key_event import KEY_EVENT, KeyEvent
from schemas.oversight import OVERSIGHT_EVENT, REVIEWER_ATTESTATION
from schemas.system_card import Gdpr, Party, SystemCard

CRYPTO_SHREDDING = (
    "The log is append-only: no entry is ever changed or deleted. Personal data enters it only "
    "as pseudonyms (HMAC-SHA256 under a per-person secret kept in the vault, outside the log) "
    "and, when content is retained, as AES-256-GCM ciphertext in blobs under per-person keys. "
    "Erasure (annex erase) destroys the person's secret and keys (crypto-shredding): the "
    "pseudonyms can no longer be linked to them, the content can no longer be read, the log "
    "still verifies, and a signed receipt naming the pseudonym is logged."
)


# what a card field or the log gives for one part of a point: an item, or a gap
Part = tuple[Item | None, Gap | None]


def _fill(key: str) -> str:
    return f"add `{key}` to the system card, then annex system add"


def _party(label: str, party: Party | None, key: str) -> Part:
    if party is None:
        return None, Gap(f"the {label} is not declared", _fill(key))
    rows = [("name", party.name)]
    rows += [(k, v) for k, v in (("address", party.address), ("contact", party.contact)) if v]
    return declared(label.capitalize(), Facts(tuple(rows))), None


def _texts(heading: str, values: Iterable[str], what: str, key: str) -> Part:
    found = [v for v in values if v]
    if not found:
        return None, Gap(f"{what} not declared", _fill(key))
    return declared(heading, *bullets(found)), None


def _point(ref: str, title: str, asks: str, parts: Iterable[Part]) -> Point:
    given = list(parts)
    items = tuple(i for i, _ in given if i is not None)
    gaps = tuple(g for _, g in given if g is not None)
    return Point(ref, title, asks, items, gaps)


# -- what the log shows of a system's inference logging ----------------------------------------


@dataclass(frozen=True)
class Erasure:
    entry: Entry
    predicate: ErasurePredicate


def erasures(store: Store, size: int, batches: set[int] | None = None) -> list[Erasure]:
    """Erasure receipts below `size`; with `batches`, only those touching one of them."""
    found = []
    for entry in scan(store, ERASURE, size):
        p = ErasurePredicate.model_validate(entry.statement["predicate"])
        if batches is None or batches & set(p.batches):
            found.append(Erasure(entry, p))
    return found


def _callers(served: list[Served]) -> set[str]:
    return {c.pseudonym for s in served for c in s.predicate.callers}


def _subjects_item(served: list[Served]) -> Part:
    if not served:
        return None, _no_batches()
    kept = [s for s in served if s.predicate.retention.content]
    facts = Facts(
        (
            ("inference batches", str(len(served))),
            ("requests by the system's models", str(sum(s.requests for s in served))),
            ("callers (distinct pseudonyms)", str(len(_callers(served)))),
            ("requests with no caller id", str(sum(s.predicate.unattributed for s in served))),
            ("batches with prompts and completions retained", f"{len(kept)} of {len(served)}"),
        )
    )
    return collected("What the inference logs hold", (s.entry for s in served), facts), None


def _no_batches() -> Gap:
    return Gap(
        "no inference batch in the log served the system's base model or adapters",
        "annex collect inference-log LOG.jsonl (the served models logged first)",
    )


def _erasure_table(found: list[Erasure]) -> Table:
    rows = tuple(
        (
            e.predicate.observed_at[:10],
            e.predicate.trigger,
            ", ".join(e.predicate.pseudonyms[:3])
            + (" …" if len(e.predicate.pseudonyms) > 3 else ""),
            str(e.predicate.keys_destroyed),
            str(e.entry.index),
        )
        for e in found[:MAX_ROWS]
    )
    note = None if len(found) <= MAX_ROWS else f"first {MAX_ROWS} of {len(found)}"
    return Table(("date", "trigger", "pseudonyms", "keys destroyed", "entry"), rows, note=note)


def _retention_item(store: Store, served: list[Served], size: int) -> Part:
    if not served:
        return None, _no_batches()
    groups: dict[str, int] = {}
    for s in served:
        groups[retention_text(s.predicate)] = groups.get(retention_text(s.predicate), 0) + 1
    table = Table(("retention", "batches"), tuple((k, str(v)) for k, v in sorted(groups.items())))
    done = erasures(store, size, {s.entry.index for s in served})
    summary = Paragraph(
        f"{len(done)} erasure receipt(s) touch these batches"
        + (f", the last on {done[-1].predicate.observed_at[:10]}." if done else ".")
        + f" The AI Act minimum for logs is six months ({SIX_MONTHS_DAYS} days, Art 19, 26(6))."
    )
    blocks = (table, summary, _erasure_table(done)) if done else (table, summary)
    entries = [s.entry for s in served] + [e.entry for e in done]
    item = collected("Retention and erasures done", entries, *blocks)
    short = [
        s
        for s in served
        if s.predicate.retention.content and (s.predicate.retention.days or 0) < SIX_MONTHS_DAYS
    ]
    gap = None
    if short:
        gap = Gap(
            f"{len(short)} batch(es) keep content under six months ({SIX_MONTHS_DAYS} days)",
            "record the legal ground for the shorter period, or keep content longer",
        )
    return item, gap


def _security_item(served: list[Served]) -> Part:
    if not served:
        return None, None
    kept = [s for s in served if s.predicate.content_blob is not None]
    facts = Facts(
        (
            ("caller ids", "pseudonymised: HMAC-SHA256 under a per-caller secret in the vault"),
            ("prompts and completions in the log", "never: only digests and counts"),
            ("retained content", f"AES-256-GCM per caller and batch, in {len(kept)} batch(es)"),
            ("each request line", "an RFC 9162 leaf of its batch, provable after erasure"),
        )
    )
    return collected("Measures the inference logs show", (s.entry for s in served), facts), None


def _inference_section(store: Store, versions: list[CardVersion], size: int) -> Section:
    card = versions[-1].card
    g = card.gdpr
    served = served_batches(store, model_digests(versions), size)
    points = (
        _point(
            "30(1)(a)",
            "Controller and data protection officer",
            "Name and contact details of the controller and the DPO.",
            (
                _party("controller", g.controller, "gdpr.controller"),
                _party("data protection officer", g.dpo, "gdpr.dpo"),
            ),
        ),
        _point(
            "30(1)(b)",
            "Purposes of the processing",
            "Why the inference requests are logged, and on what legal basis.",
            (
                _texts(
                    "Purposes",
                    g.purposes,
                    "the purposes of the inference logging are",
                    "gdpr.purposes",
                ),
                _texts(
                    "Legal basis", (g.legal_basis or "",), "the legal basis is", "gdpr.legalBasis"
                ),
            ),
        ),
        _point(
            "30(1)(c)",
            "Data subjects and personal data",
            "The categories of data subjects and of personal data.",
            (
                _texts(
                    "Data subjects",
                    g.data_subjects,
                    "the categories of data subjects are",
                    "gdpr.dataSubjects",
                ),
                _texts(
                    "Personal data",
                    g.personal_data,
                    "the categories of personal data are",
                    "gdpr.personalData",
                ),
                _subjects_item(served),
            ),
        ),
        _point(
            "30(1)(d)",
            "Recipients",
            "Who the personal data is disclosed to, in third countries included.",
            (_texts("Recipients", g.recipients, "the recipients are", "gdpr.recipients"),),
        ),
        _point(
            "30(1)(e)",
            "Transfers to third countries",
            "Transfers outside the EU and their safeguards.",
            (
                _texts(
                    "Transfers", (g.transfers or "",), "transfers (or none) are", "gdpr.transfers"
                ),
            ),
        ),
        _point(
            "30(1)(f)",
            "Retention and erasure",
            "Time limits for erasure, and the erasures done.",
            (_retention_item(store, served, size),),
        ),
        _point(
            "30(1)(g)",
            "Security measures (Art 32)",
            "A general description of the technical and organisational security measures.",
            (
                _texts(
                    "Declared measures",
                    g.security_measures,
                    "security measures are",
                    "gdpr.securityMeasures",
                ),
                _security_item(served),
            ),
        ),
    )
    return Section(f"Processing activity: inference logging of {card.name} ({card.id})", points)


# -- the evidence store -------------------------------------------------------------------------


def _pseudonym_entries(store: Store, size: int) -> tuple[list[Entry], set[str], set[str]]:
    """Entries holding a pseudonym, with the distinct reviewer and caller pseudonyms."""
    entries: list[Entry] = []
    reviewers: set[str] = set()
    callers: set[str] = set()
    for kind in (OVERSIGHT_EVENT, REVIEWER_ATTESTATION):
        for entry in scan(store, kind, size):
            entries.append(entry)
            reviewers.add(str(entry.statement["predicate"].get("reviewer")))
    for entry in scan(store, INFERENCE_BATCH, size):
        entries.append(entry)
        callers.update(c["pseudonym"] for c in entry.statement["predicate"].get("callers", ()))
    return entries, reviewers, callers


def _cards_declare(cards: list[SystemCard], pick: str) -> list[str]:
    """A gdpr field over every card, once each, labelled with the system when several."""
    out: list[str] = []
    for card in cards:
        value = getattr(card.gdpr, pick)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            text = v.name + (f" ({v.contact})" if v.contact else "") if isinstance(v, Party) else v
            if text and text not in out:
                out.append(text)
    return out


def _key_row(entry: Entry) -> tuple[str, str, str, str]:
    event = KeyEvent.model_validate(entry.statement["predicate"])
    return (event.name, event.event, event.observedAt[:10], str(entry.index))


def _store_subjects(entries: list[Entry], reviewers: set[str], callers: set[str]) -> Part:
    if not entries:
        return None, Gap(
            "no entry holds a pseudonym yet", "nothing to fill while no person's data is logged"
        )
    facts = Facts(
        (
            ("entries holding a pseudonym", str(len(entries))),
            ("reviewer pseudonyms (oversight events, attestations)", str(len(reviewers))),
            ("caller pseudonyms (inference batches)", str(len(callers))),
            ("names, e-mail addresses or ids in clear", "none: pseudonyms only"),
        )
    )
    return collected("Pseudonyms in the log", entries, facts), None


def _store_erasure(entries: list[Entry], done: list[Erasure], keys: list[Entry]) -> Part:
    """The method, and the receipts; cites the receipts, else what the method applies to."""
    blocks: list[Block] = [
        Paragraph(CRYPTO_SHREDDING),
        Paragraph(f"{len(done)} erasure receipt(s) logged."),
    ]
    if done:
        blocks.append(_erasure_table(done))
    cited = [e.entry for e in done] or entries or keys
    return collected("Erasure by crypto-shredding", cited, *blocks), None


def _store_security(keys: list[Entry], size: int) -> Part:
    security = Facts(
        (
            ("entries", f"{size}, each a DSSE envelope signed with a logged key"),
            ("integrity", "RFC 9162 Merkle tree; signed checkpoints (C2SP), verifiable offline"),
            ("signing key events", str(len(keys))),
        )
    )
    table = Table(("key", "event", "date", "entry"), tuple(_key_row(k) for k in keys[:MAX_ROWS]))
    return collected("Signed, append-only log", keys, security, table), None


_STORE_DECLARED = (
    ("controller", "gdpr.controller", "the controller of the evidence store is"),
    ("purposes", "gdpr.purposes", "the purposes of the evidence store are"),
    ("recipients", "gdpr.recipients", "the recipients of the evidence are"),
    ("transfers", "gdpr.transfers", "transfers (or none) are"),
    ("security_measures", "gdpr.securityMeasures", "security measures are"),
)


def _store_section(store: Store, cards: list[SystemCard], size: int) -> Section:
    entries, reviewers, callers = _pseudonym_entries(store, size)
    keys = list(scan(store, KEY_EVENT, size))
    d = {
        attr: _texts(
            attr.replace("_", " ").capitalize() + " (from the system cards)",
            _cards_declare(cards, attr),
            what,
            key,
        )
        for attr, key, what in _STORE_DECLARED
    }
    points = (
        _point("30(1)(a)", "Controller", "Who keeps the evidence store.", (d["controller"],)),
        _point("30(1)(b)", "Purposes", "Why the evidence is kept.", (d["purposes"],)),
        _point(
            "30(1)(c)",
            "Data subjects and personal data",
            "Whose data the store holds, and in what form.",
            (_store_subjects(entries, reviewers, callers),),
        ),
        _point("30(1)(d)", "Recipients", "Who the evidence is disclosed to.", (d["recipients"],)),
        _point(
            "30(1)(e)", "Transfers", "Transfers of the evidence outside the EU.", (d["transfers"],)
        ),
        _point(
            "30(1)(f)",
            "Retention and erasure",
            "How long entries are kept, and how a person's data is erased.",
            (_store_erasure(entries, erasures(store, size), keys),),
        ),
        _point(
            "30(1)(g)",
            "Security measures (Art 32)",
            "Integrity, confidentiality and accountability of the store.",
            (d["security_measures"], _store_security(keys, size)),
        ),
    )
    return Section("Processing activity: the evidence store", points)


def build_ropa(
    store: Store,
    *,
    system_id: str | None = None,
    at: int | None = None,
    now: datetime | None = None,
) -> Document:
    """The Art 30(1) record: each system's inference logging, then the evidence store."""
    cp = checkpoint_ref(store, at)
    ids = [system_id] if system_id is not None else system_ids(store, size=cp.size)
    systems = [history(store, i, cp.size) for i in ids]
    sections = [_inference_section(store, versions, cp.size) for versions in systems]
    if not systems:
        gap = Gap(
            "no AI system is recorded, so no inference logging can be described",
            "annex system add CARD.yaml",
        )
        sections.append(
            Section(
                "Processing activity: inference logging",
                (
                    Point(
                        "30(1)",
                        "Inference logging",
                        "The record of each system's inference logging.",
                        gaps=(gap,),
                    ),
                ),
            )
        )
    sections.append(_store_section(store, [v[-1].card for v in systems], cp.size))
    return Document(
        kind="ropa",
        title="Record of processing activities (GDPR Art 30)",
        subtitle="AI inference logging and the evidence store",
        generated_at=now or utc_now(),
        checkpoint=cp,
        sections=tuple(sections),
        system=system_ref(systems[0][-1]) if system_id is not None else None,
        notes=("Persons appear only as pseudonyms.",),
    )


# -- DPIA inputs --------------------------------------------------------------------------------


def _datasets_point(store: Store, version: CardVersion, size: int) -> Point:
    asks = "Art 35(7)(a), Art 9: the data used, its legal basis and any special categories."
    card = version.card
    items: list[Item] = []
    gaps: list[Gap] = []
    for key, label in (
        ("gdpr.dataSubjects", "data_subjects"),
        ("gdpr.personalData", "personal_data"),
    ):
        item, gap = _texts(
            label.replace("_", " ").capitalize(),
            getattr(card.gdpr, label),
            f"the categories of {label.replace('_', ' ')} are",
            key,
        )
        items += [item] if item else []
        gaps += [gap] if gap else []
    rows: list[tuple[str, ...]] = []
    cited: list[Entry] = []
    for comp in (c for c in version.predicate.components if c.role == "dataset"):
        found = list(scan(store, DATASET, size, subject_digest=f"sha256:{comp.digest}"))
        if not found:
            gaps.append(
                Gap(
                    f"dataset {comp.name} is not in the log",
                    "annex collect dataset DIR (with a datasheet.yaml)",
                )
            )
            continue
        p = DatasetPredicate.model_validate(found[-1].statement["predicate"])
        cited.append(found[-1])
        special = (
            "not declared"
            if p.special_categories is None
            else (", ".join(p.special_categories) or "none")
        )
        personal = (
            "not declared" if p.personal_data is None else ("yes" if p.personal_data else "no")
        )
        rows.append((comp.name, p.legal_basis or "not declared", personal, special))
        wanted = [f for f in ("legalBasis", "personalData", "specialCategories") if f in p.missing]
        if wanted:
            gaps.append(
                Gap(
                    f"dataset {comp.name}'s datasheet does not give {', '.join(wanted)}",
                    "add them to datasheet.yaml and collect the dataset again",
                )
            )
    if cited:
        table = Table(
            ("dataset", "legal basis", "personal data", "special categories (Art 9)"), tuple(rows)
        )
        items.append(collected("Datasets (datasheets)", cited, table, *_special(rows)))
    elif not any(c.role == "dataset" for c in version.predicate.components):
        gaps.append(
            Gap("the system card names no dataset", "add `components.datasets` to the card")
        )
    return Point(
        "35(7)(a)-data", "Data categories and legal basis", asks, tuple(items), tuple(gaps)
    )


def _special(rows: list[tuple[str, ...]]) -> tuple[Paragraph, ...]:
    """A note when a datasheet declares Art 9 data: Art 35(3)(b) names it as a DPIA case."""
    found = sorted({c for r in rows for c in r[3].split(", ")} - {"none", "not declared"})
    if not found:
        return ()
    return (
        Paragraph(
            f"Special categories of personal data (Art 9) in the data: {', '.join(found)}. "
            "Processing them on a large scale requires a DPIA (Art 35(3)(b))."
        ),
    )


def _scale_point(served: list[Served]) -> Point:
    asks = "Art 35(1), (3): the scale of the processing (requests, people)."
    if not served:
        return Point("35(7)(a)-scale", "Volume and scale", asks, gaps=(_no_batches(),))
    times = sorted(
        t
        for s in served
        for t in (
            (s.predicate.time_range.first, s.predicate.time_range.last)
            if s.predicate.time_range
            else ()
        )
    )
    facts = Facts(
        (
            ("requests by the system's models", str(sum(s.requests for s in served))),
            ("callers (distinct pseudonyms)", str(len(_callers(served)))),
            ("inference batches", str(len(served))),
            (
                "first and last request",
                f"{times[0]} to {times[-1]}" if times else "no times in the batches",
            ),
        )
    )
    return Point(
        "35(7)(a)-scale",
        "Volume and scale",
        asks,
        (collected("Inference volume", (s.entry for s in served), facts),),
    )


def _risks_point(store: Store, card: SystemCard, size: int) -> Point:
    asks = "Art 35(7)(c): the risks to the rights and freedoms of data subjects."
    items: list[Item] = []
    gaps: list[Gap] = []
    if card.risk_register:
        rows = tuple(
            (
                r.id,
                r.description,
                r.severity,
                r.likelihood or "not given",
                r.mitigation or "none declared",
            )
            for r in card.risk_register
        )
        items.append(
            declared(
                "Risk register",
                Table(("risk", "description", "severity", "likelihood", "mitigation"), rows),
            )
        )
    else:
        gaps.append(Gap("the card declares no risk register", "add `riskRegister` to the card"))
    found: dict[str, tuple[Entry, IncidentPredicate]] = {}
    for entry in scan(store, INCIDENT, size):
        p = IncidentPredicate.model_validate(entry.statement["predicate"])
        if p.system == card.id:
            found[p.incident_id] = (entry, p)
    if found:
        incidents = tuple(
            (
                p.incident_id,
                str(p.category),
                p.awareness_at[:10],
                "closed" if p.action == "close" else "open",
            )
            for _, p in found.values()
        )
        items.append(
            collected(
                "Incidents of the system",
                (e for e, _ in found.values()),
                Table(("incident", "category", "aware", "state"), incidents[:MAX_ROWS]),
            )
        )
    return Point("35(7)(c)", "Risks to data subjects", asks, tuple(items), tuple(gaps))


def _safeguards_point(store: Store, card: SystemCard, served: list[Served], size: int) -> Point:
    asks = "Art 35(7)(d): measures, safeguards and means of showing compliance."
    parts: list[Part] = [
        _texts(
            "Security measures",
            card.gdpr.security_measures,
            "security measures are",
            "gdpr.securityMeasures",
        ),
        _security_item(served),
    ]
    if card.oversight.measures:
        parts.append(
            (declared("Human oversight measures", *bullets(card.oversight.measures)), None)
        )
    events = [
        e
        for e in scan(store, OVERSIGHT_EVENT, size)
        if e.statement["predicate"].get("system") == card.id
    ]
    if events:
        parts.append(
            (
                collected(
                    "Oversight done",
                    events,
                    Paragraph(f"{len(events)} oversight event(s) logged for the system."),
                ),
                None,
            )
        )
    else:
        parts.append(
            (
                None,
                Gap("no oversight event logged for the system", "annex oversight record / ingest"),
            )
        )
    done = erasures(store, size, {s.entry.index for s in served})
    if done:
        parts.append(
            (collected("Erasures done", [e.entry for e in done], _erasure_table(done)), None)
        )
    return _point("35(7)(d)", "Safeguards", asks, parts)


def _description_point(card: SystemCard) -> Point:
    g = card.gdpr
    risk: Part = (None, Gap("the AI Act risk class is not declared", _fill("risk")))
    if card.risk is not None:
        levels = Facts((("level", card.risk.level), ("grounds", card.risk.grounds)))
        risk = (declared("AI Act risk class", levels), None)
    return _point(
        "35(7)(a)",
        "Description and purposes",
        "A systematic description of the processing and its purposes (legitimate interest too).",
        (
            _texts(
                "Intended purpose",
                (card.intended_purpose or "",),
                "the intended purpose is",
                "intendedPurpose",
            ),
            _texts("Purposes of the processing", g.purposes, "the purposes are", "gdpr.purposes"),
            _texts("Legal basis", (g.legal_basis or "",), "the legal basis is", "gdpr.legalBasis"),
            risk,
            _texts("Recipients", g.recipients, "the recipients are", "gdpr.recipients"),
            _texts("Transfers", (g.transfers or "",), "transfers (or none) are", "gdpr.transfers"),
        ),
    )


def _necessity_point(g: Gdpr) -> Point:
    """Only a person can assess necessity: the card names the DPIA document that does."""
    return _point(
        "35(7)(b)",
        "Necessity and proportionality",
        "An assessment of the necessity and proportionality of the processing.",
        (
            _texts(
                "DPIA document",
                (g.dpia_reference or "",),
                "the necessity and proportionality assessment (a DPIA document) is",
                "gdpr.dpiaReference",
            ),
        ),
    )


def build_dpia_inputs(
    store: Store, system_id: str, *, at: int | None = None, now: datetime | None = None
) -> Document:
    """The Art 35(7) facts the log holds for one system, and gaps for what it lacks."""
    cp = checkpoint_ref(store, at)
    versions = history(store, system_id, cp.size)
    card = versions[-1].card
    served = served_batches(store, model_digests(versions), cp.size)
    retention = _point(
        "35(7)(a)-retention",
        "Retention",
        "How long the data is kept.",
        (_retention_item(store, served, cp.size),),
    )
    processing = (
        _description_point(card),
        _datasets_point(store, versions[-1], cp.size),
        _scale_point(served),
        retention,
    )
    sections = (
        Section("The processing", processing),
        Section("Assessment", (_necessity_point(card.gdpr), _risks_point(store, card, cp.size))),
        Section("Measures", (_safeguards_point(store, card, served, cp.size),)),
    )
    return Document(
        kind="dpia-inputs",
        title=f"DPIA inputs: {card.name}",
        subtitle="The facts a GDPR Art 35 data protection impact assessment needs",
        generated_at=now or utc_now(),
        checkpoint=cp,
        sections=sections,
        system=system_ref(versions[-1]),
        notes=("Inputs for a DPIA, not the assessment: the judgement stays with the controller.",),
    )
