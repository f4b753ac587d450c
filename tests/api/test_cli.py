"""The `annex` command line as a user runs it: outputs, exit codes and what README.md promises.

Most tests run the installed `annex` in a subprocess with a clean environment. Checks of pure
logic (the table of malformed inputs, refusals, tampered proofs) run the same command in-process
with `Annex.fast` (Typer's CliRunner) to keep the file quick.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.canonical import canonical_bytes
from evidence.dsse import Envelope, sign_envelope
from evidence.errors import VerificationError
from evidence.home import Home
from evidence.keys import Signer, TrustIndex, load_trust
from evidence.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion
from evidence.note import NoteVerifier, TlogProof, open_note
from tests.api.conftest import (
    ORIGIN,
    PASSPHRASE,
    Annex,
    Result,
    Template,
    log_size,
)
from tests.conftest import noncanonical_b64, statement

AnnexAt = Callable[[Path], Annex]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, value: Any) -> Path:
    return write(path, json.dumps(value))


def jsonl(values: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(v) + "\n" for v in values)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def failed(result: Result, code: int, *needles: str) -> None:
    """A human-mode failure: the exit code, nothing on stdout, every needle in the message."""
    assert result.code == code, result
    assert result.out == "", result
    for needle in needles:
        assert needle in result.err, (needle, result.err)


def latest_note(home: Path) -> str:
    with Home(home).open_store() as store:
        return store.checkpoint().note


# -- init -----------------------------------------------------------------------------------------


def test_init_creates_private_directory_key_and_trust_file(
    tmp_path: Path, annex_at: AnnexAt
) -> None:
    """README: directory 0700, PEMs 0600, a trust file with the log and model-signing keys."""
    target = tmp_path / "data"
    result = annex_at(target)("init", "--origin", "example.com/ai-log")
    assert result.code == 0, result
    trust = json.loads((target / "trust.json").read_text())
    assert trust["version"] == 1 and trust["origin"] == "example.com/ai-log"
    key, model_key = trust["keys"]
    public = base64.b64decode(key["public_key"])
    assert key["keyid"] == hashlib.sha256(public).hexdigest()
    assert (key["name"], key["role"], key["status"]) == ("example.com/ai-log", "log", "active")
    assert (key["valid_from_size"], key["valid_until_size"]) == (0, None)
    assert (model_key["role"], model_key["algorithm"], model_key["valid_from_size"]) == (
        "model-signing",
        "ecdsa-p256-sha256",
        1,
    )
    assert result.out.splitlines() == [
        f"initialised {target}",
        "  log origin  example.com/ai-log",
        f"  log key     {key['keyid']}",
        f"  model key   {model_key['keyid']}  (EC P-256, signs model releases)",
        f"  trust file  {target / 'trust.json'}  (give this to auditors)",
    ]
    pem = target / "keys" / f"{key['keyid']}.pem"
    model_pem = target / "keys" / f"{model_key['keyid']}.pem"
    assert sorted(p.name for p in (target / "keys").iterdir()) == sorted([pem.name, model_pem.name])
    assert (mode(target), mode(target / "keys"), mode(pem)) == (0o700, 0o700, 0o600)
    assert mode(model_pem) == 0o600
    private = serialization.load_pem_private_key(pem.read_bytes(), None)
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert raw == public
    assert (target / "annex.db").is_file()


def test_init_json_and_the_key_event_at_entry_0(tmp_path: Path, annex_at: AnnexAt) -> None:
    """--json describes what was made; README: the key's creation is logged as entry 0."""
    target = tmp_path / "data"
    run = annex_at(target)
    data = run("init", "--origin", "x.example/log", "--json").json()
    assert data["home"] == str(target)
    assert data["database"] == f"sqlite:///{target / 'annex.db'}"
    assert data["origin"] == "x.example/log"
    assert data["trust_file"] == str(target / "trust.json")
    assert data["checkpoint"].startswith("x.example/log\n2\n")
    shown = run.fast("show", "0", "--json").json()
    assert shown["predicate_type"] == "https://annex.dev/predicates/key-event/v1"
    assert shown["keyid"] == data["keyid"]
    assert shown["statement"]["predicate"]["event"] == "created"
    assert shown["statement"]["predicate"]["keyid"] == data["keyid"]
    model = run.fast("show", "1", "--json").json()["statement"]["predicate"]
    assert (model["event"], model["role"], model["keyid"]) == (
        "created",
        "model-signing",
        data["model_signing_keyid"],
    )


def test_init_twice_is_refused(tmp_path: Path, annex_at: AnnexAt) -> None:
    """A second init must not replace the key or the log; the default origin is HOST/annex."""
    target = tmp_path / "data"
    run = annex_at(target)
    assert run("init").code == 0
    before = (target / "trust.json").read_bytes()
    origin = json.loads(before)["origin"]
    assert origin == f"{socket.gethostname()}/annex"
    failed(run.fast("init"), 2, "already an Annex data directory")
    again = run.fast("init", "--json", "--origin", "y.example/log")
    assert again.code == 2
    assert again.json()["ok"] is False and again.json()["error"] == "ConfigError"
    assert (target / "trust.json").read_bytes() == before


@pytest.mark.parametrize("origin", ["my log", "example.com+log"])
def test_init_rejects_bad_origin(origin: str, tmp_path: Path, annex_at: AnnexAt) -> None:
    """Signed-note key names may hold neither spaces nor '+'; nothing is left behind."""
    target = tmp_path / "data"
    failed(annex_at(target).fast("init", "--origin", origin), 2, repr(origin), "'+'")
    assert not target.exists()


# -- an encrypted key -----------------------------------------------------------------------------


def test_init_with_passphrase_encrypts_the_key(tmp_path: Path, annex_at: AnnexAt) -> None:
    """README: the PEMs are encrypted when ANNEX_KEY_PASSPHRASE is set."""
    target = tmp_path / "data"
    result = annex_at(target).with_env(ANNEX_KEY_PASSPHRASE=PASSPHRASE)("init")
    assert result.code == 0, result
    kinds = []
    for pem in (target / "keys").iterdir():
        assert b"ENCRYPTED" in pem.read_bytes().split(b"\n", 1)[0]
        loaded = serialization.load_pem_private_key(pem.read_bytes(), PASSPHRASE.encode())
        kinds.append(type(loaded))
    assert len(kinds) == 2
    assert any(issubclass(k, Ed25519PrivateKey) for k in kinds)
    assert any(issubclass(k, ec.EllipticCurvePrivateKey) for k in kinds)


def test_append_needs_the_passphrase(
    encrypted: Template, fresh_encrypted: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """Without it, or with a wrong one, exit 2 with a message that says what to set."""
    source = write_json(tmp_path / "s.json", statement(50))
    run = annex_at(fresh_encrypted)
    failed(run("append", source), 2, "is encrypted", "ANNEX_KEY_PASSPHRASE")
    failed(run.with_env(ANNEX_KEY_PASSPHRASE="wrong")("append", source), 2, "wrong passphrase")
    assert log_size(fresh_encrypted) == encrypted.size


def test_reading_an_encrypted_log_needs_no_passphrase(
    encrypted: Template, annex_at: AnnexAt
) -> None:
    """Verification uses public keys only (README), so the private key stays locked."""
    result = annex_at(encrypted.path)("verify", "--json")
    assert result.code == 0, result
    assert result.json()["size"] == encrypted.size


def test_append_with_passphrase_file(
    encrypted: Template, fresh_encrypted: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """The passphrase's first line from ANNEX_KEY_PASSPHRASE_FILE unlocks the key."""
    home = fresh_encrypted
    secret = write(tmp_path / "passphrase", PASSPHRASE + "\n")
    source = write_json(tmp_path / "s.json", statement(50))
    result = annex_at(home).with_env(ANNEX_KEY_PASSPHRASE_FILE=str(secret))("append", source)
    assert result.code == 0, result
    assert log_size(home) == encrypted.size + 1


def test_passphrase_and_passphrase_file_together_are_refused(
    encrypted: Template, fresh_encrypted: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """Two sources of one secret are ambiguous: refused before anything is done."""
    secret = write(tmp_path / "passphrase", PASSPHRASE + "\n")
    source = write_json(tmp_path / "s.json", statement(50))
    run = annex_at(fresh_encrypted).with_env(
        ANNEX_KEY_PASSPHRASE=PASSPHRASE, ANNEX_KEY_PASSPHRASE_FILE=str(secret)
    )
    failed(run("append", source), 2, "ANNEX_KEY_PASSPHRASE or ANNEX_KEY_PASSPHRASE_FILE, not both")
    assert log_size(fresh_encrypted) == encrypted.size


# -- append ---------------------------------------------------------------------------------------


def expected_leaf(home: Path, obj: dict[str, Any]) -> str:
    """The leaf hash the log must record: Ed25519 signatures are deterministic."""
    envelope = sign_envelope(canonical_bytes(obj), Home(home).signer())
    return b64(leaf_hash(envelope.canonical()))


def test_append_one_statement(fresh: Path, tmp_path: Path, annex_at: AnnexAt) -> None:
    """One JSON object is one entry, holding exactly that statement."""
    source = write_json(tmp_path / "statement.json", statement(100))
    result = annex_at(fresh)("append", source)
    assert result.code == 0, result
    assert result.out == "appended 1 entry (10..10); checkpoint signed at size 11\n"
    with Home(fresh).open_store() as store:
        assert store.size() == 11
        assert store.get(10).statement == statement(100)


def test_append_json_array_reports_leaves_and_checkpoint(
    fresh: Path, template: Template, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """--json: first_index, count, leaf hashes and a checkpoint over the whole new tree."""
    batch = [statement(101), statement(102)]
    data = annex_at(fresh)("append", write_json(tmp_path / "batch.json", batch), "--json").json()
    assert (data["first_index"], data["count"]) == (10, 2)
    assert data["leaf_hashes"] == [expected_leaf(fresh, s) for s in batch]
    new_leaves = [base64.b64decode(h) for h in data["leaf_hashes"]]
    root = root_of(template.leaves + new_leaves)
    assert data["checkpoint"]["size"] == 12
    assert data["checkpoint"]["root"] == b64(root)
    assert data["checkpoint"]["note"].startswith(f"{ORIGIN}\n12\n{b64(root)}\n\n— {ORIGIN} ")


def test_append_json_lines(fresh: Path, tmp_path: Path, annex_at: AnnexAt) -> None:
    """One statement a line; blank lines are skipped; order is kept."""
    batch = [statement(n) for n in (110, 111, 112)]
    text = jsonl(batch[:2]) + "\n" + jsonl(batch[2:])
    data = annex_at(fresh)("append", write(tmp_path / "sweep.jsonl", text), "--json").json()
    assert (data["first_index"], data["count"]) == (10, 3)
    with Home(fresh).open_store() as store:
        assert [store.get(i).statement for i in (10, 11, 12)] == batch


def test_append_from_stdin(fresh: Path, annex_at: AnnexAt) -> None:
    """README: `collector | annex append -`; errors name 'stdin' and the line."""
    run = annex_at(fresh)
    result = run("append", "-", stdin=jsonl([statement(120), statement(121)]))
    assert result.code == 0, result
    assert result.out.startswith("appended 2 entries (10..11)")
    bad = statement(122)
    bad["subject"][0]["digest"]["sha256"] = "abc"
    failed(run("append", "-", stdin=jsonl([statement(123), bad])), 2, "stdin line 2", "digest")
    assert log_size(fresh) == 12


def test_append_error_is_the_one_readme_shows(
    fresh: Path, template: Template, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """README's example error, byte for byte; lines 1-2 were fine and still nothing is logged."""
    bad = statement(3)
    bad["subject"][0]["digest"]["sha256"] = "abc123abc123"
    write(tmp_path / "sweep.jsonl", jsonl([statement(1), statement(2), bad]))
    run = annex_at(fresh)
    result = run("append", "sweep.jsonl")
    assert result.code == 2
    assert result.err == (
        "error: sweep.jsonl line 3: subject.0.digest: Value error, "
        "sha256 digest has 12 hex characters, expected 64\n"
    )
    assert run.fast("log", "checkpoint", "--json").json()["size"] == template.size


def test_append_error_as_json(fresh: Path, tmp_path: Path, annex_at: AnnexAt) -> None:
    """README: with --json, errors are one JSON document on stdout too."""
    bad = statement(1)
    del bad["_type"]
    result = annex_at(fresh)("append", write_json(tmp_path / "b.json", bad), "--json")
    assert result.code == 2
    error = result.json()
    assert (error["ok"], error["error"]) == (False, "InputError")
    assert "_type" in error["message"]
    assert result.err == ""
    assert log_size(fresh) == 10


def _mutated(change: Callable[[dict[str, Any]], object]) -> str:
    obj = statement(500)
    change(obj)
    return json.dumps(obj)


def _set_digest(value: str) -> Callable[[dict[str, Any]], object]:
    return lambda obj: obj["subject"][0]["digest"].update(sha256=value)


def _set_observed(value: str) -> Callable[[dict[str, Any]], object]:
    return lambda obj: obj["predicate"].update(observedAt=value)


_GOOD = json.dumps(statement(501))
_DUPLICATE = _GOOD.replace('"_type": ', '"_type": "https://in-toto.io/Statement/v0", "_type": ')
_BAD_INPUTS: list[tuple[str, str, list[str]]] = [
    ("not-json", '{"_type": ', ["bad.json line 1", "not valid JSON"]),
    ("empty", "  \n", ["bad.json is empty"]),
    ("not-an-object", "[1]", ["bad.json item 1", "must be a JSON object"]),
    ("missing-type", _mutated(lambda o: o.pop("_type")), ["bad.json: _type:", "required"]),
    ("unknown-field", _mutated(lambda o: o.update(note="x")), ["bad.json: note:", "Extra inputs"]),
    (
        "python-field-name",
        _mutated(lambda o: o.update(predicate_type=o.pop("predicateType"))),
        ["bad.json: predicateType:", "required"],
    ),
    ("no-subject", _mutated(lambda o: o.update(subject=[])), ["bad.json: subject:"]),
    ("digest-short", _mutated(_set_digest("ab12")), ["subject.0.digest", "4 hex characters"]),
    ("digest-upper", _mutated(_set_digest("AB" * 32)), ["subject.0.digest", "not lowercase hex"]),
    ("digest-non-hex", _mutated(_set_digest("zz" * 32)), ["subject.0.digest", "lowercase hex"]),
    ("observed-garbage", _mutated(_set_observed("yesterday")), ["predicate", "RFC 3339"]),
    ("observed-no-zone", _mutated(_set_observed("2026-11-24T08:00:00")), ["no UTC offset"]),
    ("bad-second-item", f"[{_GOOD}, {_mutated(_set_digest('x'))}]", ["bad.json item 2"]),
    ("duplicate-key", _DUPLICATE, ["bad.json", "duplicate key '_type'"]),
    ("duplicate-key-in-array", f"[{_DUPLICATE}]", ["bad.json", "duplicate key '_type'"]),
]


@pytest.mark.parametrize(
    ("content", "needles"), [c[1:] for c in _BAD_INPUTS], ids=[c[0] for c in _BAD_INPUTS]
)
def test_append_refuses_bad_input_and_appends_nothing(
    content: str, needles: list[str], fresh: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """README: any error fails the whole file with code 2, naming the file and the field."""
    source = write(tmp_path / "bad.json", content)
    failed(annex_at(fresh).fast("append", source), 2, *needles)
    assert log_size(fresh) == 10


def _envelope_file(path: Path, envelope: Envelope) -> Path:
    return write_json(path, envelope.to_dict())


def test_append_envelope_signed_by_an_unknown_key(
    fresh: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """Only keys in the trust file may vouch for a pre-signed envelope."""
    stranger = Signer.generate("x.example/other")
    envelope = sign_envelope(canonical_bytes(statement(200)), stranger)
    source = _envelope_file(tmp_path / "env.json", envelope)
    failed(annex_at(fresh)("append", source), 2, "env.json", "not signed by")
    assert log_size(fresh) == 10


def test_append_envelope_whose_signature_does_not_verify(
    fresh: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """The log's own key id on a payload it never signed."""
    good = sign_envelope(canonical_bytes(statement(201)), Home(fresh).signer())
    forged = Envelope(good.payload_type, canonical_bytes(statement(202)), good.signatures)
    source = _envelope_file(tmp_path / "env.json", forged)
    failed(annex_at(fresh)("append", source), 2, "env.json", "does not verify")
    assert log_size(fresh) == 10


def test_append_envelope_signed_by_a_retired_key(
    fresh: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """After a rotation the old key may sign nothing new, even a pre-signed envelope."""
    old = Home(fresh).signer()
    Home(fresh).rotate(reason="test")
    envelope = sign_envelope(canonical_bytes(statement(204)), old)
    source = _envelope_file(tmp_path / "env.json", envelope)
    failed(annex_at(fresh).fast("append", source), 2, old.keyid[:16], "retired")
    assert log_size(fresh) == 11


def test_append_envelope_signed_by_the_log_key_is_logged_as_is(
    fresh: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """README: envelopes signed by a trusted key are logged as they are, not re-signed."""
    envelope = sign_envelope(canonical_bytes(statement(203)), Home(fresh).signer())
    # Indented on disk, not canonical: the log stores (and hashes) the canonical bytes.
    source = write(tmp_path / "env.json", json.dumps(envelope.to_dict(), indent=4, sort_keys=True))
    result = annex_at(fresh)("append", source, "--json")
    assert result.code == 0, result
    assert result.json()["leaf_hashes"] == [b64(leaf_hash(envelope.canonical()))]
    with Home(fresh).open_store() as store:
        [(index, stored, _leaf)] = list(store.export(10))
    assert (index, stored) == (10, envelope.canonical())


# -- show -----------------------------------------------------------------------------------------


def test_show_human(template: Template, annex: Annex) -> None:
    """The recorded metadata, then the statement as indented JSON."""
    result = annex("show", "2")
    assert result.code == 0, result
    lines = result.out.splitlines()
    digest = template.statements[2]["subject"][0]["digest"]["sha256"]
    keyid = Home(template.path).signer().keyid
    assert lines[:4] == [
        "entry 2",
        "  predicate type  https://annex.dev/predicates/example/v1",
        f"  subject         artifact-2  sha256:{digest}",
        "  observed at     2026-11-24T08:00:00Z",
    ]
    assert re.fullmatch(r"  logged at       \d{4}-\d\d-\d\dT[\d:.]+Z", lines[4])
    assert lines[5:8] == [
        f"  signed by       {keyid}",
        f"  leaf hash       {b64(template.leaves[2])}",
        "{",
    ]
    assert json.loads("\n".join(lines[7:])) == template.statements[2]


def test_show_json(template: Template, annex: Annex) -> None:
    """The statement, the metadata and the envelope whose leaf hash the tree holds."""
    data = annex("show", "3", "--json").json()
    assert data["index"] == 3
    assert data["statement"] == template.statements[3]
    assert data["leaf_hash"] == b64(template.leaves[3])
    assert data["observed_at"] == "2026-11-24T08:00:00Z"
    assert data["subjects"] == template.statements[3]["subject"]
    envelope = Envelope.from_dict(data["envelope"])
    assert envelope.payload == canonical_bytes(template.statements[3])
    assert leaf_hash(envelope.canonical()) == template.leaves[3]


def test_show_missing_entry(annex: Annex) -> None:
    """A bad index is bad input (2) and says how many entries there are."""
    failed(annex.fast("show", "99"), 2, "no entry 99", "10 entries")


@pytest.fixture(scope="module")
def marked_up(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log whose entries 10 and 11 hold text that looks like Rich console markup."""
    home = tmp_path_factory.mktemp("markup") / "annex"
    shutil.copytree(template.path, home)
    quoted = statement(300)
    quoted["subject"][0]["name"] = "model[int8]"
    quoted["predicate"]["note"] = "[bold]reviewed[/bold] :thumbs_up:"
    closing = statement(301)
    closing["predicate"]["note"] = "see [/x]"
    with Home(home).open_store(write=True) as store:
        store.append([quoted, closing])
    return home


def test_show_prints_statement_text_verbatim(marked_up: Path, annex_at: AnnexAt) -> None:
    """Evidence text must be shown as logged, not interpreted as console markup or emoji."""
    result = annex_at(marked_up)("show", "10")
    assert result.code == 0, result
    assert "artifact-300" not in result.out  # the subject was renamed
    assert "subject         model[int8]  sha256:" in result.out
    assert '"note": "[bold]reviewed[/bold] :thumbs_up:"' in result.out


def test_show_survives_closing_tag_in_statement(marked_up: Path, annex_at: AnnexAt) -> None:
    """A '[/x]' in evidence must not crash `annex show` (exit 1 means a failed verification)."""
    result = annex_at(marked_up)("show", "11")
    assert result.code == 0, result.err[-300:]
    assert '"note": "see [/x]"' in result.out


def test_error_message_names_the_file_verbatim(annex: Annex) -> None:
    """Errors quote user input: a file name must not lose '[red]' to console markup."""
    failed(annex("append", "evidence[red].json"), 2, "cannot read evidence[red].json")


def test_error_message_quoting_a_closing_tag(
    fresh: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """A field value '[/x]' quoted in an error must give exit 2, not a crash with exit 1."""
    source = write(tmp_path / "s.json", _mutated(_set_digest("[/x]")))
    failed(annex_at(fresh)("append", source), 2, "'[/x]' is not lowercase hex")
    assert log_size(fresh) == 10


# -- checkpoints and proofs -----------------------------------------------------------------------


def test_log_checkpoint_is_a_signed_note(template: Template, annex: Annex) -> None:
    """C2SP tlog-checkpoint: origin, size, root; a blank line; '— name signature' lines."""
    note = annex("log", "checkpoint").out
    lines = note.split("\n")
    assert lines[:4] == [ORIGIN, "10", b64(template.roots[10]), ""]
    assert lines[-1] == ""
    signatures = lines[4:-1]
    assert signatures
    assert all(re.fullmatch(rf"— {re.escape(ORIGIN)} [A-Za-z0-9+/]+=*", s) for s in signatures)
    text, _signers = open_note(note, TrustIndex(load_trust(template.trust_path())).verifiers)
    assert text == f"{ORIGIN}\n10\n{b64(template.roots[10])}\n"
    data = annex.fast("log", "checkpoint", "--json").json()
    assert data == {"size": 10, "root": b64(template.roots[10]), "note": note}


def check_proof(text: str, template: Template, index: int, size: int) -> TlogProof:
    """Parses a tlog-proof and checks it against the known leaf and root."""
    proof = TlogProof.parse(text)
    assert proof.index == index
    assert proof.checkpoint.split("\n")[:3] == [ORIGIN, str(size), b64(template.roots[size])]
    verify_inclusion(template.leaves[index], index, size, proof.hashes, template.roots[size])
    return proof


def test_log_proof_latest_and_to_file(template: Template, annex: Annex, tmp_path: Path) -> None:
    """A C2SP tlog-proof that verifies against the known root; `-o` writes the same."""
    printed = annex("log", "proof", "2")
    assert printed.code == 0, printed
    assert printed.out.startswith("c2sp.org/tlog-proof@v1\nindex 2\n")
    check_proof(printed.out, template, 2, 10)
    target = tmp_path / "e2.tlog-proof"
    written = annex.fast("log", "proof", "2", "-o", target)
    assert (written.code, written.out) == (0, "")
    assert target.read_text() == printed.out


def test_log_proof_to_file_with_json(annex: Annex, tmp_path: Path) -> None:
    """`-o FILE` must not be silently dropped when --json is also given."""
    target = tmp_path / "e2.tlog-proof"
    result = annex.fast("log", "proof", "2", "-o", target, "--json")
    assert result.code == 0, result
    assert target.exists(), "`annex log proof -o FILE --json` exited 0 without writing FILE"


def test_log_proof_at_an_earlier_checkpoint(template: Template, annex: Annex) -> None:
    """README: `--tree-size` proves against the checkpoint issued at that size."""
    result = annex("log", "proof", "2", "--tree-size", "6", "--json")
    assert result.code == 0, result
    data = result.json()
    proof = check_proof(data["tlog_proof"], template, 2, 6)
    assert data["index"] == 2
    assert data["hashes"] == [b64(h) for h in proof.hashes]
    assert data["checkpoint"] == proof.checkpoint


def test_log_proof_where_no_checkpoint_was_issued(annex: Annex) -> None:
    """Checkpoints exist only at batch ends (1, 4, 6, 10): the error names the nearest."""
    failed(annex.fast("log", "proof", "2", "--tree-size", "5"), 2, "size 5", "nearest: 4, 6")


def test_log_proof_of_an_entry_outside_the_tree(annex: Annex) -> None:
    """Entry 4 is not in the tree of size 4."""
    failed(annex.fast("log", "proof", "4", "--tree-size", "4"), 2, "entry 4", "size 4")


def test_log_consistency(template: Template, annex: Annex) -> None:
    """The proof verifies (RFC 9162) between the roots the two checkpoints signed."""
    data = annex("log", "consistency", "4", "10", "--json").json()
    assert (data["old_size"], data["new_size"]) == (4, 10)
    assert data["old_root"] == b64(template.roots[4])
    assert data["new_root"] == b64(template.roots[10])
    hashes = [base64.b64decode(h) for h in data["hashes"]]
    verify_consistency(4, 10, template.roots[4], template.roots[10], hashes)
    with pytest.raises(VerificationError):
        verify_consistency(4, 10, template.roots[6], template.roots[10], hashes)


def test_log_consistency_to_now_human(template: Template, annex: Annex) -> None:
    """Without NEW the proof runs to the current size; the human form verifies too."""
    result = annex("log", "consistency", "6")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[:2] == [f"old 6 {b64(template.roots[6])}", f"new 10 {b64(template.roots[10])}"]
    hashes = [base64.b64decode(h) for h in lines[2:]]
    verify_consistency(6, 10, template.roots[6], template.roots[10], hashes)


@pytest.mark.parametrize(("old", "new"), [("0", "4"), ("6", "4"), ("4", "11")])
def test_log_consistency_bad_sizes(old: str, new: str, annex: Annex) -> None:
    """Sizes must satisfy 0 < old <= new <= log size."""
    failed(annex.fast("log", "consistency", old, new), 2, "old size", "log size (10)")


def test_log_export_lines(template: Template, annex: Annex) -> None:
    """index, envelope and leaf hash a line; each leaf hash is that of the envelope."""
    result = annex("log", "export", "--from", "1", "--to", "3")
    assert result.code == 0, result
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert [line["index"] for line in lines] == [1, 2, 3]
    for line in lines:
        envelope = Envelope.from_dict(line["envelope"])
        assert line["leaf_hash"] == b64(leaf_hash(envelope.canonical()))
        assert line["leaf_hash"] == b64(template.leaves[line["index"]])
        assert json.loads(envelope.payload) == template.statements[line["index"]]


def test_log_export_json_is_one_document(annex: Annex) -> None:
    """README: 'Every command takes --json and then prints one JSON document on stdout'."""
    result = annex("log", "export", "--from", "1", "--to", "2", "--json")
    assert result.code == 0, result
    try:
        json.loads(result.out)
    except json.JSONDecodeError as exc:
        pytest.fail(f"`annex log export --json` printed no single JSON document: {exc}")


# -- verify-entry ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(template: Template, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Entry 2 as `annex log export` writes it, and its tlog-proof from `annex log proof`."""
    run = Annex(template.path, tmp_path_factory.mktemp("exported"))
    line = run("log", "export", "--from", "2", "--to", "2")
    proof = run("log", "proof", "2")
    assert line.code == proof.code == 0
    return line.out, proof.out


def verify_entry(
    run: Callable[..., Result], tmp_path: Path, line: str, proof: str, trust: Path, *extra: str
) -> Result:
    """`annex verify-entry` on an export line and a proof written to files."""
    entry_file = write(tmp_path / "e2.jsonl", line)
    proof_file = write(tmp_path / "e2.tlog-proof", proof)
    return run("verify-entry", entry_file, proof_file, "--trust", trust, *extra)


def test_verify_entry_passes(
    exported: tuple[str, str], template: Template, annex: Annex, tmp_path: Path
) -> None:
    """README: envelope (here an export line) + tlog-proof + trust file, no database."""
    line, proof = exported
    keyid = Home(template.path).signer().keyid
    human = verify_entry(annex, tmp_path, line, proof, template.trust_path())
    assert human.code == 0, human
    first, second = human.out.splitlines()[:2]
    assert first.startswith(f"ok: entry 2 is in the log of size 10, signed by {keyid[:16]}, ")
    logged_by = datetime.fromisoformat(first.rsplit("logged by ", 1)[1])
    with Home(template.path).open_store() as store:  # the checkpoint's signed time, to the second
        assert logged_by.timestamp() == store.checkpoint(10).issued_at.timestamp() // 1
    assert second == "  https://annex.dev/predicates/example/v1"
    data = verify_entry(annex.fast, tmp_path, line, proof, template.trust_path(), "--json").json()
    expected = {
        "ok": True,
        "index": 2,
        "tree_size": 10,
        "keyid": keyid,
        "predicate_type": "https://annex.dev/predicates/example/v1",
        "subjects": template.statements[2]["subject"],
    }
    assert {name: data.get(name) for name in expected} == expected


def _changed_payload(line: str) -> str:
    """The statement changed and re-encoded; the signature kept."""
    obj = json.loads(line)
    payload = json.loads(base64.b64decode(obj["envelope"]["payload"]))
    payload["predicate"]["n"] = 999
    obj["envelope"]["payload"] = b64(canonical_bytes(payload))
    return json.dumps(obj)


def _changed_hash(proof: str) -> str:
    lines = proof.split("\n")
    assert lines[2] != b64(bytes(32))
    lines[2] = b64(bytes(32))
    return "\n".join(lines)


def _changed_signature(proof: str) -> str:
    """One bit of the log's first signature line on the checkpoint flipped."""
    head, sep, rest = proof.partition(f"\n— {ORIGIN} ")
    sig, newline, tail = rest.partition("\n")
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 1  # inside the Ed25519 signature, after the 4-byte key hash
    return f"{head}{sep}{b64(bytes(raw))}{newline}{tail}"


Tamper = Callable[[str, str], tuple[str, str]]
_TAMPERED: dict[str, tuple[Tamper, str]] = {
    "payload": (lambda line, proof: (_changed_payload(line), proof), "does not verify"),
    "hash": (lambda line, proof: (line, _changed_hash(proof)), "index 2 does not lead to the root"),
    "index": (
        lambda line, proof: (line, proof.replace("\nindex 2\n", "\nindex 3\n", 1)),
        "index 3 does not lead to the root",
    ),
    "checkpoint-signature": (
        lambda line, proof: (line, _changed_signature(proof)),
        "does not verify",
    ),
}


@pytest.mark.parametrize("what", list(_TAMPERED))
def test_verify_entry_detects_tampering(
    what: str, exported: tuple[str, str], template: Template, annex: Annex, tmp_path: Path
) -> None:
    """Any change to the evidence or its proof is a failed verification (1)."""
    tamper, reason = _TAMPERED[what]
    line, proof = tamper(*exported)
    assert (line, proof) != exported
    result = verify_entry(annex.fast, tmp_path, line, proof, template.trust_path())
    failed(result, 1, "verification failed:", reason)


def test_verify_entry_with_another_logs_trust_file(
    exported: tuple[str, str], other_log: Template, annex: Annex, tmp_path: Path
) -> None:
    """Same origin, other key: the checkpoint is not signed by anyone that trust file names."""
    result = verify_entry(annex.fast, tmp_path, *exported, other_log.trust_path())
    failed(result, 1, "verification failed:", "not signed by a trusted key")


def test_verify_entry_malformed_proof(
    exported: tuple[str, str], template: Template, annex: Annex, tmp_path: Path
) -> None:
    """A file that is not a tlog-proof is bad input (2), not a failed verification."""
    result = verify_entry(annex.fast, tmp_path, exported[0], "index 2\n", template.trust_path())
    failed(result, 2, "not a tlog proof")


def test_verify_entry_refuses_a_proof_in_other_base64(
    exported: tuple[str, str], template: Template, annex: Annex, tmp_path: Path
) -> None:
    """The same hashes and signatures in non-canonical base64 are a malformed proof (2)."""
    line, proof = exported
    lines = proof.split("\n")
    hash_line = lines[2]
    lines[2] = noncanonical_b64(hash_line)
    assert base64.b64decode(lines[2]) == base64.b64decode(hash_line)
    result = verify_entry(annex.fast, tmp_path, line, "\n".join(lines), template.trust_path())
    failed(result, 2, "tlog proof hash 1 is not canonical base64")
    head, sep, rest = proof.partition(f"\n— {ORIGIN} ")
    sig, newline, tail = rest.partition("\n")
    changed = f"{head}{sep}{noncanonical_b64(sig)}{newline}{tail}"
    result = verify_entry(annex.fast, tmp_path, line, changed, template.trust_path())
    failed(result, 2, f"note signature by {ORIGIN} is not canonical base64")


# -- verify ---------------------------------------------------------------------------------------


def test_auditor_verifies_with_trust_file_and_database_only(
    template: Template, annex_at: AnnexAt, tmp_path: Path
) -> None:
    """No data directory, no private key: the trust file and the database are enough."""
    trust = shutil.copy(template.trust_path(), tmp_path / "trust.json")
    auditor = annex_at(tmp_path / "no-data-dir").with_env(
        ANNEX_DATABASE_URL=f"sqlite:///{template.path / 'annex.db'}"
    )
    result = auditor("verify", "--trust", trust, "--json")
    assert result.code == 0, result
    assert result.json()["size"] == template.size
    assert not (tmp_path / "no-data-dir").exists()


def test_verify_whole_log(template: Template, annex: Annex) -> None:
    """Every entry's and every checkpoint's (sizes 1, 4, 6, 10) signature is counted."""
    human = annex("verify")
    assert human.code == 0, human
    counted = re.fullmatch(
        rf"ok: 10 entries, (\d+) signatures and 4 checkpoints verified; "
        rf"root {re.escape(b64(template.roots[10]))}\n",
        human.out,
    )
    assert counted is not None, human.out
    assert int(counted.group(1)) >= 10 + 4
    data = annex.fast("verify", "--json").json()
    assert data == {
        "ok": True,
        "size": 10,
        "root": b64(template.roots[10]),
        "signatures_checked": int(counted.group(1)),
        "checkpoints_checked": 4,
        "trusted_checkpoint_size": None,
        "checkpoint": latest_note(template.path),
    }


def test_verify_against_a_saved_checkpoint_after_more_appends(
    fresh: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """README: `annex log checkpoint > saved.note`, later `verify --trusted-checkpoint`."""
    run = annex_at(fresh)
    saved = write(tmp_path / "saved.note", run("log", "checkpoint").out)
    with Home(fresh).open_store(write=True) as store:
        store.append([statement(400)])
    human = run("verify", "--trusted-checkpoint", saved)
    assert human.code == 0, human
    assert human.out.startswith("ok: 11 entries")
    assert "the log extends the trusted checkpoint of size 10" in human.out
    data = run.fast("verify", "--trusted-checkpoint", saved, "--json").json()
    assert (data["ok"], data["size"], data["trusted_checkpoint_size"]) == (True, 11, 10)


def test_verify_detects_a_rolled_back_log(
    fresh: Path, template: Template, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """A genuine checkpoint of size 11 from a copy: the 10-entry original is behind it."""
    with Home(fresh).open_store(write=True) as store:
        note = store.append([statement(401)]).checkpoint.note
    saved = write(tmp_path / "saved.note", note)
    result = annex_at(template.path)("verify", "--trusted-checkpoint", saved)
    failed(result, 1, "verification failed:", "truncated or rolled back")


def rewrite_envelope(home: Path, index: int) -> None:
    """What a database administrator could do: drop the triggers and edit an entry's bytes."""
    with closing(sqlite3.connect(home / "annex.db")) as db:
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (name,) in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        [(envelope,)] = db.execute("SELECT envelope FROM entries WHERE idx = ?", (index,))
        db.execute("UPDATE entries SET envelope = ? WHERE idx = ?", (envelope + b" ", index))
        db.commit()


def test_verify_names_the_rewritten_entry(fresh: Path, annex_at: AnnexAt) -> None:
    """README: 'The first bad entry is named', in the form it shows; --json carries the index."""
    rewrite_envelope(fresh, 7)
    run = annex_at(fresh)
    human = run("verify")
    failed(human, 1)
    assert human.err == (
        "verification failed: entry 7: its envelope bytes do not match its recorded leaf hash\n"
    )
    result = run.fast("verify", "--json")
    assert result.code == 1
    assert result.json() == {
        "ok": False,
        "error": "VerificationError",
        "message": "entry 7: its envelope bytes do not match its recorded leaf hash",
        "index": 7,
    }


def _forged(note: str) -> str:
    """The size line changed, the signature kept."""
    return note.replace(f"{ORIGIN}\n10\n", f"{ORIGIN}\n9\n", 1)


def _unsigned(note: str) -> str:
    return note.split("\n\n", 1)[0] + "\n"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("forged", "does not verify"),
        ("unsigned", "malformed"),
        ("other-log", "not signed by a trusted key"),
    ],
)
def test_verify_refuses_untrustworthy_checkpoints(
    kind: str, reason: str, template: Template, other_log: Template, annex: Annex, tmp_path: Path
) -> None:
    """A pinned checkpoint counts only if the trust file's key signed it."""
    note = latest_note(template.path)
    text = {
        "forged": _forged(note),
        "unsigned": _unsigned(note),
        "other-log": latest_note(other_log.path),
    }[kind]
    assert text != note
    saved = write(tmp_path / "saved.note", text)
    failed(annex.fast("verify", "--trusted-checkpoint", saved), 1, "verification failed:", reason)


# -- keys -----------------------------------------------------------------------------------------


def trust_keys(home: Path) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = json.loads((home / "trust.json").read_text())["keys"]
    return keys


def test_keys_list(template: Template, annex: Annex) -> None:
    """README: keys, roles, status and the entries each may sign."""
    [key] = trust_keys(template.path)
    human = annex("keys", "list")
    assert human.code == 0, human
    assert re.fullmatch(
        rf"{key['keyid'][:16]}  log\s+ed25519\s+active\s+entries 0\.\.\s+since [\d-]+ [\d:]+  "
        rf"{ORIGIN}\n\s+may sign: checkpoints, any type but model-release\n",
        human.out,
    )
    data = annex.fast("keys", "list", "--json").json()
    assert data["origin"] == ORIGIN
    [listed] = data["keys"]
    assert listed["keyid"] == key["keyid"] and listed["status"] == "active"
    assert listed["note_verifier"].startswith(f"{ORIGIN}+")
    assert listed["signs_checkpoints"] is True


def test_keys_rotate_keeps_old_entries_verifying(
    fresh: Path, tmp_path: Path, annex_at: AnnexAt
) -> None:
    """README: a new log key; old entries keep verifying under the old one."""
    run = annex_at(fresh)
    [old] = trust_keys(fresh)
    rotated = run("keys", "rotate", "--reason", "yearly", "--json").json()
    retired, active = rotated["retired"], rotated["active"]
    assert retired["keyid"] == old["keyid"]
    assert (retired["status"], retired["valid_until_size"], retired["reason"]) == (
        "retired",
        10,
        "yearly",
    )
    assert (active["status"], active["valid_from_size"]) == ("active", 10)
    assert active["keyid"] != old["keyid"]
    assert run.fast("append", write_json(tmp_path / "s.json", statement(402))).code == 0
    with Home(fresh).open_store() as store:
        assert store.get(10).keyid == store.get(11).keyid == active["keyid"]
        assert store.get(9).keyid == old["keyid"]
        event = store.get(10)  # README: rotations are logged as key-event entries
    assert event.predicate_type == "https://annex.dev/predicates/key-event/v1"
    assert event.statement["predicate"]["event"] == "rotated"
    assert event.statement["predicate"]["previousKeyid"] == old["keyid"]
    verified = run("verify", "--json")
    assert verified.code == 0, verified
    assert verified.json()["size"] == 12


def test_keys_revoke_a_retired_key(fresh: Path, annex_at: AnnexAt) -> None:
    """README: revoke by keyid prefix; the log still verifies: the key signed nothing late."""
    run = annex_at(fresh)
    [old] = trust_keys(fresh)
    rotated = run.fast("keys", "rotate")
    assert rotated.code == 0, rotated
    assert rotated.out.splitlines()[0] == f"retired {old['keyid'][:16]} (signed entries 0..9)"
    revoked = run("keys", "revoke", old["keyid"][:8], "--reason", "leaked")
    assert revoked.code == 0, revoked
    assert revoked.out == (
        f"revoked {old['keyid'][:16]}: entries it signed at index 10 or later fail verification\n"
    )
    with Home(fresh).open_store() as store:
        logged = store.get(11).statement["predicate"]
    assert (logged["event"], logged["keyid"], logged["reason"]) == (
        "revoked",
        old["keyid"],
        "leaked",
    )
    statuses = {k["keyid"]: (k["status"], k["reason"]) for k in trust_keys(fresh)}
    assert statuses[old["keyid"]] == ("revoked", "leaked")
    assert sorted(s for s, _ in statuses.values()) == ["active", "revoked"]
    verified = run("verify")
    assert verified.code == 0, verified
    assert verified.out.startswith("ok: 12 entries")
    failed(run.fast("keys", "revoke", old["keyid"][:8]), 2, "already revoked")
    exported = run.fast("keys", "export-public", old["keyid"][:8], "--json").json()
    assert (exported["keyid"], exported["status"]) == (old["keyid"], "revoked")


def test_keys_revoke_the_active_key_rotates_first(fresh: Path, annex_at: AnnexAt) -> None:
    """README: 'Revoking the active log key first rotates to a new one.'"""
    run = annex_at(fresh)
    [old] = trust_keys(fresh)
    revoked = run("keys", "revoke", old["keyid"][:12], "--json")
    assert revoked.code == 0, revoked
    assert revoked.json()["revoked"]["keyid"] == old["keyid"]
    keys = trust_keys(fresh)
    assert [k["status"] for k in keys] == ["revoked", "active"]
    assert keys[1]["valid_from_size"] == 10
    verified = run.fast("verify", "--json")
    assert verified.code == 0, verified
    assert verified.json()["size"] == 12


def test_keys_revoke_unknown_key(fresh: Path, annex_at: AnnexAt) -> None:
    """A prefix that matches no key is bad input and changes nothing."""
    failed(annex_at(fresh).fast("keys", "revoke", "deadbeef"), 2, "no key", "'deadbeef'")
    assert log_size(fresh) == 10


def test_keys_export_public_pem(template: Template, annex: Annex) -> None:
    """The active log key as a PEM that `cryptography` reads back."""
    [key] = trust_keys(template.path)
    result = annex("keys", "export-public")
    assert result.code == 0, result
    public = serialization.load_pem_public_key(result.out.encode())
    assert isinstance(public, Ed25519PublicKey)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == base64.b64decode(key["public_key"])


def test_keys_export_public_note_verifies_the_checkpoint(template: Template, annex: Annex) -> None:
    """A signed-note verifier key (name+hash+base64) that checks the latest checkpoint."""
    vkey = annex("keys", "export-public", "--format", "note").out
    assert re.fullmatch(rf"{re.escape(ORIGIN)}\+[0-9a-f]{{8}}\+[A-Za-z0-9+/]+=*\n", vkey)
    verifier = NoteVerifier.parse(vkey)
    assert verifier.public_key == base64.b64decode(trust_keys(template.path)[0]["public_key"])
    text, signed_by = open_note(latest_note(template.path), [verifier])
    assert signed_by == [verifier]
    assert text.split("\n")[:2] == [ORIGIN, "10"]


def test_keys_export_public_trust_and_bad_format(template: Template, annex: Annex) -> None:
    """`--format trust` prints the trust file as is; unknown formats are refused."""
    assert annex("keys", "export-public", "--format", "trust").out == (
        template.trust_path().read_text()
    )
    failed(annex.fast("keys", "export-public", "--format", "jwk"), 2, "--format must be")


# -- demo -----------------------------------------------------------------------------------------


def test_demo_builds_verifies_and_rebuilds(tmp_path: Path, annex_at: AnnexAt) -> None:
    """README quick start: `annex demo` in the current directory; a second run replaces it."""
    evals = find_spec("lm_eval") is not None  # with the eval extra, a real lm-eval run
    size = 22 if evals else 21  # the last three: the system card and two reports
    run = annex_at(tmp_path / "unused")
    first = run("demo")
    assert first.code == 0, first
    home = tmp_path / "annex-demo"
    for said in (
        f"created a log at {home}",
        "GPU inventory of this host: ",  # on a host without a GPU: "none (the reason)"
        "model annex-demo-base: manifest sha256:",
        "adapter annex-demo-lora: bound to that base, at entry 4",
        "dataset annex-demo-tickets (200 records, datasheet) at entry 5",
        "training run: dataset + annex-demo-base -> annex-demo-lora at entry 6",
        "signed both for release: entries 7 and 8",
        "rotated the log key",
        "inference log: 60 requests at entry 10",
        "line 7 proven in the batch's tree of 60",
        "oversight: review, override, approve of that batch from entry 11",
        "erased caller-1@example.invalid: keys destroyed, receipt at entry 14; "
        "its 20 retained lines are unrecoverable",
        "eval: lm-eval ran the bundled task annex_mc" if evals else "eval run skipped",
        "gate on annex-demo-lora (signed, lineage recorded): PASS",
        "gate on annex-demo-base with one byte of model.safetensors changed: FAIL",
        "changed model.safetensors",
        "(gpu-node-1.demo, may sign: gpu-inventory): its inventory logged at entry ",
        "its forged model release refused: envelope 1: signed by collector key ",
        "which may not sign model-release statements",
        f"system annex-demo: card system-card.yaml logged at entry {size - 3}",
        "Annex IV dossier annex-iv.pdf: ",
        f"entries cited; logged at entry {size - 2}",
        f"oversight report oversight.pdf: logged at entry {size - 1}",
        "offline check of annex-iv.pdf: ok (",
        "annex verify-dossier",
        f"offline check of entry 8: ok (tree size {size})",
        f"full verification: {size} entries",
        "annex verify-entry",
        "OSCAL assessment results assessment-results.json: 23 findings",
        "components (schema-checked)",
        "annex export oscal --system annex-demo",
    ):
        assert said in first.out
    again = run.fast("demo", "--home", home, "--json")
    assert again.code == 0, again
    summary = again.json()
    assert summary["home"] == str(home)
    assert (summary["entries"], summary["origin"]) == (size, "demo.annex.invalid/log")
    assert summary["checkpoint"].startswith(f"demo.annex.invalid/log\n{size}\n")
    assert summary["gpu"]["status"] in {"no-nvml", "no-driver", "no-gpu", "nvml-error", "ok"}
    assert summary["gate"]["passed"]["passed"] is True
    assert summary["gate"]["failed"]["passed"] is False
    assert summary["authority"]["inventory"] == size - 4  # after the collector's key event
    assert "may not sign model-release" in summary["authority"]["forged_release"]
    assert summary["erasure"] == {"batch": 10, "receipt": 14, "content_readable": False}
    assert summary["eval"]["run"] is evals
    dossier = summary["reports"]["annex_iv"]
    assert dossier["index"] == size - 2 and dossier["gaps"] > 0
    assert Path(dossier["pdf"]).is_file() and Path(dossier["receipt"]).is_file()
    grc = summary["grc_exports"]
    oscal = json.loads(Path(grc["oscal"]).read_text())["assessment-results"]
    assert len(oscal["results"][0]["findings"]) == grc["findings"] == 23  # the Annex IV points
    bom = json.loads(Path(grc["mlbom"]).read_text())
    assert (bom["bomFormat"], bom["specVersion"], grc["mlbom_schema_checked"]) == (
        "CycloneDX",
        "1.6",
        True,
    )
    assert {c["name"] for c in bom["components"]} >= {"annex-demo-base", "annex-demo-lora"}
    if evals:
        assert 0.0 <= summary["eval"]["accuracy"] <= 1.0
        shown = run.fast("show", str(summary["eval"]["index"]), "--home", home, "--json").json()
        assert (
            shown["statement"]["predicate"]["results"]["annex_mc"]["acc,none"]
            == (summary["eval"]["accuracy"])
        )
    database = (home / "annex.db").read_bytes()
    assert b"caller-1@example.invalid" not in database  # callers are pseudonyms in the log
    assert b"where is my order" not in database  # and texts never enter it
    assert len(list((home / "keys").iterdir())) == 3  # replaced, not added to
    adapter = Path(summary["models"]["adapter"])
    policy = home / "gate-policy.yaml"
    signed = run("gate", adapter, "--policy", policy, "--home", home)  # as the demo suggests
    assert signed.code == 0, signed
    checked = run(
        "verify-entry",
        summary["exported_envelope"],
        summary["exported_proof"],
        "--trust",
        home / "trust.json",
        "--json",
    )
    assert checked.code == 0, checked
    assert (checked.json()["index"], checked.json()["tree_size"]) == (8, size)


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path, annex_at: AnnexAt) -> None:
    """The demo deletes only its own earlier demo, never a user's files."""
    target = tmp_path / "mine"
    target.mkdir()
    write(target / "notes.txt", "keep me")
    failed(annex_at(tmp_path)("demo", "--home", target), 2, "not an earlier demo")
    assert os.listdir(target) == ["notes.txt"]


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "commands"),
    [
        ((), ["init", "append", "show", "verify", "verify-entry", "demo", "log", "keys"]),
        (("log",), ["checkpoint", "proof", "consistency", "export"]),
        (("keys",), ["list", "rotate", "revoke", "export-public"]),
    ],
)
def test_help_lists_the_commands(args: tuple[str, ...], commands: list[str], annex: Annex) -> None:
    """`annex --help` as typed; the groups' help in-process (the same Typer app)."""
    run = annex.fast if args == ("keys",) else annex
    result = run(*args, "--help")
    assert result.code == 0, result
    listed = re.findall(r"^│ (\S+) ", result.out, flags=re.MULTILINE)
    for name in commands:
        assert name in listed, (name, listed)


def test_version_and_short_help(annex: Annex) -> None:
    from importlib.metadata import version

    shown = annex.fast("--version")
    assert shown.code == 0 and shown.out == f"annex {version('annex')}\n", shown
    for args in (("-h",), ("keys", "-h"), ("keys", "list", "-h")):
        short = annex.fast(*args)
        assert short.code == 0 and "Usage: " in short.out, (args, short)


def test_counts_of_one_are_singular(tmp_path: Path, annex_at: AnnexAt) -> None:
    """A new log holds one entry under one checkpoint: said so, not "1 checkpoints"."""
    Home(tmp_path / "one").init("one.example/log")
    done = annex_at(tmp_path / "one").fast("verify")
    assert done.code == 0, done
    assert done.out.startswith("ok: 1 entry, 3 signatures and 1 checkpoint verified; root ")
