"""EU AI Act Annex IV technical documentation of one AI system, as a Document.

Every point of Annex IV, in order: 1(a)-(h), 2(a)-(h), 3 to 9. Each point holds what the log
shows (collected, citing its entries) and what the system card declares (naming the card field),
and lists as gaps what is neither, with the command or card field that fills it. The evidence is
read once (reports/system_evidence.py) at one checkpoint; tables are bounded, the full evidence
is in the bundle the dossier carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from evidence.entry import Entry
from evidence.keys import utc_now
from evidence.store import Store
from reports.document import Block, Document, Facts, Gap, Item, Paragraph, Point, Section, Table
from reports.evidence_query import bullets, collected, day, declared, percent, system_ref
from reports.sweeps import SweepEvidence, sweep_evidence
from reports.system_evidence import Found, SystemEvidence, gather
from schemas.eval_run import EvalRunPredicate
from schemas.incident import IncidentPredicate
from schemas.model import ModelManifestPredicate
from schemas.system_card import ResolvedComponent, SystemCard

MAX_ROWS = 20


def short(digest: str) -> str:
    return f"sha256 {digest[:12]}…"


def card_gap(what: str, key: str) -> Gap:
    return Gap(
        f"the system card does not declare {what}",
        f"add `{key}` to the card, then `annex system add CARD.yaml`",
    )


def text_or_gap(
    text: str | None, heading: str, what: str, key: str, items: list[Item], gaps: list[Gap]
) -> None:
    """A declared narrative from the card, or a gap naming the card field that holds it."""
    if text:
        items.append(declared(f"{heading} (card: {key})", Paragraph(text)))
    else:
        gaps.append(card_gap(what, key))


def bounded(rows: Sequence[tuple[str, ...]], columns: tuple[str, ...], caption: str) -> Table:
    note = None
    if len(rows) > MAX_ROWS:
        note = f"and {len(rows) - MAX_ROWS} more, listed in the evidence bundle"
    return Table(columns, tuple(rows[:MAX_ROWS]), caption=caption, note=note)


def components(ev: SystemEvidence, *roles: str) -> list[ResolvedComponent]:
    return [c for c in ev.latest.predicate.components if c.role in roles]


def point(
    ref: str, title: str, asks: str, items: Iterable[Item], gaps: Iterable[Gap] = ()
) -> Point:
    return Point(ref, title, asks, tuple(items), tuple(gaps))


# -- 1 General description ----------------------------------------------------------------------


def p1a(ev: SystemEvidence) -> Point:
    card = ev.latest.card
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        card.intended_purpose,
        "Intended purpose",
        "the intended purpose",
        "intendedPurpose",
        items,
        gaps,
    )
    rows = [("provider", card.provider.name)]
    rows += [("address", card.provider.address or "not declared")]
    rows += [("contact", card.provider.contact or "not declared")]
    if card.provider.authorised_representative is not None:
        rows.append(("authorised representative", card.provider.authorised_representative.name))
    items.append(declared("Provider (card: provider)", Facts(tuple(rows))))
    if card.risk is not None:
        risk = [("classification", card.risk.level), ("grounds", card.risk.grounds)]
        if card.risk.annex_iii_point:
            risk.append(("Annex III point", card.risk.annex_iii_point))
        items.append(declared("Risk classification (card: risk)", Facts(tuple(risk))))
    else:
        gaps.append(card_gap("the risk classification and its grounds", "risk"))
    versions = [
        (v.card.version, v.card.previous_version or "-", str(v.entry.index), day(v.entry.logged_at))
        for v in ev.versions
    ]
    table = bounded(
        versions, ("version", "follows", "card entry", "logged"), "Versions of this system"
    )
    parts = [(c.role, c.name, short(c.digest)) for c in ev.latest.predicate.components]
    version_id = (
        Table(("role", "component", "digest"), tuple(parts), caption="Components of this version")
        if parts
        else Paragraph("The card names no component.")
    )
    items.append(
        collected(
            f"Version {card.version} and its history",
            [v.entry for v in ev.versions],
            table,
            version_id,
        )
    )
    return point(
        "1(a)",
        "Intended purpose, provider and version",
        "The intended purpose, the provider, and the system's version and how it relates to "
        "earlier versions.",
        items,
        gaps,
    )


def p1b(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        ev.latest.card.documentation.integration,
        "Integration",
        "how the system interacts with hardware, software and other AI systems outside it",
        "documentation.integration",
        items,
        gaps,
    )
    if ev.served:
        requests = sum(s.requests for s in ev.served)
        fingerprints: Counter[str] = Counter()
        callers: set[str] = set()
        for s in ev.served:
            fingerprints.update(s.predicate.system_fingerprints)
            callers.update(c.pseudonym for c in s.predicate.callers)
        firsts = [s.first for s in ev.served if s.first is not None]
        facts = [
            ("inference batches", str(len(ev.served))),
            ("requests to this system's models", f"{requests:,}"),
            ("calling clients (pseudonyms)", str(len(callers))),
            ("serving runtimes (system fingerprints)", ", ".join(sorted(fingerprints)) or "none"),
        ]
        if firsts:
            facts.append(("first request", day(min(firsts))))
        items.append(
            collected(
                "Calls seen in the inference logs",
                [s.entry for s in ev.served],
                Facts(tuple(facts)),
            )
        )
    else:
        gaps.append(
            Gap(
                "no logged inference batch served this system's models",
                "ingest the serving gateway's log: `annex collect inference-log FILE`",
            )
        )
    return point(
        "1(b)",
        "Interaction with hardware, software and other AI systems",
        "How the system interacts, or can be used to interact, with hardware or software "
        "outside it, including other AI systems.",
        items,
        gaps,
    )


def _reading(value: object) -> str:
    """A GPU reading: its value, 'unsupported', or the NVML error."""
    if value is None:
        return "not read"
    for attr in ("value", "error"):
        if hasattr(value, attr):
            return str(getattr(value, attr))
    return "unsupported"


def p1c(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    if ev.gpus:
        rows = []
        for f in ev.gpus:
            p = f.predicate
            vbios = sorted({_reading(d.vbios_version) for d in p.devices}) or ["-"]
            rows.append(
                (
                    p.host.hostname,
                    _reading(p.driver_version),
                    _reading(p.cuda_driver_version),
                    _reading(p.nvml_version),
                    ", ".join(vbios),
                    p.host.os or "-",
                )
            )
        table = bounded(
            rows,
            ("host", "driver", "CUDA driver", "NVML", "VBIOS", "OS"),
            "Driver and firmware versions, newest inventory per host",
        )
        items.append(collected("GPU software and firmware", [f.entry for f in ev.gpus], table))
    else:
        gaps.append(_no_gpu_gap())
    stacks = {
        (
            e.predicate.versions.lm_eval,
            e.predicate.versions.transformers,
            e.predicate.versions.torch,
        )
        for e in ev.evals
    }
    if stacks:
        rows2 = [tuple(v or "not recorded" for v in s) for s in sorted(stacks, key=str)]
        items.append(
            collected(
                "Software the evaluations ran on",
                [e.entry for e in ev.evals],
                bounded(rows2, ("lm-eval", "transformers", "torch"), "Versions per eval run"),
            )
        )
    text_or_gap(
        ev.latest.card.documentation.update_policy,
        "Update requirements",
        "the requirements about version updates",
        "documentation.updatePolicy",
        items,
        gaps,
    )
    return point(
        "1(c)",
        "Software and firmware versions",
        "The versions of relevant software or firmware and any requirement about updates.",
        items,
        gaps,
    )


def _no_gpu_gap() -> Gap:
    return Gap(
        "the log holds no GPU inventory",
        "run `annex collect gpu` on every host that serves or trains the system",
    )


def p1d(ev: SystemEvidence) -> Point:
    card = ev.latest.card
    items: list[Item] = []
    gaps: list[Gap] = []
    if card.release_forms:
        items.append(
            declared("Forms of release (card: releaseForms)", *bullets(card.release_forms))
        )
    else:
        gaps.append(
            card_gap("the forms in which the system is placed on the market", "releaseForms")
        )
    if card.deployers:
        rows = [(d.name, d.contact or "-") for d in card.deployers]
        items.append(
            declared("Deployers (card: deployers)", Table(("deployer", "contact"), tuple(rows)))
        )
    releases = [f for found in ev.releases.values() for f in found]
    if releases:
        rows2 = [
            (
                f.predicate.name,
                f.predicate.kind,
                f.predicate.approved_by,
                f.predicate.signing_keyid[:12],
                day(f.entry.logged_at),
            )
            for f in releases
        ]
        items.append(
            collected(
                "Signed releases of the components",
                [f.entry for f in releases],
                bounded(rows2, ("component", "kind", "approved by", "signing key", "released"), ""),
            )
        )
    return point(
        "1(d)",
        "Forms of placing on the market or putting into service",
        "All forms in which the system is placed on the market or put into service.",
        items,
        gaps,
    )


def p1e(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        ev.latest.card.documentation.hardware_requirements,
        "Hardware requirements",
        "the hardware the system is intended to run on",
        "documentation.hardwareRequirements",
        items,
        gaps,
    )
    if ev.gpus:
        rows = []
        for f in ev.gpus:
            p = f.predicate
            names = Counter(_reading(d.name) for d in p.devices)
            cards = ", ".join(f"{n} × {name}" for name, n in sorted(names.items())) or p.status
            memory = sum(getattr(d.memory_total_bytes, "value", 0) or 0 for d in p.devices)
            migs = sum(1 for d in p.devices if "enabled" in str(getattr(d.mig_mode, "value", "")))
            rows.append(
                (
                    p.host.hostname,
                    p.site.site or "-",
                    cards if p.devices else f"none ({p.reason or p.status})",
                    f"{memory / 2**30:.0f} GiB" if memory else "-",
                    str(migs),
                    day(f.entry.observed_at or f.entry.logged_at),
                )
            )
        table = bounded(
            rows,
            ("host", "site", "GPUs", "GPU memory", "MIG on", "seen"),
            f"Newest inventory of each of {len(ev.gpus)} hosts ({ev.gpu_entries} inventories "
            "logged); self-reported by NVML, not hardware attestation",
        )
        items.append(collected("GPU fleet", [f.entry for f in ev.gpus], table))
    else:
        gaps.append(_no_gpu_gap())
    return point(
        "1(e)",
        "Hardware the system runs on",
        "A description of the hardware on which the system is intended to run.",
        items,
        gaps,
    )


def _declared_only(ref: str, title: str, asks: str, text: str | None, what: str, key: str) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(text, title, what, key, items, gaps)
    return point(ref, title, asks, items, gaps)


def p1f_to_h(ev: SystemEvidence) -> list[Point]:
    doc = ev.latest.card.documentation
    return [
        _declared_only(
            "1(f)",
            "Product illustrations",
            "Where the system is a component of a product: photographs or illustrations of its "
            "external features, marking and internal layout.",
            doc.product_illustrations,
            "product illustrations, or that the system is not a product component",
            "documentation.productIllustrations",
        ),
        _declared_only(
            "1(g)",
            "User interface for the deployer",
            "A basic description of the user interface provided to the deployer.",
            doc.user_interface,
            "the user interface given to the deployer",
            "documentation.userInterface",
        ),
        _declared_only(
            "1(h)",
            "Instructions for use",
            "Instructions for use for the deployer (Art 13) and, where applicable, the user "
            "interface.",
            doc.instructions_for_use,
            "the instructions for use",
            "documentation.instructionsForUse",
        ),
    ]


# -- 2 Development ------------------------------------------------------------------------------


def _manifest_facts(found: Found[ModelManifestPredicate]) -> Facts:
    p = found.predicate
    rows = [
        ("kind", p.kind),
        ("files", str(len(p.manifest.files))),
        ("manifest digest", p.manifest.digest),
        ("parameters", f"{p.parameters:,}" if p.parameters else "not read"),
        ("collected on", f"{p.host} at {p.path}"),
    ]
    if p.adapter is not None:
        a = p.adapter
        rows += [
            ("adapter", f"{a.peft_type or 'unknown type'}, rank {a.rank}, alpha {a.alpha}"),
            ("target modules", ", ".join(a.target_modules) or "-"),
            ("base (declared in adapter_config)", a.base_model_name or "-"),
        ]
    return Facts(tuple(rows))


def p2a(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        ev.latest.card.documentation.development_methods,
        "Development methods",
        "the development methods and how third-party components were used",
        "documentation.developmentMethods",
        items,
        gaps,
    )
    base = components(ev, "base-model")
    base_digest = base[0].digest if base else None
    if not base:
        gaps.append(card_gap("the base model", "components.baseModel"))
    for c in components(ev, "base-model", "adapter"):
        found = ev.manifests.get(c.digest, [])
        if not found:
            gaps.append(
                Gap(
                    f"the log holds no manifest of {c.role} {c.name} ({short(c.digest)})",
                    "hash it into the log: `annex collect model DIR`",
                )
            )
            continue
        newest = found[-1]
        blocks: list[Block] = [_manifest_facts(newest)]
        adapter = newest.predicate.adapter
        if c.role == "adapter":
            bound = adapter.base_manifest_digest if adapter is not None else None
            if bound is None:
                gaps.append(
                    Gap(
                        f"adapter {c.name} is not bound to a base model's manifest",
                        "collect it with its base: `annex collect model DIR --base BASE_DIR`",
                    )
                )
            elif base_digest is not None and bound != base_digest:
                gaps.append(
                    Gap(
                        f"adapter {c.name} is bound to base {short(bound)}, not to the card's "
                        f"base model ({short(base_digest)})",
                        "correct components.baseModel in the card, or re-collect the adapter "
                        "with the base it was trained on",
                    )
                )
            else:
                blocks.append(Paragraph(f"Bound to the base model's manifest {short(bound)}."))
        items.append(collected(f"{c.role} {c.name}", [newest.entry], *blocks))
    return point(
        "2(a)",
        "Development methods and third-party components",
        "The methods and steps of development, including pre-trained systems or tools from "
        "third parties and how they were used, integrated or modified.",
        items,
        gaps,
    )


def p2b(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        ev.latest.card.documentation.design_choices,
        "Design choices",
        "the design choices, their rationale and assumptions",
        "documentation.designChoices",
        items,
        gaps,
    )
    for c in components(ev, "base-model"):
        found = ev.manifests.get(c.digest, [])
        config = found[-1].predicate.config if found else None
        if config is None:
            continue
        rows = [
            ("architectures", ", ".join(config.architectures) or "-"),
            ("model type", config.model_type or "-"),
            ("hidden size", str(config.hidden_size or "-")),
            ("layers", str(config.num_layers or "-")),
            ("attention heads", str(config.num_attention_heads or "-")),
            ("vocabulary", str(config.vocab_size or "-")),
            ("context length", str(config.context_length or "-")),
            ("dtype", config.torch_dtype or "-"),
        ]
        items.append(
            collected(
                f"Architecture of {c.name} (config.json)", [found[-1].entry], Facts(tuple(rows))
            )
        )
    return point(
        "2(b)",
        "Design specifications",
        "The general logic and algorithms, key design choices with their rationale, what the "
        "system optimises for, its expected output, and trade-offs made.",
        items,
        gaps,
    )


def p2c(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        ev.latest.card.documentation.architecture,
        "Architecture",
        "the system architecture",
        "documentation.architecture",
        items,
        gaps,
    )
    if ev.training:
        rows = []
        for f in ev.training:
            p = f.predicate
            rows.append(
                (
                    p.output.name,
                    ", ".join(d.name for d in p.datasets),
                    "-" if p.gpu_hours is None else f"{p.gpu_hours:.2f}",
                    "-" if p.energy_joules is None else f"{p.energy_joules / 3.6e6:.3f} kWh",
                    f"{p.compute.flops:.3g}",
                    day(f.entry.observed_at or f.entry.logged_at),
                )
            )
        items.append(
            collected(
                "Compute used to train",
                [f.entry for f in ev.training],
                bounded(
                    rows, ("output", "datasets", "GPU-hours", "energy", "FLOPs (6ND)", "when"), ""
                ),
            )
        )
    for c in components(ev, "adapter"):
        if not any(c.digest in f.entry.subjects[0].digest for f in ev.training):
            gaps.append(
                Gap(
                    f"no training run records how adapter {c.name} ({short(c.digest)}) was made",
                    "`annex collect training-run --dataset DIR --base BASE_DIR --output DIR`",
                )
            )
    timed = [e for e in ev.evals if e.predicate.duration_seconds is not None]
    if timed:
        seconds = sum(e.predicate.duration_seconds or 0 for e in timed)
        joules = [e.predicate.energy_joules for e in timed if e.predicate.energy_joules]
        facts = [("eval runs", str(len(timed))), ("time", f"{seconds:.0f} s")]
        facts.append(
            ("energy", f"{sum(joules) / 3.6e6:.3f} kWh" if joules else "not measured by NVML")
        )
        items.append(
            collected("Compute used to test", [e.entry for e in timed], Facts(tuple(facts)))
        )
    return point(
        "2(c)",
        "Architecture and computational resources",
        "How the components build on and feed each other, and the computational resources used "
        "to develop, train, test and validate the system.",
        items,
        gaps,
    )


def p2d(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        ev.latest.card.documentation.data_governance,
        "Data governance",
        "how data was obtained, selected, labelled and cleaned",
        "documentation.dataGovernance",
        items,
        gaps,
    )
    datasets = components(ev, "dataset")
    if not datasets:
        gaps.append(card_gap("the datasets used", "components.datasets"))
    rows = []
    cited: list[Entry] = []
    for c in datasets:
        found = ev.datasets.get(c.digest, [])
        if not found:
            gaps.append(
                Gap(
                    f"the log holds no snapshot of dataset {c.name} ({short(c.digest)})",
                    "`annex collect dataset DIR` (with its datasheet.yaml)",
                )
            )
            continue
        p = found[-1].predicate
        cited.append(found[-1].entry)
        rows.append(
            (
                p.name,
                c.dataset_role or "-",
                "-" if p.records is None else f"{p.records:,}",
                p.licence or "-",
                p.source or "-",
                p.legal_basis or "-",
                "-" if p.personal_data is None else ("yes" if p.personal_data else "no"),
            )
        )
        if p.missing:
            gaps.append(
                Gap(
                    f"the datasheet of {p.name} does not declare {', '.join(p.missing)}",
                    "add them to its datasheet.yaml and `annex collect dataset DIR` again",
                )
            )
    if rows:
        items.append(
            collected(
                "Datasets (datasheets as collected)",
                cited,
                bounded(
                    rows,
                    ("dataset", "role", "records", "licence", "source", "legal basis", "personal"),
                    "",
                ),
            )
        )
    return point(
        "2(d)",
        "Data requirements and datasheets",
        "Training methods and datasets: description, provenance, scope, main characteristics, "
        "how data was obtained and selected, labelling and cleaning.",
        items,
        gaps,
    )


def p2e(ev: SystemEvidence) -> Point:
    o = ev.latest.card.oversight
    items: list[Item] = []
    gaps: list[Gap] = []
    if o.measures:
        items.append(
            declared("Oversight measures (card: oversight.measures)", *bullets(o.measures))
        )
    else:
        gaps.append(card_gap("the human-oversight measures", "oversight.measures"))
    text_or_gap(
        o.assessment,
        "Assessment of the measures",
        "the assessment of the oversight measures",
        "oversight.assessment",
        items,
        gaps,
    )
    if ev.oversight:
        actions = Counter(str(f.predicate.action) for f in ev.oversight)
        reviewers = {f.predicate.reviewer for f in ev.oversight}
        rows = tuple((a, str(n)) for a, n in sorted(actions.items()))
        items.append(
            collected(
                "Oversight as exercised",
                [f.entry for f in ev.oversight],
                Table(("action", "events"), rows),
                Paragraph(
                    f"{len(reviewers)} reviewers (pseudonyms); {len(ev.attestations)} training "
                    "attestations logged. The oversight report (`annex report oversight`) gives "
                    "rates, time to review and coverage per period."
                ),
            )
        )
    else:
        gaps.append(
            Gap(
                "no oversight event of this system is logged, so the measures are not shown to "
                "work",
                "`annex oversight record` or `annex oversight ingest FEED.jsonl`",
            )
        )
    return point(
        "2(e)",
        "Assessment of human-oversight measures",
        "The assessment of the oversight measures needed under Art 14, including technical "
        "measures that help deployers interpret outputs.",
        items,
        gaps,
    )


def p2f(ev: SystemEvidence) -> Point:
    changes = ev.latest.card.predetermined_changes
    items: list[Item] = []
    gaps: list[Gap] = []
    if changes:
        items.append(
            declared("Pre-determined changes (card: predeterminedChanges)", *bullets(changes))
        )
    else:
        gaps.append(
            card_gap("pre-determined changes, or that there are none", "predeterminedChanges")
        )
    return point(
        "2(f)",
        "Pre-determined changes",
        "Where applicable, changes to the system and its performance determined in advance, and "
        "the technical solutions that keep it compliant.",
        items,
        gaps,
    )


def _metrics(p: EvalRunPredicate) -> list[tuple[str, str, str]]:
    """(task, metric, value ± stderr) of one run, in a stable order."""
    out = []
    for task, metrics in sorted(p.results.items()):
        for name, value in sorted(metrics.items()):
            if "_stderr" in name or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            stderr = metrics.get(name.replace(",", "_stderr,", 1))
            err = f" ± {stderr:.4f}" if isinstance(stderr, int | float) else ""
            out.append((task, name, f"{value:.4f}{err}"))
    return out


def p2g(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        ev.latest.card.documentation.validation,
        "Validation and testing procedures",
        "the validation and testing procedures",
        "documentation.validation",
        items,
        gaps,
    )
    if ev.evals:
        rows = []
        for f in reversed(ev.evals):
            p = f.predicate
            tested = p.model.name + (f" + {p.adapter.name}" if p.adapter else "")
            for task, metric, value in _metrics(p):
                rows.append(
                    (
                        day(f.entry.logged_at),
                        str(f.entry.index),
                        tested,
                        task,
                        metric,
                        value,
                        p.origin,
                        f.entry.keyid[:12],
                    )
                )
        items.append(
            collected(
                "Signed test records (eval runs, newest first)",
                [f.entry for f in ev.evals],
                bounded(
                    rows,
                    ("date", "entry", "model", "task", "metric", "value", "origin", "signer"),
                    "Each run is bound to the manifest digests of what it tested",
                ),
            )
        )
    # what is deployed is tested: each adapter (on its base), or the base alone without adapters
    deployed = components(ev, "adapter") or components(ev, "base-model")
    for c in deployed:
        if not any(_tests(f.predicate, c.digest) for f in ev.evals):
            gaps.append(
                Gap(
                    f"no eval run is bound to {c.role} {c.name} ({short(c.digest)})",
                    "`annex eval run --model BASE_DIR [--adapter DIR] --tasks TASKS` (or "
                    "`annex eval import RESULTS.json --model DIR`)",
                )
            )
    return point(
        "2(g)",
        "Validation and testing",
        "Validation and testing procedures, test data, metrics (accuracy, robustness, "
        "discriminatory impact), test logs and dated, signed test reports.",
        items,
        gaps,
    )


def _tests(p: EvalRunPredicate, digest: str) -> bool:
    if p.adapter is not None:
        return p.adapter.manifest_digest == digest
    return p.model.manifest_digest == digest


def p2h(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        ev.latest.card.documentation.cybersecurity,
        "Cybersecurity measures",
        "the cybersecurity measures",
        "documentation.cybersecurity",
        items,
        gaps,
    )
    for c in components(ev, "base-model", "adapter"):
        if not ev.releases.get(c.digest):
            gaps.append(
                Gap(
                    f"{c.role} {c.name} ({short(c.digest)}) has no signed release in the log, so "
                    "a CI gate cannot verify its weights",
                    "`annex sign model DIR`, then gate deployments with `annex gate DIR`",
                )
            )
    releases = [f for found in ev.releases.values() for f in found]
    if releases:
        items.append(
            collected(
                "Weight integrity",
                [f.entry for f in releases],
                Paragraph(
                    f"{len(releases)} signed releases bind the components' per-file SHA-256 "
                    "manifests to a model-signing key; `annex gate` re-hashes every byte before "
                    "deployment and refuses a changed file."
                ),
            )
        )
    if ev.key_events:
        counts = Counter(f"{f.predicate.role} {f.predicate.event}" for f in ev.key_events)
        rows = tuple((k, str(n)) for k, n in sorted(counts.items()))
        items.append(
            collected(
                "Key management of the evidence log",
                [f.entry for f in ev.key_events],
                Table(("key event", "count"), rows),
            )
        )
    return point(
        "2(h)",
        "Cybersecurity",
        "The cybersecurity measures put in place.",
        items,
        gaps,
    )


# -- 3 to 9 -------------------------------------------------------------------------------------


def p3(ev: SystemEvidence) -> Point:
    doc = ev.latest.card.documentation
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        doc.limitations,
        "Capabilities and limitations",
        "the capabilities and limitations of performance",
        "documentation.limitations",
        items,
        gaps,
    )
    text_or_gap(
        doc.foreseeable_misuse,
        "Foreseeable unintended outcomes and misuse",
        "foreseeable unintended outcomes and sources of risk",
        "documentation.foreseeableMisuse",
        items,
        gaps,
    )
    text_or_gap(
        doc.input_specification,
        "Input data specification",
        "the input data specification",
        "documentation.inputSpecification",
        items,
        gaps,
    )
    newest: dict[tuple[str, str], tuple[str, Entry]] = {}
    groups: list[tuple[str, ...]] = []
    group_entries: list[Entry] = []
    for f in ev.evals:
        for task, metric, value in _metrics(f.predicate):
            newest[(task, metric)] = (value, f.entry)
    for f in ev.evals[-1:]:
        for task, by_group in sorted(f.predicate.groups.items()):
            for group, metrics in sorted(by_group.items()):
                for metric, score in sorted(metrics.items()):
                    groups.append((task, group, metric, f"{score:.4f}"))
            group_entries.append(f.entry)
    if newest:
        rows = [(t, m, v, str(e.index)) for (t, m), (v, e) in sorted(newest.items())]
        items.append(
            collected(
                "Expected accuracy (newest run of each task and metric)",
                [e for _, e in newest.values()],
                bounded(rows, ("task", "metric", "value", "entry"), ""),
            )
        )
    if groups:
        items.append(
            collected(
                "Accuracy per group (newest eval run)",
                group_entries,
                bounded(groups, ("task", "group", "metric", "value"), ""),
            )
        )
    else:
        gaps.append(
            Gap(
                "no eval run reports accuracy for specific persons or groups",
                "give the eval task data a `group` field and run `annex eval run` again",
            )
        )
    if ev.served:
        requests = sum(s.predicate.requests for s in ev.served)
        errors = sum(s.predicate.errors for s in ev.served)
        refusals = sum(s.predicate.refusals for s in ev.served)
        items.append(
            collected(
                "Behaviour in operation (inference logs)",
                [s.entry for s in ev.served],
                Facts(
                    (
                        ("requests in the batches", f"{requests:,}"),
                        ("errors", percent(errors, requests)),
                        ("refusals", percent(refusals, requests)),
                    )
                ),
            )
        )
    return point(
        "3",
        "Monitoring, functioning and control",
        "Capabilities and limits of performance, accuracy overall and for specific groups, "
        "foreseeable unintended outcomes, oversight measures and input specifications.",
        items,
        gaps,
    )


def p4(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    used = sorted({(t, m) for f in ev.evals for t, m, _ in _metrics(f.predicate)})
    if used:
        items.append(
            collected(
                "Metrics in use",
                [f.entry for f in ev.evals],
                Table(("task", "metric"), tuple(used[:MAX_ROWS])),
            )
        )
    else:
        gaps.append(Gap("no eval run, so no metric is in use", "`annex eval run` on the system"))
    text_or_gap(
        ev.latest.card.documentation.metrics_rationale,
        "Why these metrics",
        "why the chosen metrics are appropriate",
        "documentation.metricsRationale",
        items,
        gaps,
    )
    return point(
        "4",
        "Appropriateness of the performance metrics",
        "Why the chosen performance metrics are appropriate for this system.",
        items,
        gaps,
    )


def _evidence_count(ev: SystemEvidence) -> dict[str, list[Entry]]:
    return {
        "eval-run": [f.entry for f in ev.evals],
        "oversight-event": [f.entry for f in ev.oversight],
        "incident": [f.entry for f in ev.incidents],
        "inference-batch": [s.entry for s in ev.served],
        "gpu-inventory": [f.entry for f in ev.gpus],
        "training-run": [f.entry for f in ev.training],
        "model-release": [f.entry for found in ev.releases.values() for f in found],
    }


def p5(ev: SystemEvidence) -> Point:
    card = ev.latest.card
    items: list[Item] = []
    gaps: list[Gap] = []
    text_or_gap(
        card.documentation.risk_management,
        "Risk-management system",
        "the risk-management system (Art 9)",
        "documentation.riskManagement",
        items,
        gaps,
    )
    if not card.risk_register:
        gaps.append(card_gap("a risk register", "riskRegister"))
        return point("5", "Risk-management system", _ASKS_5, items, gaps)
    rows = tuple(
        (r.id, r.description, r.severity, r.likelihood or "-", r.mitigation or "-")
        for r in card.risk_register
    )
    items.append(
        declared(
            "Risk register (card: riskRegister)",
            Table(("risk", "description", "severity", "likelihood", "mitigation"), rows),
        )
    )
    by_kind = _evidence_count(ev)
    monitored: list[tuple[str, ...]] = []
    cited: list[Entry] = []
    for r in card.risk_register:
        for kind in r.evidence:
            found = by_kind.get(kind, [])
            if found:
                monitored.append((r.id, kind, str(len(found))))
                cited.extend(found)
            else:
                gaps.append(
                    Gap(
                        f"risk {r.id} is monitored by {kind} evidence, but the log holds none "
                        "for this system",
                        f"collect {kind} evidence for the system's components",
                    )
                )
    if monitored:
        items.append(
            collected(
                "Evidence monitoring each risk",
                cited,
                bounded(monitored, ("risk", "evidence kind", "entries"), ""),
            )
        )
    return point("5", "Risk-management system", _ASKS_5, items, gaps)


_ASKS_5 = "A detailed description of the risk-management system under Art 9."


def _card_changes(old: SystemCard, new: SystemCard) -> str:
    a, b = old.to_json(), new.to_json()
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k != "version")
    return ", ".join(changed) or "no declared field"


def p6(ev: SystemEvidence) -> Point:
    items: list[Item] = []
    gaps: list[Gap] = []
    rows = []
    previous = None
    for v in ev.versions:
        comps = {(c.role, c.name): c.digest for c in v.predicate.components}
        if previous is None:
            what, fields = "first version", "-"
        else:
            before = {(c.role, c.name): c.digest for c in previous.predicate.components}
            moved = [
                f"{role} {name}: {short(before[(role, name)])} → {short(d)}"
                if (role, name) in before
                else f"{role} {name} added"
                for (role, name), d in sorted(comps.items())
                if before.get((role, name)) != d
            ]
            moved += [f"{role} {name} removed" for (role, name) in sorted(set(before) - set(comps))]
            what = "; ".join(moved) or "same components"
            fields = _card_changes(previous.card, v.card)
        rows.append((v.card.version, str(v.entry.index), day(v.entry.logged_at), what, fields))
        previous = v
    items.append(
        collected(
            "Versions and what changed (from the card history in the log)",
            [v.entry for v in ev.versions],
            bounded(rows, ("version", "entry", "logged", "components", "card fields changed"), ""),
        )
    )
    text_or_gap(
        ev.latest.card.documentation.change_rationale,
        "Rationale of the changes",
        "the rationale of the changes and whether any is a substantial modification",
        "documentation.changeRationale",
        items,
        gaps,
    )
    return point(
        "6",
        "Changes over the lifecycle",
        "Relevant changes the provider made to the system through its lifecycle.",
        items,
        gaps,
    )


def p7(ev: SystemEvidence) -> Point:
    card = ev.latest.card
    items: list[Item] = []
    gaps: list[Gap] = []
    if card.standards:
        rows = tuple(
            (s.reference, s.title or "-", s.applied, s.parts or "-") for s in card.standards
        )
        items.append(
            declared(
                "Standards applied (card: standards)",
                Table(("reference", "title", "applied", "parts"), rows),
            )
        )
    if card.documentation.no_standards_solutions:
        items.append(
            declared(
                "Solutions adopted without harmonised standards "
                "(card: documentation.noStandardsSolutions)",
                Paragraph(card.documentation.no_standards_solutions),
            )
        )
    if not items:
        gaps.append(
            card_gap(
                "the standards applied, or the solutions adopted without them",
                "standards` or `documentation.noStandardsSolutions",
            )
        )
    return point(
        "7",
        "Standards applied",
        "The harmonised standards applied, or else the solutions adopted to meet Chapter III "
        "Section 2, and other standards and specifications used.",
        items,
        gaps,
    )


def p8(ev: SystemEvidence) -> Point:
    card = ev.latest.card
    doc = card.declaration_of_conformity
    if doc is None:
        gap = card_gap("the declaration of conformity", "declarationOfConformity")
        return point("8", "EU declaration of conformity", _ASKS_8, (), (gap,))
    rows = [
        ("declaration number", doc.number or "not declared"),
        ("system", f"{card.name} {card.version} ({card.id})"),
        ("provider", f"{card.provider.name}, {card.provider.address or 'address not declared'}"),
        ("statement", "issued under the sole responsibility of the provider"),
        ("conformity assessment", doc.conformity_procedure or "not declared"),
        ("notified body", doc.notified_body or "none"),
        ("standards", ", ".join(s.reference for s in card.standards) or "none declared"),
        ("place and date", f"{doc.place or 'not declared'}, {doc.date or 'not declared'}"),
        (
            "signed for the provider by",
            f"{doc.signatory or 'not declared'} {doc.role or ''}".strip(),
        ),
    ]
    items = [
        declared(
            "Draft declaration of conformity (Annex V fields from the card)",
            Facts(tuple(rows)),
            Paragraph(
                "This is a draft assembled from the card. The declaration of conformity is the "
                "provider's own signed document; keep a copy with this dossier."
            ),
        )
    ]
    missing = [
        key
        for key, value in (
            ("number", doc.number),
            ("signatory", doc.signatory),
            ("place", doc.place),
            ("date", doc.date),
            ("conformityProcedure", doc.conformity_procedure),
        )
        if value is None
    ]
    gaps = [
        card_gap(f"the declaration's {key}", f"declarationOfConformity.{key}") for key in missing
    ]
    return point("8", "EU declaration of conformity", _ASKS_8, items, gaps)


_ASKS_8 = "A copy of the EU declaration of conformity (Art 47)."


def p9(ev: SystemEvidence, sweeps: SweepEvidence | None = None) -> Point:
    card = ev.latest.card
    items: list[Item] = []
    gaps: list[Gap] = []
    pmm = card.post_market_monitoring
    if pmm is not None:
        rows = [("plan", pmm.plan)]
        if pmm.review_interval_days:
            rows.append(("review interval", f"{pmm.review_interval_days} days"))
        if pmm.metrics:
            rows.append(("metrics", ", ".join(pmm.metrics)))
        items.append(declared("Post-market monitoring plan (card)", Facts(tuple(rows))))
    else:
        gaps.append(card_gap("a post-market monitoring plan", "postMarketMonitoring.plan"))
    feeds: list[tuple[str, list[Entry]]] = [
        ("eval runs", [f.entry for f in ev.evals]),
        ("inference batches", [s.entry for s in ev.served]),
        ("oversight events", [f.entry for f in ev.oversight]),
        ("incidents", [f.entry for f in ev.incidents]),
    ]
    rows2 = []
    cited: list[Entry] = []
    for name, found in feeds:
        if found:
            newest = max(found, key=lambda e: e.index)
            rows2.append((name, str(len(found)), day(newest.logged_at)))
            cited.extend(found)
        else:
            rows2.append((name, "0", "-"))
    if sweeps is not None and sweeps.runs:
        entries = [r.entry for r in sweeps.runs]
        failed = sum(1 for r in sweeps.runs if r.predicate.status != "ok")
        rows2.append(
            (
                f"sweep runs, 30 days ({failed} failed)",
                str(len(entries)),
                day(entries[-1].logged_at),
            )
        )
        cited.extend(entries)
    if cited:
        items.append(
            collected(
                "Monitoring evidence in the log",
                cited,
                Table(("evidence", "entries", "newest"), tuple(rows2)),
            )
        )
    else:
        gaps.append(
            Gap(
                "the log holds no monitoring evidence of the system in operation",
                "log eval re-runs, inference logs, oversight events and incidents",
            )
        )
    if ev.incidents:
        newest_incident: dict[str, Found[IncidentPredicate]] = {}
        for f in ev.incidents:
            newest_incident[f.predicate.incident_id] = f
        rows3 = [
            (
                i,
                str(f.predicate.category),
                f.predicate.awareness_at,
                f.predicate.action,
                f.predicate.reported_at or "not reported",
            )
            for i, f in sorted(newest_incident.items())
        ]
        items.append(
            collected(
                "Incidents",
                [f.entry for f in ev.incidents],
                bounded(rows3, ("incident", "category", "aware", "latest action", "reported"), ""),
            )
        )
    if sweeps is not None:
        gaps.extend(sweeps.gaps)
    return point(
        "9",
        "Post-market monitoring",
        "The system for evaluating performance after placing on the market, including the "
        "post-market monitoring plan (Art 72).",
        items,
        gaps,
    )


def build_annex_iv(
    store: Store, system_id: str, *, at: int | None = None, now: datetime | None = None
) -> Document:
    """The Annex IV document of `system_id`, from the log as it stood at checkpoint `at`."""
    ev = gather(store, system_id, at=at)
    card = ev.latest.card
    until = (now or utc_now()) if at is None else ev.checkpoint.issued_at
    sweeps = sweep_evidence(store, system=system_id, size=ev.size, until=until)
    sections = (
        Section(
            "1 General description of the AI system",
            (p1a(ev), p1b(ev), p1c(ev), p1d(ev), p1e(ev), *p1f_to_h(ev)),
        ),
        Section(
            "2 Elements of the AI system and its development",
            (p2a(ev), p2b(ev), p2c(ev), p2d(ev), p2e(ev), p2f(ev), p2g(ev), p2h(ev)),
        ),
        Section("3 Monitoring, functioning and control", (p3(ev),)),
        Section("4 Performance metrics", (p4(ev),)),
        Section("5 Risk management", (p5(ev),)),
        Section("6 Lifecycle changes", (p6(ev),)),
        Section("7 Standards", (p7(ev),)),
        Section("8 EU declaration of conformity", (p8(ev),)),
        Section("9 Post-market monitoring", (p9(ev, sweeps),)),
    )
    return Document(
        kind="annex-iv",
        title=f"Technical documentation: {card.name}",
        subtitle=f"EU AI Act Annex IV, version {card.version}",
        generated_at=now or utc_now(),
        checkpoint=ev.checkpoint,
        sections=sections,
        system=system_ref(ev.latest),
        notes=(
            "Collected items are read from the signed log and cite their entries; declared items "
            "come from the system card and name its field; gaps say what is missing and how to "
            "supply it.",
            "GPU inventories are not tied to one system by their collector: every host's newest "
            "inventory is shown as the fleet.",
        ),
    )
