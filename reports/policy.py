"""Reading a gate policy file and turning it into requirement values.

The file is YAML, read with the safe loader and refusing duplicate keys (a second `min:` would
otherwise silently win), then checked by schemas/policy.py. Every error names the file and the
path inside it, e.g. `policy.yaml: require.all_of[1].eval.min: Input should be a valid number`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from evidence.errors import InputError
from reports.gate import AllOf, AnyOf, Requirement
from reports.requirements import EvalResult, GpuInventory, Lineage, Signed
from schemas.policy import DEFAULT_POLICY, MAX_DEPTH, MAX_POLICY_BYTES, MAX_REQUIREMENTS, Policy
from schemas.policy import Requirement as RequirementNode


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
    """The safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


def parse_policy(text: str, *, source: str) -> Policy:
    """Parses policy YAML; `source` names it in errors (usually the file's path)."""
    if len(text) > MAX_POLICY_BYTES:
        raise InputError(f"{source}: a policy is at most {MAX_POLICY_BYTES} characters")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
        raise InputError(f"{source}: not valid YAML: {where}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply to be a policy") from None
    if data is None:
        raise InputError(f"{source}: the policy is empty (it needs `version: 1` and `require:`)")
    _check_shape(data, source)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"{source}: {_path(first['loc'])}: {first['msg']}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply to be a policy") from None


def _check_shape(data: Any, source: str) -> None:
    """At most MAX_REQUIREMENTS requirements, all_of/any_of at most MAX_DEPTH deep: counted on
    the parsed YAML, before the model is built, so a hostile policy costs nothing more."""
    count = 0
    stack: list[tuple[Any, int]] = [(data.get("require") if isinstance(data, dict) else None, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict):
            continue
        count += 1
        if count > MAX_REQUIREMENTS:
            raise InputError(f"{source}: more than {MAX_REQUIREMENTS} requirements")
        if depth > MAX_DEPTH:
            raise InputError(f"{source}: all_of/any_of nested more than {MAX_DEPTH} deep")
        for key in ("all_of", "any_of"):
            children = node.get(key)
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in children)


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InputError(f"cannot read policy {path}: {why}") from None
    return parse_policy(text, source=str(path))


def _path(loc: tuple[int | str, ...]) -> str:
    """`('require', 'all_of', 1, 'eval', 'min')` -> `require.all_of[1].eval.min`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "(top level)"


def requirement_of(node: RequirementNode) -> Requirement:
    """The requirement value a policy node stands for."""
    if node.all_of is not None:
        return AllOf(tuple(requirement_of(n) for n in node.all_of))
    if node.any_of is not None:
        return AnyOf(tuple(requirement_of(n) for n in node.any_of))
    if node.signed is not None:
        return Signed(node.signed.signature_file)
    if node.eval is not None:
        spec = node.eval
        return EvalResult(spec.task, spec.metric, spec.min, spec.max, spec.max_age_days)
    if node.gpu_inventory is not None:
        gpu = node.gpu_inventory
        return GpuInventory(gpu.max_age_days, gpu.site, gpu.min_devices)
    if node.lineage is not None:
        return Lineage(node.lineage.max_age_days)
    raise AssertionError(f"policy node without a requirement: {node!r}")


def default_requirement() -> Requirement:
    """With no policy: a trusted, unrevoked release in the log over the exact files on disk."""
    return requirement_of(DEFAULT_POLICY.require)
