"""A real log for the Annex IV dossier: a bound base model and adapter, a dataset, the training
run that made the adapter, a GPU inventory (fake NVML), an eval run, an inference log, oversight
acts, an attestation, an incident, and the system card that ties them together.

Everything is built by the real collectors, except the eval run, whose predicate is written as
schemas/eval_run.py requires (running lm-eval is out of reach of a unit test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from collectors import nvml_fake
from collectors.gpu import collect_gpu
from collectors.nvml_fake import FakeNvml
from collectors.oversight import Event, record_event
from collectors.system_card import card_statement, read_card, resolve_components
from schemas.eval_run import EvalRunPredicate, eval_statement
from schemas.gpu import Host, SiteLabels
from schemas.oversight import OversightAction, OversightLink
from tests.collectors.lineage_data import Chain, log_chain
from tests.reports.oversight_fixture import EXAMPLE, Rig, at, pseudonym

SYSTEM = "loan-assistant"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
BASE = "annex-demo-base"  # the name log_chain gives the base model
ADAPTER = "loan-lora"  # the adapter as the card names it
REQUIRED = ("apiVersion", "id", "name", "version", "provider")


@dataclass
class Logged:
    """Entry indices of what `populate` logged, and the log size at the cut-offs."""

    chain: Chain
    gpu: int
    eval_run: int | None
    batch: int
    events: tuple[int, ...]
    attestation: int
    incident: int
    card: int
    size_before_eval: int


class AnnexRig(Rig):
    """The oversight rig, with a real model chain and a card naming its digests."""

    chain: Chain

    def log_chain(self) -> Chain:
        self.chain = log_chain(self.store, self.tmp / "models")
        return self.chain

    def card_doc(self, *, minimal: bool = False, **changes: Any) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        if minimal:
            doc = {k: doc[k] for k in REQUIRED}
        doc["id"] = SYSTEM
        doc["components"] = {
            "baseModel": {"name": BASE, "digest": self.chain.base_digest},
            "adapters": [{"name": ADAPTER, "digest": self.chain.adapter_digest}],
            "datasets": [
                {"name": "support-tickets", "path": str(self.chain.dataset_dir), "role": "training"}
            ],
        }
        doc.update(changes)
        return doc

    def add_card(self, doc: dict[str, Any], previous: int | None = None) -> int:
        path = self.tmp / f"card-{self.store.size()}.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        loaded = read_card(path)
        statement = card_statement(
            loaded, resolve_components(loaded, self.store), previous_entry=previous, now=NOW
        )
        return self.store.append([statement]).first_index

    def gpu(self, hostname: str = "gpu-node-01") -> int:
        fake = FakeNvml([nvml_fake.a100()])
        host = Host(
            hostname=hostname,
            os="Ubuntu 22.04.4 LTS",
            kernel="5.15.0-105-generic",
            architecture="x86_64",
            cpu_model="Intel Xeon",
            cpu_cores=16,
            memory_bytes=128 * 2**30,
        )
        statement = collect_gpu(fake, site=SiteLabels(site="fra-dc-2"), now=NOW, host=host)
        return self.store.append([statement]).first_index

    def eval_run(self, *, adapter: bool = True, observed: str = "2026-11-01T10:00:00Z") -> int:
        body: dict[str, Any] = {
            "observedAt": observed,
            "origin": "run",
            "model": {"name": BASE, "manifestDigest": self.chain.base_digest},
            "tasks": [{"name": "annex_mc", "version": "1.0"}],
            "nShot": {"annex_mc": 0},
            "versions": {"lmEval": "0.4.8", "transformers": "4.46.0", "torch": "2.5.1"},
            "results": {
                "annex_mc": {"alias": "annex_mc", "acc,none": 0.8125, "acc_stderr,none": 0.0412}
            },
            "groups": {"annex_mc": {"lang=de": {"acc": 0.79}, "lang=en": {"acc": 0.84}}},
            "durationSeconds": 42.0,
        }
        if adapter:
            body["adapter"] = {"name": ADAPTER, "manifestDigest": self.chain.adapter_digest}
        predicate = EvalRunPredicate.model_validate(body)
        return self.store.append([eval_statement(predicate)]).first_index

    def inference_of(self, model: str) -> int:
        """Four requests served by `model` on 2026-11-02."""
        lines = [
            {
                "timestamp": f"2026-11-02T10:00:0{i}Z",
                "request_id": f"req-{i}",
                "model": model,
                "user": "officer@example.com",
                "messages": [{"role": "user", "content": "assess this application"}],
                "response": "draft assessment",
                "latency_ms": 100 + i,
                "status": 200,
            }
            for i in range(4)
        ]
        path = self.tmp / "gateway.jsonl"
        path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        from collectors.inference_log import RetentionPolicy, ingest

        done = ingest(
            self.store, self.vault, self.blobs, path, retention=RetentionPolicy(), now=NOW
        )
        assert done.first_index is not None
        self.batch = done.first_index
        return done.first_index

    def act(self, action: OversightAction, when: str) -> int:
        link = OversightLink(kind="batch", entry=self.batch)
        event = Event(action, "alice", f"{action} by test", at(when), link=link, system=SYSTEM)
        return record_event(self.store, event, pseudonym)


def populate(rig: AnnexRig, *, evals: bool = True, minimal_card: bool = False) -> Logged:
    """The whole story, card last so every component resolves to its entry."""
    chain = rig.log_chain()
    gpu = rig.gpu()
    size_before_eval = rig.store.size()
    eval_run = rig.eval_run() if evals else None
    batch = rig.inference_of(BASE)
    events = (
        rig.act(OversightAction.APPROVE, "2026-11-02T11:00:00Z"),
        rig.act(OversightAction.OVERRIDE, "2026-11-03T11:00:00Z"),
    )
    attestation = rig.attest("alice", "2026-10-01T00:00:00Z", "2026-12-31T00:00:00Z")
    incident = rig.incident("2026-11-10T12:00:00Z")
    card = rig.add_card(rig.card_doc(minimal=minimal_card))
    return Logged(
        chain, gpu, eval_run, batch, events, attestation, incident, card, size_before_eval
    )
