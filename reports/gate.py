"""The CI gate: requirements that compose, judged against proven evidence and the files on disk.

A requirement is a value with `evaluate(context) -> Outcome`; `AllOf` and `AnyOf` combine them
(reports/requirements.py holds the leaves, reports/policy.py builds them from a policy file).
Every outcome names its reason, the log entries it relied on and the key that signed each (a
key whose role may sign that type: schemas/authority.py), so a verdict can be audited.

What the gate trusts: the trust file (public keys) and nothing else. Each entry a requirement
relies on is proven before it is believed: its envelope signature by a key valid at its index,
and its inclusion in the latest signed checkpoint, which is itself verified. What the database's
query columns say (subjects, observed times) only selects candidates; every check reads the
signed statement. The directory is hashed once per run, every byte re-read (no cache: an
attacker can keep mtimes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from collectors.hashing import build_manifest
from evidence.dsse import Envelope
from evidence.entry import Entry, rfc3339
from evidence.errors import InputError, VerificationError
from evidence.keys import TrustIndex
from evidence.store import Store
from evidence.verify import latest_extending, verify_entry
from schemas.model import Manifest
from schemas.statement import parse_timestamp

Kind = Literal["model", "adapter"]
ADAPTER_CONFIG = "adapter_config.json"
_PAGE = 1000


@dataclass(frozen=True)
class Outcome:
    """How one requirement fared: why, and on which log entries and files."""

    rule: str  # the policy key: signed, eval, gpu_inventory, lineage, all_of, any_of
    requirement: str  # what was required, for people
    passed: bool
    reason: str
    entries: tuple[int, ...] = ()
    files: tuple[str, ...] = ()  # paths in the directory that the outcome is about
    children: tuple[Outcome, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rule": self.rule,
            "requirement": self.requirement,
            "passed": self.passed,
            "reason": self.reason,
            "entries": list(self.entries),
        }
        if self.files:
            data["files"] = list(self.files)
        if self.children:
            data["children"] = [c.to_json() for c in self.children]
        return data


@dataclass(frozen=True)
class Failure:
    """A failed leaf requirement and where it sits in the policy (`require.all_of[1].eval`)."""

    path: str
    outcome: Outcome


def failures(outcome: Outcome, path: str = "require") -> list[Failure]:
    """The failed leaves that made `outcome` fail; a branch of a passing any_of is not listed."""
    if outcome.passed:
        return []
    if not outcome.children:
        return [Failure(f"{path}.{outcome.rule}", outcome)]
    found: list[Failure] = []
    for i, child in enumerate(outcome.children):
        found.extend(failures(child, f"{path}.{outcome.rule}[{i}]"))
    return found


@dataclass(frozen=True)
class Proven:
    """A log entry whose signature and inclusion in the signed tree were checked."""

    index: int
    statement: dict[str, Any]
    keyid: str
    logged_by: datetime

    @property
    def predicate(self) -> dict[str, Any]:
        predicate: dict[str, Any] = self.statement.get("predicate", {})
        return predicate

    def names_digest(self, digest: str) -> bool:
        return any(s["digest"].get("sha256") == digest for s in self.statement["subject"])


@dataclass
class GateContext:
    """What requirements are judged against: one directory, one log snapshot, one trust file."""

    directory: Path
    kind: Kind
    manifest: Manifest
    store: Store
    trust: TrustIndex
    now: datetime
    tree_size: int
    _proven: dict[int, Proven] = field(default_factory=dict, repr=False)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def subject(self) -> str:
        """How the directory is named in messages: `adapter sha256:1a2b3c4d5e6f…`."""
        return f"{self.kind} sha256:{self.digest[:12]}…"

    def find(
        self,
        predicate_type: str,
        *,
        subject_digest: str | None = None,
        subject_name: str | None = None,
        observed_since: datetime | None = None,
    ) -> list[Entry]:
        """Candidate entries in the checked tree, newest first (not yet proven)."""
        found: list[Entry] = []
        after: int | None = None
        while True:
            page = self.store.query(
                predicate_type=predicate_type,
                subject_digest=None if subject_digest is None else f"sha256:{subject_digest}",
                subject_name=subject_name,
                observed_since=observed_since,
                after=after,
                limit=_PAGE,
            )
            found.extend(e for e in page if e.index < self.tree_size)
            if len(page) < _PAGE:
                break
            after = page[-1].index
        return found[::-1]

    def prove(self, entry: Entry) -> Proven:
        """Verifies the entry's envelope and its inclusion in the checked tree, or raises."""
        if entry.index in self._proven:
            return self._proven[entry.index]
        try:
            envelope = Envelope.from_json(entry.envelope_bytes)
        except InputError as exc:
            raise VerificationError(f"entry {entry.index}: {exc}", index=entry.index) from None
        proof = self.store.inclusion_proof(entry.index, self.tree_size)
        try:
            report = verify_entry(envelope, proof, self.trust)
        except VerificationError as exc:
            raise VerificationError(f"entry {entry.index}: {exc}", index=entry.index) from None
        proven = Proven(report.index, report.statement, report.keyid, report.logged_by)
        self._proven[entry.index] = proven
        return proven

    def proven(self, entries: list[Entry], problems: list[str]) -> Iterator[Proven]:
        """The entries that prove, in order; why the others did not goes into `problems`."""
        for entry in entries:
            try:
                yield self.prove(entry)
            except VerificationError as exc:
                problems.append(str(exc))

    def age(self, observed_at: str) -> timedelta:
        return self.now - parse_timestamp(observed_at)

    def signer(self, proven: Proven) -> str:
        """Who vouched for a proven entry, for a reason: `signed by NAME (role KEYID)`."""
        key = self.trust.get(proven.keyid)
        return f"signed by {key.name} ({key.role} key {key.keyid[:16]})"


class Requirement(Protocol):
    """Anything the gate can judge: a leaf check, or AllOf / AnyOf of others."""

    @property
    def rule(self) -> str: ...

    def describe(self) -> str: ...

    def evaluate(self, context: GateContext) -> Outcome: ...


@dataclass(frozen=True)
class AllOf:
    """Passes when every requirement passes; all are judged, so every failure is reported."""

    requirements: tuple[Requirement, ...]
    rule: ClassVar[str] = "all_of"

    def __post_init__(self) -> None:
        if not self.requirements:
            raise ValueError("AllOf of nothing would pass anything")

    def describe(self) -> str:
        return f"all of {len(self.requirements)}"

    def evaluate(self, context: GateContext) -> Outcome:
        outcomes = tuple(r.evaluate(context) for r in self.requirements)
        failed = sum(not o.passed for o in outcomes)
        passed = failed == 0
        reason = f"all {len(outcomes)} passed" if passed else f"{failed} of {len(outcomes)} failed"
        entries = _union(o.entries for o in outcomes) if passed else ()
        return Outcome(self.rule, self.describe(), passed, reason, entries, (), outcomes)


@dataclass(frozen=True)
class AnyOf:
    """Passes when at least one requirement passes (all are judged, for the report)."""

    requirements: tuple[Requirement, ...]
    rule: ClassVar[str] = "any_of"

    def __post_init__(self) -> None:
        if not self.requirements:
            raise ValueError("AnyOf of nothing can never pass")

    def describe(self) -> str:
        return f"any of {len(self.requirements)}"

    def evaluate(self, context: GateContext) -> Outcome:
        outcomes = tuple(r.evaluate(context) for r in self.requirements)
        winners = [i for i, o in enumerate(outcomes) if o.passed]
        if winners:
            reason = f"passed by branch {', '.join(str(i) for i in winners)}"
            entries = _union(outcomes[i].entries for i in winners)
            return Outcome(self.rule, self.describe(), True, reason, entries, (), outcomes)
        reason = f"none of {len(outcomes)} passed"
        return Outcome(self.rule, self.describe(), False, reason, (), (), outcomes)


def _union(groups: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(sorted({i for group in groups for i in group}))


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one directory under one policy."""

    directory: Path
    kind: Kind
    manifest: Manifest
    policy: str
    checked_at: datetime
    tree_size: int
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return self.outcome.passed

    def failures(self) -> list[Failure]:
        return failures(self.outcome)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.passed,
            "passed": self.passed,
            "directory": str(self.directory),
            "kind": self.kind,
            "manifest": {
                "digest": f"sha256:{self.manifest.digest}",
                "files": len(self.manifest.files),
                "bytes": self.manifest.total_bytes,
            },
            "policy": self.policy,
            "checked_at": rfc3339(self.checked_at),
            "tree_size": self.tree_size,
            "failures": [
                {
                    "path": f.path,
                    "rule": f.outcome.rule,
                    "requirement": f.outcome.requirement,
                    "reason": f.outcome.reason,
                    "entries": list(f.outcome.entries),
                    "files": list(f.outcome.files),
                }
                for f in self.failures()
            ],
            "requirements": self.outcome.to_json(),
        }


def directory_kind(directory: Path) -> Kind:
    """An adapter when adapter_config.json sits at the top, as PEFT writes it."""
    return "adapter" if (directory / ADAPTER_CONFIG).is_file() else "model"


def run_gate(
    directory: Path,
    requirement: Requirement,
    *,
    store: Store,
    trust: TrustIndex,
    policy: str,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    trusted_checkpoint: str | None = None,
) -> Verdict:
    """Hashes `directory` once, takes the latest verified checkpoint, judges `requirement`.

    With `trusted_checkpoint` (a signed note saved earlier), the latest checkpoint must be
    proven to extend it first, so a log rolled back in the database fails the gate.
    """
    if not directory.exists():
        raise InputError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory")
    if store.origin != trust.trust.origin:
        raise InputError(
            f"the trust file is for log {trust.trust.origin!r}, this log is {store.origin!r}"
        )
    if trusted_checkpoint is not None:
        latest_extending(store, trust, trusted_checkpoint)
    manifest = build_manifest(directory, cache=None, full=True, progress=progress)
    tree_size = store.checkpoint().size
    moment = now or datetime.now(UTC)
    context = GateContext(
        directory, directory_kind(directory), manifest, store, trust, moment, tree_size
    )
    outcome = requirement.evaluate(context)
    return Verdict(directory, context.kind, manifest, policy, moment, tree_size, outcome)
