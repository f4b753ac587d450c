"""A CycloneDX 1.6 ML-BOM of one AI system, read from the log at one checkpoint.

Components: the card's base model and adapters as machine-learning-model components (hash: the
manifest digest the log names them by; their files nested as file components, each with its
SHA-256), the card's datasets as data components (hash: their manifest digest; what the
datasheet says of personal data as `sensitiveData`), and each host's newest GPU inventory as a
platform component holding its GPUs as devices. Every component carries `annex:*` properties
naming the entry it came from: its index, RFC 9162 leaf hash and predicate type (a model the log
holds no manifest of names the card's entry, and says so). Dependencies: an adapter on its base
model; a model on the datasets a logged training run made it from; the card's other datasets on
the deployed model (the adapters, else the base); the system on its models and platforms.

cyclonedx-python-lib (11.x) has no model card or component data yet (its issues #912, #913), so
the library builds and serialises the BOM and `MlBom.to_json` adds `modelCard` (architecture,
datasets by reference, eval results as performance metrics) and `data` to the components it
names. The result is checked against the library's CycloneDX 1.6 JSON schema when the library's
`json-validation` extra is installed (`validate_json` returns False where it is not).

Deterministic: the serial number is a uuid5 over the log origin, system and checkpoint, the
timestamp is the checkpoint's, so two exports of one checkpoint are the same bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6

from evidence.entry import Entry
from evidence.store import Store
from reports.system_evidence import Found, SystemEvidence, gather
from schemas.dataset import DatasetPredicate
from schemas.eval_run import EvalRunPredicate
from schemas.gpu import GpuInventoryPredicate
from schemas.system_card import ResolvedComponent

MEDIA_TYPE = "application/vnd.cyclonedx+json; version=1.6"
_ROOT = uuid.UUID("0b8f3c55-2a4e-5d1c-8f0e-3c1d9a7e6b42")
Z95 = 1.96  # a 95% confidence interval from lm-eval's standard error


@dataclass
class MlBom:
    """The library's Bom, plus what the library cannot hold yet, keyed by component bom-ref."""

    bom: Bom
    model_cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    platforms_left_out: int = 0

    def to_json(self) -> str:
        """CycloneDX 1.6 JSON: the library's output with model cards and data added."""
        doc = json.loads(JsonV1Dot6(self.bom).output_as_string())
        for component in doc.get("components", []):
            ref = component.get("bom-ref")
            if ref in self.model_cards:
                component["modelCard"] = self.model_cards[ref]
            if ref in self.data:
                component["data"] = self.data[ref]
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def ml_bom(store: Store, system_id: str, at: int | None = None) -> Bom:
    """The library's Bom of the system (model cards and data: `build_ml_bom(...).to_json()`)."""
    return build_ml_bom(store, system_id, at).bom


def ml_bom_json(
    store: Store, system_id: str, at: int | None = None, *, max_platforms: int | None = None
) -> str:
    """The ML-BOM as CycloneDX 1.6 JSON, schema-checked where `validate_json` can."""
    text = build_ml_bom(store, system_id, at, max_platforms=max_platforms).to_json()
    validate_json(text)
    return text


def build_ml_bom(
    store: Store, system_id: str, at: int | None = None, *, max_platforms: int | None = None
) -> MlBom:
    """The system's ML-BOM at checkpoint `at`; at most `max_platforms` GPU hosts (None: all)."""
    ev = gather(store, system_id, at=at)
    out = MlBom(Bom())
    system = _system_component(ev)
    models = {c.digest: _model(ev, c) for c in _roles(ev, "base-model", "adapter")}
    datasets = {c.digest: _dataset(ev, c, out) for c in _roles(ev, "dataset")}
    gpus = ev.gpus if max_platforms is None else ev.gpus[len(ev.gpus) - max_platforms :]
    out.platforms_left_out = len(ev.gpus) - len(gpus)
    platforms = [_platform(f) for f in gpus]
    for component in [*models.values(), *datasets.values(), *platforms]:
        out.bom.components.add(component)
    out.bom.metadata = BomMetaData(
        component=system,
        timestamp=ev.checkpoint.issued_at,
        tools=ToolRepository(components=[_annex_tool()]),
        properties=_bom_properties(ev, out),
    )
    out.bom.serial_number = uuid.uuid5(
        _ROOT, f"{ev.checkpoint.origin}\n{system_id}\n{ev.checkpoint.size}"
    )
    used = _depend(ev, out.bom, system, models, datasets, platforms)
    for digest, component in models.items():
        made_from = [datasets[d] for d in used.get(digest, [])]
        out.model_cards[str(component.bom_ref)] = _model_card(ev, digest, made_from)
    return out


def validate_json(text: str) -> bool:
    """Checks CycloneDX 1.6 JSON against the library's schema: True when checked, False when the
    library's `json-validation` extra is not installed. A failure is a bug in this module."""
    from cyclonedx.exception import MissingOptionalDependencyException
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    try:
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    except MissingOptionalDependencyException:
        return False
    if error is not None:
        raise RuntimeError(f"the ML-BOM breaks the CycloneDX 1.6 schema: {error}")
    return True


# -- components ---------------------------------------------------------------------------------


def _roles(ev: SystemEvidence, *roles: str) -> list[ResolvedComponent]:
    return [c for c in ev.latest.predicate.components if c.role in roles]


def _sha256(digest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=digest)]


def _source(entry: Entry, prefix: str = "annex") -> list[Property]:
    """Where a component came from: the entry's index, leaf hash and predicate type."""
    return [
        Property(name=f"{prefix}:entry-index", value=str(entry.index)),
        Property(name=f"{prefix}:leaf-hash", value=entry.leaf_hash.hex()),
        Property(name=f"{prefix}:predicate-type", value=entry.predicate_type),
    ]


def _system_component(ev: SystemEvidence) -> Component:
    card = ev.latest.card
    return Component(
        type=ComponentType.APPLICATION,
        name=card.name,
        version=card.version,
        bom_ref=f"system-{card.id}",
        description=card.intended_purpose,
        supplier=OrganizationalEntity(name=card.provider.name),
        properties=[Property(name="annex:system-id", value=card.id), *_source(ev.latest.entry)],
    )


def _model(ev: SystemEvidence, c: ResolvedComponent) -> Component:
    """A model or adapter; its files, each with its SHA-256, as nested file components."""
    found = ev.manifests.get(c.digest, [])
    ref = f"model-{c.digest}"
    props = [Property(name="annex:role", value=c.role)]
    files: list[Component] = []
    if found:
        newest = found[-1]
        p = newest.predicate
        props += _source(newest.entry)
        props.append(
            Property(name="annex:model-signing-digest", value=p.manifest.model_signing_digest)
        )
        if p.parameters:
            props.append(Property(name="annex:parameters", value=str(p.parameters)))
        files = [
            Component(
                type=ComponentType.FILE,
                name=f.path,
                bom_ref=f"{ref}/{f.path}",
                hashes=_sha256(f.sha256),
                properties=[Property(name="annex:size", value=str(f.size))],
            )
            for f in p.manifest.files
        ]
    else:
        props += _source(ev.latest.entry)
        props.append(
            Property(name="annex:manifest", value="not in the log: digest from the system card")
        )
    for release in ev.releases.get(c.digest, []):
        props.append(Property(name="annex:release-entry", value=str(release.entry.index)))
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=c.name,
        bom_ref=ref,
        hashes=_sha256(c.digest),
        properties=props,
        components=files,
    )


def _dataset(ev: SystemEvidence, c: ResolvedComponent, out: MlBom) -> Component:
    found = ev.datasets.get(c.digest, [])
    ref = f"data-{c.digest}"
    props = [Property(name="annex:role", value=c.dataset_role or "dataset")]
    description = None
    if found:
        newest = found[-1]
        p = newest.predicate
        props += _source(newest.entry)
        if p.records is not None:
            props.append(Property(name="annex:records", value=str(p.records)))
        if p.licence:
            props.append(Property(name="annex:licence", value=p.licence))
        if p.personal_data is not None:
            props.append(Property(name="annex:personal-data", value=str(p.personal_data).lower()))
        description = p.description
        out.data[ref] = [_data(c.name, p)]
    else:
        props += _source(ev.latest.entry)
        props.append(
            Property(name="annex:snapshot", value="not in the log: digest from the system card")
        )
    return Component(
        type=ComponentType.DATA,
        name=c.name,
        bom_ref=ref,
        hashes=_sha256(c.digest),
        description=description,
        properties=props,
    )


def _data(name: str, p: DatasetPredicate) -> dict[str, Any]:
    """CycloneDX componentData: what the datasheet says of the data, personal data included."""
    data: dict[str, Any] = {"type": "dataset", "name": name}
    if p.description:
        data["description"] = p.description
    sensitive = []
    if p.personal_data:
        sensitive.append(
            "personal data" + (f" (GDPR Art 6: {p.legal_basis})" if p.legal_basis else "")
        )
    sensitive += [f"special category (GDPR Art 9): {c}" for c in p.special_categories or ()]
    if sensitive:
        data["sensitiveData"] = sensitive
    return data


def _reading(value: object) -> str | None:
    got = getattr(value, "value", None)
    return None if got is None else str(got)


def _platform(found: Found[GpuInventoryPredicate]) -> Component:
    p = found.predicate
    props = [*_source(found.entry), Property(name="annex:nvml-status", value=p.status)]
    for name, value in (
        ("annex:os", p.host.os),
        ("annex:kernel", p.host.kernel),
        ("annex:site", p.site.site),
        ("annex:driver-version", _reading(p.driver_version)),
        ("annex:cuda-driver-version", _reading(p.cuda_driver_version)),
        ("annex:observed-at", p.observed_at),
    ):
        if value:
            props.append(Property(name=name, value=value))
    ref = f"platform-{p.host.hostname}"
    devices = [
        Component(
            type=ComponentType.DEVICE,
            name=_reading(d.name) or f"GPU {d.index}",
            bom_ref=f"{ref}-gpu-{d.index}",
            properties=[
                Property(name=k, value=v)
                for k, v in (
                    ("annex:gpu-index", str(d.index)),
                    ("annex:vbios-version", _reading(d.vbios_version)),
                    ("annex:memory-total-bytes", _reading(d.memory_total_bytes)),
                    ("annex:compute-capability", _reading(d.compute_capability)),
                )
                if v
            ],
        )
        for d in p.devices
    ]
    return Component(
        type=ComponentType.PLATFORM,
        name=p.host.hostname,
        bom_ref=ref,
        description="GPU host, newest inventory (self-reported by NVML, not hardware attestation)",
        properties=props,
        components=devices,
    )


def _annex_tool() -> Component:
    try:
        version = metadata.version("annex")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return Component(type=ComponentType.APPLICATION, name="annex", version=version)


def _bom_properties(ev: SystemEvidence, out: MlBom) -> list[Property]:
    cp = ev.checkpoint
    props = [
        Property(name="annex:log-origin", value=cp.origin),
        Property(name="annex:checkpoint-size", value=str(cp.size)),
        Property(name="annex:checkpoint-root", value=cp.root_hex),
    ]
    if out.platforms_left_out:
        props.append(Property(name="annex:platforms-left-out", value=str(out.platforms_left_out)))
    return props


# -- dependencies and model cards ---------------------------------------------------------------


def _depend(
    ev: SystemEvidence,
    bom: Bom,
    system: Component,
    models: dict[str, Component],
    datasets: dict[str, Component],
    platforms: list[Component],
) -> dict[str, list[str]]:
    """Registers the dependencies; returns model digest -> the dataset digests it depends on."""
    bases = [models[c.digest] for c in _roles(ev, "base-model")]
    adapters = [c.digest for c in _roles(ev, "adapter")]
    for digest in adapters:
        bom.register_dependency(models[digest], bases)
    used = {m: sorted(d) for m, d in _trained_on(ev, set(models), set(datasets)).items()}
    linked = {d for found in used.values() for d in found}
    rest = [d for d in datasets if d not in linked]
    for digest in adapters or [c.digest for c in _roles(ev, "base-model")]:
        used[digest] = sorted({*used.get(digest, []), *rest})
    for digest, found in used.items():
        bom.register_dependency(models[digest], [datasets[d] for d in found])
    bom.register_dependency(system, [*models.values(), *platforms])
    return used


def _trained_on(ev: SystemEvidence, models: set[str], datasets: set[str]) -> dict[str, set[str]]:
    """Model digest -> the BOM's datasets a logged training run made it from."""
    out: dict[str, set[str]] = {}
    for f in ev.training:
        made = f.predicate.output.digest.get("sha256")
        if made not in models:
            continue
        used = {d.digest.get("sha256") for d in f.predicate.datasets} & datasets
        out.setdefault(made, set()).update(d for d in used if d is not None)
    return out


def _model_card(ev: SystemEvidence, digest: str, datasets: list[Component]) -> dict[str, Any]:
    card: dict[str, Any] = {}
    params: dict[str, Any] = {}
    found = ev.manifests.get(digest, [])
    config = found[-1].predicate.config if found else None
    if config is not None and config.model_type:
        params["architectureFamily"] = config.model_type
    if config is not None and config.architectures:
        params["modelArchitecture"] = ", ".join(config.architectures)
    if datasets:
        params["datasets"] = [{"ref": str(c.bom_ref)} for c in datasets]
    if params:
        card["modelParameters"] = params
    runs = [f for f in ev.evals if f.predicate.evaluated.manifest_digest == digest]
    if runs:
        newest = runs[-1]
        card["quantitativeAnalysis"] = {"performanceMetrics": _metrics(newest.predicate)}
        card["properties"] = _eval_properties(newest, len(runs))
    intended = ev.latest.card.intended_purpose
    if intended:
        card["considerations"] = {"useCases": [intended]}
    return card


def _eval_properties(run: Found[EvalRunPredicate], count: int) -> list[dict[str, str]]:
    """Which eval run the metrics are from, and what it ran on."""
    p = run.predicate
    found = [
        ("annex:eval-entry-index", str(run.entry.index)),
        ("annex:eval-leaf-hash", run.entry.leaf_hash.hex()),
        ("annex:eval-runs", str(count)),
        ("annex:confidence-interval", "95%: value ± 1.96 × lm-eval stderr"),
    ]
    stack = [
        f"{name} {version}"
        for name, version in (
            ("lm-eval", p.versions.lm_eval),
            ("transformers", p.versions.transformers),
            ("torch", p.versions.torch),
        )
        if version
    ]
    if stack:
        found.append(("annex:eval-software", ", ".join(stack)))
    if p.gpu is not None and p.gpu.devices:
        found.append(("annex:eval-gpus", ", ".join(p.gpu.devices)))
    return [{"name": name, "value": value} for name, value in found]


def _metrics(p: EvalRunPredicate) -> list[dict[str, Any]]:
    """lm-eval's numeric results as performance metrics: task (and group) as the slice."""
    out: list[dict[str, Any]] = []
    for task, metrics in sorted(p.results.items()):
        out += _task_metrics(task, metrics)
    for task, groups in sorted(p.groups.items()):
        for group, metrics in sorted(groups.items()):
            out += _task_metrics(f"{task} / {group}", metrics)
    return out


def _task_metrics(slice_: str, metrics: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for name, value in sorted(metrics.items()):
        if "_stderr" in name or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        metric: dict[str, Any] = {"type": name, "value": f"{value:g}", "slice": slice_}
        stderr = metrics.get(name.replace(",", "_stderr,", 1) if "," in name else name + "_stderr")
        if isinstance(stderr, int | float) and not isinstance(stderr, bool):
            metric["confidenceInterval"] = {
                "lowerBound": f"{value - Z95 * stderr:g}",
                "upperBound": f"{value + Z95 * stderr:g}",
            }
        yield metric
