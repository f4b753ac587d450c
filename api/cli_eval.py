"""`annex eval run | import`: lm-eval runs on local models, logged as signed eval-run evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli_base import HomeOpt, JsonOpt, app, command, open_home
from api.output import print_json, stdout
from collectors.evals import (
    EvalOutcome,
    bundled_tasks,
    import_results,
    require_backend,
    run_eval,
)
from evidence.blobs import BlobStore
from evidence.errors import InputError

eval_app = typer.Typer(help="Evals: run lm-evaluation-harness offline and log every run.")
app.add_typer(eval_app, name="eval", no_args_is_help=True)

DEVICES = ("cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@command(eval_app, "run")
def eval_run_command(
    model: Annotated[Path, typer.Option("--model", help="The model directory (Hugging Face).")],
    tasks: Annotated[
        str, typer.Option("--tasks", help="Comma-separated task names (bundled: annex_mc).")
    ],
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="A PEFT adapter directory on the model.")
    ] = None,
    tasks_dir: Annotated[
        Path | None, typer.Option("--tasks-dir", help="A folder of lm-eval task YAMLs.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
    limit: Annotated[
        float | None, typer.Option("--limit", help="At most N documents per task.")
    ] = None,
    num_fewshot: Annotated[int | None, typer.Option("--num-fewshot", min=0)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1,
    dtype: Annotated[
        str, typer.Option("--dtype", help="auto (the model's own), float32, bfloat16, float16.")
    ] = "auto",
    backend: Annotated[
        str, typer.Option("--backend", help="lm-eval backend: hf (transformers) or vllm.")
    ] = "hf",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate a local model on local tasks, offline, bound to its manifest digest; log it."""
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise InputError("--tasks: name at least one task, e.g. --tasks annex_mc")
    if device.split(":")[0] not in DEVICES:
        raise InputError(f"--device {device!r}: use cpu, cuda or cuda:N")
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if limit is not None and limit <= 0:
        raise InputError(f"--limit {limit}: must be above 0")
    require_backend(backend)  # before the store is opened: vllm missing fails at once
    target = open_home(home)
    with target.open_store(write=True) as store:  # opened first: a missing key fails fast
        outcome = run_eval(
            model,
            adapter_dir=adapter,
            tasks=names,
            tasks_dir=tasks_dir,
            device=device,
            limit=limit,
            num_fewshot=num_fewshot,
            batch_size=batch_size,
            dtype=dtype,
            backend=backend,
        )
        _keep_samples(target.path, outcome)
        index = store.append([outcome.statement], labels=[f"eval {model.name}"]).first_index
    _report(outcome, index, json_out)


@command(eval_app, "import")
def eval_import_command(
    results: Annotated[Path, typer.Argument(help="A results JSON written by lm-eval.")],
    model: Annotated[Path, typer.Option("--model", help="The model directory it evaluated.")],
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="The PEFT adapter it evaluated on the model.")
    ] = None,
    samples: Annotated[
        Path | None,
        typer.Option("--samples", help="lm-eval's samples_<task>_<date>.jsonl (--log_samples)."),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Log results lm-eval produced elsewhere, labelled imported, bound to this model's digest."""
    target = open_home(home)
    with target.open_store(write=True) as store:
        outcome = import_results(results, model, adapter_dir=adapter, samples_path=samples)
        _keep_samples(target.path, outcome)
        index = store.append([outcome.statement], labels=[f"eval import {model.name}"]).first_index
    _report(outcome, index, json_out)


@command(eval_app, "tasks")
def eval_tasks_command(json_out: JsonOpt = False) -> None:
    """List the tasks Annex ships (they run offline on a fresh install)."""
    names = bundled_tasks()
    if json_out:
        print_json({"tasks": names})
    else:
        for name in names:
            stdout.print(name)


def _keep_samples(home_path: Path, outcome: EvalOutcome) -> None:
    """The per-sample outputs into the content-addressed blob store, before the entry names them."""
    if outcome.samples:
        BlobStore(home_path / "blobs").put(outcome.samples)


def _report(outcome: EvalOutcome, index: int, json_out: bool) -> None:
    if json_out:
        print_json({"index": index, "statement": outcome.statement})
        return
    p = outcome.predicate
    stdout.print(f"eval {p.origin}: {p.model.name}  sha256:{p.model.manifest_digest}")
    if p.adapter is not None:
        stdout.print(f"  adapter {p.adapter.name}  sha256:{p.adapter.manifest_digest}")
    for task, metrics in p.results.items():
        shown = ", ".join(
            f"{k} {v:.4f}"
            for k, v in metrics.items()
            if isinstance(v, float | int) and not isinstance(v, bool) and k != "sample_len"
        )
        stdout.print(f"  {task}: {shown}")
        for group, values in p.groups.get(task, {}).items():
            line = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "n")
            stdout.print(f"    group {group} (n={int(values.get('n', 0))}): {line}")
    if p.missing:
        stdout.print(f"  not given       {', '.join(p.missing)}")
    if p.duration_seconds is not None:
        stdout.print(
            f"  duration        {p.duration_seconds:.1f} s on {p.device} ({p.backend or 'hf'})"
        )
    if p.samples_digest:
        stdout.print(f"  samples blob    sha256:{p.samples_digest}")
    stdout.print(f"  entry           {index}")
