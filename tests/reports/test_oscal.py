"""OSCAL assessment-results from a real log, read as a GRC tool reads them: every observation is
an entry of the log whose proof verifies against the signed checkpoint with the trust file alone;
findings are the Annex IV points with what is missing written out; the same checkpoint gives the
same bytes; unknown systems and checkpoints are refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from trestle.oscal.assessment_results import AssessmentResults

from evidence.errors import InputError
from evidence.home import Home
from evidence.note import TlogProof
from evidence.verify import verify_entry
from reports.oscal import assessment_results, ms, to_json
from schemas.policy import EVAL_RUN
from tests.conftest import statement
from tests.reports.annex_iv_fixture import ADAPTER, SYSTEM, AnnexRig, Logged, populate
from tests.reports.oversight_fixture import Rig

NS = "https://annex.dev/ns/oscal"
REFS = (
    *(f"1({c})" for c in "abcdefgh"),
    *(f"2({c})" for c in "abcdefgh"),
    *(str(n) for n in range(3, 10)),
)


@pytest.fixture
def rig(home: Home, tmp_path: Path) -> Iterator[AnnexRig]:
    r = AnnexRig(home, tmp_path)
    yield r
    r.close()


@pytest.fixture
def logged(rig: AnnexRig) -> Logged:
    return populate(rig)


def export(rig: AnnexRig, at: int | None = None, **kwargs: Any) -> dict[str, Any]:
    doc = json.loads(to_json(assessment_results(rig.store, SYSTEM, at, **kwargs)))
    found: dict[str, Any] = doc["assessment-results"]
    return found


def props(obj: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in obj.get("props", []) if p.get("ns") == NS}


def resources(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["uuid"]: r for r in doc["back-matter"]["resources"]}


def findings(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["title"].split()[2].rstrip(":"): f for f in doc["results"][0]["findings"]}


def test_every_observation_is_a_logged_entry_whose_proof_verifies(
    rig: AnnexRig, logged: Logged
) -> None:
    doc = export(rig)
    result = doc["results"][0]
    size = rig.store.size()
    assert props(result)["checkpoint-size"] == str(size)
    assert props(result)["checkpoint-root"] == rig.store.checkpoint().root.hex()
    trust = rig.home.trust()
    back = resources(doc)
    seen = set()
    for obs in result["observations"]:
        p = props(obs)
        entry = rig.store.get(int(p["entry-index"]))
        assert p["leaf-hash"] == entry.leaf_hash.hex()
        assert p["predicate-type"] == entry.predicate_type
        assert p["signer-keyid"] == entry.keyid
        assert p["log-origin"] == rig.store.origin
        want = "TEST" if entry.predicate_type == EVAL_RUN else "EXAMINE"
        assert obs["methods"] == [want]
        (link,) = obs["links"]
        proof_text = base64.b64decode(back[link["href"].removeprefix("#")]["base64"]["value"])
        proof = TlogProof.parse(proof_text.decode())
        report = verify_entry(entry.envelope, proof, trust)  # raises unless it verifies
        assert (report.index, report.tree_size) == (entry.index, size)
        seen.add(entry.index)
    # the ones the Annex IV points cite, the eval run among them
    assert {logged.card, logged.gpu, logged.batch, logged.chain.adapter} <= seen
    assert logged.eval_run in seen


def test_findings_are_the_annex_iv_points_and_cite_their_observations(
    rig: AnnexRig, logged: Logged
) -> None:
    doc = export(rig)
    result = doc["results"][0]
    by_ref = findings(doc)
    assert list(by_ref) == list(REFS)
    observations = {o["uuid"]: props(o) for o in result["observations"]}
    for ref, finding in by_ref.items():
        target = finding["target"]
        assert target["type"] == "objective-id"
        assert target["target-id"].startswith("annex-iv-")
        coverage = props(finding)["coverage"]
        state = target["status"]["state"]
        assert state == ("satisfied" if coverage == "complete" else "not-satisfied"), ref
        assert {"complete": "implemented", "partial": "partial", "missing": "planned"}[
            coverage
        ] == target["implementation-status"]["state"]
        for related in finding.get("related-observations", []):
            assert related["observation-uuid"] in observations, ref
    cited_2g = {
        int(observations[r["observation-uuid"]]["entry-index"])
        for r in by_ref["2(g)"]["related-observations"]
    }
    assert logged.eval_run in cited_2g
    controls = result["reviewed-controls"]["control-selections"][0]["include-controls"]
    assert [c["control-id"] for c in controls] == [
        f["target"]["target-id"] for f in by_ref.values()
    ]


def test_missing_evidence_is_a_finding_that_says_what_is_missing(rig: AnnexRig) -> None:
    logged = populate(rig, evals=False, minimal_card=True)
    by_ref = findings(export(rig))
    g = by_ref["2(g)"]
    assert g["target"]["status"]["state"] == "not-satisfied"
    assert f"adapter {ADAPTER}" in g["remarks"] and "annex eval" in g["remarks"]
    assert logged.chain.adapter_digest[:12] in g["description"]
    f = by_ref["1(f)"]
    assert props(f)["coverage"] == "missing"
    assert f["target"]["implementation-status"]["state"] == "planned"
    assert "related-observations" not in f
    assert "documentation.productIllustrations" in f["remarks"]
    assert int(props(f)["gaps"]) == len(f["remarks"].splitlines())


def test_models_the_log_has_not_seen_are_gaps_of_2a(home: Home, tmp_path: Path) -> None:
    bare = Rig(home, tmp_path)
    try:
        bare.dataset("source: branch files\n")
        bare.card()
        doc = json.loads(to_json(assessment_results(bare.store, SYSTEM)))["assessment-results"]
    finally:
        bare.close()
    a = findings(doc)["2(a)"]
    assert a["target"]["status"]["state"] == "not-satisfied"
    assert "the log holds no manifest of base-model tiny-base" in a["remarks"]
    assert "annex collect model" in a["remarks"]


def test_the_same_checkpoint_gives_the_same_bytes(rig: AnnexRig, logged: Logged) -> None:
    size = rig.store.size()
    first = to_json(assessment_results(rig.store, SYSTEM))
    assert to_json(assessment_results(rig.store, SYSTEM)) == first
    rig.store.append([statement(7)])  # the log grows; the old checkpoint's export does not move
    assert to_json(assessment_results(rig.store, SYSTEM, size)) == first
    later = json.loads(to_json(assessment_results(rig.store, SYSTEM)))["assessment-results"]
    earlier = json.loads(first)["assessment-results"]
    assert later["uuid"] != earlier["uuid"]
    assert later["results"][0]["uuid"] != earlier["results"][0]["uuid"]
    # the same point and the same entry keep their uuids across checkpoints
    assert [f["uuid"] for f in later["results"][0]["findings"]] == [
        f["uuid"] for f in earlier["results"][0]["findings"]
    ]
    assert {o["uuid"] for o in earlier["results"][0]["observations"]} <= {
        o["uuid"] for o in later["results"][0]["observations"]
    }


def test_it_round_trips_through_trestle(rig: AnnexRig, logged: Logged, tmp_path: Path) -> None:
    text = to_json(assessment_results(rig.store, SYSTEM))
    path = tmp_path / "assessment-results.json"
    path.write_text(text)
    read = AssessmentResults.oscal_read(path)
    assert isinstance(read, AssessmentResults)
    assert read.oscal_serialize_json(pretty=True) + "\n" == text
    assert read.metadata.oscal_version.root.root.startswith("1.")


def test_times_are_cut_to_the_milliseconds_trestle_keeps() -> None:
    """trestle writes .000 for 412 µs and reads it back as a whole second: cut first."""
    moment = datetime(2026, 11, 24, 9, 0, 0, 412, tzinfo=UTC)
    assert ms(moment) == moment.replace(microsecond=0)
    assert ms(moment.replace(microsecond=81_501)).microsecond == 81_000


def test_the_entry_cap_keeps_the_newest_and_counts_the_rest(rig: AnnexRig, logged: Logged) -> None:
    everything = export(rig)["results"][0]
    total = len(everything["observations"])
    capped = export(rig, max_entries=3)
    result = capped["results"][0]
    kept = [int(props(o)["entry-index"]) for o in result["observations"]]
    every = sorted(int(props(o)["entry-index"]) for o in everything["observations"])
    assert kept == every[-3:]
    assert props(result)["cited-entries"] == str(total)
    assert props(result)["observed-entries"] == "3"
    left = [f for f in result["findings"] if "observations-left-out" in props(f)]
    assert left and all("entry cap" in f["description"] for f in left)
    assert len(resources(capped)) == 2 + 3  # scope, checkpoint, one proof per observation


def test_unknown_system_and_checkpoint_are_refused(rig: AnnexRig, logged: Logged) -> None:
    with pytest.raises(InputError, match=f"no system 'nope' in the log at .*systems: {SYSTEM}"):
        assessment_results(rig.store, "nope")
    with pytest.raises(InputError, match="no checkpoint was issued at tree size"):
        assessment_results(rig.store, SYSTEM, rig.store.size() + 5)
    with pytest.raises(InputError, match=f"no system '{SYSTEM}' in the log at checkpoint"):
        assessment_results(rig.store, SYSTEM, logged.size_before_eval)
