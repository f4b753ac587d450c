"""One run of a sweep: every step through the collectors the `annex collect` commands use, then
one sweep-run entry saying what ran, what failed and how long it took.

Each target of a step (a model directory, a dataset path, a log file, an eval) is tried on its
own: an AnnexError or an OSError fails that target only, is recorded with its message, and the
sweep goes on. Each target appends its evidence as the command would (a dataset or inference log
already in the log is named, not logged again); the sweep-run entry is appended last and names
the entries the targets made, so a crash mid-sweep leaves their entries and no run: a missed run.

A sweep runs once at a time on a host: a run holds an exclusive lock on
`<home>/locks/sweep-<name>.lock` (flock, released by the kernel if the process dies), and a
second run that finds it held is refused before it logs anything.
"""

from __future__ import annotations

import fcntl
import glob
import os
import socket
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.sweeps.config import (
    DatasetStep,
    EvalStep,
    GpuStep,
    InferenceLogStep,
    ModelStep,
    Step,
    Sweep,
    SweepConfig,
)
from collectors.datasets import already_logged, take_snapshot
from collectors.datasets import describe as describe_dataset
from collectors.datasets import statement_of as dataset_statement
from collectors.evals import require_backend, run_eval
from collectors.gpu import collect_gpu
from collectors.hash_cache import CACHE_PATH, HashCache
from collectors.hashing import build_manifest
from collectors.inference_log import ingest
from collectors.models import bind, describe, find_base, statement_of
from collectors.nvml import NvmlBackend, Unavailable, load_pynvml
from evidence.blobs import BlobStore
from evidence.entry import rfc3339
from evidence.errors import AnnexError, ConfigError
from evidence.home import Home
from evidence.keys import utc_now
from evidence.store import Store
from evidence.vault import Vault
from reports.sweeps import scheduled_for
from schemas.gpu import SiteLabels
from schemas.sweep_run import (
    StepKind,
    StepResult,
    SweepRunPredicate,
    Trigger,
    sweep_run_statement,
)


@dataclass(frozen=True)
class Boundaries:
    """What a run reads from outside Annex: NVML (a test gives the fake) and the site labels."""

    nvml: Callable[[], NvmlBackend | Unavailable] = load_pynvml
    site: SiteLabels = field(default_factory=SiteLabels)


@dataclass(frozen=True)
class Done:
    """A finished run: what it logged about itself, and at which entry."""

    predicate: SweepRunPredicate
    entry: int


class SweepRunning(AnnexError):
    """The same sweep is running already on this host; this run was refused, nothing logged."""

    exit_code = 2
    http_status = 409


@contextmanager
def only_run(home: Home, name: str) -> Iterator[None]:
    """Holds the sweep's lock for the run, or raises SweepRunning at once."""
    folder = home.path / "locks"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(folder / f"sweep-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot take the lock of sweep {name} in {folder}: {exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepRunning(
                f"sweep {name} is already running on this host (another process holds "
                f"{folder / f'sweep-{name}.lock'}): this run is refused and logs nothing"
            ) from None
        yield
    finally:
        os.close(fd)


def run_sweep(
    home: Home,
    config: SweepConfig,
    sweep: Sweep,
    *,
    trigger: Trigger,
    boundaries: Boundaries | None = None,
) -> Done:
    """Runs every step of `sweep` and logs the run; raises only for a log that cannot be opened
    or a run of the same sweep that is still going on this host."""
    outside = boundaries or Boundaries()
    with only_run(home, sweep.name), home.open_store(write=True) as store:
        started, clock = utc_now(), time.monotonic()
        results = [r for step in sweep.steps for r in _step(step, store, home, outside)]
        finished = utc_now()
        schedule = config.schedule(sweep)
        serves = scheduled_for(schedule, started)
        predicate = SweepRunPredicate(
            observed_at=rfc3339(finished),
            sweep=sweep.name,
            schedule=sweep.schedule,
            timezone=config.timezone,
            grace_minutes=sweep.grace_minutes,
            system=sweep.system,
            trigger=trigger,
            scheduled_for=None if serves is None else rfc3339(serves),
            started_at=rfc3339(started),
            finished_at=rfc3339(finished),
            duration_seconds=round(time.monotonic() - clock, 3),
            status="failed" if any(r.status == "failed" for r in results) else "ok",
            host=socket.gethostname(),
            steps=tuple(results),
        )
        statement = sweep_run_statement(predicate, sweep.declaration_sha256())
        entry = store.append([statement], labels=[f"sweep {sweep.name}"]).first_index
    return Done(predicate, entry)


def _attempt(kind: StepKind, target: str | None, action: Callable[[], list[int]]) -> StepResult:
    """One target of one step, timed; its failure is recorded, never raised."""
    clock = time.monotonic()
    error: str | None = None
    entries: list[int] = []
    try:
        entries = action()
    except AnnexError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"{exc.filename or target}: {exc.strerror or exc}"
    return StepResult(
        kind=kind,
        target=target,
        status="ok" if error is None else "failed",
        entries=tuple(entries),
        error=error,
        duration_seconds=round(time.monotonic() - clock, 3),
    )


def _step(step: Step, store: Store, home: Home, outside: Boundaries) -> Iterator[StepResult]:
    if isinstance(step, GpuStep):
        yield _attempt("gpu", None, lambda: _gpu(store, outside))
    elif isinstance(step, ModelStep):
        with HashCache(home.path / CACHE_PATH) as cache:
            for d in step.dirs:
                yield _attempt("model", str(d), partial(_model, store, cache, d))
    elif isinstance(step, DatasetStep):
        with HashCache(home.path / CACHE_PATH) as cache:
            for p in step.paths:
                yield _attempt("dataset", str(p), partial(_dataset, store, cache, p))
    elif isinstance(step, InferenceLogStep):
        yield from _inference_logs(step, store, home)
    elif isinstance(step, EvalStep):
        yield from _evals(step, store, home)


# -- the steps: the collectors of `annex collect ...` ---------------------------------------------


def _gpu(store: Store, outside: Boundaries) -> list[int]:
    statement = collect_gpu(outside.nvml(), site=outside.site)
    return [store.append([statement], labels=["GPU inventory"]).first_index]


def _model(store: Store, cache: HashCache, directory: Path) -> list[int]:
    """As `annex collect model DIR`: an adapter is bound to the newest logged model of its base."""
    predicate = describe(directory, build_manifest(directory, cache=cache))
    base = None
    if predicate.adapter is not None:
        base = find_base(store, predicate.adapter.base_model_name)
        if base is not None:
            predicate = bind(predicate, base)
    return [store.append([statement_of(predicate, base)], labels=[str(directory)]).first_index]


def _dataset(store: Store, cache: HashCache, path: Path) -> list[int]:
    """As `annex collect dataset PATH`: a snapshot already logged is named, not logged again."""
    snap = take_snapshot(path, cache=cache)
    known = already_logged(store, snap)
    if known is not None:
        return [known]
    statement = dataset_statement(describe_dataset(snap))
    return [store.append([statement], labels=[str(path)]).first_index]


def _inference_logs(step: InferenceLogStep, store: Store, home: Home) -> Iterator[StepResult]:
    with ExitStack() as stack:
        vault: Vault | None = None
        for pattern in step.files:
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not matches:
                yield _attempt(
                    "inference-log",
                    pattern,
                    partial(_raise, ConfigError(f"no file matches {pattern}")),
                )
            for name in matches:
                if vault is None:
                    vault = stack.enter_context(Vault.open(home.path / "vault"))
                yield _attempt(
                    "inference-log",
                    name,
                    partial(_inference_log, store, vault, home, Path(name), step),
                )


def _inference_log(
    store: Store, vault: Vault, home: Home, path: Path, step: InferenceLogStep
) -> list[int]:
    """As `annex collect inference-log FILE` with the step's retention options: a file already
    logged is named, not logged again."""
    done = ingest(
        store,
        vault,
        BlobStore(home.path / "blobs"),
        path,
        retention=step.policy(),
        now=utc_now(),
        batch_size=step.batch_size,
    )
    return done.entries


# -- evals: a suite file of `annex eval run` invocations -------------------------------------------


class EvalSpec(BaseModel):
    """One [[eval]] of a suite file: the options of `annex eval run`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Path
    tasks: tuple[str, ...] = Field(min_length=1)
    adapter: Path | None = None
    tasks_dir: Path | None = None
    device: str = "cpu"
    limit: float | None = Field(default=None, gt=0)
    num_fewshot: int | None = Field(default=None, ge=0)
    batch_size: int = Field(default=1, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    backend: str = "hf"


class Suite(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    evals: tuple[EvalSpec, ...] = Field(alias="eval", min_length=1)


def load_suite(path: Path) -> tuple[EvalSpec, ...]:
    """The evals of a suite file, paths read from its directory; ConfigError if it is bad."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        suite = Suite.model_validate(raw)
    except OSError as exc:
        raise ConfigError(f"cannot read eval suite {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"eval suite {path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"eval suite {path}: {where}: {first['msg']}") from None

    def under(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else path.parent / p

    return tuple(
        spec.model_copy(
            update={
                "model": under(spec.model),
                "adapter": under(spec.adapter),
                "tasks_dir": under(spec.tasks_dir),
            }
        )
        for spec in suite.evals
    )


def _evals(step: EvalStep, store: Store, home: Home) -> Iterator[StepResult]:
    try:
        specs = load_suite(step.suite)
    except ConfigError as exc:
        yield _attempt("eval", str(step.suite), partial(_raise, exc))
        return
    for n, spec in enumerate(specs, start=1):
        target = f"{step.suite}#{n} {spec.model.name} ({','.join(spec.tasks)})"
        yield _attempt("eval", target, partial(_eval, store, home, spec))


def _raise(error: AnnexError) -> list[int]:
    raise error


def _eval(store: Store, home: Home, spec: EvalSpec) -> list[int]:
    """As `annex eval run`: the samples into the blob store, then the run into the log."""
    require_backend(spec.backend)
    outcome = run_eval(
        spec.model,
        adapter_dir=spec.adapter,
        tasks=spec.tasks,
        tasks_dir=spec.tasks_dir,
        device=spec.device,
        limit=spec.limit,
        num_fewshot=spec.num_fewshot,
        batch_size=spec.batch_size,
        dtype=spec.dtype,
        backend=spec.backend,
    )
    if outcome.samples:
        BlobStore(home.path / "blobs").put(outcome.samples)
    labels = [f"eval {spec.model.name}"]
    return [store.append([outcome.statement], labels=labels).first_index]
