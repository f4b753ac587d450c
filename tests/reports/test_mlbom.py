"""The CycloneDX ML-BOM from a real log: schema-valid 1.6 JSON whose hashes are the logged digests,
each component naming the entry it came from; model cards with the eval results; the adapter ->
base -> dataset dependencies; the GPU host as a platform; the same checkpoint gives the same
bytes; unknown systems are refused."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.model.bom import Bom

from evidence.errors import InputError
from evidence.home import Home
from reports.mlbom import build_ml_bom, ml_bom, ml_bom_json, validate_json
from schemas.dataset import DATASET
from schemas.gpu import GPU_INVENTORY
from schemas.model import MODEL_MANIFEST
from tests.conftest import statement
from tests.reports.annex_iv_fixture import ADAPTER, BASE, SYSTEM, AnnexRig, Logged, populate
from tests.reports.oversight_fixture import ADAPTER_DIGEST, BASE_DIGEST, Rig


@pytest.fixture
def rig(home: Home, tmp_path: Path) -> Iterator[AnnexRig]:
    r = AnnexRig(home, tmp_path)
    yield r
    r.close()


@pytest.fixture
def logged(rig: AnnexRig) -> Logged:
    return populate(rig)


def bom_of(rig: AnnexRig, at: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ml_bom_json(rig.store, SYSTEM, at))
    return found


def props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def by_name(bom: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bom["components"]}


@cache
def _schema_validator() -> Any:
    """The library's own CycloneDX 1.6 schema, checked with jsonschema_rs (a dev dependency)."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    import cyclonedx

    res = Path(cyclonedx.__file__).parent / "schema" / "_res"
    base = "http://cyclonedx.org/schema/"
    text = (res / "bom-1.6.SNAPSHOT.schema.json").read_text()
    refs = {"spdx.SNAPSHOT.schema.json": "spdx", "jsf-0.82.SNAPSHOT.schema.json": "jsf-0.82"}
    for name, stem in refs.items():
        text = text.replace(f'"{name}', f'"{base}{stem}.schema.json')
    registry = jsonschema_rs.Registry(
        [
            (f"{base}{stem}.schema.json", json.loads((res / name).read_text()))
            for name, stem in refs.items()
        ]
    )
    return jsonschema_rs.validator_for(json.loads(text), registry=registry)


def schema_errors(bom: dict[str, Any]) -> list[str]:
    return [str(e).splitlines()[0] for e in _schema_validator().iter_errors(bom)]


def test_it_is_valid_cyclonedx_1_6(rig: AnnexRig, logged: Logged) -> None:
    text = ml_bom_json(rig.store, SYSTEM)
    bom = json.loads(text)
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    assert schema_errors(bom) == []
    # the library's own validator runs where its json-validation extra is installed
    assert validate_json(text) is (importlib.util.find_spec("jsonschema") is not None)
    broken = json.loads(text)
    broken["components"][0]["modelCard"] = {"bogus": 1}
    assert schema_errors(broken)  # the check does look at what we add


def test_hashes_are_the_logged_digests_and_name_their_entries(
    rig: AnnexRig, logged: Logged
) -> None:
    bom = bom_of(rig)
    components = by_name(bom)
    chain = logged.chain
    for name, digest, index, kind in (
        (BASE, chain.base_digest, chain.base, MODEL_MANIFEST),
        (ADAPTER, chain.adapter_digest, chain.adapter, MODEL_MANIFEST),
        ("support-tickets", chain.dataset_digest, chain.dataset, DATASET),
    ):
        c = components[name]
        assert c["hashes"] == [{"alg": "SHA-256", "content": digest}], name
        p = props(c)
        entry = rig.store.get(int(p["annex:entry-index"]))
        assert entry.index == index
        assert p["annex:leaf-hash"] == entry.leaf_hash.hex()
        assert p["annex:predicate-type"] == entry.predicate_type == kind
        assert entry.subjects[0].digest == digest
    assert components[BASE]["type"] == components[ADAPTER]["type"] == "machine-learning-model"
    assert components["support-tickets"]["type"] == "data"
    assert components["support-tickets"]["data"][0]["type"] == "dataset"
    system = bom["metadata"]["component"]
    assert props(system)["annex:entry-index"] == str(logged.card)
    assert props(system)["annex:system-id"] == SYSTEM


def test_model_files_are_nested_with_their_logged_hashes(rig: AnnexRig, logged: Logged) -> None:
    components = by_name(bom_of(rig))
    manifest = rig.store.get(logged.chain.base).statement["predicate"]["manifest"]["files"]
    files = components[BASE]["components"]
    assert [(f["name"], f["hashes"][0]["content"]) for f in files] == [
        (f["path"], f["sha256"]) for f in manifest
    ]
    assert all(f["type"] == "file" for f in files)
    data = components["support-tickets"]["data"][0]
    assert any(s.startswith("personal data") for s in data["sensitiveData"])


def test_components_the_log_has_not_seen_name_the_card(home: Home, tmp_path: Path) -> None:
    bare = Rig(home, tmp_path)
    try:
        bare.dataset("source: branch files\n")
        card = bare.card()
        bom = json.loads(ml_bom_json(bare.store, SYSTEM))
    finally:
        bare.close()
    components = by_name(bom)
    for name, digest in (("tiny-base", BASE_DIGEST), ("loan-lora", ADAPTER_DIGEST)):
        c = components[name]
        assert c["hashes"][0]["content"] == digest
        p = props(c)
        assert p["annex:entry-index"] == str(card)
        assert p["annex:manifest"].startswith("not in the log")
        assert "components" not in c
    assert schema_errors(bom) == []


def test_model_cards_carry_the_eval_results(rig: AnnexRig, logged: Logged) -> None:
    components = by_name(bom_of(rig))
    card = components[ADAPTER]["modelCard"]
    metrics = card["quantitativeAnalysis"]["performanceMetrics"]
    overall = next(m for m in metrics if m["slice"] == "annex_mc")
    assert (overall["type"], overall["value"]) == ("acc,none", "0.8125")
    low, high = (float(overall["confidenceInterval"][k]) for k in ("lowerBound", "upperBound"))
    assert low < 0.8125 < high
    assert {m["slice"] for m in metrics} >= {"annex_mc / lang=de", "annex_mc / lang=en"}
    eval_props = {p["name"]: p["value"] for p in card["properties"]}
    assert eval_props["annex:eval-entry-index"] == str(logged.eval_run)
    assert logged.eval_run is not None
    assert eval_props["annex:eval-leaf-hash"] == rig.store.get(logged.eval_run).leaf_hash.hex()
    assert eval_props["annex:eval-software"] == "lm-eval 0.4.8, transformers 4.46.0, torch 2.5.1"
    base_card = components[BASE]["modelCard"]
    assert "quantitativeAnalysis" not in base_card  # the run evaluated the adapter
    assert base_card["modelParameters"]["architectureFamily"]


def test_dependencies_run_adapter_to_base_and_datasets(rig: AnnexRig, logged: Logged) -> None:
    bom = bom_of(rig)
    refs = {c["name"]: c["bom-ref"] for c in bom["components"]}
    depends = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert depends[refs[ADAPTER]] == {refs[BASE], refs["support-tickets"]}
    assert depends[refs[BASE]] == set()  # the base was not made from this system's data
    system = bom["metadata"]["component"]["bom-ref"]
    assert depends[system] == {refs[BASE], refs[ADAPTER], refs["gpu-node-01"]}
    adapter_card = by_name(bom)[ADAPTER]["modelCard"]
    assert adapter_card["modelParameters"]["datasets"] == [{"ref": refs["support-tickets"]}]


def test_the_gpu_host_is_a_platform_with_its_devices(rig: AnnexRig, logged: Logged) -> None:
    host = by_name(bom_of(rig))["gpu-node-01"]
    assert host["type"] == "platform"
    p = props(host)
    assert int(p["annex:entry-index"]) == logged.gpu
    assert p["annex:predicate-type"] == GPU_INVENTORY
    assert p["annex:leaf-hash"] == rig.store.get(logged.gpu).leaf_hash.hex()
    (device,) = host["components"]
    assert device["type"] == "device" and "A100" in device["name"]


def test_the_same_checkpoint_gives_the_same_bytes(rig: AnnexRig, logged: Logged) -> None:
    size = rig.store.size()
    first = ml_bom_json(rig.store, SYSTEM)
    assert ml_bom_json(rig.store, SYSTEM) == first
    rig.eval_run(observed="2026-11-20T10:00:00Z")
    rig.store.append([statement(3)])
    assert ml_bom_json(rig.store, SYSTEM, size) == first
    later = json.loads(ml_bom_json(rig.store, SYSTEM))
    assert later["serialNumber"] != json.loads(first)["serialNumber"]
    card = by_name(later)[ADAPTER]["modelCard"]
    assert {p["name"]: p["value"] for p in card["properties"]}["annex:eval-runs"] == "2"


def test_the_library_bom_and_the_platform_cap(rig: AnnexRig, logged: Logged) -> None:
    bom = ml_bom(rig.store, SYSTEM)
    assert isinstance(bom, Bom)
    assert {c.name for c in bom.components} == {BASE, ADAPTER, "support-tickets", "gpu-node-01"}
    rig.gpu("gpu-node-02")
    capped = build_ml_bom(rig.store, SYSTEM, max_platforms=1)
    assert {c.name for c in capped.bom.components} >= {"gpu-node-02"}
    assert "gpu-node-01" not in {c.name for c in capped.bom.components}
    text = json.loads(capped.to_json())
    left = {p["name"]: p["value"] for p in text["metadata"]["properties"]}
    assert left["annex:platforms-left-out"] == "1"


def test_unknown_system_is_refused(rig: AnnexRig, logged: Logged) -> None:
    with pytest.raises(InputError, match=f"no system 'nope' in the log at .*systems: {SYSTEM}"):
        ml_bom_json(rig.store, "nope")
    with pytest.raises(InputError, match="no checkpoint was issued at tree size"):
        ml_bom_json(rig.store, SYSTEM, rig.store.size() + 5)
