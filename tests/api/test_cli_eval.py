"""`annex eval run | import`: a real lm-eval run on a tiny model, logged, verified and gated."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from collectors.hashing import build_manifest
from evidence.blobs import BlobStore
from evidence.home import Home
from tests.api.conftest import ORIGIN, Annex, log_size
from tests.collectors.tiny_lm import build_tiny_lm, lm_eval_results

pytest.importorskip("lm_eval", reason="the eval extra is not installed")
pytestmark = pytest.mark.eval

EVAL_POLICY = """\
version: 1
require:
  eval: {task: annex_mc, metric: "acc,none", min: 0.0, max_age_days: 1}
"""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-cli") / "tiny-gpt2")


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "annex")
    h.init(ORIGIN)
    return h


@pytest.fixture
def annex(home: Home, annex_at: Callable[[Path], Annex]) -> Annex:
    return annex_at(home.path)


@pytest.fixture
def model(tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy: tests change its bytes."""
    return Path(shutil.copytree(tiny_model, tmp_path / "tiny-gpt2"))


def test_a_run_is_logged_verified_and_passes_the_gate_until_a_byte_changes(
    annex: Annex, home: Home, model: Path, tmp_path: Path
) -> None:
    done = annex.fast("eval", "run", "--model", model, "--tasks", "annex_mc", "--json")
    assert done.code == 0, done.out + done.err
    record = done.json()
    predicate = record["statement"]["predicate"]
    digest = build_manifest(model).digest
    assert record["statement"]["subject"][0]["digest"] == {"sha256": digest}
    assert 0.0 <= predicate["results"]["annex_mc"]["acc,none"] <= 1.0
    assert BlobStore(home.path / "blobs").has(predicate["samplesDigest"])

    assert annex("verify").code == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text(EVAL_POLICY)
    passed = annex.fast("gate", model, "--policy", policy)
    assert passed.code == 0, passed.out

    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    failed = annex.fast("gate", model, "--policy", policy, "--json")
    assert failed.code == 1
    (failure,) = failed.json()["failures"]
    assert "no eval-run evidence" in failure["reason"]
    assert "annex eval run" in failure["reason"]


def test_the_summary_shows_metrics_and_groups(annex: Annex, model: Path) -> None:
    done = annex.fast("eval", "run", "--model", model, "--tasks", "annex_mc", "--limit", "4")
    assert done.code == 0, done.out + done.err
    assert "annex_mc: acc,none" in done.out
    assert "group science (n=" in done.out
    assert "entry" in done.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tasks", "nope"), "unknown task(s) nope"),
        (("--tasks", " , "), "name at least one task"),
        (("--tasks", "annex_mc", "--device", "tpu"), "use cpu, cuda or cuda:N"),
        (("--tasks", "annex_mc", "--limit", "0"), "must be above 0"),
        (("--tasks", "annex_mc", "--dtype", "int3"), "use one of auto"),
    ],
)
def test_bad_run_input_is_refused_and_nothing_appended(
    annex: Annex, home: Home, model: Path, args: tuple[str, ...], message: str
) -> None:
    before = log_size(home.path)
    done = annex.fast("eval", "run", "--model", model, *args)
    assert done.code == 2
    assert message in done.out + done.err
    assert log_size(home.path) == before


def test_a_missing_model_is_refused(annex: Annex, home: Home, tmp_path: Path) -> None:
    before = log_size(home.path)
    done = annex.fast("eval", "run", "--model", tmp_path / "absent", "--tasks", "annex_mc")
    assert done.code == 2
    assert "not a directory" in done.out + done.err
    assert log_size(home.path) == before


def test_a_directory_that_is_no_model_is_refused(annex: Annex, home: Home, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a model")
    before = log_size(home.path)
    done = annex.fast("eval", "run", "--model", plain, "--tasks", "annex_mc")
    assert done.code == 2
    assert f"lm-eval could not evaluate {plain}" in done.out + done.err
    assert log_size(home.path) == before


def test_an_imported_results_file_is_logged_as_imported(
    annex: Annex, home: Home, model: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(lm_eval_results(0.7)))
    done = annex.fast("eval", "import", results, "--model", model, "--json")
    assert done.code == 0, done.out + done.err
    predicate = done.json()["statement"]["predicate"]
    assert predicate["origin"] == "imported"
    assert predicate["model"]["manifestDigest"] == build_manifest(model).digest
    assert annex("verify").code == 0


@pytest.mark.parametrize("content", ["{broken", '{"results": {"t": {"acc": 1}}}', "[]"])
def test_an_import_that_is_not_lm_eval_results_appends_nothing(
    annex: Annex, home: Home, model: Path, tmp_path: Path, content: str
) -> None:
    results = tmp_path / "results.json"
    results.write_text(content)
    before = log_size(home.path)
    done = annex.fast("eval", "import", results, "--model", model)
    assert done.code == 2
    assert "results.json" in done.out + done.err
    assert log_size(home.path) == before


def test_bundled_tasks_are_listed(annex: Annex) -> None:
    done = annex.fast("eval", "tasks", "--json")
    assert done.code == 0
    assert "annex_mc" in done.json()["tasks"]


def test_an_import_keeps_its_samples_as_a_blob(
    annex: Annex, home: Home, model: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(lm_eval_results(0.7)))
    samples = tmp_path / "samples_hellaswag.jsonl"
    row = {"doc": {"group": "g"}, "filter": "none", "metrics": ["acc"], "acc": 1.0}
    samples.write_text(json.dumps(row) + "\n")
    done = annex.fast("eval", "import", results, "--model", model, "--samples", samples, "--json")
    assert done.code == 0, done.out + done.err
    predicate = done.json()["statement"]["predicate"]
    assert BlobStore(home.path / "blobs").has(predicate["samplesDigest"])
    assert predicate["groups"]["hellaswag"]["g"]["n"] == 1.0
    samples.write_text("not json\n")
    before = log_size(home.path)
    bad = annex.fast("eval", "import", results, "--model", model, "--samples", samples)
    assert bad.code == 2 and "line 1: not JSON" in bad.out + bad.err
    assert log_size(home.path) == before


def test_vllm_missing_is_refused_before_any_work(annex: Annex, home: Home, model: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    before = log_size(home.path)
    done = annex.fast("eval", "run", "--model", model, "--tasks", "annex_mc", "--backend", "vllm")
    assert done.code == 2
    assert "install vllm" in done.out + done.err
    assert log_size(home.path) == before
