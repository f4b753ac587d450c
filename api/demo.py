"""`annex demo`: a signed store from real collectors and example evidence, gated and verified.

What is real: the GPU inventory of the host the demo runs on (on a host without a GPU, the
recorded absence, never made-up cards), a small generated model and LoRA adapter (seeded
safetensors files, api/demo_model.py) collected, bound and signed for release, and two gate runs
over them. What is illustrative: the dataset, eval-run, inference and oversight statements, whose
collectors come later; their predicates say so, and they name made-up subjects, never the demo
model, so no gate can be satisfied by them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from api.cli_oversight import reviewer_pseudonyms
from api.cli_sign import sign_release
from api.demo_data import (
    DATASET_NAME,
    DEMO_SYSTEM,
    write_dataset,
    write_inference_log,
    write_oversight_feed,
    write_system_card,
)
from api.demo_model import (
    ADAPTER_NAME,
    BASE_NAME,
    EVAL_MODEL_NAME,
    write_adapter,
    write_base_model,
    write_eval_model,
)
from collectors.datasets import describe, take_snapshot
from collectors.datasets import statement_of as dataset_statement
from collectors.erasure import erase
from collectors.evals import run_eval
from collectors.gpu import collect_gpu
from collectors.hashing import build_manifest
from collectors.inference_log import DEFAULT_CLASS, RetentionPolicy, ingest
from collectors.inference_proof import prove_line, read_content
from collectors.models import BaseRef, collect_model
from collectors.nvml import load_pynvml
from collectors.oversight import ingest_feed
from collectors.system_card import card_statement, read_card, resolve_components
from collectors.training import RunFacts, resolve_dataset, resolve_manifest, training_run
from evidence.blobs import BlobStore
from evidence.canonical import canonical_bytes
from evidence.dsse import Envelope, sign_envelope
from evidence.entry import rfc3339
from evidence.errors import AuthorityError, ConfigError, InputError
from evidence.home import Home
from evidence.keys import Signer, utc_now
from evidence.model_signature import release_statement
from evidence.note import TlogProof
from evidence.store import Store
from evidence.vault import Vault
from evidence.verify import verify_entry, verify_log
from reports.document import Coverage
from reports.gate import Verdict, run_gate
from reports.policy import default_requirement, parse_policy, requirement_of
from schemas.gpu import GPU_INVENTORY, SiteLabels
from schemas.statement import STATEMENT_TYPE, predicate_type

MARKER = ".annex-demo"
ORIGIN = "demo.annex.invalid/log"
CALLER = "caller-1@example.invalid"
ILLUSTRATIVE = "illustrative example from `annex demo`; this kind's collector comes later"

Say = Callable[[str], None]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _statement(kind: str, name: str, observed: str, **predicate: Any) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": _digest(name + kind)}}],
        "predicateType": predicate_type(kind),
        "predicate": {"observedAt": observed, "example": ILLUSTRATIVE, **predicate},
    }


def example_batches() -> list[list[dict[str, Any]]]:
    """Evidence of kinds not collected yet, as later collectors will log it."""
    lineage = [
        _statement(
            "eval-run",
            "eval:cv-screening-mc-2026-11-02",
            "2026-11-02T09:30:00Z",
            task="cv-screening-mc",
            metrics={"acc": 0.87, "acc_stderr": 0.011},
        ),
    ]
    return [lineage]


def _prepare(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise ConfigError(f"{path} exists and is not an earlier demo: pass --home NEWDIR")
        shutil.rmtree(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    (path / MARKER).write_text("made by `annex demo`; safe to delete\n")


def run(path: Path, say: Say | None, *, site: SiteLabels | None = None) -> dict[str, Any]:
    """Builds the demo store under `path` and returns what was done."""
    tell = say or (lambda _msg: None)
    _prepare(path)
    home = Home(path)
    home.init(ORIGIN, model_signing_name="demo.annex.invalid/model-signing")
    tell(f"created a log at {path} (origin {ORIGIN}) with a log key and a model-signing key")
    gpu = _collect_gpu(home, site or SiteLabels(site="annex-demo"), tell)
    base, adapter = _collect_models(home, path / "models", tell)
    _collect_lineage(home, path / "data", tell)
    base_release = sign_release(home, base, approver="demo release manager")
    release = sign_release(home, adapter, approver="demo release manager")
    tell(
        f"signed both for release: entries {base_release.index} and {release.index}, "
        f"signature files {base_release.signature.name} beside each"
    )
    old, new = home.rotate(reason="demo: scheduled rotation")
    tell(f"rotated the log key: {old.keyid[:16]} retired, {new.keyid[:16]} active")
    erasure = _inference_and_oversight(home, path / "logs", tell)
    evaluated = _evaluate(home, path / "models", tell)
    passed, failed = _gates(home, adapter, base, tell)
    authority = _authority(home, base, site or SiteLabels(site="annex-demo"), tell)
    dossiers = _reports(home, path, base=base, adapter=adapter, tell=tell)
    with home.open_store() as store:
        exported = _export(store, path / "exports", index=release.index)
        grc = _grc_exports(store, path / "exports", tell)
    tell(f"exported the adapter's release (entry {release.index}) with its proof")
    trust = home.trust()
    report = verify_entry(exported.envelope, exported.proof, trust)
    tell(f"offline check of entry {report.index}: ok (tree size {report.tree_size})")
    with home.open_store() as store:
        log = verify_log(store, trust)
    tell(f"full verification: {log.size} entries, {log.signatures} signatures, ok")
    _next_steps(path, adapter, exported, tell)
    return {
        "home": str(path),
        "origin": ORIGIN,
        "entries": log.size,
        "signatures_checked": log.signatures,
        "checkpoints_checked": log.checkpoints,
        "gpu": gpu,
        "models": {"base": str(base), "adapter": str(adapter)},
        "releases": {"base": base_release.index, "adapter": release.index},
        "gate": {"passed": passed.to_json(), "failed": failed.to_json()},
        "authority": authority,
        "erasure": erasure,
        "eval": evaluated,
        "reports": dossiers,
        "grc_exports": grc,
        "exported_envelope": str(exported.envelope_path),
        "exported_proof": str(exported.proof_path),
        "checkpoint": log.latest_checkpoint,
    }


def _collect_gpu(home: Home, site: SiteLabels, tell: Say) -> dict[str, Any]:
    """This host's real GPU inventory, or the recorded reason there is none."""
    statement = collect_gpu(load_pynvml(), site=site)
    with home.open_store(write=True) as store:
        index = store.append([statement]).first_index
    predicate = statement["predicate"]
    if predicate["status"] == "ok":
        names = ", ".join(d["name"].get("value", "?") for d in predicate["devices"])
        tell(f"GPU inventory of this host: {names} (entry {index})")
    else:
        tell(f"GPU inventory of this host: none ({predicate['reason']}); recorded at entry {index}")
    return {"index": index, "status": predicate["status"], "reason": predicate["reason"]}


def _authority(home: Home, base: Path, site: SiteLabels, tell: Say) -> dict[str, Any]:
    """A GPU node's collector key, registered for GPU inventory: its inventory is logged, and
    the model release it tries to sign is refused, since only the model-signing key may."""
    node = Signer.generate("gpu-node-1.demo")
    key = home.add_collector_key(node.name, node.public_bytes, [GPU_INVENTORY])
    inventory = sign_envelope(
        canonical_bytes(collect_gpu(load_pynvml(), site=site), what="inventory"), node
    )
    manifest = build_manifest(base, cache=None, full=True)
    forged = release_statement(
        manifest,
        name=base.name,
        kind="model",
        approved_by="gpu-node-1.demo",
        observed_at=rfc3339(utc_now()),
        signing_keyid=home.model_signer().key.keyid,
        bundle=b"",
    )
    with home.open_store(write=True) as store:
        index = store.append_envelopes([inventory], labels=["node inventory"]).first_index
        try:
            store.append_envelopes([sign_envelope(canonical_bytes(forged), node)])
        except AuthorityError as exc:
            refused = str(exc)
        else:  # pragma: no cover - the authority table says it cannot
            raise AssertionError("a collector key logged a model release")
    tell(
        f"collector key {key.keyid[:16]} (gpu-node-1.demo, may sign: gpu-inventory): its "
        f"inventory logged at entry {index}; its forged model release refused: {refused}"
    )
    return {"collector": key.keyid, "inventory": index, "forged_release": refused}


def _collect_models(home: Home, directory: Path, tell: Say) -> tuple[Path, Path]:
    """Generates the base model and the adapter, logs their manifests, the adapter bound."""
    base = write_base_model(directory / BASE_NAME)
    adapter = write_adapter(directory / ADAPTER_NAME, base_name=BASE_NAME)
    with home.open_store(write=True) as store:
        base_statement = collect_model(base)
        base_index = store.append([base_statement]).first_index
        digest = base_statement["subject"][0]["digest"]["sha256"]
        bound = BaseRef(BASE_NAME, digest, base_index)
        adapter_index = store.append([collect_model(adapter, base=bound)]).first_index
    tell(f"generated a model and a LoRA adapter under {directory}")
    tell(f"  model {BASE_NAME}: manifest sha256:{digest[:16]}… at entry {base_index}")
    tell(f"  adapter {ADAPTER_NAME}: bound to that base, at entry {adapter_index}")
    return base, adapter


def _collect_lineage(home: Home, directory: Path, tell: Say) -> None:
    """A generated dataset, and the training run that made the adapter from it and the base."""
    data = write_dataset(directory / DATASET_NAME)
    with home.open_store(write=True) as store:
        dataset_index = store.append([dataset_statement(describe(take_snapshot(data)))]).first_index
        run = training_run(
            [resolve_dataset(store, DATASET_NAME)],
            resolve_manifest(store, BASE_NAME, kinds=("model",), what="base"),
            resolve_manifest(store, ADAPTER_NAME, kinds=("adapter",), what="output"),
            RunFacts(
                tokens=200 * 12,
                energy_source="unknown",
                energy_note="demo: nothing was trained; the adapter weights are generated",
                hyperparameters={"rank": 8, "alpha": 16, "epochs": 1},
            ),
        )
        run_index = store.append([run]).first_index
    tell(f"dataset {DATASET_NAME} (200 records, datasheet) at entry {dataset_index}")
    tell(f"training run: dataset + {BASE_NAME} -> {ADAPTER_NAME} at entry {run_index}")


DEMO_POLICY = """\
version: 1
require:
  all_of:
    - signed: {signature_file: true}   # a trusted release of these files, model.sig beside them
    - lineage: {}                      # the training run that made it is recorded
"""


def _inference_and_oversight(home: Home, directory: Path, tell: Say) -> dict[str, Any]:
    """A gateway log with content retained, reviewers overseeing it, then one caller erased."""
    directory.mkdir()
    start = utc_now().replace(microsecond=0) - timedelta(hours=2)
    log_file = write_inference_log(directory / "gateway.jsonl", model=ADAPTER_NAME, start=start)
    policy = RetentionPolicy(content=True, name=DEFAULT_CLASS, days=184)
    vault_dir, blobs = home.path / "vault", BlobStore(home.path / "blobs")
    with home.open_store(write=True) as store, Vault.open(vault_dir) as vault:
        batch = ingest(store, vault, blobs, log_file, retention=policy, now=utc_now()).first_index
        if batch is None:  # a fresh demo log never holds this file already
            raise ConfigError(f"{log_file} was logged before: not a fresh demo directory")
        proof = prove_line(store, blobs, batch, 7)
        retained = len(read_content(store, vault, blobs, batch, CALLER))
    tell(
        f"inference log: 60 requests at entry {batch}, texts encrypted per caller in the vault; "
        f"line 7 proven in the batch's tree of {proof.size}"
    )
    feed = write_oversight_feed(directory / "oversight.jsonl", batch=batch, start=start)
    with home.open_store(write=True) as store, reviewer_pseudonyms(home) as pseudonymise:
        reviewed = ingest_feed(
            store, feed.read_bytes(), source=str(feed), pseudonymise=pseudonymise, now=utc_now()
        )
    tell(f"oversight: review, override, approve of that batch from entry {reviewed.first_index}")
    with home.open_store(write=True) as store, Vault.open(vault_dir) as vault:
        receipt = erase(store, vault, CALLER, reason="demo: data subject request", now=utc_now())
        try:
            read_content(store, vault, blobs, batch, CALLER)
            readable = True
        except InputError:
            readable = False
    tell(
        f"erased {CALLER}: keys destroyed, receipt at entry {receipt.entry}; "
        f"its {retained} retained lines are {'STILL READABLE' if readable else 'unrecoverable'}"
    )
    return {"batch": batch, "receipt": receipt.entry, "content_readable": readable}


def _evaluate(home: Home, directory: Path, tell: Say) -> dict[str, Any]:
    """An lm-eval run of a tiny GPT-2 on a bundled task, when the eval extra is installed."""
    if find_spec("lm_eval") is None or find_spec("transformers") is None:
        with home.open_store(write=True) as store:
            index = store.append(example_batches()[0]).first_index
        tell(
            "eval run skipped: the eval extra is not installed (pip install torch==2.13.0 && "
            f"pip install -e '.[eval]'); an illustrative eval-run statement at entry {index}"
        )
        return {"run": False, "index": index}
    model = write_eval_model(directory / EVAL_MODEL_NAME)
    outcome = run_eval(model, tasks=["annex_mc"])
    with home.open_store(write=True) as store:
        manifest_index = store.append([collect_model(model)]).first_index
        BlobStore(home.path / "blobs").put(outcome.samples)
        index = store.append([outcome.statement]).first_index
    accuracy = outcome.predicate.results["annex_mc"]["acc,none"]
    tell(
        f"eval: lm-eval ran the bundled task annex_mc on a tiny generated GPT-2 (manifest at "
        f"entry {manifest_index}): acc {accuracy:.2f}, logged at entry {index}"
    )
    return {"run": True, "index": index, "accuracy": accuracy}


def _gates(home: Home, adapter: Path, base: Path, tell: Say) -> tuple[Verdict, Verdict]:
    """The gate passes on the signed adapter, and fails once one byte of the base changes."""
    policy_file = home.path / "gate-policy.yaml"
    policy_file.write_text(DEMO_POLICY, encoding="utf-8")
    policy = requirement_of(parse_policy(DEMO_POLICY, source=str(policy_file)).require)
    with home.open_store() as store:
        passed = run_gate(adapter, policy, store=store, trust=home.trust(), policy=str(policy_file))
        verdict = "PASS" if passed.passed else "FAIL"
        tell(f"gate on {adapter.name} (signed, lineage recorded): {verdict}")
        weights = base / "model.safetensors"
        original = weights.read_bytes()
        changed = bytearray(original)
        changed[-1] ^= 0x01
        weights.write_bytes(bytes(changed))
        try:
            failed = run_gate(
                base, default_requirement(), store=store, trust=home.trust(), policy="default"
            )
        finally:
            weights.write_bytes(original)
    reasons = "; ".join(f.outcome.reason for f in failed.failures())
    tell(f"gate on {base.name} with one byte of model.safetensors changed: FAIL ({reasons})")
    tell("  (the byte is restored)")
    return passed, failed


def _reports(home: Home, path: Path, *, base: Path, adapter: Path, tell: Say) -> dict[str, Any]:
    """The demo system's card, then its Annex IV dossier and a week of oversight, verified."""
    from reports.annex_iv import build_annex_iv
    from reports.bundle import verify_dossier
    from reports.dossier import issue
    from reports.oversight import build_oversight

    card = write_system_card(
        path / "system-card.yaml", base=base, adapter=adapter, dataset=path / "data" / DATASET_NAME
    )
    loaded = read_card(card)
    out = path / "reports"
    out.mkdir(exist_ok=True)
    trust_json = home.trust_path.read_bytes()
    today = utc_now().replace(hour=0, minute=0, second=0, microsecond=0)
    with home.open_store(write=True) as store:
        components = resolve_components(loaded, store)
        card_index = store.append(
            [card_statement(loaded, components, previous_entry=None)]
        ).first_index
        tell(f"system {DEMO_SYSTEM}: card {card.name} logged at entry {card_index}")
        dossier = issue(
            store, build_annex_iv(store, DEMO_SYSTEM), out / "annex-iv.pdf", trust_json=trust_json
        )
        week = build_oversight(
            store, DEMO_SYSTEM, today - timedelta(days=6), today + timedelta(days=1)
        )
        oversight = issue(store, week, out / "oversight.pdf", trust_json=trust_json)
    c = dossier.coverage
    tell(
        f"Annex IV dossier {dossier.pdf.name}: {c[Coverage.COMPLETE]} points complete, "
        f"{c[Coverage.PARTIAL]} partial, {c[Coverage.MISSING]} missing, {dossier.gaps} gaps "
        f"listed; {dossier.citations} entries cited; logged at entry {dossier.index}"
    )
    tell(f"oversight report {oversight.pdf.name}: logged at entry {oversight.index}")
    checked = verify_dossier(
        dossier.pdf, trust=home.trust(), beside=dossier.bundle, receipt=dossier.receipt
    )
    tell(
        f"offline check of {dossier.pdf.name}: ok ({checked.entries_checked} cited entries proven)"
    )
    return {
        "annex_iv": dossier.to_json(),
        "oversight": oversight.to_json(),
        "card_entry": card_index,
    }


def _next_steps(path: Path, adapter: Path, exported: Exported, tell: Say) -> None:
    tell("")
    tell("try next:")
    tell(f"  annex --help; annex log checkpoint --home {path}")
    tell(f"  annex gate {adapter} --policy {path / 'gate-policy.yaml'} --home {path}")
    tell(
        f"  annex verify-entry {exported.envelope_path} {exported.proof_path} "
        f"--trust {path / 'trust.json'}"
    )
    tell(
        f"  annex verify-dossier {path / 'reports' / 'annex-iv.pdf'} --trust {path / 'trust.json'}"
    )
    tell(f"  annex report annex-iv --system {DEMO_SYSTEM} -o dossier.pdf --home {path}")
    tell(f"  annex export oscal --system {DEMO_SYSTEM} -o assessment.json --home {path}")


def _grc_exports(store: Store, directory: Path, tell: Say) -> dict[str, Any]:
    """What a GRC tool imports: OSCAL assessment results and a CycloneDX ML-BOM of the system."""
    from reports.mlbom import build_ml_bom, validate_json
    from reports.oscal import assessment_results, to_json
    from reports.render import write_atomically

    directory.mkdir(exist_ok=True)
    results = assessment_results(store, DEMO_SYSTEM)
    oscal_path = directory / "assessment-results.json"
    write_atomically(oscal_path, to_json(results).encode())
    (result,) = results.results
    bom = build_ml_bom(store, DEMO_SYSTEM)
    bom_text = bom.to_json()
    validated = validate_json(bom_text)
    bom_path = directory / "mlbom.cdx.json"
    write_atomically(bom_path, bom_text.encode())
    components = len(bom.bom.components)
    tell(
        f"OSCAL assessment results {oscal_path.name}: {len(result.findings or [])} findings, "
        f"{len(result.observations or [])} observations; CycloneDX ML-BOM {bom_path.name}: "
        f"{components} components" + (" (schema-checked)" if validated else "")
    )
    return {
        "oscal": str(oscal_path),
        "findings": len(result.findings or []),
        "mlbom": str(bom_path),
        "components": components,
        "mlbom_schema_checked": validated,
    }


@dataclass(frozen=True)
class Exported:
    """One entry as an auditor would receive it: its envelope and its tlog-proof, on disk."""

    envelope: Envelope
    proof: TlogProof
    envelope_path: Path
    proof_path: Path


def _export(store: Store, directory: Path, *, index: int) -> Exported:
    directory.mkdir(exist_ok=True)
    out = Exported(
        envelope=store.get(index).envelope,
        proof=store.inclusion_proof(index),
        envelope_path=directory / f"entry-{index}.dsse.json",
        proof_path=directory / f"entry-{index}.tlog-proof",
    )
    out.envelope_path.write_text(json.dumps(out.envelope.to_dict(), indent=2) + "\n")
    out.proof_path.write_text(out.proof.format())
    return out
