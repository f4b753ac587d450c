"""A real log for the oversight and GDPR reports: a card, logged models, a dataset, an inference
log, oversight events over two ISO weeks, attestations, an incident and an erasure.

The period is 2026-11-02 (Monday, ISO week 45) to 2026-11-16 (excluded): weeks 45 and 46.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from collectors.datasets import collect_dataset
from collectors.erasure import erase
from collectors.incidents import OpenRequest, open_incident
from collectors.inference_log import RetentionPolicy, ingest
from collectors.oversight import Attestation, Event, attestation_statement, record_event
from collectors.system_card import card_statement, read_card, resolve_components
from evidence.blobs import BlobStore
from evidence.home import Home
from evidence.store import Store
from evidence.vault import Vault
from schemas.incident import IncidentCategory
from schemas.model import MODEL_MANIFEST
from schemas.oversight import OversightAction, OversightLink
from schemas.statement import STATEMENT_TYPE

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "system-card.example.yaml"
SYSTEM = "loan-assistant"
START = datetime(2026, 11, 2, tzinfo=UTC)
END = datetime(2026, 11, 16, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
BASE_DIGEST = "ab" * 32
ADAPTER_DIGEST = "cd" * 32
ALICE = "alice@example.com"


def pseudonym(reviewer: str) -> str:
    """Reviewers' pseudonyms in these tests: deterministic, never the id."""
    return hashlib.sha256(b"test-secret:" + reviewer.encode()).hexdigest()[:32]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Rig:
    """A data directory opened for writing, and what was logged into it."""

    home: Home
    tmp: Path
    store: Store = field(init=False)
    vault: Vault = field(init=False)
    blobs: BlobStore = field(init=False)
    batch: int = -1

    def __post_init__(self) -> None:
        self.store = self.home.open_store(write=True)
        self.vault = Vault.open(self.home.path / "vault")
        self.blobs = BlobStore(self.home.path / "blobs")

    def close(self) -> None:
        self.vault.close()
        self.store.close()

    def card(self, *, gdpr: bool = True, system_id: str = SYSTEM, **changes: Any) -> int:
        """The example card with components by digest and a real dataset directory."""
        doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        doc["id"] = system_id
        doc["components"] = {
            "baseModel": {"name": "tiny-base", "digest": BASE_DIGEST},
            "adapters": [{"name": "loan-lora", "digest": ADAPTER_DIGEST}],
            "datasets": [{"name": "loan-notes", "path": "data/loan-notes", "role": "training"}],
        }
        if not gdpr:
            del doc["gdpr"]
        doc.update(changes)
        path = self.tmp / f"{system_id}.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        loaded = read_card(path)
        components = resolve_components(loaded, self.store)
        statement = card_statement(loaded, components, previous_entry=None, now=NOW)
        return self.store.append([statement]).first_index

    def dataset(self, datasheet: str) -> int:
        directory = self.tmp / "data" / "loan-notes"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "notes.jsonl").write_text('{"text": "a loan note"}\n', encoding="utf-8")
        (directory / "datasheet.yaml").write_text(datasheet, encoding="utf-8")
        return self.store.append([collect_dataset(directory, now=NOW)]).first_index

    def models(self) -> None:
        for name, digest in (
            ("model:tiny-base", BASE_DIGEST),
            ("adapter:loan-lora", ADAPTER_DIGEST),
        ):
            self.store.append(
                [
                    {
                        "_type": STATEMENT_TYPE,
                        "subject": [{"name": name, "digest": {"sha256": digest}}],
                        "predicateType": MODEL_MANIFEST,
                        "predicate": {"observedAt": "2026-10-01T00:00:00Z"},
                    }
                ]
            )

    def inference(self, *, retention: RetentionPolicy | None = None, name: str = "gw.jsonl") -> int:
        """Ten requests to tiny-base on 2026-11-02 10:00:00-09, callers alice and bob."""
        lines = [
            {
                "timestamp": f"2026-11-02T10:00:{i:02d}Z",
                "request_id": f"req-{i}",
                "model": "tiny-base",
                "user": ALICE if i % 2 else "bob@example.com",
                "messages": [{"role": "user", "content": f"my income is {i}000 EUR"}],
                "response": "draft assessment",
                "latency_ms": 120,
                "status": 200,
            }
            for i in range(10)
        ]
        path = self.tmp / name
        path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        policy = retention or RetentionPolicy(content=True)
        done = ingest(self.store, self.vault, self.blobs, path, retention=policy, now=NOW)
        assert done.first_index is not None
        self.batch = done.first_index
        return done.first_index

    def event(
        self,
        action: OversightAction,
        reviewer: str,
        when: str,
        *,
        request: str | None = None,
        linked: bool = True,
        system: str = SYSTEM,
    ) -> int:
        link = None
        if request is not None:
            link = OversightLink(kind="request", id=request)
        elif linked:
            link = OversightLink(kind="batch", entry=self.batch)
        event = Event(action, reviewer, f"{action} by test", at(when), link=link, system=system)
        return record_event(self.store, event, pseudonym)

    def attest(self, reviewer: str, valid_from: str, valid_until: str) -> int:
        attestation = Attestation(
            reviewer, "AI-assisted lending course", at(valid_from), at(valid_until), issuer="HR"
        )
        statement = attestation_statement(attestation, pseudonym, now=NOW)
        return self.store.append([statement]).first_index

    def incident(self, when: str) -> int:
        request = OpenRequest(
            system=SYSTEM,
            category=IncidentCategory.FUNDAMENTAL_RIGHTS,
            aware_at=at(when),
            description="draft disadvantaged a second-language applicant",
            incident_id="inc-1",
            legal_hold=False,
        )
        index, _ = open_incident(self.store, request, now=at(when))
        return index

    def erase_alice(self) -> tuple[int, str]:
        alias = self.vault.pseudonym(ALICE)
        assert alias is not None
        receipt = erase(self.store, self.vault, ALICE, reason="DSAR 17", now=NOW)
        assert receipt.entry is not None
        return receipt.entry, alias


W45 = (
    (OversightAction.APPROVE, "alice", "2026-11-02T10:30:09Z"),
    (OversightAction.APPROVE, "alice", "2026-11-02T11:00:09Z"),
    (OversightAction.APPROVE, "alice", "2026-11-03T10:00:09Z"),
    (OversightAction.OVERRIDE, "bob", "2026-11-03T12:00:09Z"),
)
W46 = (
    (OversightAction.APPROVE, "carol", "2026-11-09T10:00:09Z"),
    (OversightAction.APPROVE, "carol", "2026-11-10T08:00:00Z"),
    (OversightAction.REVERSE, "alice", "2026-11-11T09:00:00Z"),
)


def populate(rig: Rig, *, retention: RetentionPolicy | None = None) -> dict[str, int]:
    """The whole story; the log size after each step, for `at` cut-offs."""
    rig.models()
    rig.dataset("legal_basis: contract\npersonal_data: true\nspecial_categories: [health]\n")
    rig.card()
    rig.inference(retention=retention)
    rig.attest("alice", "2026-10-01T00:00:00Z", "2026-12-31T00:00:00Z")
    rig.attest("bob", "2026-10-01T00:00:00Z", "2026-11-05T00:00:00Z")
    rig.attest("dave", "2026-09-01T00:00:00Z", "2026-11-01T00:00:00Z")  # expired before he acts
    for action, who, when in W45:
        rig.event(action, who, when)
    rig.event(OversightAction.REVIEW, "alice", "2026-11-04T09:00:00Z", request="req-3")
    sizes = {"after_w45": rig.store.size()}
    for action, who, when in W46:
        rig.event(action, who, when)
    rig.event(OversightAction.STOP, "dave", "2026-11-12T14:00:00Z", linked=False)
    rig.event(OversightAction.RESUME, "dave", "2026-11-12T15:00:00Z", linked=False)
    rig.event(OversightAction.APPROVE, "alice", "2026-11-20T10:00:00Z")  # after the period
    rig.event(OversightAction.OVERRIDE, "erin", "2026-11-05T10:00:00Z", system="other")
    rig.incident("2026-11-10T12:00:00Z")
    sizes["end"] = rig.store.size()
    return sizes
