"""Forgeries posted to `POST /api/v1/entries` with a write token by a collector key's holder.

Each envelope is signed by a collector key the trust file holds, so before signatures were
checked for authority each would have been appended (201). Now each is a 403 naming the key and
the predicate type, nothing is appended, and what the forgery was for does not happen: the gate
does not pass a changed model, an eval claim does not count, a legal hold stays in force.
Forgeries written into the database directly are in tests/evidence/test_forgeries.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenFile
from api.demo_model import write_base_model
from collectors.incidents import active_holds
from evidence.canonical import canonical_bytes
from evidence.dsse import sign_envelope
from evidence.home import Home, active_key
from evidence.keys import Signer
from reports.gate import Requirement, Verdict, directory_kind, run_gate
from reports.requirements import EvalResult, Signed
from schemas.authority import ANNEX_PREDICATES, LOG_ONLY, NOT_BY_LOG
from schemas.gpu import GPU_INVENTORY
from schemas.model import MODEL_RELEASE, ModelReleasePredicate
from tests.evidence.forge import held_incident_and_its_close
from tests.reports.gate_helpers import NOW, ago, change_one_byte, eval_run, manifest_of, release

ORIGIN = "test.example/log"
API = "/api/v1"
HELLASWAG = EvalResult("hellaswag", "acc,none", min=0.9, max_age_days=30)


@dataclass
class Service:
    home: Home
    client: TestClient
    token: str
    gpu_node: Signer  # registered for gpu-inventory alone
    wide_node: Signer  # registered for every type a collector may hold

    def post(self, envelope: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        body = json.dumps(envelope.to_dict()).encode()
        return self.client.post(f"{API}/entries", content=body, headers=headers)

    def size(self) -> int:
        with self.home.open_store() as store:
            return store.size()

    def judge(self, directory: Path, requirement: Requirement) -> Verdict:
        with self.home.open_store() as store:
            return run_gate(
                directory, requirement, store=store, trust=self.home.trust(), policy="t", now=NOW
            )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    home = Home(tmp_path / "annex")
    home.init(ORIGIN, model_signing_name="release-key")
    gpu_node, wide_node = Signer.generate("gpu-node-1"), Signer.generate("wide-node")
    home.add_collector_key("gpu-node-1", gpu_node.public_bytes, [GPU_INVENTORY])
    wide = [p for p in ANNEX_PREDICATES if p not in LOG_ONLY | NOT_BY_LOG]
    home.add_collector_key("wide-node", wide_node.public_bytes, wide)
    _, token = TokenFile(home.path).create("write")
    with TestClient(create_app(home)) as client:
        yield Service(home, client, token, gpu_node, wide_node)


def assert_refused(answer: Any, signer: Signer, short: str) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    assert f"collector key {signer.keyid[:16]}" in detail
    assert f"may not sign {short} statements" in detail


def test_a_collector_signed_release_of_a_changed_model_is_refused(
    service: Service, tmp_path: Path
) -> None:
    model = write_base_model(tmp_path / "demo")
    keyid = active_key(service.home.trust().trust, "model-signing").keyid
    release(service.home, model, keyid)
    assert service.judge(model, Signed()).passed
    change_one_byte(model)
    manifest = manifest_of(model)
    kind = directory_kind(model)
    forged = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{kind}:{model.name}", "digest": {"sha256": manifest.digest}}],
        "predicateType": MODEL_RELEASE,
        "predicate": ModelReleasePredicate(
            observedAt=ago(0),
            name=model.name,
            kind=kind,
            manifest=manifest,
            approvedBy="release-manager",
            signingKeyid=keyid,  # the real model-signing key, named
        ).to_predicate(),
    }
    before = service.size()
    for node in (service.gpu_node, service.wide_node):
        answer = service.post(sign_envelope(canonical_bytes(forged), node))
        assert_refused(answer, node, "model-release")
    assert service.size() == before
    verdict = service.judge(model, Signed())
    assert not verdict.passed
    assert "changed model.safetensors" in verdict.outcome.reason


def test_an_eval_claim_by_a_gpu_inventory_collector_is_refused(
    service: Service, tmp_path: Path
) -> None:
    model = write_base_model(tmp_path / "demo")
    claim = eval_run(model, {"hellaswag": {"alias": "hellaswag", "acc,none": 0.99}}, days=0)
    before = service.size()
    answer = service.post(sign_envelope(canonical_bytes(claim), service.gpu_node))
    assert_refused(answer, service.gpu_node, "eval-run")
    assert service.size() == before
    verdict = service.judge(model, HELLASWAG)
    assert not verdict.passed
    # The control: a collector registered for eval-run is heard, and the claim then counts.
    accepted = service.post(sign_envelope(canonical_bytes(claim), service.wide_node))
    assert accepted.status_code == 201, accepted.text
    assert service.judge(model, HELLASWAG).passed


def test_a_collector_signed_close_leaves_the_legal_hold(service: Service) -> None:
    with service.home.open_store(write=True) as store:
        opened, close = held_incident_and_its_close(store, NOW)
    before = service.size()
    for node in (service.gpu_node, service.wide_node):
        answer = service.post(sign_envelope(canonical_bytes(close), node))
        assert_refused(answer, node, "incident")
    assert service.size() == before
    with service.home.open_store() as store:
        holds = active_holds(store)
    assert [(h.entry, h.incident_id) for h in holds] == [(opened, "inc-1")]
