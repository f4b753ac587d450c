"""The gate judges a directory against proven evidence: each requirement passing and failing.

Evidence is appended with the store (the CLI is a shell over it); eval runs, lineage and GPU
inventories are hand-made statements of the contract shapes in schemas/policy.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from api.demo_model import write_adapter, write_base_model
from evidence.errors import AuthorityError, InputError, TrustError
from evidence.home import Home
from evidence.keys import TrustIndex
from evidence.lookup import DIGEST, digest_key
from reports.gate import AllOf, AnyOf, Requirement, Verdict, directory_kind, run_gate
from reports.requirements import EvalResult, GpuInventory, Lineage, Signed
from schemas.model import MODEL_RELEASE
from schemas.policy import DATASET_LINEAGE, EVAL_RUN
from tests.reports.gate_helpers import (
    NOW,
    ago,
    append,
    change_one_byte,
    digest,
    eval_run,
    inventory,
    manifest_of,
    model_signing_key,
    release,
    statement,
)


def judge(
    home: Home, directory: Path, requirement: Requirement, *, trust: TrustIndex | None = None
) -> Verdict:
    with home.open_store() as store:
        return run_gate(
            directory,
            requirement,
            store=store,
            trust=trust or home.trust(),
            policy="test",
            now=NOW,
        )


@pytest.fixture
def home(sqlite_home: Home) -> Home:
    return sqlite_home


@pytest.fixture
def keyid(home: Home) -> str:
    return model_signing_key(home)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_base_model(tmp_path / "demo")


@pytest.fixture
def signed_model(home: Home, model: Path, keyid: str) -> Path:
    release(home, model, keyid)
    return model


# -- signed --------------------------------------------------------------------------------------


def test_an_unsigned_directory_fails(home: Home, model: Path) -> None:
    verdict = judge(home, model, Signed())
    assert not verdict.passed
    reason = verdict.outcome.reason
    assert "no release in the log matches the files on disk (model sha256:" in reason
    assert f"annex sign model {model}" in reason


def test_a_signed_directory_passes_and_names_its_release(
    home: Home, model: Path, keyid: str
) -> None:
    index = release(home, model, keyid)
    verdict = judge(home, model, Signed())
    assert verdict.passed, verdict.outcome.reason
    assert verdict.outcome.entries == (index,)
    assert f"release entry {index}" in verdict.outcome.reason
    assert verdict.kind == "model"
    assert verdict.manifest.digest == digest(model)


def test_one_changed_byte_fails_and_the_file_is_named(home: Home, signed_model: Path) -> None:
    change_one_byte(signed_model)  # size and mtime kept: the gate re-reads every byte anyway
    verdict = judge(home, signed_model, Signed())
    assert not verdict.passed
    assert "changed model.safetensors" in verdict.outcome.reason
    assert verdict.outcome.files == ("model.safetensors",)


def test_an_added_file_fails(home: Home, signed_model: Path) -> None:
    (signed_model / "extra.py").write_text("print('hello')\n")
    verdict = judge(home, signed_model, Signed())
    assert not verdict.passed
    assert "added extra.py" in verdict.outcome.reason


def test_a_removed_file_fails(home: Home, signed_model: Path) -> None:
    (signed_model / "tokenizer.json").unlink()
    verdict = judge(home, signed_model, Signed())
    assert not verdict.passed
    assert "removed tokenizer.json" in verdict.outcome.reason


def test_the_older_release_of_a_reverted_directory_still_passes(
    home: Home, model: Path, keyid: str
) -> None:
    first = release(home, model, keyid)
    (model / "notes.md").write_text("v2\n")
    release(home, model, keyid)
    (model / "notes.md").unlink()
    verdict = judge(home, model, Signed())
    assert verdict.passed
    assert verdict.outcome.entries == (first,)


def test_a_revoked_signing_key_fails(home: Home, signed_model: Path, keyid: str) -> None:
    home.revoke(keyid, reason="leaked")
    verdict = judge(home, signed_model, Signed())
    assert not verdict.passed
    assert "is revoked (leaked)" in verdict.outcome.reason


def test_a_signing_key_outside_the_trust_file_fails(home: Home, model: Path) -> None:
    stranger = hashlib.sha256(b"someone else's key").hexdigest()
    release(home, model, stranger, signed_by=model_signing_key(home))
    verdict = judge(home, model, Signed())
    assert not verdict.passed
    assert f"signing key {stranger[:16]} is named in the release" in verdict.outcome.reason
    assert "a release counts only as its model-signing key's own word" in verdict.outcome.reason


def test_a_log_key_is_not_a_model_signing_key(home: Home, model: Path) -> None:
    """A release naming the log key is refused at append: only a model-signing key signs one."""
    log_key = home.trust().trust.keys[0]
    signed = statement(MODEL_RELEASE, digest(model), {"signingKeyid": log_key.keyid})
    with pytest.raises(AuthorityError, match=r"log key .* may not sign model-release"):
        append(home, signed)
    verdict = judge(home, model, Signed())
    assert not verdict.passed and "no release in the log matches" in verdict.outcome.reason


def test_an_entry_signed_by_a_key_outside_the_trust_file_fails(
    home: Home, signed_model: Path, tmp_path: Path
) -> None:
    """The log, judged with another log's trust file of the same name, proves nothing."""
    other = Home(tmp_path / "other")
    other.init("test.example/log")
    verdict = judge(home, signed_model, Signed(), trust=other.trust())
    assert not verdict.passed
    assert "no trusted release of these files" in verdict.outcome.reason
    assert "not signed by a trusted key" in verdict.outcome.reason


def test_a_release_rewritten_in_the_database_fails(
    home: Home, signed_model: Path, keyid: str
) -> None:
    """An attacker changes a file and rewrites the release row to match: the signature fails."""
    (signed_model / "config.json").write_text("{}\n")
    forged = manifest_of(signed_model)
    with home.open_store() as store:
        entry = store.query(predicate_type=MODEL_RELEASE)[-1]
    text = entry.envelope_bytes.decode()
    old = entry.statement["predicate"]["manifest"]["digest"]
    db = sqlite3.connect(home.path / "annex.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    envelope = json.loads(text)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["subject"][0]["digest"]["sha256"] = forged.digest
    payload["predicate"]["manifest"] = forged.model_dump(mode="json", by_alias=True)
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    db.execute(
        "UPDATE entries SET envelope = ? WHERE idx = ?",
        (json.dumps(envelope).encode(), entry.index),
    )
    db.execute("UPDATE subjects SET digest = ? WHERE digest = ?", (forged.digest, old))
    db.commit()
    verdict = judge(home, signed_model, Signed())  # the lookup still holds the old digest
    assert not verdict.passed and "no release in the log matches" in verdict.outcome.reason
    for table in ("lookup", "lookup_recent"):  # a thorough attacker rewrites it too
        db.execute(
            f"UPDATE {table} SET lookup_key = ? WHERE kind = ? AND lookup_key = ?",
            (digest_key(forged.digest), DIGEST, digest_key(old)),
        )
    db.commit()
    db.close()
    verdict = judge(home, signed_model, Signed())
    assert not verdict.passed
    assert f"entry {entry.index}" in verdict.outcome.reason


def test_an_adapter_is_checked_on_its_own_manifest(home: Home, tmp_path: Path, keyid: str) -> None:
    adapter = write_adapter(tmp_path / "demo-lora")
    assert directory_kind(adapter) == "adapter"
    assert not judge(home, adapter, Signed()).passed
    release(home, adapter, keyid)
    verdict = judge(home, adapter, Signed())
    assert verdict.passed
    assert verdict.kind == "adapter"


def test_bad_directories_are_input_errors(home: Home, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such directory"):
        judge(home, tmp_path / "missing", Signed())
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        judge(home, tmp_path / "file", Signed())


# -- eval ----------------------------------------------------------------------------------------


MMLU = EvalResult("mmlu", "acc,none", min=0.6, max_age_days=30)


def test_eval_without_evidence_fails_with_a_clear_reason(home: Home, model: Path) -> None:
    verdict = judge(home, model, MMLU)
    assert not verdict.passed
    assert verdict.outcome.reason.startswith(
        f"no eval-run evidence for model sha256:{digest(model)[:12]}…"
    )


def test_eval_above_the_threshold_passes(home: Home, model: Path) -> None:
    index = append(home, eval_run(model, {"mmlu": {"alias": "mmlu", "acc,none": 0.64}}))
    verdict = judge(home, model, MMLU)
    assert verdict.passed, verdict.outcome.reason
    assert verdict.outcome.entries == (index,)
    assert "mmlu acc,none = 0.64" in verdict.outcome.reason


def test_eval_below_the_threshold_fails(home: Home, model: Path) -> None:
    append(home, eval_run(model, {"mmlu": {"acc,none": 0.59}}))
    verdict = judge(home, model, MMLU)
    assert not verdict.passed
    assert "below the minimum" in verdict.outcome.reason


def test_the_newest_eval_run_decides(home: Home, model: Path) -> None:
    append(home, eval_run(model, {"mmlu": {"acc,none": 0.7}}, days=3))
    newer = append(home, eval_run(model, {"mmlu": {"acc,none": 0.5}}, days=1))
    append(home, eval_run(model, {"hellaswag": {"acc,none": 0.9}}, days=0))  # another task
    verdict = judge(home, model, MMLU)
    assert not verdict.passed
    assert verdict.outcome.entries == (newer,)


def test_a_stale_eval_run_fails(home: Home, model: Path) -> None:
    append(home, eval_run(model, {"mmlu": {"acc,none": 0.9}}, days=45))
    verdict = judge(home, model, MMLU)
    assert not verdict.passed
    assert "more than 30 days" in verdict.outcome.reason


def test_an_eval_run_of_other_files_does_not_count(home: Home, model: Path, tmp_path: Path) -> None:
    other = write_base_model(tmp_path / "other", seed=8)
    append(home, eval_run(other, {"mmlu": {"acc,none": 0.9}}))
    assert not judge(home, model, MMLU).passed


def test_an_eval_run_of_the_wrong_shape_is_named(home: Home, model: Path) -> None:
    index = append(home, statement(EVAL_RUN, digest(model), {"observedAt": ago(1)}))
    verdict = judge(home, model, MMLU)
    assert not verdict.passed
    assert f"entry {index}: its predicate breaks the eval-run contract" in verdict.outcome.reason
    assert "results: Field required" in verdict.outcome.reason


# -- lineage -------------------------------------------------------------------------------------


def test_lineage_without_evidence_fails_with_a_clear_reason(home: Home, tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "demo-lora")
    verdict = judge(home, adapter, Lineage())
    assert not verdict.passed
    assert verdict.outcome.reason.startswith(
        f"no dataset-lineage evidence for adapter sha256:{digest(adapter)[:12]}…"
    )


def test_recorded_lineage_passes(home: Home, tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "demo-lora")
    predicate = {
        "observedAt": ago(2),
        "datasets": [{"name": "support-tickets-2026", "digest": {"sha256": "ab" * 32}}],
    }
    index = append(home, statement(DATASET_LINEAGE, digest(adapter), predicate))
    verdict = judge(home, adapter, Lineage())
    assert verdict.passed
    assert verdict.outcome.entries == (index,)
    assert "support-tickets-2026" in verdict.outcome.reason
    assert not judge(home, adapter, Lineage(max_age_days=1)).passed


def test_lineage_listing_no_dataset_fails(home: Home, model: Path) -> None:
    append(home, statement(DATASET_LINEAGE, digest(model), {"observedAt": ago(1), "datasets": []}))
    verdict = judge(home, model, Lineage())
    assert not verdict.passed
    assert "datasets" in verdict.outcome.reason


# -- GPU inventory -------------------------------------------------------------------------------


def test_a_fresh_inventory_of_the_site_passes(home: Home, model: Path) -> None:
    index = append(home, inventory("fra-1", days=2))
    verdict = judge(home, model, GpuInventory(7, "fra-1"))
    assert verdict.passed
    assert verdict.outcome.entries == (index,)


def test_a_stale_inventory_fails(home: Home, model: Path) -> None:
    append(home, inventory("fra-1", days=9))
    verdict = judge(home, model, GpuInventory(7, "fra-1"))
    assert not verdict.passed
    assert "no gpu-inventory evidence of site fra-1 in the last 7 days" in verdict.outcome.reason
    assert "annex collect gpu --site fra-1" in verdict.outcome.reason


def test_an_inventory_of_another_site_or_without_gpus_fails(home: Home, model: Path) -> None:
    append(home, inventory("ams-2", days=1), inventory("fra-1", days=1, status="no-driver", gpus=0))
    verdict = judge(home, model, GpuInventory(7, "fra-1"))
    assert not verdict.passed
    assert "status no-driver (no NVIDIA driver loaded), 0 GPU(s)" in verdict.outcome.reason
    append(home, inventory("fra-1", days=1, gpus=2))
    assert not judge(home, model, GpuInventory(7, "fra-1", min_devices=4)).passed
    assert judge(home, model, GpuInventory(7, "fra-1", min_devices=2)).passed


# -- composition ---------------------------------------------------------------------------------


def test_any_of_passes_with_one_branch(home: Home, model: Path) -> None:
    index = append(home, inventory("ams-2", days=1))
    either = AnyOf((GpuInventory(7, "fra-1"), GpuInventory(7, "ams-2")))
    verdict = judge(home, model, either)
    assert verdict.passed
    assert verdict.outcome.entries == (index,)
    assert verdict.failures() == []  # the failing branch of a passing any_of is not a failure


def test_all_of_reports_every_failure_with_its_path(home: Home, signed_model: Path) -> None:
    policy = AllOf(
        (
            Signed(),
            MMLU,
            AnyOf((GpuInventory(7, "fra-1"), GpuInventory(7, "ams-2"))),
            Lineage(),
        )
    )
    verdict = judge(home, signed_model, policy)
    assert not verdict.passed
    assert [f.path for f in verdict.failures()] == [
        "require.all_of[1].eval",
        "require.all_of[2].any_of[0].gpu_inventory",
        "require.all_of[2].any_of[1].gpu_inventory",
        "require.all_of[3].lineage",
    ]
    data = verdict.to_json()
    assert data["passed"] is False
    assert data["requirements"]["children"][0]["passed"] is True
    assert [f["rule"] for f in data["failures"]] == [
        "eval",
        "gpu_inventory",
        "gpu_inventory",
        "lineage",
    ]


def test_all_of_passes_when_everything_is_there(home: Home, signed_model: Path) -> None:
    append(
        home,
        eval_run(signed_model, {"mmlu": {"acc,none": 0.7}}),
        inventory("fra-1", days=1),
        statement(
            DATASET_LINEAGE,
            digest(signed_model),
            {"observedAt": ago(1), "datasets": [{"name": "pile"}]},
        ),
    )
    verdict = judge(
        home, signed_model, AllOf((Signed(), MMLU, GpuInventory(7, "fra-1"), Lineage()))
    )
    assert verdict.passed, verdict.failures()
    assert len(verdict.outcome.entries) == 4


def test_empty_composites_are_refused() -> None:
    with pytest.raises(ValueError, match="nothing"):
        AllOf(())
    with pytest.raises(ValueError, match="nothing"):
        AnyOf(())


def test_a_rotated_signing_key_keeps_its_earlier_releases(
    home: Home, model: Path, keyid: str, tmp_path: Path
) -> None:
    release(home, model, keyid)
    home.rotate(role="model-signing", reason="yearly")
    assert judge(home, model, Signed()).passed
    late = write_base_model(tmp_path / "late", seed=9)
    with pytest.raises(TrustError, match="was retired at entry"):
        release(home, late, keyid)  # the retired key can no longer log a release
    verdict = judge(home, late, Signed())
    assert not verdict.passed and "no release in the log matches" in verdict.outcome.reason


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_home(request: pytest.FixtureRequest, tmp_path: Path) -> Home:
    """A home on each database: the gate reads through the store, never SQL of its own."""
    url = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    h = Home(tmp_path / "annex-db", url)
    h.init("test.example/log")
    return h


def test_the_gate_reads_both_databases(any_home: Home, model: Path) -> None:
    keyid = model_signing_key(any_home)
    index = release(any_home, model, keyid)
    append(any_home, eval_run(model, {"mmlu": {"acc,none": 0.7}}), inventory("fra-1", days=1))
    verdict = judge(any_home, model, AllOf((Signed(), MMLU, GpuInventory(7, "fra-1"))))
    assert verdict.passed, verdict.failures()
    assert verdict.outcome.entries == (index, index + 1, index + 2)
