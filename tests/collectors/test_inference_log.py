"""Inference logs in, batch digests out: counts, proofs, content kept only encrypted, erasure."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.erasure import erase, expire
from collectors.inference_lines import Histogram, LineDecoder
from collectors.inference_log import (
    Ingested,
    RetentionPolicy,
    ingest,
    line_leaf,
    split_line,
)
from collectors.inference_proof import batch_of, prove_line, read_content
from evidence.blobs import BlobStore
from evidence.canonical import canonical_bytes
from evidence.errors import CollectorError, InputError, VerificationError
from evidence.home import Home
from evidence.store import Store
from evidence.vault import Vault
from evidence.verify import verify_log
from schemas.inference import ERASURE
from schemas.model import MODEL_MANIFEST
from schemas.statement import STATEMENT_TYPE, predicate_type

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
PROMPT = "my tax number is 12-XYZ-secret"
ANSWER = "noted: your tax number ends in XYZ-secret"


def request(i: int, **extra: Any) -> dict[str, Any]:
    """One OpenAI-style request line; callers alternate alice/bob, with secrets in the text."""
    line: dict[str, Any] = {
        "timestamp": f"2026-11-02T10:00:{i % 60:02d}Z",
        "request_id": f"req-{i}",
        "model": "llama-3-8b",
        "user": "alice@example.com" if i % 2 else "bob@example.com",
        "messages": [{"role": "user", "content": f"{PROMPT} {i}"}],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"{ANSWER} {i}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20},
        "latency_ms": 100 + i,
        "status": 200,
    }
    line.update(extra)
    return line


def write_log(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


class Rig:
    """A data directory opened for writing: the log, the vault and the blobs."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.store: Store = home.open_store(write=True)
        self.vault = Vault.open(home.path / "vault")
        self.blobs = BlobStore(home.path / "blobs")

    def ingest(self, path: Path, *, content: bool = False, **kw: Any) -> Ingested:
        policy = kw.pop("retention", RetentionPolicy(content=content))
        return ingest(self.store, self.vault, self.blobs, path, retention=policy, now=NOW, **kw)

    def log_bytes(self) -> bytes:
        """The log database's raw bytes on disk, WAL included."""
        return b"".join(p.read_bytes() for p in self.home.path.glob("annex.db*"))

    def close(self) -> None:
        self.vault.close()
        self.store.close()


@pytest.fixture
def rig(sqlite_home: Home) -> Iterator[Rig]:
    r = Rig(sqlite_home)
    yield r
    r.close()


def predicate(rig: Rig, index: int) -> dict[str, Any]:
    found: dict[str, Any] = rig.store.get(index).statement["predicate"]
    return found


# -- what a batch records ------------------------------------------------------------------------


def test_batch_counts_times_latency_and_callers(rig: Rig, tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [request(i) for i in range(10)]
    lines[3] = request(3, status=503)
    lines[4] = request(4, choices=[{"index": 0, "finish_reason": "content_filter"}])
    lines[5] = {"created": 1_793_000_000, "id": 7, "model": "qwen-lora", "prompt": "hi"}
    lines.insert(6, "")  # a blank line keeps its number
    done = rig.ingest(write_log(tmp_path / "gw.jsonl", lines))
    p = predicate(rig, done.first_index or 0)
    assert (p["requests"], p["errors"], p["refusals"], p["lines"]) == (10, 1, 1, 10)
    assert p["source"]["lines"] == 11
    assert p["batch"] == {"number": 1, "of": 1, "firstLine": 1, "lastLine": 11}
    assert p["tokens"] == {"prompt": 90, "completion": 180}
    assert p["timeRange"] == {"first": "2026-10-26T07:33:20Z", "last": "2026-11-02T10:00:09Z"}
    assert p["latencyMs"]["count"] == 9
    assert abs(p["latencyMs"]["p50"] - 104) <= 104 * 0.011
    assert p["unattributed"] == 1
    assert sorted(c["requests"] for c in p["callers"]) == [4, 5]
    models = {m["name"]: m for m in p["models"]}
    assert models["llama-3-8b"]["requests"] == 9
    assert "no model-manifest" in models["qwen-lora"]["reason"]
    assert p["retention"] == {"content": False}
    assert "contentBlob" not in p


def test_models_served_name_the_logged_manifest(rig: Rig, tmp_path: Path) -> None:
    digest = "ab" * 32
    logged = rig.store.append(
        [
            {
                "_type": STATEMENT_TYPE,
                "subject": [{"name": "model:llama-3-8b", "digest": {"sha256": digest}}],
                "predicateType": MODEL_MANIFEST,
                "predicate": {"observedAt": "2026-11-01T00:00:00Z"},
            }
        ]
    )
    done = rig.ingest(write_log(tmp_path / "gw.jsonl", [request(1)]))
    entry = rig.store.get(done.first_index or 0)
    served = entry.statement["predicate"]["models"][0]
    assert served == {
        "name": "llama-3-8b",
        "requests": 1,
        "kind": "model",
        "digest": digest,
        "entry": logged.first_index,
    }
    assert ("model:llama-3-8b", digest) in [(s.name, s.digest) for s in entry.subjects]


@pytest.mark.parametrize("content", [False, True])
def test_no_text_and_no_caller_id_enter_the_log(rig: Rig, tmp_path: Path, content: bool) -> None:
    rig.ingest(write_log(tmp_path / "gw.jsonl", [request(i) for i in range(6)]), content=content)
    raw = rig.log_bytes()
    for secret in (PROMPT, ANSWER, "alice@example.com", "bob@example.com", "XYZ-secret"):
        assert secret.encode() not in raw
    blobs = b"".join(p.read_bytes() for p in rig.blobs.root.rglob("*") if p.is_file())
    assert b"XYZ-secret" not in blobs  # retained content is ciphertext only


def test_same_file_twice_is_recognised(rig: Rig, tmp_path: Path) -> None:
    path = write_log(tmp_path / "gw.jsonl", [request(i) for i in range(3)])
    first = rig.ingest(path)
    size = rig.store.size()
    again = rig.ingest(path)
    assert again.duplicate_of == (first.first_index,)
    assert again.statements == ()
    assert rig.store.size() == size


# -- refusals: clear, by line, nothing kept --------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 3: not valid JSON"),
        ("[1, 2]", "line 3: not a JSON object"),
        (json.dumps({"request_id": "r", "model": "m"}), "line 3: missing required field timestamp"),
        (
            json.dumps({"timestamp": "2026-11-02T10:00:00Z", "model": "m"}),
            "line 3: missing required field request_id",
        ),
        (
            json.dumps({"timestamp": "2026-11-02T10:00:00", "id": "r", "model": "m"}),
            "no UTC offset",
        ),
        (json.dumps({"created": 1, "id": "r"}), "line 3: missing required field model"),
        (json.dumps({"created": 1, "id": "r", "model": "m", "latency_ms": "fast"}), "latency_ms"),
        (json.dumps({"created": 1, "id": "r", "model": "m", "user": 42}), "user must be a string"),
        (json.dumps({"created": -1e15, "id": "r", "model": "m"}), "line 3: its time lies outside"),
        (
            json.dumps({"created": 10**400, "id": "r", "model": "m"}),
            "line 3: its time lies outside",
        ),
        (
            json.dumps({"timestamp": "0001-01-01T00:00:00+14:00", "id": "r", "model": "m"}),
            "line 3: its time lies outside the years 1 to 9999",
        ),
        ('{"created": 1, "id": "r", "model": "m", "n": ' + "9" * 5000 + "}", "more digits"),
        ('{"created": 1, "id": "r", "model": "m", "user": "\\ud800x"}', "unpaired surrogate"),
    ],
)
def test_bad_line_names_its_number_and_appends_nothing(
    rig: Rig, tmp_path: Path, bad: str, message: str
) -> None:
    path = write_log(tmp_path / "gw.jsonl", [request(1), request(2), bad, request(4)])
    size = rig.store.size()
    with pytest.raises(CollectorError, match=message) as caught:
        rig.ingest(path, content=True)
    assert str(path) in str(caught.value)
    assert rig.store.size() == size
    assert rig.vault.find("alice@example.com") is None  # no pseudonym secret kept either
    assert not [p for p in rig.blobs.root.rglob("*") if p.is_file()]


def test_non_utf8_line_is_refused(rig: Rig, tmp_path: Path) -> None:
    path = tmp_path / "gw.jsonl"
    path.write_bytes(json.dumps(request(1)).encode() + b'\n{"model": "caf\xe9"}\n')
    size = rig.store.size()
    with pytest.raises(CollectorError, match="line 2: not UTF-8"):
        rig.ingest(path)
    assert rig.store.size() == size


def test_retention_class_logs_keeps_at_least_six_months() -> None:
    with pytest.raises(InputError, match="at least 184 days"):
        RetentionPolicy(content=True, days=30)
    assert RetentionPolicy(content=True, name="short", days=30).days == 30


@pytest.mark.parametrize("days", [0, 36_526, 10**12])
def test_retention_days_must_be_a_real_period(days: int) -> None:
    """Past a century the expiry is no longer a date the vault can store; refused, not a crash."""
    with pytest.raises(InputError, match=f"retention days must be from 1 to 36525, not {days}"):
        RetentionPolicy(content=True, name="long", days=days)


# -- proofs ---------------------------------------------------------------------------------------


def test_every_line_is_proven_in_its_batch(rig: Rig, tmp_path: Path) -> None:
    lines = [request(i) for i in range(1, 12)]
    path = write_log(tmp_path / "gw.jsonl", list(lines))
    done = rig.ingest(path, content=True, batch_size=4)
    first = done.first_index or 0
    assert len(done.statements) == 3
    for number, line in enumerate(lines, start=1):
        entry = first + (number - 1) // 4
        proof = prove_line(rig.store, rig.blobs, entry, number)
        proof.verify()
        assert proof.root.hex() == batch_of(rig.store, entry).merkle_root
        # The leaf is what the documented recipe gives for the line in the source file.
        record, _ = split_line(line)
        retained = read_content(rig.store, rig.vault, rig.blobs, entry, line["user"])
        digest = next(r.digest for r in retained if r.line == number)
        pseudonym = rig.vault.pseudonym(line["user"])
        assert proof.leaf == line_leaf(number, record, pseudonym, digest)
    with pytest.raises(InputError, match="not in entry"):
        prove_line(rig.store, rig.blobs, first, 5)


def test_a_changed_leaves_blob_fails_the_proof(rig: Rig, tmp_path: Path) -> None:
    done = rig.ingest(write_log(tmp_path / "gw.jsonl", [request(i) for i in range(5)]))
    leaves = rig.blobs.path(batch_of(rig.store, done.first_index or 0).leaves_blob)
    data = bytearray(leaves.read_bytes())
    data[20] ^= 1
    leaves.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="was changed"):
        prove_line(rig.store, rig.blobs, done.first_index or 0, 2)


# -- retention, erasure, holds --------------------------------------------------------------------


def test_erasure_shreds_content_keeps_proofs_and_verifies(rig: Rig, tmp_path: Path) -> None:
    done = rig.ingest(
        write_log(tmp_path / "gw.jsonl", [request(i) for i in range(6)]), content=True
    )
    index = done.first_index or 0
    alice = "alice@example.com"
    before = read_content(rig.store, rig.vault, rig.blobs, index, alice)
    assert [r.line for r in before] == [2, 4, 6]
    assert before[0].content["messages"][0]["content"] == f"{PROMPT} 1"
    pseudonym = rig.vault.pseudonym(alice)
    mine = [k for k in _key_ids(rig, index) if rig.vault.key_owner(k) == rig.vault.lookup(alice)]
    keys = [rig.vault.content_key(k) for k in mine]
    assert len(keys) == 1 and keys[0] is not None
    receipt = erase(rig.store, rig.vault, alice, reason="DSAR 17", now=NOW)
    # The receipt names the pseudonym and the batch, never the caller id.
    logged = rig.store.get(receipt.entry or 0).statement
    assert logged["predicateType"] == ERASURE
    assert logged["predicate"]["pseudonyms"] == [pseudonym]
    assert logged["predicate"]["batches"] == [index]
    assert logged["predicate"]["legalBasis"] == "GDPR Art. 17"
    assert alice.encode() not in rig.log_bytes()
    # Content is gone for good: no key in the vault, none of its bytes left in the file.
    with pytest.raises(InputError, match="no such data subject"):
        read_content(rig.store, rig.vault, rig.blobs, index, alice)
    vault_bytes = (rig.vault.directory / "vault.db").read_bytes()
    assert keys[0] not in vault_bytes
    assert rig.vault.pseudonym(alice) is None
    # Bob's content is untouched; every line, Alice's too, is still provable; the log verifies.
    assert len(read_content(rig.store, rig.vault, rig.blobs, index, "bob@example.com")) == 3
    prove_line(rig.store, rig.blobs, index, 2).verify()
    verify_log(rig.store, rig.home.trust())
    with pytest.raises(InputError, match="no such data subject"):
        erase(rig.store, rig.vault, alice, reason=None, now=NOW)


def _key_ids(rig: Rig, index: int) -> set[bytes]:
    from collectors.inference_proof import content_records

    with rig.blobs.open(batch_of(rig.store, index).content_blob or "") as f:
        return {key_id for _, key_id, _, _ in content_records(f)}


def test_a_new_ingest_after_erasure_gets_a_new_pseudonym(rig: Rig, tmp_path: Path) -> None:
    first = rig.ingest(write_log(tmp_path / "a.jsonl", [request(1)]))
    old = predicate(rig, first.first_index or 0)["callers"][0]["pseudonym"]
    receipt = erase(rig.store, rig.vault, "alice@example.com", reason=None, now=NOW)
    # No content was kept: no key to destroy, but the secret goes and the batch is named.
    assert (receipt.predicate.keys_destroyed, receipt.predicate.pseudonym_secrets_destroyed) == (
        0,
        1,
    )
    assert receipt.predicate.batches == (first.first_index,)
    second = rig.ingest(write_log(tmp_path / "b.jsonl", [request(3)]))
    assert predicate(rig, second.first_index or 0)["callers"][0]["pseudonym"] != old


def test_expiry_destroys_keys_past_their_class(rig: Rig, tmp_path: Path) -> None:
    short = RetentionPolicy(content=True, name="short", days=1)
    done = rig.ingest(write_log(tmp_path / "gw.jsonl", [request(1)]), retention=short)
    index = done.first_index or 0
    assert predicate(rig, index)["retention"]["expiresAt"] == "2026-11-25T09:00:00Z"
    assert expire(rig.store, rig.vault, now=NOW).entry is None  # nothing due: nothing logged
    receipt = expire(rig.store, rig.vault, now=NOW + timedelta(days=2))
    assert receipt.predicate.trigger == "retention-expiry"
    assert receipt.predicate.batches == (index,)
    assert receipt.predicate.keys_destroyed == 1
    assert read_content(rig.store, rig.vault, rig.blobs, index, "alice@example.com") == []
    verify_log(rig.store, rig.home.trust())


def _incident(rig: Rig, action: str, hold: bool) -> int:
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "incident:INC-2026-0001", "digest": {"sha256": "cd" * 32}}],
        "predicateType": predicate_type("incident"),
        "predicate": {
            "observedAt": "2026-11-24T08:00:00Z",
            "incidentId": "INC-2026-0001",
            "action": action,
            "legalHold": hold,
        },
    }
    return rig.store.append([statement]).first_index


def test_legal_hold_blocks_erasure_and_expiry(rig: Rig, tmp_path: Path) -> None:
    rig.ingest(write_log(tmp_path / "gw.jsonl", [request(1)]), content=True)
    held = _incident(rig, "open", True)
    size = rig.store.size()
    message = f"legal hold by incident INC-2026-0001 \\(entry {held}\\) blocks erasure"
    with pytest.raises(InputError, match=message):
        erase(rig.store, rig.vault, "alice@example.com", reason=None, now=NOW)
    with pytest.raises(InputError, match="blocks retention expiry"):
        expire(rig.store, rig.vault, now=NOW + timedelta(days=400))
    assert rig.store.size() == size
    assert rig.vault.pseudonym("alice@example.com") is not None
    _incident(rig, "close", False)
    assert erase(rig.store, rig.vault, "alice@example.com", reason=None, now=NOW).entry


# -- the pieces -----------------------------------------------------------------------------------


def test_histogram_percentiles_are_within_one_percent() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(5, 1) for _ in range(20_000)]
    hist = Histogram()
    for v in values:
        hist.add(v)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99):
        exact = ordered[math.ceil(q * len(values)) - 1]
        got = hist.percentile(q)
        assert got is not None and abs(got - exact) <= exact * 0.011
    assert len(hist.buckets) < 2000


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _json, max_size=6))
def test_fast_leaf_bytes_equal_rfc8785(record: dict[str, Any]) -> None:
    decoder = LineDecoder()
    parsed = decoder.parse(json.dumps(record).encode(), Path("x"), 1)
    original = json.loads(json.dumps(record))
    try:
        exact = rfc8785.dumps(original)
    except rfc8785.CanonicalizationError:  # integers beyond 2**53: refused on both paths
        with pytest.raises(InputError):
            line_leaf(1, parsed, None, None)
        return
    assert canonical_bytes(parsed) == exact
    fast = line_leaf(1, parsed, "p" * 32, None)
    assert fast == line_leaf(1, original, "p" * 32, None)


def test_integer_beyond_two_to_the_53_is_refused_by_line(rig: Rig, tmp_path: Path) -> None:
    path = write_log(tmp_path / "gw.jsonl", [request(1), request(2, seed=2**63)])
    with pytest.raises(CollectorError, match=r"gw\.jsonl line 2: .*safe integer"):
        rig.ingest(path)


# -- worker processes ------------------------------------------------------------------------


def test_worker_processes_give_the_same_batches(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import collectors.inference_log as module

    monkeypatch.setattr(module, "CHUNK_BYTES", 900)  # many chunks, cut across batches
    rig.ingest(write_log(tmp_path / "first.jsonl", [request(0), request(1)]))  # known callers
    lines: list[dict[str, Any] | str] = [request(i) for i in range(2, 40)]
    lines[7:7] = ["", "  "]
    path = write_log(tmp_path / "gw.jsonl", lines)
    runs = [
        rig.ingest(path, content=False, batch_size=5, dry_run=True, workers=n) for n in (1, 2, 3)
    ]
    assert len(runs[0].statements) == 8
    assert runs[0].statements == runs[1].statements == runs[2].statements
    done = rig.ingest(path, content=True, batch_size=5, workers=2)
    first = done.first_index or 0
    for number in (1, 7, 10, 11, 40):
        entry = first + (number - 1 - (number > 8) * 2) // 5
        prove_line(rig.store, rig.blobs, entry, number).verify()
    assert [r.line for r in read_content(rig.store, rig.vault, rig.blobs, first, "bob@example.com")]


def test_a_bad_line_in_a_worker_is_named_and_nothing_is_kept(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import collectors.inference_log as module

    monkeypatch.setattr(module, "CHUNK_BYTES", 900)
    lines: list[dict[str, Any] | str] = [request(i) for i in range(30)]
    lines[21] = '{"model": "m"'
    size = rig.store.size()
    with pytest.raises(CollectorError, match=r"gw\.jsonl line 22: not valid JSON"):
        rig.ingest(write_log(tmp_path / "gw.jsonl", lines), content=True, workers=2)
    assert rig.store.size() == size
    assert rig.vault.find("alice@example.com") is None
    assert not [p for p in rig.blobs.root.rglob("*") if p.is_file()]
