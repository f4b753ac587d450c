"""`annex export oscal | mlbom` as a user runs them, and the same exports over the REST API: the
bytes the Python API builds, to stdout or atomically to a file, nothing appended, and refusals
(unknown system, checkpoint or directory) with exit 2 or a problem body."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import routes_exports
from api.app import create_app
from api.auth import TokenFile
from evidence.home import Home
from reports.mlbom import ml_bom_json
from reports.oscal import assessment_results, to_json
from tests.api.conftest import Annex, log_size
from tests.reports.annex_iv_fixture import SYSTEM, AnnexRig, Logged, populate

API = "/api/v1"


@dataclass(frozen=True)
class Exported:
    """A data directory holding the Annex IV story, and the exports the Python API makes of it."""

    path: Path
    logged: Logged
    size: int
    oscal: str
    mlbom: str
    oscal_early: str  # at checkpoint `early`
    early: int


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    tmp = tmp_path_factory.mktemp("export")
    home = Home(tmp / "annex")
    home.init("test.example/log")
    rig = AnnexRig(home, tmp)
    try:
        logged = populate(rig)
        early = rig.store.size()
        rig.gpu("gpu-node-02")  # the log grows past the checkpoint `early`
        store = rig.store
        made = Exported(
            path=home.path,
            logged=logged,
            size=store.size(),
            oscal=to_json(assessment_results(store, SYSTEM)),
            mlbom=ml_bom_json(store, SYSTEM),
            oscal_early=to_json(assessment_results(store, SYSTEM, early)),
            early=early,
        )
    finally:
        rig.close()
    return made


@pytest.fixture
def annex(exported: Exported, annex_at: Callable[[Path], Annex]) -> Annex:
    return annex_at(exported.path)


# -- the CLI -------------------------------------------------------------------------------------


def test_export_oscal_prints_the_document_and_appends_nothing(
    annex: Annex, exported: Exported
) -> None:
    done = annex("export", "oscal", "--system", SYSTEM)
    assert done.code == 0, done.err
    assert done.out == exported.oscal
    assert "assessment-results" in json.loads(done.out)
    assert log_size(exported.path) == exported.size


def test_export_mlbom_writes_the_file_atomically(
    annex: Annex, exported: Exported, tmp_path: Path
) -> None:
    out = tmp_path / "system.cdx.json"
    done = annex("export", "mlbom", "--system", SYSTEM, "-o", out)
    assert done.code == 0, done.err
    assert done.out == ""
    assert f"wrote {out}" in done.err
    assert out.read_text() == exported.mlbom
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    assert json.loads(out.read_text())["specVersion"] == "1.6"


def test_export_at_a_checkpoint_is_that_checkpoints_document(
    annex: Annex, exported: Exported
) -> None:
    done = annex.fast("export", "oscal", "--system", SYSTEM, "--at", str(exported.early))
    assert done.code == 0, done.err
    assert done.out == exported.oscal_early
    assert done.out != exported.oscal


@pytest.mark.parametrize("kind", ["oscal", "mlbom"])
def test_refusals_exit_2_and_write_nothing(
    annex: Annex, exported: Exported, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "out.json"
    unknown = annex.fast("export", kind, "--system", "nope", "-o", out)
    assert unknown.code == 2
    assert "no system 'nope' in the log" in unknown.err and SYSTEM in unknown.err
    assert not out.exists()
    checkpoint = annex.fast("export", kind, "--system", SYSTEM, "--at", "99999")
    assert checkpoint.code == 2 and "no checkpoint was issued at tree size 99999" in checkpoint.err
    nowhere = annex.fast("export", kind, "--system", SYSTEM, "-o", tmp_path / "no" / "x.json")
    assert nowhere.code == 2 and "is not a directory" in nowhere.err
    assert log_size(exported.path) == exported.size


# -- the REST API --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(exported: Exported) -> tuple[TestClient, dict[str, str]]:
    _, secret = TokenFile(exported.path).create("read", "grc-tool")
    return TestClient(create_app(Home(exported.path))), {"Authorization": f"Bearer {secret}"}


def test_the_api_serves_the_same_documents(
    client: tuple[TestClient, dict[str, str]], exported: Exported
) -> None:
    http, headers = client
    oscal = http.get(f"{API}/systems/{SYSTEM}/oscal", headers=headers)
    assert oscal.status_code == 200, oscal.text
    assert oscal.headers["content-type"].startswith("application/json")
    assert oscal.text == exported.oscal  # fewer cited entries than the cap: all of them
    bom = http.get(f"{API}/systems/{SYSTEM}/mlbom", headers=headers)
    assert bom.status_code == 200, bom.text
    assert bom.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    assert bom.text == exported.mlbom
    early = http.get(
        f"{API}/systems/{SYSTEM}/oscal", params={"at": exported.early}, headers=headers
    )
    assert early.text == exported.oscal_early


def test_the_api_caps_an_exports_observations_and_counts_the_rest(
    client: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded work per request: past the cap the newest cited entries are observed, and the
    result says how many of all cited it observed (the CLI has no cap)."""
    http, headers = client
    monkeypatch.setattr(routes_exports, "MAX_EXPORT_ENTRIES", 2)
    doc = json.loads(http.get(f"{API}/systems/{SYSTEM}/oscal", headers=headers).text)
    (result,) = doc["assessment-results"]["results"]
    props = {p["name"]: p["value"] for p in result["props"]}
    assert len(result["observations"]) == 2 == int(props["observed-entries"])
    assert int(props["cited-entries"]) > 2


def test_an_auditor_verifies_an_observation_with_the_trust_file_alone(
    client: tuple[TestClient, dict[str, str]], exported: Exported, annex: Annex, tmp_path: Path
) -> None:
    """What the README tells a GRC user: entry from the API, proof from the export, verify-entry."""
    http, headers = client
    doc = json.loads(http.get(f"{API}/systems/{SYSTEM}/oscal", headers=headers).text)
    ar = doc["assessment-results"]
    resources = {r["uuid"]: r for r in ar["back-matter"]["resources"]}
    observation = ar["results"][0]["observations"][-1]
    index = next(p["value"] for p in observation["props"] if p["name"] == "entry-index")
    proof = resources[observation["links"][0]["href"].removeprefix("#")]["base64"]["value"]
    (tmp_path / "entry.json").write_text(http.get(f"{API}/entries/{index}", headers=headers).text)
    (tmp_path / "entry.proof").write_bytes(base64.b64decode(proof))
    auditor = annex_at_empty(tmp_path)
    ok = auditor.fast(
        "verify-entry", tmp_path / "entry.json", tmp_path / "entry.proof",
        "--trust", exported.path / "trust.json", "--json",
    )  # fmt: skip
    assert ok.code == 0, ok.out + ok.err
    assert ok.json()["index"] == int(index)
    assert ok.json()["tree_size"] == exported.size


def annex_at_empty(tmp_path: Path) -> Annex:
    """`annex` with a data directory that does not exist: only the trust file vouches."""
    return Annex(tmp_path / "no-home", tmp_path)


@pytest.mark.parametrize("kind", ["oscal", "mlbom"])
def test_the_api_refuses_with_problem_bodies(
    client: tuple[TestClient, dict[str, str]], exported: Exported, kind: str
) -> None:
    http, headers = client
    unknown = http.get(f"{API}/systems/nope/{kind}", headers=headers)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "no system 'nope' in the log" in unknown.json()["detail"]
    before = http.get(f"{API}/systems/{SYSTEM}/{kind}", params={"at": 1}, headers=headers)
    assert before.status_code == 404  # the card was logged after entry 0
    bad = http.get(f"{API}/systems/{SYSTEM}/{kind}", params={"at": 99999}, headers=headers)
    assert bad.status_code == 400 and "no checkpoint" in bad.json()["detail"]
    assert (
        http.get(f"{API}/systems/{SYSTEM}/{kind}", params={"at": 0}, headers=headers).status_code
        == 422
    )
    assert http.get(f"{API}/systems/{SYSTEM}/{kind}").status_code == 401
    assert log_size(exported.path) == exported.size
