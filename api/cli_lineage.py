"""Lineage: `annex collect dataset | training-run | lineage | energy-counters`, `annex lineage`.

Each collector builds its statements first (every file read, every reference resolved) and then
appends them in one batch, so a refusal appends nothing. What the log already holds (a dataset
snapshot of the same digest, an OpenLineage event of the same bytes) is named, not logged again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.tree import Tree

from api.cli_base import HomeOpt, JsonOpt, app, collect_app, command, open_home
from api.output import print_json, progress_bar, stdout
from collectors.datasets import already_logged, describe, statement_of, take_snapshot
from collectors.energy import energy_between, load_snapshot, read_counters
from collectors.hash_cache import CACHE_PATH, HashCache
from collectors.nvml import load_pynvml
from collectors.openlineage import Logged, log_events, parse_events, plan_ingest
from collectors.openlineage import statement_of as lineage_statement
from collectors.training import (
    RunFacts,
    read_hyperparameters,
    resolve_dataset,
    resolve_manifest,
    training_run,
)
from evidence.errors import InputError
from evidence.home import Home
from evidence.store import Store
from reports.lineage import Graph, build_graph

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the statement; log nothing.")]


def _store(target: Home, dry_run: bool, stack: ExitStack) -> Store | None:
    """The log, opened first so a missing key fails fast; a dry run without one gets None."""
    if dry_run and not target.trust_path.exists():
        return None
    return stack.enter_context(target.open_store(write=not dry_run))


# -- annex collect dataset ------------------------------------------------------------------------


@command(collect_app, "dataset")
def collect_dataset_command(
    path: Annotated[Path, typer.Argument(help="The dataset: a directory or one file.")],
    datasheet: Annotated[
        Path | None,
        typer.Option("--datasheet", help="Datasheet YAML (default: datasheet.yaml beside it)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name to record (default: datasheet, path).")
    ] = None,
    dry_run: DryRunOpt = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Hash a dataset, count its records, read its schema and datasheet, and log it."""
    target = open_home(home)
    with ExitStack() as stack:
        store = _store(target, dry_run, stack)
        cache = None if store is None else stack.enter_context(HashCache(target.path / CACHE_PATH))
        progress = stack.enter_context(progress_bar("hashing", enabled=not json_out))
        snap = take_snapshot(path, datasheet=datasheet, name=name, cache=cache, progress=progress)
        known = None if store is None else already_logged(store, snap)
        index = known
        if known is None:
            statement = statement_of(describe(snap))
            if store is not None and not dry_run:
                index = store.append([statement], labels=[str(path)]).first_index
        else:
            statement = store.get(known).statement if store is not None else {}
    _report_dataset(statement, index, already=known is not None, dry_run=dry_run, json_out=json_out)


def _report_dataset(
    statement: dict[str, Any], index: int | None, *, already: bool, dry_run: bool, json_out: bool
) -> None:
    if json_out:
        print_json({"index": index, "alreadyLogged": already, "statement": statement})
        return
    if dry_run:
        stdout.print(json.dumps(statement, indent=2, ensure_ascii=False))
    for line in _dataset_lines(statement["predicate"]):
        stdout.print(line)
    if already:
        stdout.print(f"  already logged at entry {index}: not appended again")
    elif index is not None:
        stdout.print(f"  entry           {index}")
    else:
        stdout.print("  not logged (dry run)")


def _dataset_lines(predicate: dict[str, Any]) -> Iterator[str]:
    yield f"dataset {predicate['name']}  ({predicate['path']})"
    yield f"  manifest        sha256:{predicate['manifest']['digest']}"
    for f in predicate["files"]:
        count = "" if f["records"] is None else f", {f['records']:,} records"
        columns = "" if not f["schema"] else f", {len(f['schema'])} columns"
        yield f"  {f['path']}  ({f['format']}{count}{columns})"
    records = predicate["records"]
    yield f"  records         {'unknown' if records is None else f'{records:,}'}"
    yield f"  datasheet       {predicate['datasheet'] or 'none'}"
    if predicate["missing"]:
        yield f"  not declared    {', '.join(predicate['missing'])}"


# -- annex collect training-run -------------------------------------------------------------------


@command(collect_app, "training-run")
def collect_training_run(
    dataset: Annotated[
        list[str], typer.Option("--dataset", help="A logged dataset: digest or name (repeat).")
    ],
    base: Annotated[str, typer.Option("--base", help="The logged base model: digest or name.")],
    output: Annotated[
        str,
        typer.Option(
            "--output", help="The logged model or adapter produced: directory, digest or name."
        ),
    ],
    tokens: Annotated[int, typer.Option("--tokens", min=0, help="D: tokens trained on.")],
    gpu_hours: Annotated[
        float | None, typer.Option("--gpu-hours", min=0, help="GPU-hours used.")
    ] = None,
    energy_joules: Annotated[
        float | None, typer.Option("--energy-joules", min=0, help="Energy used, measured.")
    ] = None,
    energy_from_nvml: Annotated[
        Path | None,
        typer.Option(
            "--energy-from-nvml",
            help="Snapshot from `annex collect energy-counters` taken before the run.",
        ),
    ] = None,
    hyperparameters: Annotated[
        Path | None, typer.Option("--hyperparameters", help="JSON or YAML object.")
    ] = None,
    base_compute: Annotated[
        float | None,
        typer.Option("--base-compute", min=0, help="The base model's training compute, FLOP."),
    ] = None,
    parameters: Annotated[
        int | None,
        typer.Option("--parameters", min=1, help="N, if the base's manifest has no count."),
    ] = None,
    dry_run: DryRunOpt = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record a training run: datasets + base model -> output, with compute (6ND) and energy."""
    if energy_joules is not None and energy_from_nvml is not None:
        raise InputError("give --energy-joules or --energy-from-nvml, not both")
    facts = RunFacts(
        tokens=tokens,
        gpu_hours=gpu_hours,
        hyperparameters=None if hyperparameters is None else read_hyperparameters(hyperparameters),
        base_compute=base_compute or None,
        parameters=parameters,
        **_energy(energy_joules, energy_from_nvml),
    )
    with open_home(home).open_store(write=not dry_run) as store:
        datasets = [resolve_dataset(store, d) for d in dict.fromkeys(dataset)]
        base_model = resolve_manifest(store, base, kinds=("model",), what="--base model")
        produced = resolve_manifest(store, output, kinds=("model", "adapter"), what="--output")
        statement = training_run(datasets, base_model, produced, facts)
        index = None if dry_run else store.append([statement]).first_index
    _report_run(statement, index, json_out=json_out)


def _energy(joules: float | None, snapshot: Path | None) -> dict[str, Any]:
    if joules is not None:
        return {"energy_joules": joules, "energy_source": "given", "energy_note": "given"}
    if snapshot is None:
        return {
            "energy_source": "unknown",
            "energy_note": "not measured: no --energy-joules or --energy-from-nvml",
        }
    measured = energy_between(load_snapshot(snapshot), read_counters(load_pynvml()))
    source = "unknown" if measured.joules is None else "nvml"
    return {"energy_joules": measured.joules, "energy_source": source, "energy_note": measured.note}


def _report_run(statement: dict[str, Any], index: int | None, *, json_out: bool) -> None:
    if json_out:
        print_json({"index": index, "statement": statement})
        return
    p = statement["predicate"]
    c = p["compute"]
    stdout.print(f"training run -> {p['output']['name']}  sha256:{p['output']['digest']['sha256']}")
    stdout.print(f"  datasets        {', '.join(d['name'] for d in p['datasets'])}")
    stdout.print(f"  base model      {p['baseModel']['name']}")
    stdout.print(
        f"  compute         {c['flops']:.3g} FLOP (6 x {c['parameters']:,} x {c['tokens']:,})"
    )
    ratio = "unknown" if c["ratio"] is None else f"{c['ratio']:.3g}"
    verdict = "above" if c["thresholdOneThird"] else "below"
    mark = f"{c['thresholdFlops']:.3g} FLOP, {c['thresholdBasis']}"
    stdout.print(f"  ratio to base   {ratio}; {verdict} the one-third mark ({mark})")
    energy = p["energyJoules"]
    shown = "unknown" if energy is None else f"{energy:,.0f} J"
    stdout.print(f"  energy          {shown} ({p['energyNote']})")
    stdout.print(f"  entry           {index}" if index is not None else "  not logged (dry run)")


# -- annex collect energy-counters ----------------------------------------------------------------


@command(collect_app, "energy-counters")
def energy_counters(json_out: JsonOpt = False) -> None:
    """Print NVML's cumulative energy counters as JSON: the start for --energy-from-nvml."""
    print_json(read_counters(load_pynvml()).to_json())


# -- annex collect lineage ------------------------------------------------------------------------


@command(collect_app, "lineage")
def collect_lineage(
    source: Annotated[
        str, typer.Argument(help="OpenLineage events: a JSON file, JSON Lines, or - for stdin.")
    ],
    dry_run: DryRunOpt = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Log OpenLineage run events as they are; events already in the log are not logged again."""
    data = _read_bytes(source)
    name = "stdin" if source == "-" else source
    events = parse_events(data, name)
    sha = hashlib.sha256(data).hexdigest()
    target = open_home(home)
    with ExitStack() as stack:
        store = _store(target, dry_run, stack)
        if store is None or dry_run:
            plan = plan_ingest(store, events)
            logged = Logged(plan, None, [lineage_statement(e, name, sha) for e in plan.new])
        else:
            logged = log_events(store, events, source=name, source_sha256=sha)
    _report_lineage(
        len(events),
        logged.statements,
        logged.first_index,
        logged.plan.known,
        dry_run=dry_run,
        json_out=json_out,
    )


def _read_bytes(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror}") from None


def _report_lineage(
    count: int,
    statements: list[dict[str, Any]],
    first: int | None,
    known: dict[str, int],
    *,
    dry_run: bool,
    json_out: bool,
) -> None:
    indices = [] if first is None else list(range(first, first + len(statements)))
    already = sorted(set(known.values()))
    if json_out:
        print_json(
            {
                "events": count,
                "appended": indices,
                "alreadyLogged": already,
                "statements": statements,
            }
        )
        return
    if dry_run:
        stdout.print(json.dumps(statements, indent=2, ensure_ascii=False))
    stdout.print(f"{count} OpenLineage event(s)")
    if indices:
        span = str(indices[0]) if len(indices) == 1 else f"{indices[0]}..{indices[-1]}"
        stdout.print(f"  logged          entry {span}")
    if already:
        shown = ", ".join(str(i) for i in already[:20])
        stdout.print(f"  already logged at entry {shown}: not appended again")
    if dry_run:
        stdout.print(f"  not logged (dry run): {len(statements)} new")


# -- annex lineage --------------------------------------------------------------------------------


@command(app, "lineage")
def lineage(
    subject: Annotated[
        str, typer.Argument(help="A digest (sha256:…, or a hex prefix), run:N, or a name.")
    ],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print what lies upstream and downstream of a dataset, model, adapter, run or job."""
    with open_home(home).open_store() as store:
        graph = build_graph(store)
    node_id = graph.find(subject)
    if json_out:
        print_json(graph.around(node_id))
        return
    for up, title in (
        (True, "upstream (what it came from)"),
        (False, "downstream (what came from it)"),
    ):
        stdout.print(_tree(graph, node_id, up=up, title=title), soft_wrap=False)


def _tree(graph: Graph, root: str, *, up: bool, title: str) -> Tree:
    tree = Tree(f"{graph.nodes[root].label()} — {title}")
    _grow(graph, tree, root, up=up, seen={root})
    if not tree.children:
        tree.add("(nothing recorded)")
    return tree


def _grow(graph: Graph, branch: Tree, node_id: str, *, up: bool, seen: set[str]) -> None:
    for edge in graph.incoming(node_id) if up else graph.outgoing(node_id):
        other = edge.source if up else edge.target
        node = graph.nodes[other]
        entries = ", ".join(str(i) for i in sorted(graph.edges[edge]))
        text = f"{edge.relation}: {node.label()}  [entry {entries}]"
        if other in seen:
            branch.add(text + " (shown above)")
            continue
        seen.add(other)
        _grow(graph, branch.add(text), other, up=up, seen=seen)
