"""Run lm-evaluation-harness on a local model, offline, and describe the run as eval-run evidence.

The run is bound to the manifest digests of the model (and adapter) hashed before it starts, and
the directories are hashed again when it ends: files that changed meanwhile make it an error, so
a logged result always belongs to the exact bytes it names. lm-eval and torch are an optional
extra (`annex[eval]`), imported only here and only when an eval runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import rfc8785
import yaml

from collectors.energy import energy_between, read_counters
from collectors.gpu import collect_gpu
from collectors.hashing import build_manifest
from collectors.nvml import load_pynvml
from evidence.canonical import json_error
from evidence.entry import rfc3339
from evidence.errors import CollectorError, ConfigError, InputError
from evidence.keys import utc_now
from schemas.eval_run import (
    DataFile,
    EvalRunPredicate,
    EvalTask,
    EvaluatedModel,
    GpuSeen,
    Versions,
    eval_statement,
)
from schemas.gpu import SiteLabels
from schemas.model import Manifest

BUNDLED_TASKS = Path(__file__).with_name("eval_tasks")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
INSTALL_HINT = "install the eval extra: pip install 'annex[eval]' (torch first, see README)"
BACKENDS = ("hf", "vllm")
VLLM_HINT = "install vllm (pip install vllm, on a machine with a CUDA GPU) or use --backend hf"
GIT_NOISE = "fatal: not a git repository"


@dataclass(frozen=True)
class EvalOutcome:
    """A finished run: its predicate, the statement to log and the per-sample outputs (JSONL)."""

    predicate: EvalRunPredicate
    statement: dict[str, Any]
    samples: bytes


def bundled_tasks() -> list[str]:
    """The task names Annex ships (one folder each under collectors/eval_tasks)."""
    return sorted(p.name for p in BUNDLED_TASKS.iterdir() if (p / f"{p.name}.yaml").is_file())


def _lm_eval() -> Any:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise ConfigError(f"lm-eval is not installed ({exc}): {INSTALL_HINT}") from None
    return lm_eval, TaskManager


def _manifest(path: Path, what: str) -> Manifest:
    if not path.is_dir():
        raise InputError(f"{what} {path}: not a directory")
    return build_manifest(path)


def check_device(device: str) -> None:
    """InputError for a CUDA device this host does not have: torch would otherwise fail deep
    in lm-eval with an AssertionError ("Torch not compiled with CUDA enabled")."""
    if not device.startswith("cuda"):
        return
    import torch  # lm-eval's own dependency, already imported by now

    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU"
        raise InputError(f"--device {device}: no CUDA device on this host ({why}); use cpu")
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise InputError(
            f"--device {device}: this host has {torch.cuda.device_count()} CUDA device(s)"
        )


def run_eval(
    model_dir: Path,
    *,
    adapter_dir: Path | None = None,
    tasks: Sequence[str],
    tasks_dir: Path | None = None,
    device: str = "cpu",
    limit: float | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 1,
    dtype: str = "auto",
    backend: str = "hf",
    now: datetime | None = None,
) -> EvalOutcome:
    """Evaluates `model_dir` (with `adapter_dir`) on `tasks`, bound to their manifest digests."""
    if not tasks:
        raise InputError("--tasks: name at least one task")
    require_backend(backend)
    lm_eval, task_manager_class = _lm_eval()
    check_device(device)
    before = _manifest(model_dir, "--model")
    adapter_before = None if adapter_dir is None else _manifest(adapter_dir, "--adapter")
    nvml = load_pynvml()
    energy_start = read_counters(nvml)
    started = time.monotonic()
    with _task_folder(tasks_dir) as include, _offline(), quiet_subprocess_stderr():
        manager = task_manager_class(include_path=str(include), include_defaults=False)
        unknown = [t for t in tasks if t not in manager.all_tasks]
        if unknown:
            known = ", ".join(sorted(manager.all_tasks)) or "none"
            raise InputError(f"--tasks: unknown task(s) {', '.join(unknown)}; known: {known}")
        try:
            raw = lm_eval.simple_evaluate(
                model=backend,
                model_args=model_args(backend, model_dir, adapter_dir, dtype),
                tasks=list(tasks),
                task_manager=manager,
                device=device,
                batch_size=batch_size,
                limit=limit,
                num_fewshot=num_fewshot,
                log_samples=True,
            )
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            # lm-eval and transformers report a directory that is no model, a device that is
            # not there or a task that cannot load this way; the message names what is wrong.
            raise CollectorError(
                f"lm-eval could not evaluate {model_dir}: {type(exc).__name__}: {exc}"
            ) from None
    duration = time.monotonic() - started
    energy = energy_between(energy_start, read_counters(nvml))
    _unchanged(model_dir, before)
    if adapter_dir is not None and adapter_before is not None:
        _unchanged(adapter_dir, adapter_before)
    samples = samples_jsonl(raw.get("samples", {}))
    predicate = predicate_of(
        raw,
        origin="run",
        model=EvaluatedModel(name=model_dir.name, manifest_digest=before.digest),
        adapter=None
        if adapter_dir is None or adapter_before is None
        else EvaluatedModel(name=adapter_dir.name, manifest_digest=adapter_before.digest),
        now=now,
        extra={
            "backend": backend,
            "gpu": gpu_seen(),
            "durationSeconds": round(duration, 3),
            "energyJoules": energy.joules,
            "energyNote": energy.note,
            "samplesDigest": hashlib.sha256(samples).hexdigest(),
            "groups": group_metrics(raw.get("samples", {})),
        },
    )
    return EvalOutcome(predicate, eval_statement(predicate), samples)


def require_backend(backend: str) -> None:
    """Refuses an unknown backend, or vllm where it is not installed, before any work is done."""
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"--backend vllm: vllm is not installed: {VLLM_HINT}")


def model_args(backend: str, model_dir: Path, adapter_dir: Path | None, dtype: str) -> str:
    """lm-eval's model_args string for `backend` (names as in lm_eval/models/*.py).

    hf loads an adapter through PEFT (`peft=`); vLLM serves it as a LoRA (`enable_lora`,
    `lora_local_path`), with the rank raised to the adapter's own when its config gives one.
    """
    args = f"pretrained={model_dir.resolve()},dtype={dtype}"
    if adapter_dir is None:
        return args
    if backend == "hf":
        return f"{args},peft={adapter_dir.resolve()}"
    lora = f"{args},enable_lora=True,lora_local_path={adapter_dir.resolve()}"
    rank = _lora_rank(adapter_dir)
    return lora if rank is None or rank <= 16 else f"{lora},max_lora_rank={rank}"


def _lora_rank(adapter_dir: Path) -> int | None:
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rank = config.get("r") if isinstance(config, dict) else None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


@contextmanager
def quiet_subprocess_stderr() -> Iterator[None]:
    """Child processes' stderr (lm-eval's `git describe`) kept apart, Python's own left alone.

    lm-eval asks git for a commit hash and git prints "fatal: not a git repository" outside a
    repository. File descriptor 2 goes to a temporary file while lm-eval runs; Python's
    sys.stderr keeps writing to the terminal (progress bars stay), and whatever else landed in
    the file is written back afterwards, less git's complaint.
    """
    try:
        sys.stderr.flush()
        own = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        own = False  # a captured stderr (tests, CliRunner) does not write to descriptor 2
    saved = os.dup(2)
    original = sys.stderr
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        if own:
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, errors="replace")
        try:
            yield
        finally:
            if own:
                sys.stderr.close()
                sys.stderr = original
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [
                line
                for line in sink.read().decode(errors="replace").splitlines(keepends=True)
                if not line.startswith(GIT_NOISE)
            ]
            if kept:
                original.write("".join(kept))
                original.flush()


def _unchanged(path: Path, before: Manifest) -> None:
    after = build_manifest(path)
    if after.digest != before.digest:
        changed = sorted(
            {f.path for f in before.files} ^ {f.path for f in after.files}
            | {a.path for a, b in zip(before.files, after.files, strict=False) if a != b}
        )
        raise CollectorError(
            f"{path} changed during the eval run (manifest sha256:{before.digest[:12]} became "
            f"sha256:{after.digest[:12]}; files: {', '.join(changed[:5]) or 'renamed'}): "
            "nothing logged"
        )


@contextmanager
def _offline() -> Iterator[None]:
    """No hub downloads of weights or data while lm-eval runs; the environment restored after."""
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _task_folder(tasks_dir: Path | None) -> Iterator[Path]:
    """A temporary copy of the task folders whose data_files are absolute (as lm-eval wants).

    Copied whole, names kept, so `include:` and `!function` helpers beside a YAML still resolve.
    """
    if tasks_dir is not None and not tasks_dir.is_dir():
        raise InputError(f"--tasks-dir {tasks_dir}: not a directory")
    with tempfile.TemporaryDirectory(prefix="annex-tasks-") as tmp:
        copies = [(BUNDLED_TASKS, Path(tmp) / "annex")]
        if tasks_dir is not None:
            copies.append((tasks_dir, Path(tmp) / "user"))
        for source, target in copies:
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            for original in sorted(source.rglob("*.yaml")):
                copy = target / original.relative_to(source)
                copy.write_text(_absolute_data(original), encoding="utf-8")
        yield Path(tmp)


def _absolute_data(source: Path) -> str:
    """The YAML with relative data_files resolved against its folder; as is if not plain YAML."""
    text = source.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # e.g. `!function` tags: lm-eval reads it; paths must already be absolute
    files = doc.get("dataset_kwargs", {}).get("data_files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        return text
    for split, value in files.items():
        if isinstance(value, str) and not Path(value).is_absolute():
            files[split] = str((source.parent / value).resolve())
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


# -- from lm-eval's results dict to the predicate -------------------------------------------------


def predicate_of(
    raw: Mapping[str, Any],
    *,
    origin: str,
    model: EvaluatedModel,
    adapter: EvaluatedModel | None = None,
    now: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> EvalRunPredicate:
    """The predicate of an lm-eval results dict (a live run's, or a results file's)."""
    config = _mapping(raw, "config")
    results = {t: dict(m) for t, m in raw["results"].items()}
    configs = _mapping(raw, "configs")
    versions_of_tasks = _mapping(raw, "versions")
    versions = _versions(raw, origin)
    data = {
        "observedAt": rfc3339(now or utc_now()),
        "origin": origin,
        "model": model,
        "adapter": adapter,
        "tasks": [_task(name, configs.get(name), versions_of_tasks.get(name)) for name in results],
        "nShot": {k: int(v) for k, v in (raw.get("n-shot") or {}).items()},
        "limit": config.get("limit"),
        "seeds": {k: config.get(k) for k in ("random_seed", "numpy_seed", "torch_seed")},
        "batchSize": None if config.get("batch_size") is None else str(config["batch_size"]),
        "dtype": None if config.get("model_dtype") is None else str(config["model_dtype"]),
        "device": config.get("device"),
        "backend": config.get("model") if config.get("model") in BACKENDS else None,
        "versions": versions,
        "missing": tuple(
            f"versions.{k}" for k, v in versions.model_dump(by_alias=True).items() if v is None
        ),
        "results": _json_safe(results),
        **(extra or {}),
    }
    return EvalRunPredicate.model_validate(data)


def _mapping(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return dict(value) if isinstance(value, dict) else {}


def _task(name: str, config: Any, version: Any) -> EvalTask:
    config = config if isinstance(config, dict) else {}
    files = _data_files(config)
    digest = None
    if config:
        stable = json.loads(json.dumps(_json_safe(config)))
        stable.get("metadata", {}).pop("config_source", None)  # a temporary path
        kwargs = stable.get("dataset_kwargs")
        if isinstance(kwargs, dict) and "data_files" in kwargs:
            kwargs["data_files"] = {f.path: f.sha256 for f in files}  # by content, not location
        digest = hashlib.sha256(rfc8785.dumps(stable)).hexdigest()
    return EvalTask(
        name=name,
        version=None if version is None else str(version),
        config_digest=digest,
        data_files=files,
    )


def _data_files(config: Mapping[str, Any]) -> tuple[DataFile, ...]:
    kwargs = config.get("dataset_kwargs")
    files = kwargs.get("data_files") if isinstance(kwargs, dict) else None
    paths: list[str] = []
    if isinstance(files, str):
        paths = [files]
    elif isinstance(files, dict):
        for value in files.values():
            paths.extend([value] if isinstance(value, str) else list(value or ()))
    found = []
    for path in paths:
        local = Path(path)
        if local.is_file():
            digest = hashlib.sha256(local.read_bytes()).hexdigest()
            found.append(DataFile(path=local.name, sha256=digest))
    return tuple(found)


def _versions(raw: Mapping[str, Any], origin: str) -> Versions:
    """Versions as the results say; torch from this process for a run, from the file's env info
    (`pretty_env_info`: "PyTorch version: 2.13.0+cu128") for an import."""
    torch_version = None
    if origin == "imported":
        torch_version = torch_of_env_info(raw.get("pretty_env_info"))
    else:
        try:
            import torch

            torch_version = str(torch.__version__)
        except ImportError:
            pass
    return Versions(
        lm_eval=raw.get("lm_eval_version"),
        transformers=raw.get("transformers_version"),
        torch=torch_version,
    )


def _not_given(versions: Versions) -> tuple[str, ...]:
    named = versions.model_dump(by_alias=True)
    return tuple(f"versions.{key}" for key, value in named.items() if value is None)


def torch_of_env_info(info: Any) -> str | None:
    """The torch version named by lm-eval's `pretty_env_info` (torch's collect_env text)."""
    if not isinstance(info, str):
        return None
    found = re.search(r"^PyTorch version:\s*(\S+)", info, flags=re.MULTILINE)
    return found.group(1) if found and found.group(1) != "N/A" else None


def _json_safe(value: Any) -> Any:
    """Only the JSON-serialisable parts: functions and objects dropped, NaN/inf as None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items() if _serialisable(v)}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value if _serialisable(v)]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _serialisable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | dict | list | tuple)


# -- per-sample outputs and per-group metrics -----------------------------------------------------


def samples_jsonl(samples: Mapping[str, Any]) -> bytes:
    """lm-eval's per-sample outputs, one JSON line each, tasks in name order."""
    lines = []
    for task in sorted(samples):
        for sample in samples[task]:
            record = {"task": task, **_json_safe(dict(sample))}
            lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str))
    return ("\n".join(lines) + "\n").encode() if lines else b""


def group_metrics(samples: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {group: {"acc,none": mean, "n": count}}} for samples whose doc has a `group` field.

    Metric names are lm-eval's ("metric,filter"), as in `results`, so a group reads like a task.
    """
    sums: dict[str, dict[str, dict[str, list[float]]]] = {}
    for task, rows in samples.items():
        for sample in rows:
            doc = sample.get("doc")
            group = doc.get("group") if isinstance(doc, dict) else None
            if not isinstance(group, str):
                continue
            where = sample.get("filter", "none")
            for metric in sample.get("metrics", ()):
                value = sample.get(metric)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    bucket = sums.setdefault(task, {}).setdefault(group, {})
                    bucket.setdefault(f"{metric},{where}", []).append(float(value))
    return {
        task: {
            group: {
                **{m: sum(v) / len(v) for m, v in metrics.items()},
                "n": float(max(len(v) for v in metrics.values())),
            }
            for group, metrics in sorted(groups.items())
        }
        for task, groups in sorted(sums.items())
    }


def gpu_seen() -> GpuSeen:
    """NVML's status and the GPU names at run time (from the GPU collector)."""
    predicate = collect_gpu(load_pynvml(), site=SiteLabels())["predicate"]
    names = [str(d.get("name", {}).get("value", "?")) for d in predicate.get("devices", [])]
    return GpuSeen(status=predicate["status"], reason=predicate.get("reason"), devices=tuple(names))


# -- import of a results file ---------------------------------------------------------------------


def import_results(
    results_path: Path,
    model_dir: Path,
    *,
    adapter_dir: Path | None = None,
    samples_path: Path | None = None,
    now: datetime | None = None,
) -> EvalOutcome:
    """A results file written by lm-eval elsewhere, labelled imported, bound to `model_dir`
    (and `adapter_dir`). Per-sample outputs come from the file's `samples` (--log_samples
    output inline) or from `samples_path` (lm-eval's samples_<task>_<date>.jsonl)."""
    raw = read_results(results_path)
    manifest = _manifest(model_dir, "--model")
    adapter = None if adapter_dir is None else _manifest(adapter_dir, "--adapter")
    per_task = {
        task: [row for row in rows if isinstance(row, dict)]
        for task, rows in _mapping(raw, "samples").items()
        if isinstance(rows, list)
    }
    if samples_path is not None:
        per_task = read_samples(samples_path, default_task=_only_task(raw))
    samples = samples_jsonl(per_task)
    extra: dict[str, Any] = {}
    if samples:
        extra = {
            "samplesDigest": hashlib.sha256(samples).hexdigest(),
            "groups": group_metrics(per_task),
        }
    predicate = predicate_of(
        raw,
        origin="imported",
        model=EvaluatedModel(name=model_dir.name, manifest_digest=manifest.digest),
        adapter=None
        if adapter_dir is None or adapter is None
        else EvaluatedModel(name=adapter_dir.name, manifest_digest=adapter.digest),
        now=now,
        extra=extra,
    )
    return EvalOutcome(predicate, eval_statement(predicate), samples)


def _only_task(raw: Mapping[str, Any]) -> str | None:
    tasks = list(raw["results"])
    return tasks[0] if len(tasks) == 1 else None


def read_samples(path: Path, *, default_task: str | None) -> dict[str, list[dict[str, Any]]]:
    """lm-eval's samples JSONL as {task: [sample, ...]}; InputError naming the bad line.

    A line's task is its `task` field, else the results file's only task (lm-eval writes one
    samples file per task, without the name in each line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--samples {path}: not readable: {exc}") from None
    found: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except ValueError as exc:
            raise InputError(
                f"--samples {path}: line {number}: not JSON: {json_error(exc)}"
            ) from None
        if not isinstance(sample, dict):
            raise InputError(f"--samples {path}: line {number}: not a JSON object")
        task = sample.pop("task", None) or default_task
        if not isinstance(task, str):
            raise InputError(
                f"--samples {path}: line {number}: no `task` field, and the results file "
                "holds more than one task"
            )
        found.setdefault(task, []).append(sample)
    if not found:
        raise InputError(f"--samples {path}: no samples in the file")
    return found


def read_results(path: Path) -> dict[str, Any]:
    """An lm-eval results JSON; InputError naming the file and field when it is not one."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: not a readable JSON file: {exc}") from None
    except ValueError as exc:
        raise InputError(f"{path}: not a readable JSON file: {json_error(exc)}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("results"), dict) or not raw["results"]:
        raise InputError(f"{path}: not an lm-eval results file: no `results` object of tasks")
    if not ("versions" in raw or "configs" in raw or "lm_eval_version" in raw):
        raise InputError(
            f"{path}: not an lm-eval results file: none of `versions`, `configs`, `lm_eval_version`"
        )
    for task, metrics in raw["results"].items():
        if not isinstance(metrics, dict):
            raise InputError(f"{path}: field results.{task}: expected an object of metrics")
        if not any(_is_number(v) for v in metrics.values()):
            raise InputError(f"{path}: field results.{task}: no numeric metric")
    return raw


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
