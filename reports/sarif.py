"""A gate verdict as SARIF 2.1.0, the format CI systems (GitHub code scanning, GitLab) ingest.

One result per failed requirement, level "error", located at the file it is about (a changed,
added or removed model file) or else at the model directory. Paths are relative to the working
directory when the model lies under it (as CI checkouts do), absolute file URIs otherwise.
The policy path of each requirement (`require.all_of[1].eval`) is its logical location.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from reports.gate import Failure, Verdict

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

# The rules a policy can fail, in a fixed order (ruleIndex points into it).
RULES: tuple[tuple[str, str, str], ...] = (
    ("signed", "SignedRelease", "A trusted, unrevoked release in the log covers the exact files."),
    ("eval", "EvalResult", "The newest eval run of the model reports the metric within bounds."),
    ("gpu_inventory", "FreshGpuInventory", "A recent GPU inventory of the target site exists."),
    ("lineage", "DatasetLineage", "The datasets behind the model or adapter are recorded."),
)
_INDEX = {rule_id: i for i, (rule_id, _, _) in enumerate(RULES)}


def _uri(path: Path, base: Path, *, directory: bool = False) -> str:
    absolute = path.absolute()
    try:
        relative = absolute.relative_to(base.absolute()).as_posix()
    except ValueError:
        uri = absolute.as_uri()
    else:
        uri = "" if relative == "." else quote(relative)
    if directory and not uri.endswith("/"):
        uri += "/"
    return uri


def _locations(verdict: Verdict, failure: Failure, base: Path) -> list[dict[str, Any]]:
    logical = [{"fullyQualifiedName": failure.path, "kind": "member"}]
    paths = [verdict.directory / name for name in failure.outcome.files]
    targets = [{"uri": _uri(p, base)} for p in paths]
    if not targets:
        targets = [{"uri": _uri(verdict.directory, base, directory=True)}]
    return [
        {"physicalLocation": {"artifactLocation": target}, "logicalLocations": logical}
        for target in targets
    ]


def _result(verdict: Verdict, failure: Failure, base: Path) -> dict[str, Any]:
    outcome = failure.outcome
    return {
        "ruleId": outcome.rule,
        "ruleIndex": _INDEX[outcome.rule],
        "kind": "fail",
        "level": "error",
        "message": {"text": f"{outcome.requirement}: {outcome.reason}"},
        "locations": _locations(verdict, failure, base),
        "properties": {"policyPath": failure.path, "logEntries": list(outcome.entries)},
    }


def to_sarif(verdict: Verdict, *, version: str, base: Path | None = None) -> dict[str, Any]:
    """The SARIF log of a verdict; `base` is what paths are made relative to (default: cwd)."""
    root = base or Path.cwd()
    rules = [
        {"id": rule_id, "name": name, "shortDescription": {"text": text}}
        for rule_id, name, text in RULES
    ]
    return {
        "version": SARIF_VERSION,
        "$schema": SARIF_SCHEMA,
        "runs": [
            {
                "tool": {"driver": {"name": "annex-gate", "version": version, "rules": rules}},
                "results": [_result(verdict, f, root) for f in verdict.failures()],
                "invocations": [{"executionSuccessful": True}],
                "properties": {
                    "passed": verdict.passed,
                    "manifestDigest": f"sha256:{verdict.manifest.digest}",
                    "policy": verdict.policy,
                    "treeSize": verdict.tree_size,
                },
            }
        ],
    }
