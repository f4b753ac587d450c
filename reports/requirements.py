"""The gate's leaf requirements: a trusted signed release, eval results, GPU inventory, lineage.

Each reads only proven entries (reports/gate.py `GateContext.prove`) and the contracts in
schemas/policy.py; a missing kind of evidence fails its requirement with a reason that says what
is missing and how it is produced, never passes by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from evidence.entry import Entry
from evidence.errors import VerificationError
from evidence.keys import TrustIndex, entry_window, public_pem
from evidence.model_signature import verify_signature
from reports.gate import GateContext, Outcome, Proven
from schemas.gpu import GPU_INVENTORY
from schemas.model import MODEL_RELEASE, SIGNATURE_NAME, Manifest, ModelReleasePredicate
from schemas.policy import (
    DATASET_LINEAGE,
    EVAL_RUN,
    EvalRunContract,
    GpuInventoryContract,
    LineageContract,
    TrainingRunContract,
)
from schemas.training_run import TRAINING_RUN
from schemas.trust import TrustedKey

MODEL_SIGNING_ROLE = "model-signing"

M = TypeVar("M", bound=BaseModel)


def _days(age: timedelta) -> str:
    return f"{age.total_seconds() / 86400:.1f} days"


def _limit(days: float) -> str:
    return f"{days:g} day" + ("" if days == 1 else "s")


def _contract(proven: Proven, model: type[M], what: str) -> M:
    """The predicate read through its contract; a malformed one is a verification failure."""
    try:
        return model.model_validate(proven.predicate)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(predicate)"
        raise VerificationError(
            f"entry {proven.index}: its predicate breaks the {what} contract "
            f"(schemas/policy.py): {loc}: {first['msg']}",
            index=proven.index,
        ) from None


# -- signed --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """A release in the log over exactly the files on disk, by a trusted, unrevoked key.

    The release entry must prove (signed by the model-signing key it names, valid at its index:
    no other role may sign a release; inclusion in the signed checkpoint); its signed manifest
    must equal the manifest just computed from disk; its
    `signingKeyid` must be a model-signing key of the trust file that is not revoked (whenever it
    was revoked: a leaked key taints what it signed before the leak was known) and was valid at
    the release's index (a key retired by rotation keeps its earlier releases). A model.sig
    beside the files must verify with that key over these files; `signature_file` requires one.
    """

    signature_file: bool = False
    rule: ClassVar[str] = "signed"

    def describe(self) -> str:
        text = "a trusted release in the log over the files on disk"
        return text + (f", with a valid {SIGNATURE_NAME}" if self.signature_file else "")

    def evaluate(self, context: GateContext) -> Outcome:
        problems: list[str] = []
        candidates = context.find(MODEL_RELEASE, subject_digest=context.digest)
        for proven in context.proven(candidates, problems):
            try:
                release = _release(proven, context.digest)
                key = _signing_key(release, proven, context.trust)
                bundle = _check_bundle(context, key, proven.index, required=self.signature_file)
            except VerificationError as exc:
                problems.append(str(exc))
                continue
            reason = (
                f"release entry {proven.index} ({release.name}, approved by "
                f"{release.approved_by}) signed by {key.name} {key.keyid[:16]}; "
                f"{len(context.manifest.files)} files match; {bundle}"
            )
            return Outcome(self.rule, self.describe(), True, reason, (proven.index,))
        if problems:
            reason = "no trusted release of these files: " + "; ".join(problems)
            return Outcome(self.rule, self.describe(), False, reason, _indices(candidates))
        return self._unsigned(context)

    def _unsigned(self, context: GateContext) -> Outcome:
        """No release names this manifest: compare with the newest release of the same name."""
        name = f"{context.kind}:{context.directory.resolve().name}"
        head = f"no release in the log matches the files on disk ({context.subject})"
        for proven in context.proven(context.find(MODEL_RELEASE, subject_name=name), []):
            try:
                signed = ModelReleasePredicate.model_validate(proven.predicate).manifest
            except ValidationError:
                continue
            changes, files = _differences(signed, context.manifest)
            reason = f"{head}; against release entry {proven.index} of {name}: {changes}"
            return Outcome(self.rule, self.describe(), False, reason, (proven.index,), files)
        reason = f"{head}: sign them with `annex sign model {context.directory}`"
        return Outcome(self.rule, self.describe(), False, reason)


def _check_bundle(context: GateContext, key: TrustedKey, index: int, *, required: bool) -> str:
    """Checks DIR/model.sig, when there is one, with the release's key over the disk manifest."""
    path = context.directory / SIGNATURE_NAME
    if not path.is_file():
        if required:
            raise VerificationError(
                f"entry {index}: no {SIGNATURE_NAME} beside the files, and the policy asks for one",
                index=index,
            )
        return f"no {SIGNATURE_NAME} beside the files (the log entry vouches alone)"
    try:
        bundle = path.read_bytes()
    except OSError as exc:
        raise VerificationError(f"cannot read {path}: {exc.strerror}", index=index) from None
    try:
        verify_signature(bundle, context.manifest, public_pem(key))
    except VerificationError as exc:
        raise VerificationError(f"entry {index}: {SIGNATURE_NAME}: {exc}", index=index) from None
    return f"{SIGNATURE_NAME} verifies with that key"


def _release(proven: Proven, digest: str) -> ModelReleasePredicate:
    if not proven.names_digest(digest):
        raise VerificationError(
            f"entry {proven.index}: its signed subjects do not name sha256:{digest[:12]}…",
            index=proven.index,
        )
    release = _contract(proven, ModelReleasePredicate, "model-release")
    if release.manifest.digest != digest:
        raise VerificationError(
            f"entry {proven.index}: its signed manifest is not the one its subject names",
            index=proven.index,
        )
    return release


def _signing_key(release: ModelReleasePredicate, proven: Proven, trust: TrustIndex) -> TrustedKey:
    """The model-signing key the release names; it must be the key that signed the entry."""
    keyid, index = release.signing_keyid, proven.index
    key = next((k for k in trust.trust.keys if k.keyid == keyid), None)
    where = f"entry {index}: signing key {keyid[:16]}"
    if proven.keyid != keyid:
        raise VerificationError(
            f"{where} is named in the release, but the entry is signed by key "
            f"{proven.keyid[:16]}: a release counts only as its model-signing key's own word",
            index=index,
        )
    if key is None:
        raise VerificationError(f"{where} is not in the trust file", index=index)
    if key.role != MODEL_SIGNING_ROLE:
        raise VerificationError(
            f"{where} is a {key.role} key, not a model-signing key", index=index
        )
    if key.status == "revoked":
        why = f" ({key.reason})" if key.reason else ""
        raise VerificationError(
            f"{where} ({key.name}) is revoked{why} from entry {key.valid_until_size}", index=index
        )
    if not key.signs_entry(index):
        raise VerificationError(
            f"{where} ({key.name}) was not valid at that position "
            f"(valid for entries {entry_window(key)})",
            index=index,
        )
    return key


def _differences(signed: Manifest, disk: Manifest) -> tuple[str, tuple[str, ...]]:
    """Which files changed, were added or were removed, as prose and as a list of paths."""
    before, after = signed.by_path(), disk.by_path()
    changed = [p for p in after if p in before and after[p] != before[p]]
    added = [p for p in after if p not in before]
    removed = [p for p in before if p not in after]
    parts = [
        f"{label} {', '.join(paths)}"
        for label, paths in (("changed", changed), ("added", added), ("removed", removed))
        if paths
    ]
    return "; ".join(parts) or "same files, other manifest", tuple(changed + added + removed)


def _indices(entries: list[Entry]) -> tuple[int, ...]:
    return tuple(sorted(e.index for e in entries))


# -- eval ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalResult:
    """The newest eval run of this manifest that reports `task`/`metric` is within bounds."""

    task: str
    metric: str
    min: float | None = None
    max: float | None = None
    max_age_days: float | None = None
    rule: ClassVar[str] = "eval"

    def describe(self) -> str:
        bounds = [f">= {self.min:g}" if self.min is not None else ""]
        bounds.append(f"<= {self.max:g}" if self.max is not None else "")
        text = f"eval {self.task} {self.metric} {' '.join(b for b in bounds if b)}"
        if self.max_age_days is not None:
            text += f", at most {_limit(self.max_age_days)} old"
        return text

    def evaluate(self, context: GateContext) -> Outcome:
        problems: list[str] = []
        candidates = context.find(EVAL_RUN, subject_digest=context.digest)
        for proven in context.proven(candidates, problems):
            try:
                run = _contract(proven, EvalRunContract, "eval-run")
            except VerificationError as exc:
                problems.append(str(exc))
                continue
            value = run.metric(self.task, self.metric)
            if proven.names_digest(context.digest) and value is not None:
                return self._judge(context, proven, run, value)
        return self._missing(context, candidates, problems)

    def _judge(
        self, context: GateContext, proven: Proven, run: EvalRunContract, value: float
    ) -> Outcome:
        age, index = context.age(run.observed_at), proven.index
        where = f"eval run entry {index} ({run.observed_at}, {context.signer(proven)})"
        if self.max_age_days is not None and age > timedelta(days=self.max_age_days):
            reason = (
                f"the newest eval run with {self.task} {self.metric}, {where}, is {_days(age)} "
                f"old, more than {_limit(self.max_age_days)}"
            )
            return Outcome(self.rule, self.describe(), False, reason, (index,))
        low = self.min is not None and value < self.min
        high = self.max is not None and value > self.max
        verdict = "below the minimum" if low else "above the maximum" if high else "within bounds"
        reason = f"{self.task} {self.metric} = {value:g} in {where}: {verdict}"
        return Outcome(self.rule, self.describe(), not (low or high), reason, (index,))

    def _missing(
        self, context: GateContext, candidates: list[Entry], problems: list[str]
    ) -> Outcome:
        if not candidates:
            reason = (
                f"no eval-run evidence for {context.subject}: run `annex eval run --model DIR "
                "--tasks TASKS` on these exact files, or `annex eval import RESULTS.json "
                "--model DIR` for results produced elsewhere"
            )
        else:
            reason = (
                f"none of the {len(candidates)} eval runs of {context.subject} reports a "
                f"numeric {self.task} {self.metric}"
            )
        if problems:
            reason += "; " + "; ".join(problems)
        return Outcome(self.rule, self.describe(), False, reason, _indices(candidates))


# -- GPU inventory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuInventory:
    """A fresh inventory of the site (any node) with status ok and enough devices."""

    max_age_days: float
    site: str | None = None
    min_devices: int = 1
    rule: ClassVar[str] = "gpu_inventory"

    def describe(self) -> str:
        where = f"site {self.site}" if self.site else "any site"
        return (
            f"GPU inventory of {where} with at least {self.min_devices} GPU(s), "
            f"at most {_limit(self.max_age_days)} old"
        )

    def evaluate(self, context: GateContext) -> Outcome:
        since = context.now - timedelta(days=self.max_age_days)
        problems: list[str] = []
        seen: list[str] = []
        candidates = context.find(GPU_INVENTORY, observed_since=since)
        for proven in context.proven(candidates, problems):
            try:
                inventory = _contract(proven, GpuInventoryContract, "gpu-inventory")
            except VerificationError as exc:
                problems.append(str(exc))
                continue
            if self.site is not None and inventory.site.site != self.site:
                continue
            if context.age(inventory.observed_at) > timedelta(days=self.max_age_days):
                continue  # its signed time says older than the database column did
            found = len(inventory.devices)
            if inventory.status == "ok" and found >= self.min_devices:
                reason = (
                    f"inventory entry {proven.index} ({inventory.observed_at}, "
                    f"{context.signer(proven)}): {found} GPU(s)"
                )
                return Outcome(self.rule, self.describe(), True, reason, (proven.index,))
            why = f" ({inventory.reason})" if inventory.reason else ""
            seen.append(f"entry {proven.index}: status {inventory.status}{why}, {found} GPU(s)")
        where = f"site {self.site}" if self.site else "any site"
        window = f"in the last {_limit(self.max_age_days)} (since {since:%Y-%m-%d %H:%M} UTC)"
        if seen:
            reason = f"no inventory of {where} {window} has enough GPUs: " + "; ".join(seen[:5])
        else:
            reason = (
                f"no gpu-inventory evidence of {where} {window}: "
                f"run `annex collect gpu{' --site ' + self.site if self.site else ''}` there"
            )
        if problems:
            reason += "; " + "; ".join(problems[:5])
        return Outcome(self.rule, self.describe(), False, reason)


# -- lineage -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lineage:
    """Lineage evidence names the datasets that went into this model or adapter.

    Read from dataset-lineage statements and from training runs whose output is this manifest
    (`annex collect training-run`), the newest first.
    """

    max_age_days: float | None = None
    rule: ClassVar[str] = "lineage"

    def describe(self) -> str:
        text = "dataset lineage recorded"
        if self.max_age_days is not None:
            text += f", at most {_limit(self.max_age_days)} old"
        return text

    def evaluate(self, context: GateContext) -> Outcome:
        problems: list[str] = []
        candidates = sorted(
            [
                *context.find(DATASET_LINEAGE, subject_digest=context.digest),
                *context.find(TRAINING_RUN, subject_digest=context.digest),
            ],
            key=lambda e: e.index,
            reverse=True,
        )
        for proven in context.proven(candidates, problems):
            try:
                lineage = _lineage(proven, context.digest)
            except VerificationError as exc:
                problems.append(str(exc))
                continue
            if lineage is None:
                continue
            age = context.age(lineage.observed_at)
            if self.max_age_days is not None and age > timedelta(days=self.max_age_days):
                reason = (
                    f"the newest lineage, entry {proven.index}, is {_days(age)} old, more than "
                    f"{_limit(self.max_age_days)}"
                )
                return Outcome(self.rule, self.describe(), False, reason, (proven.index,))
            names = ", ".join(d.name for d in lineage.datasets)
            what = "training run" if isinstance(lineage, TrainingRunContract) else "lineage"
            reason = f"{what} entry {proven.index} ({context.signer(proven)}): datasets {names}"
            return Outcome(self.rule, self.describe(), True, reason, (proven.index,))
        reason = (
            f"no dataset-lineage evidence for {context.subject}: record the run that produced "
            "it with `annex collect training-run` (datasets from `annex collect dataset`), or "
            "append a dataset-lineage statement of the shape in schemas/policy.py"
        )
        if problems:
            reason = f"no usable lineage for {context.subject}: " + "; ".join(problems)
        return Outcome(self.rule, self.describe(), False, reason, _indices(candidates))


def _lineage(proven: Proven, digest: str) -> LineageContract | None:
    """The entry read as lineage of `digest`; None when it is about something else."""
    if not proven.names_digest(digest):
        return None
    if proven.statement.get("predicateType") != TRAINING_RUN:
        return _contract(proven, LineageContract, "dataset-lineage")
    run = _contract(proven, TrainingRunContract, "training-run")
    return run if run.produced(digest) else None  # a run names its base too: not its lineage
