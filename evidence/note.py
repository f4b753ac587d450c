"""C2SP signed notes, tlog checkpoints and tlog proofs (Ed25519).

These are the formats Go's `golang.org/x/mod/sumdb/note`, Sigstore and the transparency-dev
tools read, so a checkpoint Annex signs can be checked by software Annex never wrote:
- signed-note: text, a blank line, then `— <key name> base64(key ID || signature)` lines;
  key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4];
- tlog-checkpoint: origin, tree size and base64 root hash as the note text;
- tlog-cosignature/v1: the log also cosigns each checkpoint with a timestamp (type 0x04), so
  the time a checkpoint was issued is signed too; other verifiers ignore it as an unknown key;
- tlog-proof (`c2sp.org/tlog-proof@v1`): index, inclusion hashes and the signed checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.b64 import b64decode
from evidence.errors import InputError, VerificationError
from evidence.merkle import HASH_SIZE

ED25519 = 0x01
COSIGNATURE_ED25519 = 0x04
MAX_SIGNATURES = 100
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class NoteSigner(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def public_bytes(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


def check_key_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise InputError(f"key name {name!r} must be non-empty, without spaces or '+'")


def note_key_id(name: str, public_key: bytes, kind: int = ED25519) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public_key).digest()[:4]


@dataclass(frozen=True)
class NoteVerifier:
    """A public key as note verifiers know it: `<name>+<key ID hex>+base64(0x01 || key)`."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return note_key_id(self.name, self.public_key)

    def __str__(self) -> str:
        material = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise InputError(f"verifier key {vkey!r} is not of the form name+hash+key")
        name, hex_id, material = parts
        check_key_name(name)
        raw = b64decode(material, what="verifier key material")
        if len(raw) != 33 or raw[0] != ED25519:
            raise InputError("verifier key is not a 32-byte Ed25519 key (type 0x01)")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id:
            raise InputError(f"verifier key hash {hex_id} does not match its name and key")
        return verifier


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    sig: bytes


def sign_note(text: str, signer: NoteSigner) -> str:
    """Signs note text (which must end in a newline) as one signature line."""
    _check_text(text)
    check_key_name(signer.name)
    sig = note_key_id(signer.name, signer.public_bytes) + signer.sign(text.encode())
    return f"{text}\n— {signer.name} {base64.b64encode(sig).decode()}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise InputError("note text must end with a newline")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise InputError("note text must not contain control characters")


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Separates a signed note into its text and its signature lines, checking the format."""
    cut = note.rfind("\n\n")
    if cut < 0:
        raise InputError("signed note has no blank line before its signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    _check_text(text)
    if not block.endswith("\n"):
        raise InputError("signed note must end with a newline")
    signatures = []
    for line in block[:-1].split("\n"):
        match = re.fullmatch(r"— (\S+) (\S+)", line)
        if match is None:
            raise InputError(f"malformed signature line {line!r}")
        raw = b64decode(match.group(2), what=f"note signature by {match.group(1)}")
        if len(raw) < 5:
            raise InputError("note signature is too short")
        signatures.append(NoteSignature(match.group(1), raw[:4], raw[4:]))
    if len(signatures) > MAX_SIGNATURES:
        raise InputError(f"signed note has more than {MAX_SIGNATURES} signatures")
    return text, signatures


def open_note(note: str, verifiers: Sequence[NoteVerifier]) -> tuple[str, list[NoteVerifier]]:
    """Returns the text and the verifiers that signed it, or raises VerificationError.

    Unknown signatures are ignored; a known one that fails rejects the note, and at least one
    known signature must verify, as the signed-note specification requires.
    """
    text, signatures = split_note(note)
    by_id = {(v.name, v.key_id): v for v in verifiers}
    signed_by = []
    for s in signatures:
        verifier = by_id.get((s.name, s.key_id))
        if verifier is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(s.sig, text.encode())
        except InvalidSignature:
            raise VerificationError(f"note signature by {s.name} does not verify") from None
        signed_by.append(verifier)
    if not signed_by:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
        raise VerificationError(f"note is not signed by a trusted key (signed by {names})")
    return text, signed_by


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: C2SP tlog-checkpoint note text."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise InputError("checkpoint must be at least three non-empty lines")
        origin, size, root_b64 = lines[0], lines[1], lines[2]
        if not _DECIMAL.fullmatch(size):
            raise InputError(f"checkpoint tree size {size!r} is not a decimal number")
        root = b64decode(root_b64, what="checkpoint root hash")
        if len(root) != HASH_SIZE:
            raise InputError("checkpoint root hash is not 32 bytes")
        return cls(origin, int(size), root)


def cosignature_message(text: str, timestamp: int) -> bytes:
    """What a tlog-cosignature/v1 signs: header, time line, then the checkpoint text."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner, timestamp: int) -> str:
    """The log's signature on a checkpoint, plus its own timestamped cosignature."""
    text = checkpoint.body()
    key_id = note_key_id(signer.name, signer.public_bytes, COSIGNATURE_ED25519)
    sig = signer.sign(cosignature_message(text, timestamp))
    line = base64.b64encode(key_id + timestamp.to_bytes(8, "big") + sig).decode()
    return sign_note(text, signer) + f"— {signer.name} {line}\n"


@dataclass(frozen=True)
class Cosignature:
    timestamp: int
    sig: bytes


def find_cosignature(
    signatures: Sequence[NoteSignature], verifier: NoteVerifier
) -> Cosignature | None:
    """The timestamped cosignature made with a verifier's key, if the note carries one."""
    key_id = note_key_id(verifier.name, verifier.public_key, COSIGNATURE_ED25519)
    for s in signatures:
        if (s.name, s.key_id) == (verifier.name, key_id) and len(s.sig) == 72:
            return Cosignature(int.from_bytes(s.sig[:8], "big"), s.sig[8:])
    return None


@dataclass(frozen=True)
class TlogProof:
    """A self-contained inclusion proof: index, hashes and the signed checkpoint."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def format(self) -> str:
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        head, sep, checkpoint = text.partition("\n\n")
        lines = head.split("\n")
        if not sep or lines[0] != TLOG_PROOF_HEADER:
            raise InputError(f"not a tlog proof: it must start with {TLOG_PROOF_HEADER}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = b64decode(rest.pop(0)[len("extra ") :], what="tlog proof extra data")
        if not rest or not rest[0].startswith("index "):
            raise InputError("tlog proof has no index line")
        index = rest.pop(0)[len("index ") :]
        if not _DECIMAL.fullmatch(index):
            raise InputError(f"tlog proof index {index!r} is not a decimal number")
        hashes = tuple(
            b64decode(line, what=f"tlog proof hash {i}") for i, line in enumerate(rest, 1)
        )
        if any(len(h) != HASH_SIZE for h in hashes):
            raise InputError("tlog proof hashes must be 32 bytes each")
        split_note(checkpoint)
        return cls(int(index), hashes, checkpoint, extra)
