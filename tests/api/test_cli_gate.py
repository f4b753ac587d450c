"""`annex gate`: exit 0 pass, 1 fail (a table of what failed), 2 bad input; JSON and SARIF."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from api.demo_model import write_base_model
from evidence.home import Home
from schemas.policy import DATASET_LINEAGE
from tests.api.conftest import ORIGIN, Annex, log_size
from tests.reports.gate_helpers import (
    ago,
    append,
    digest,
    eval_run,
    inventory,
    model_signing_key,
    release,
    statement,
)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "annex")
    h.init(ORIGIN)
    return h


@pytest.fixture
def annex(home: Home, annex_at: Callable[[Path], Annex]) -> Annex:
    return annex_at(home.path)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_base_model(tmp_path / "demo")


@pytest.fixture
def signed_model(home: Home, model: Path) -> Path:
    release(home, model, model_signing_key(home))
    return model


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


POLICY = """\
version: 1
require:
  all_of:
    - signed: {}
    - eval: {task: mmlu, metric: "acc,none", min: 0.6, max_age_days: 30}
    - any_of:
        - gpu_inventory: {site: fra-1, max_age_days: 7}
        - gpu_inventory: {site: ams-2, max_age_days: 7}
    - lineage: {}
"""


# -- exit codes and what people read -------------------------------------------------------------


def test_an_unsigned_model_fails_with_a_table_of_reasons(annex: Annex, model: Path) -> None:
    done = annex.fast("gate", model)
    assert done.code == 1, done.err
    assert "require.signed" in done.out
    assert "no release in the log" in done.out  # the table wraps the rest of the reason
    assert "FAIL:" in done.out


def test_a_signed_model_passes(annex: Annex, signed_model: Path) -> None:
    done = annex.fast("gate", signed_model)
    assert done.code == 0, done.out + done.err
    assert done.out.startswith("PASS:")


def test_a_changed_byte_fails_in_a_real_process(annex: Annex, signed_model: Path) -> None:
    assert annex("gate", signed_model).code == 0
    config = signed_model / "config.json"
    config.write_bytes(config.read_bytes().replace(b'"n_head": 2', b'"n_head": 3'))
    done = annex("gate", signed_model, "--json")
    assert done.code == 1
    verdict = done.json()
    assert verdict["passed"] is False
    assert verdict["failures"][0]["files"] == ["config.json"]


def test_the_json_verdict_lists_every_requirement(
    annex: Annex, home: Home, signed_model: Path, tmp_path: Path
) -> None:
    append(home, eval_run(signed_model, {"mmlu": {"acc,none": 0.7}}), inventory("ams-2", days=1))
    done = annex.fast("gate", signed_model, "--policy", write_policy(tmp_path, POLICY), "--json")
    assert done.code == 1
    verdict = done.json()
    assert verdict["ok"] is False
    assert verdict["manifest"]["digest"] == f"sha256:{digest(signed_model)}"
    assert verdict["kind"] == "model"
    assert [(f["path"], f["rule"]) for f in verdict["failures"]] == [
        ("require.all_of[3].lineage", "lineage")
    ]
    assert "no dataset-lineage evidence for model sha256:" in verdict["failures"][0]["reason"]
    children = verdict["requirements"]["children"]
    assert [c["passed"] for c in children] == [True, True, True, False]


def test_a_hand_appended_lineage_completes_the_policy(
    annex: Annex, home: Home, signed_model: Path, tmp_path: Path
) -> None:
    evidence = [
        eval_run(signed_model, {"mmlu": {"acc,none": 0.7}}),
        inventory("fra-1", days=1),
        statement(
            DATASET_LINEAGE,
            digest(signed_model),
            {"observedAt": ago(3), "datasets": [{"name": "support-tickets-2026"}]},
        ),
    ]
    evidence_file = tmp_path / "evidence.json"
    evidence_file.write_text(json.dumps(evidence))
    assert annex.fast("append", evidence_file).code == 0
    done = annex.fast("gate", signed_model, "--policy", write_policy(tmp_path, POLICY))
    assert done.code == 0, done.out
    assert "PASS:" in done.out


def test_a_trust_file_of_another_log_proves_nothing(
    annex: Annex, signed_model: Path, tmp_path: Path
) -> None:
    other = Home(tmp_path / "other")
    other.init(ORIGIN)
    done = annex.fast("gate", signed_model, "--trust", other.trust_path, "--json")
    assert done.code == 1
    assert "no trusted release of these files" in done.json()["failures"][0]["reason"]


# -- SARIF ---------------------------------------------------------------------------------------

LEVELS = {"none", "note", "warning", "error"}
KINDS = {"notApplicable", "pass", "fail", "review", "open", "informational"}


def check_sarif(log: dict[str, Any]) -> list[dict[str, Any]]:
    """The required properties of SARIF 2.1.0 (OASIS, section 3) that a CI upload needs."""
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    assert isinstance(log["runs"], list) and len(log["runs"]) == 1
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert isinstance(driver["name"], str) and driver["name"]
    rules = driver["rules"]
    assert all(isinstance(r["id"], str) for r in rules)
    assert len({r["id"] for r in rules}) == len(rules)
    for invocation in run.get("invocations", []):
        assert isinstance(invocation["executionSuccessful"], bool)
    for result in run["results"]:
        assert isinstance(result["message"]["text"], str) and result["message"]["text"]
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in LEVELS and result["kind"] in KINDS
        assert result["locations"]
        for location in result["locations"]:
            uri = location["physicalLocation"]["artifactLocation"]["uri"]
            assert isinstance(uri, str)
            for logical in location.get("logicalLocations", []):
                assert logical["fullyQualifiedName"].startswith("require.")
    results: list[dict[str, Any]] = run["results"]
    return results


def test_sarif_names_the_changed_file(
    annex: Annex, signed_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # as CI runs in its checkout, the model below it
    (signed_model / "tokenizer.json").write_text("{}")
    out = tmp_path / "gate.sarif"
    done = annex.fast("gate", signed_model, "--sarif", out)
    assert done.code == 1
    assert "FAIL:" in done.out  # people still get the table
    results = check_sarif(json.loads(out.read_text()))
    assert [r["ruleId"] for r in results] == ["signed"]
    assert results[0]["level"] == "error"
    # Paths relative to the working directory, as code-scanning uploads want them.
    uri = results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "demo/tokenizer.json"
    assert "changed tokenizer.json" in results[0]["message"]["text"]


def test_sarif_on_stdout_for_every_failed_requirement(
    annex: Annex, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = annex.fast("gate", model, "--policy", write_policy(tmp_path, POLICY), "--sarif", "-")
    assert done.code == 1
    results = check_sarif(json.loads(done.out))
    assert [r["ruleId"] for r in results] == [
        "signed",
        "eval",
        "gpu_inventory",
        "gpu_inventory",
        "lineage",
    ]
    paths = [r["properties"]["policyPath"] for r in results]
    assert paths[1] == "require.all_of[1].eval"
    uri = results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "demo/"


def test_a_passing_sarif_has_no_results(annex: Annex, signed_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "gate.sarif"
    assert annex.fast("gate", signed_model, "--sarif", out).code == 0
    log = json.loads(out.read_text())
    assert check_sarif(log) == []
    assert log["runs"][0]["properties"]["passed"] is True


# -- bad input: exit 2, nothing appended ---------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            "version: 1\nrequire:\n  all_of:\n    - signed: {}\n    - eval: {task: mmlu, "
            'metric: "acc,none", min: lots}\n',
            "policy.yaml: require.all_of[1].eval.min: Input should be a valid number",
        ),
        ("version: 1\nrequire:\n  any_of:\n    - sigend: {}\n", "require.any_of[0].sigend"),
        ("version: 1\nrequire: [\n", "not valid YAML"),
    ],
)
def test_a_bad_policy_is_exit_2_and_named(
    annex: Annex, home: Home, model: Path, tmp_path: Path, policy: str, message: str
) -> None:
    before = log_size(home.path)
    done = annex.fast("gate", model, "--policy", write_policy(tmp_path, policy), "--json")
    assert done.code == 2
    assert done.json()["ok"] is False
    assert message in done.json()["message"]
    assert log_size(home.path) == before


def test_bad_arguments_are_exit_2(annex: Annex, model: Path, tmp_path: Path) -> None:
    missing = annex.fast("gate", tmp_path / "missing")
    assert missing.code == 2
    assert "no such directory" in missing.err
    assert annex.fast("gate", model, "--policy", tmp_path / "none.yaml").code == 2
    both = annex.fast("gate", model, "--sarif", "-", "--json")
    assert both.code == 2
    assert "--sarif - and --json" in both.out
    (tmp_path / "empty").mkdir()
    assert annex.fast("gate", tmp_path / "empty").code == 2


def test_no_data_directory_is_exit_2(model: Path, annex_at: Callable[[Path], Annex]) -> None:
    done = annex_at(model.parent / "nowhere").fast("gate", model)
    assert done.code == 2
    assert "annex init" in done.err


# -- end to end with `annex sign model` ----------------------------------------------------------


def forge_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with its signed payload claiming another digest for the first file."""
    envelope = bundle["dsseEnvelope"]
    payload = json.loads(base64.b64decode(envelope["payload"]))
    resource = payload["predicate"]["resources"][0]
    resource["digest"] = ("0" if resource["digest"][0] != "0" else "1") + resource["digest"][1:]
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    return bundle


def test_sign_then_gate_end_to_end(tmp_path: Path, annex_at: Callable[[Path], Annex]) -> None:
    """What a release pipeline does: init, sign, gate; then what an attacker might change."""
    annex = annex_at(tmp_path / "home")
    assert annex("init").code == 0
    model = write_base_model(tmp_path / "support-7b")
    signed = annex("sign", "model", model, "--approver", "release-manager")
    assert signed.code == 0, signed.err
    passed = annex("gate", model, "--json")
    assert passed.code == 0, passed.out
    reason = passed.json()["requirements"]["reason"]
    assert "model.sig verifies with that key" in reason
    assert "approved by release-manager" in reason

    # A model.sig that does not sign these files fails, even though the log entry is fine.
    bundle = model / "model.sig"
    original = bundle.read_bytes()
    bundle.write_text(json.dumps(forge_bundle(json.loads(original))))
    forged = annex.fast("gate", model, "--json")
    assert forged.code == 1
    why = forged.json()["failures"][0]["reason"]
    assert "model.sig: the model signature does not verify" in why

    # Without model.sig the logged release vouches alone, unless the policy asks for the file.
    bundle.unlink()
    assert annex.fast("gate", model).code == 0
    strict = write_policy(tmp_path, "version: 1\nrequire:\n  signed: {signature_file: true}\n")
    refused = annex.fast("gate", model, "--policy", strict, "--json")
    assert refused.code == 1
    assert "no model.sig beside the files" in refused.json()["failures"][0]["reason"]
    bundle.write_bytes(original)
    assert annex.fast("gate", model, "--policy", strict).code == 0

    # One changed byte in the weights fails, in a real process.
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x80
    weights.write_bytes(bytes(data))
    changed = annex("gate", model)
    assert changed.code == 1
    assert "FAIL:" in changed.out


def test_a_revoked_key_fails_the_gate(tmp_path: Path, annex_at: Callable[[Path], Annex]) -> None:
    annex = annex_at(tmp_path / "home")
    assert annex.fast("init").code == 0
    model = write_base_model(tmp_path / "demo")
    assert annex.fast("sign", "model", model).code == 0
    keyid = model_signing_key(Home(tmp_path / "home"))
    assert annex.fast("keys", "revoke", keyid[:16], "--reason", "leaked").code == 0
    done = annex.fast("gate", model, "--json")
    assert done.code == 1
    assert "is revoked (leaked)" in done.json()["failures"][0]["reason"]


def roll_back(database: Path, size: int) -> None:
    """What someone with write access to the database could do: drop the newest entries."""
    with sqlite3.connect(database) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DELETE FROM entries WHERE idx >= ?", (size,))
        conn.execute("DELETE FROM subjects WHERE entry_idx >= ?", (size,))
        conn.execute("DELETE FROM tree_nodes WHERE (idx + 1) * (1 << level) > ?", (size,))
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (size,))


def test_a_trusted_checkpoint_catches_a_rolled_back_log(
    annex: Annex, home: Home, signed_model: Path, tmp_path: Path
) -> None:
    """A gate that pins a checkpoint it saw earlier fails when the log was rolled back since."""
    before = home.open_store().checkpoint().size
    more = tmp_path / "more.json"
    more.write_text(json.dumps(inventory("fra-1", days=0)))
    assert annex.fast("append", more).code == 0
    pin = tmp_path / "saved.note"
    pin.write_text(annex.fast("log", "checkpoint").out)
    extends = annex.fast("gate", signed_model, "--trusted-checkpoint", pin)
    assert extends.code == 0, extends

    roll_back(home.path / "annex.db", before)
    assert annex.fast("gate", signed_model).code == 0  # the rolled-back log alone looks fine
    caught = annex.fast("gate", signed_model, "--trusted-checkpoint", pin)
    assert caught.code == 1, caught
    assert "fewer than the trusted checkpoint's" in caught.err
