"""Policy files: what a user writes is read as written, and every mistake is named by its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence.errors import InputError
from reports.gate import AllOf, AnyOf
from reports.policy import default_requirement, load_policy, parse_policy, requirement_of
from reports.requirements import EvalResult, GpuInventory, Lineage, Signed
from schemas.policy import EvalRunContract

FULL = """\
version: 1
description: release gate for the support assistant
require:
  all_of:
    - signed: {}
    - eval: {task: mmlu, metric: "acc,none", min: 0.6, max_age_days: 30}
    - any_of:
        - gpu_inventory: {site: fra-1, max_age_days: 7}
        - gpu_inventory: {site: ams-2, max_age_days: 7, min_devices: 2}
    - lineage:
"""


def test_the_documented_policy_becomes_composed_requirement_values() -> None:
    policy = parse_policy(FULL, source="policy.yaml")
    built = requirement_of(policy.require)
    assert isinstance(built, AllOf)
    signed, evaluation, either, lineage = built.requirements
    assert isinstance(signed, Signed)
    assert evaluation == EvalResult("mmlu", "acc,none", 0.6, None, 30)
    assert isinstance(either, AnyOf)
    assert either.requirements == (
        GpuInventory(7, "fra-1", 1),
        GpuInventory(7, "ams-2", 2),
    )
    assert lineage == Lineage(None)  # `- lineage:` with no value means the defaults


def test_no_policy_means_a_signed_release() -> None:
    assert default_requirement() == Signed(signature_file=False)


def test_a_policy_may_require_the_signature_file() -> None:
    policy = parse_policy("version: 1\nrequire: {signed: {signature_file: true}}\n", source="p")
    assert requirement_of(policy.require) == Signed(signature_file=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 1\nrequire:\n  all_of:\n    - signed: {}\n    - eval: {task: t, metric: m,"
            " min: high}\n",
            "policy.yaml: require.all_of[1].eval.min: Input should be a valid number",
        ),
        (
            "version: 1\nrequire:\n  all_of:\n    - signd: {}\n",
            "policy.yaml: require.all_of[0].signd: Extra inputs are not permitted",
        ),
        (
            "version: 1\nrequire:\n  eval: {task: t, metric: m, min: 1, maxage: 3}\n",
            "policy.yaml: require.eval.maxage: Extra inputs are not permitted",
        ),
        (
            "version: 1\nrequire:\n  any_of:\n    - signed: {}\n      lineage: {}\n",
            "policy.yaml: require.any_of[0]: Value error, a requirement has exactly one key",
        ),
        ("version: 1\nrequire:\n  any_of: []\n", "policy.yaml: require.any_of: "),
        ("version: 1\nrequire: {eval: {task: t, metric: m}}\n", "give min, max or both"),
        (
            "version: 1\nrequire: {eval: {task: t, metric: m, min: 0.9, max: 0.1}}\n",
            "min (0.9) is above max (0.1)",
        ),
        (
            "version: 1\nrequire: {gpu_inventory: {site: fra-1}}\n",
            "policy.yaml: require.gpu_inventory.max_age_days: Field required",
        ),
        (
            "version: 1\nrequire: {gpu_inventory: {max_age_days: -1}}\n",
            "policy.yaml: require.gpu_inventory.max_age_days: Input should be greater than 0",
        ),
        ("version: 2\nrequire: {signed: {}}\n", "policy.yaml: version: Input should be 1"),
        ("require: {signed: {}}\n", "policy.yaml: version: Field required"),
        ("version: 1\nrequire: [signed]\n", "policy.yaml: require: Input should be"),
        ("", "policy.yaml: the policy is empty"),
        ("version: 1\nrequire: {signed: {}\n", "policy.yaml: not valid YAML: line 3"),
        (
            "version: 1\nrequire:\n  eval: {task: t, metric: m, min: 0.5, min: 0.1}\n",
            "policy.yaml: not valid YAML: line 3, column 40: key 'min' appears twice",
        ),
        ("version: 1\nrequire: !!python/object:os.system {}\n", "policy.yaml: not valid YAML"),
    ],
)
def test_mistakes_are_named_by_file_and_path(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_policy(text, source="policy.yaml")
    assert message in str(caught.value)


def test_unreadable_policy_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read policy .*missing\.yaml"):
        load_policy(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        load_policy(binary)


def test_eval_contract_reads_numbers_only() -> None:
    run = EvalRunContract.model_validate(
        {
            "observedAt": "2026-11-24T08:00:00Z",
            "results": {
                "mmlu": {"alias": "mmlu", "acc,none": 0.61, "acc_stderr,none": "N/A"},
                "flag": {"acc,none": True},
            },
            "config": {"model": "hf"},
        }
    )
    assert run.metric("mmlu", "acc,none") == 0.61
    assert run.metric("mmlu", "acc_stderr,none") is None
    assert run.metric("mmlu", "alias") is None
    assert run.metric("flag", "acc,none") is None
    assert run.metric("hellaswag", "acc,none") is None


def _nested(depth: int) -> str:
    text = "signed: {}"
    for _ in range(depth):
        text = f"all_of: [{{{text}}}]"
    return f"version: 1\nrequire: {{{text}}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_nested(20), "all_of/any_of nested more than 16 deep"),
        ("version: 1\nrequire:\n  " + "[" * 5000 + "]" * 5000 + "\n", "policy.yaml:"),
        (
            "version: 1\nrequire:\n  all_of:\n" + "    - signed: {}\n" * 300,
            "more than 256 requirements",
        ),
        ("version: 1\nrequire: {lineage: {max_age_days: 1e400}}\n", "max_age_days"),
        ("version: 1\nrequire: {gpu_inventory: {max_age_days: 99999999}}\n", "max_age_days"),
        ("version: 1\nrequire: {eval: {task: t, metric: m, min: .inf}}\n", "eval.min"),
        ("version: 1\n# " + "x" * 70000 + "\nrequire: {signed: {}}\n", "at most 65536"),
    ],
)
def test_a_hostile_policy_is_refused_before_it_costs(text: str, message: str) -> None:
    """Deep nesting, thousands of requirements, numbers no date survives: refused at parse,
    naming the policy, never a RecursionError or an OverflowError later in the gate."""
    with pytest.raises(InputError, match=message):
        parse_policy(text, source="policy.yaml")


def test_a_policy_at_the_bounds_is_accepted() -> None:
    policy = parse_policy(_nested(15), source="policy.yaml")
    assert isinstance(requirement_of(policy.require), AllOf)
