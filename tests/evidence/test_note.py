"""C2SP signed notes, checkpoints and tlog proofs, checked against Go's published example."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.errors import InputError, VerificationError
from evidence.keys import Signer
from evidence.note import (
    Checkpoint,
    NoteVerifier,
    TlogProof,
    open_note,
    sign_note,
    split_note,
)
from tests.conftest import noncanonical_b64

# The example key and note of golang.org/x/mod/sumdb/note (note_test.go).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_signer() -> Signer:
    """Reads Go's private key format: PRIVATE+KEY+name+hash+base64(0x01 || seed)."""
    _, _, name, _, material = GO_SKEY.split("+", 4)
    raw = base64.b64decode(material)
    assert raw[0] == 1
    return Signer(Ed25519PrivateKey.from_private_bytes(raw[1:]), name)


def test_verifier_key_matches_go() -> None:
    verifier = NoteVerifier.parse(GO_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_id.hex() == "c74f20a3"
    assert str(verifier) == GO_VKEY
    assert verifier.public_key == _go_signer().public_bytes


def test_signing_reproduces_go_note_byte_for_byte() -> None:
    # Ed25519 is deterministic, so the same key and text must give Go's exact note.
    assert sign_note(GO_TEXT, _go_signer()) == GO_NOTE


def test_go_note_opens_and_changes_are_refused() -> None:
    verifier = NoteVerifier.parse(GO_VKEY)
    text, signed_by = open_note(GO_NOTE, [verifier])
    assert text == GO_TEXT and signed_by == [verifier]
    with pytest.raises(VerificationError):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [verifier])


def test_unknown_signers_are_ignored_but_one_known_is_needed() -> None:
    other = NoteVerifier("PeterNeumann", Signer.generate("x").public_bytes)  # same name, new key
    with pytest.raises(VerificationError, match="not signed by a trusted key"):
        open_note(GO_NOTE, [other])
    extra = sign_note(GO_TEXT, Signer.generate("witness.example/w1"))
    combined = GO_NOTE + extra.split("\n\n", 1)[1]
    text, signed_by = open_note(combined, [NoteVerifier.parse(GO_VKEY)])
    assert text == GO_TEXT and len(signed_by) == 1


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong hash
        "PeterNeumann+c74f20a3+ApxjZ2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong type
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",  # URL-safe
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",  # padding
    ],
)
def test_malformed_verifier_keys(vkey: str) -> None:
    with pytest.raises(InputError):
        NoteVerifier.parse(vkey)


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,  # no signatures
        GO_TEXT + "\n",  # blank line but no signature lines
        GO_TEXT + "\n— PeterNeumann !!!notbase64\n",
        GO_TEXT + "\n- PeterNeumann x08go/ZJkuBS9UG\n",  # hyphen, not em dash
        "no newline\n\n— a AAAAAAAA\n".replace("\n\n", "\x01\n\n"),  # control character
    ],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(InputError):
        split_note(note)


def test_signature_lines_are_canonical_base64() -> None:
    """The signature line is not signed: only its one encoding may open, or stored notes could
    be rewritten under a signature that still verifies."""
    head, _, sig = GO_NOTE[:-1].rpartition(" ")
    assert sig.endswith("nAM=")
    for changed in (noncanonical_b64(sig), sig.rstrip("="), sig.replace("/", "_")):
        with pytest.raises(InputError, match="note signature by PeterNeumann is not canonical"):
            split_note(f"{head} {changed}\n")
    assert base64.b64decode(noncanonical_b64(sig)) == base64.b64decode(sig)


def test_checkpoint_body_round_trip_and_strictness() -> None:
    cp = Checkpoint("example.com/log", 20852163, bytes(range(32)))
    assert Checkpoint.parse(cp.body()) == cp
    assert cp.body().count("\n") == 3
    for bad in (
        "example.com/log\n012\n" + base64.b64encode(bytes(32)).decode() + "\n",  # leading zero
        "example.com/log\n12\n" + base64.b64encode(bytes(31)).decode() + "\n",  # short root
        "example.com/log\n12\n",
        "\n12\n" + base64.b64encode(bytes(32)).decode() + "\n",
    ):
        with pytest.raises(InputError):
            Checkpoint.parse(bad)
    root = base64.b64encode(bytes(32)).decode()
    for text in (noncanonical_b64(root), root.rstrip("="), base64.urlsafe_b64encode(b"\xff" * 32)):
        with pytest.raises(InputError, match="checkpoint root hash is not canonical base64"):
            Checkpoint.parse(f"example.com/log\n12\n{text!s}\n")


def test_tlog_proof_round_trip() -> None:
    signer = Signer.generate("example.com/log")
    note = sign_note(Checkpoint("example.com/log", 5, bytes(32)).body(), signer)
    proof = TlogProof(3, (bytes(32), bytes([1]) * 32), note, extra=b"context")
    text = proof.format()
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra Y29udGV4dA==\nindex 3\n")
    assert TlogProof.parse(text) == proof
    assert TlogProof.parse(TlogProof(0, (), note).format()).hashes == ()


def test_tlog_proof_base64_must_be_canonical() -> None:
    """Hash lines, the extra line and the checkpoint's signature lines: one text each."""
    signer = Signer.generate("example.com/log")
    note = sign_note(Checkpoint("example.com/log", 5, bytes(32)).body(), signer)
    text = TlogProof(3, (bytes(32), b"\xff" * 32), note, extra=b"context").format()
    zeros, ones = base64.b64encode(bytes(32)).decode(), base64.b64encode(b"\xff" * 32).decode()
    sig = note[:-1].rpartition(" ")[2]
    for old, new, what in (
        (zeros, noncanonical_b64(zeros), "tlog proof hash 1"),
        (ones, ones.rstrip("="), "tlog proof hash 2"),
        (ones, ones.replace("/", "_"), "tlog proof hash 2"),
        ("Y29udGV4dA==", noncanonical_b64("Y29udGV4dA==", 0b1010), "tlog proof extra data"),
        ("Y29udGV4dA==", "Y29udGV4dA", "tlog proof extra data"),
        (sig, noncanonical_b64(sig), "note signature by example.com/log"),
    ):
        assert old in text and new != old
        with pytest.raises(InputError, match=f"^{what} is not canonical base64"):
            TlogProof.parse(text.replace(old, new, 1))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        lambda t: t.replace("index 3", "index 03"),
        lambda t: t.replace("index 3", "idx 3"),
        lambda t: t.replace("\n\n", "\n"),
        lambda t: t.replace("AAAAAAAA", "AAAA", 1),
    ],
)
def test_malformed_tlog_proofs(mangle: object) -> None:
    signer = Signer.generate("example.com/log")
    note = sign_note(Checkpoint("example.com/log", 5, bytes(32)).body(), signer)
    text = TlogProof(3, (bytes(32),), note).format()
    with pytest.raises(InputError):
        TlogProof.parse(mangle(text))  # type: ignore[operator]
