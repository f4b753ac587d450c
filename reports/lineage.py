"""The lineage graph: which datasets, runs and base models lie upstream or downstream of a digest.

Built from the log alone, from four kinds of evidence (each edge names the entries that show it):
- TRAINING_RUN: every dataset and the base model -> the run -> its output model or adapter;
- MODEL_MANIFEST of an adapter bound to a base: the base model -> the adapter;
- OPENLINEAGE_RUN: each input dataset -> the job -> each output dataset;
- DATASET: the dataset node itself (its name, the path it was collected from).

Nodes are identified by manifest digest (`sha256:<hex>`); a training run by its entry
(`run:<index>`). An OpenLineage dataset in the `file` namespace whose name is the path a dataset
or model was collected from is that dataset or model (the newest one logged before the event),
so OpenLineage jobs join the same graph; any other OpenLineage dataset or job is known by its
name only (`ol:<namespace>/<name>`). The graph reads entries as the store returns them; it does
not prove them (the gate and `annex verify` do).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from evidence.entry import Entry
from evidence.errors import InputError
from evidence.store import Store
from schemas.dataset import DATASET
from schemas.lineage import OPENLINEAGE_RUN, name_digest, subject_name
from schemas.model import MODEL_MANIFEST
from schemas.training_run import TRAINING_RUN

_PAGE = 1000


@dataclass
class Node:
    id: str
    kind: str  # dataset, model, adapter, training-run, ol-dataset, ol-job
    names: list[str] = field(default_factory=list)
    entries: set[int] = field(default_factory=set)

    def label(self) -> str:
        """`dataset:tickets  sha256:1a2b3c4d5e6f…`, or `training-run@12` for a run."""
        name = self.names[0] if self.names else self.id
        return name if self.id.startswith("run:") else f"{name}  {self.id[:19]}…"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "names": self.names,
            "entries": sorted(self.entries),
        }


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    relation: str  # input, base-model, produced, adapter-of, ol-input, ol-output


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[Edge, set[int]] = field(default_factory=dict)
    _in: dict[str, set[Edge]] = field(default_factory=dict, repr=False)
    _out: dict[str, set[Edge]] = field(default_factory=dict, repr=False)

    def node(self, node_id: str, kind: str, name: str, entry: int) -> str:
        found = self.nodes.setdefault(node_id, Node(node_id, kind))
        if name not in found.names:
            found.names.append(name)
        found.entries.add(entry)
        return node_id

    def edge(self, source: str, target: str, relation: str, entry: int) -> None:
        edge = Edge(source, target, relation)
        self.edges.setdefault(edge, set()).add(entry)
        self._out.setdefault(source, set()).add(edge)
        self._in.setdefault(target, set()).add(edge)

    def incoming(self, node_id: str) -> list[Edge]:
        return sorted(self._in.get(node_id, ()), key=_order)

    def outgoing(self, node_id: str) -> list[Edge]:
        return sorted(self._out.get(node_id, ()), key=_order)

    def reach(self, start: str, *, up: bool) -> list[str]:
        """Every node upstream (or downstream) of `start`, nearest first."""
        seen, queue = {start}, [start]
        for current in queue:
            for edge in self.incoming(current) if up else self.outgoing(current):
                other = edge.source if up else edge.target
                if other not in seen:
                    seen.add(other)
                    queue.append(other)
        return queue[1:]

    def find(self, subject: str) -> str:
        """The node a digest (`sha256:<hex>`, hex or prefix), run:N, name or path names."""
        wanted = subject.strip()
        hexpart = wanted.lower().removeprefix("sha256:")
        if wanted in self.nodes:
            return wanted
        found: list[str] = []
        if len(hexpart) >= 6 and all(c in "0123456789abcdef" for c in hexpart):
            found = [n for n in self.nodes if n.startswith(f"sha256:{hexpart}")]
        if not found:
            found = [n.id for n in self.nodes.values() if _named(n, wanted)]
        if not found:
            raise InputError(
                f"{subject!r} is not in the lineage graph (no dataset, model, run or "
                "OpenLineage job or dataset of that digest or name)"
            )
        if len(found) > 1:
            listed = "; ".join(f"{self.nodes[n].names[0]} {n}" for n in found[:10])
            raise InputError(f"{subject!r} names {len(found)} nodes: {listed}; give the digest")
        return found[0]

    def around(self, node_id: str) -> dict[str, Any]:
        """The node, everything up- and downstream of it and the edges between them, as JSON."""
        up, down = self.reach(node_id, up=True), self.reach(node_id, up=False)
        keep = {node_id, *up, *down}
        edges = [
            {"from": e.source, "to": e.target, "relation": e.relation, "entries": sorted(ix)}
            for e, ix in sorted(self.edges.items(), key=lambda item: _order(item[0]))
            if e.source in keep and e.target in keep
        ]
        return {
            "subject": self.nodes[node_id].to_json(),
            "upstream": up,
            "downstream": down,
            "nodes": [self.nodes[n].to_json() for n in sorted(keep)],
            "edges": edges,
        }


def _order(edge: Edge) -> tuple[str, str, str]:
    return (edge.relation, edge.source, edge.target)


def _named(node: Node, wanted: str) -> bool:
    return any(wanted == n or wanted == n.partition(":")[2] for n in node.names)


# -- building it from the log ---------------------------------------------------------------------


def entries_of(store: Store, predicate_type: str) -> Iterator[Entry]:
    """Entries of one type signed with authority (schemas/authority.py), in log order."""
    after: int | None = None
    while page := store.query(predicate_type=predicate_type, after=after, limit=_PAGE):
        yield from (e for e in page if store.signed_by_authority(e))
        after = page[-1].index


@dataclass
class _Paths:
    """Paths datasets and models were collected from: path -> [(entry, node id)] in log order."""

    seen: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, path: Any, entry: int, node_id: str) -> None:
        if isinstance(path, str):
            self.seen.setdefault(path, []).append((entry, node_id))

    def before(self, path: str, entry: int) -> str | None:
        """The node collected from `path` most recently before `entry`."""
        found = self.seen.get(path, [])
        at = bisect.bisect_left(found, (entry, ""))
        return found[at - 1][1] if at else None


def build_graph(store: Store) -> Graph:
    graph, paths = Graph(), _Paths()
    for entry in entries_of(store, DATASET):
        first = entry.subjects[0]
        node_id = graph.node(f"sha256:{first.digest}", "dataset", first.name, entry.index)
        paths.add(entry.statement["predicate"].get("path"), entry.index, node_id)
    for entry in entries_of(store, MODEL_MANIFEST):
        _add_manifest(graph, paths, entry)
    for entry in entries_of(store, TRAINING_RUN):
        _add_run(graph, entry)
    for entry in entries_of(store, OPENLINEAGE_RUN):
        _add_openlineage(graph, paths, entry)
    return graph


def _add_manifest(graph: Graph, paths: _Paths, entry: Entry) -> None:
    first = entry.subjects[0]
    kind = first.name.partition(":")[0]
    node_id = graph.node(f"sha256:{first.digest}", kind, first.name, entry.index)
    paths.add(entry.statement["predicate"].get("path"), entry.index, node_id)
    if kind == "adapter" and len(entry.subjects) > 1:
        base = entry.subjects[1]
        base_id = graph.node(f"sha256:{base.digest}", "model", base.name, entry.index)
        graph.edge(base_id, node_id, "adapter-of", entry.index)


def _artifact(graph: Graph, artifact: dict[str, Any], kind: str, entry: int) -> str:
    digest = artifact["digest"]["sha256"]
    return graph.node(f"sha256:{digest}", kind, artifact["name"], entry)


def _add_run(graph: Graph, entry: Entry) -> None:
    predicate = entry.statement["predicate"]
    output = predicate["output"]
    run = graph.node(
        f"run:{entry.index}", "training-run", f"training-run@{entry.index}", entry.index
    )
    for dataset in predicate["datasets"]:
        graph.edge(_artifact(graph, dataset, "dataset", entry.index), run, "input", entry.index)
    base = _artifact(graph, predicate["baseModel"], "model", entry.index)
    graph.edge(base, run, "base-model", entry.index)
    graph.edge(run, _artifact(graph, output, output["kind"], entry.index), "produced", entry.index)


def _ol_dataset(graph: Graph, paths: _Paths, ref: dict[str, Any], entry: int) -> str:
    name = subject_name(ref["namespace"], ref["name"])
    namespace = str(ref["namespace"])
    if namespace == "file" or namespace.startswith("file:"):
        known = paths.before(str(ref["name"]), entry)
        if known is not None:
            return graph.node(known, graph.nodes[known].kind, name, entry)
    return graph.node(f"sha256:{name_digest(name)}", "ol-dataset", name, entry)


def _add_openlineage(graph: Graph, paths: _Paths, entry: Entry) -> None:
    predicate = entry.statement["predicate"]
    job_ref = predicate["job"]
    job_name = subject_name(job_ref["namespace"], job_ref["name"])
    job = graph.node(f"sha256:{name_digest(job_name)}", "ol-job", job_name, entry.index)
    for ref in predicate.get("inputs", []):
        graph.edge(_ol_dataset(graph, paths, ref, entry.index), job, "ol-input", entry.index)
    for ref in predicate.get("outputs", []):
        graph.edge(job, _ol_dataset(graph, paths, ref, entry.index), "ol-output", entry.index)
