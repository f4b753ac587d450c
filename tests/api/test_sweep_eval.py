"""An eval step of a sweep: a real lm-eval run on a tiny model, from a suite file, logged as the
`annex eval run` command logs it; an eval that cannot run fails alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.sweeps.config import parse_config
from api.sweeps.runner import run_sweep
from evidence.blobs import BlobStore
from evidence.home import Home
from schemas.eval_run import EVAL_RUN
from tests.api.conftest import ORIGIN
from tests.collectors.tiny_lm import build_tiny_lm

pytest.importorskip("lm_eval", reason="the eval extra is not installed")
pytestmark = pytest.mark.eval


def test_an_eval_suite_runs_each_eval_and_one_failing_does_not_stop_the_other(
    tmp_path: Path,
) -> None:
    build_tiny_lm(tmp_path / "models" / "tiny-gpt2")
    (tmp_path / "evals.toml").write_text(
        "[[eval]]\n"
        'model = "models/tiny-gpt2"\n'
        'tasks = ["annex_mc"]\n'
        "limit = 4\n"
        "\n[[eval]]\n"
        'model = "models/tiny-gpt2"\n'
        'tasks = ["annex_mc"]\n'
        'backend = "vllm"\n'
    )
    raw = {
        "sweep": [
            {
                "name": "evals",
                "schedule": "0 4 * * *",
                "step": [{"kind": "eval", "suite": "evals.toml"}],
            }
        ]
    }
    config = parse_config(raw, tmp_path / "annex.toml")
    home = Home(tmp_path / "annex")
    home.init(ORIGIN)
    done = run_sweep(home, config, config.sweeps[0], trigger="command")
    ran, refused = done.predicate.steps
    assert ran.status == "ok", ran.error
    assert ran.target is not None and ran.target.endswith("evals.toml#1 tiny-gpt2 (annex_mc)")
    assert refused.status == "failed"
    assert refused.error is not None and "vllm is not installed" in refused.error
    with home.open_store() as store:
        logged = store.get(ran.entries[0])
    assert logged.predicate_type == EVAL_RUN
    digest = logged.statement["predicate"]["samplesDigest"]
    assert BlobStore(home.path / "blobs").has(digest)
