"""DSSE envelopes (Dead Simple Signing Envelope, v1) signed with Ed25519.

The signature covers PAE(payloadType, payload), never a re-serialisation. The stored form of an
envelope is its RFC 8785 canonical JSON, which is also the leaf input of the Merkle log, so an
envelope exported from Annex is byte for byte what was logged. DSSE lets readers take URL-safe or
unpadded base64; Annex reads only the canonical standard form (`evidence.b64`), so one envelope
has one text.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.b64 import b64decode
from evidence.canonical import canonical_bytes, parse_json
from evidence.errors import InputError, VerificationError

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_IN_TOTO_TYPE_BYTES = IN_TOTO_PAYLOAD_TYPE.encode()
_PLAIN = re.compile(r"[ !#-\[\]-~]*")


class Signer(Protocol):
    """What DSSE and note signing need of a key: an id and a way to sign bytes."""

    @property
    def keyid(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _b64(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False)


_ENVELOPE = b'{"payload":"%s","payloadType":"%s","signatures":[%s]}'
_SIGNATURE = b'{"keyid":"%s","sig":"%s"}'


def envelope_bytes(payload: bytes, keyid: str, sig: bytes) -> bytes:
    """`Envelope(in-toto, payload, one signature).canonical()` without building the envelope:
    the log writes one for every statement it signs."""
    if not (keyid.isascii() and keyid.isalnum()) and not _PLAIN.fullmatch(keyid):
        return Envelope(IN_TOTO_PAYLOAD_TYPE, payload, (Signature(keyid, sig),)).canonical()
    signature = _SIGNATURE % (keyid.encode(), _b64(sig))
    return _ENVELOPE % (_b64(payload), _IN_TOTO_TYPE_BYTES, signature)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode(),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in self.signatures
            ],
        }

    def canonical(self) -> bytes:
        """The stored bytes of the envelope and the leaf input of the log.

        With a plain payload type and keyids (printable ASCII, no quote or backslash) the
        RFC 8785 form is written directly: keys in order, base64 needs no escaping.
        """
        if not (
            _PLAIN.fullmatch(self.payload_type)
            and all(_PLAIN.fullmatch(s.keyid) for s in self.signatures)
        ):
            return canonical_bytes(self.to_dict(), what="envelope")
        sigs = b",".join(_SIGNATURE % (s.keyid.encode(), _b64(s.sig)) for s in self.signatures)
        return _ENVELOPE % (_b64(self.payload), self.payload_type.encode(), sigs)

    @classmethod
    def from_dict(cls, obj: Any, *, what: str = "envelope") -> Envelope:
        if not isinstance(obj, Mapping):
            raise InputError(f"{what} is not a JSON object")
        unknown = set(obj) - {"payload", "payloadType", "signatures"}
        if unknown:
            raise InputError(f"{what} has unknown fields: {', '.join(sorted(unknown))}")
        payload_type = obj.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise InputError(f"{what}.payloadType must be a non-empty string")
        payload = b64decode(obj.get("payload"), what=f"{what}.payload")
        raw_sigs = obj.get("signatures")
        if not isinstance(raw_sigs, list) or not raw_sigs:
            raise InputError(f"{what}.signatures must be a non-empty list")
        sigs = []
        for i, raw in enumerate(raw_sigs):
            where = f"{what}.signatures[{i}]"
            if not isinstance(raw, Mapping) or not isinstance(raw.get("keyid"), str):
                raise InputError(f"{where} must be an object with a string keyid")
            sigs.append(Signature(raw["keyid"], b64decode(raw.get("sig"), what=f"{where}.sig")))
        return cls(payload_type, payload, tuple(sigs))

    @classmethod
    def from_json(cls, data: bytes | str, *, what: str = "envelope") -> Envelope:
        return cls.from_dict(parse_json(data, what=what), what=what)


def sign_envelope(
    payload: bytes, signer: Signer, payload_type: str = IN_TOTO_PAYLOAD_TYPE
) -> Envelope:
    sig = signer.sign(pae(payload_type, payload))
    return Envelope(payload_type, payload, (Signature(signer.keyid, sig),))


def verify_envelope(
    envelope: Envelope, public_key: Callable[[str], Ed25519PublicKey | None]
) -> str:
    """Checks every signature made by a known key; returns the keyid of the first one.

    `public_key` maps a keyid to the key trusted for this envelope, or None when unknown.
    Signatures by unknown keys are ignored; at least one known signature must exist.
    """
    message = pae(envelope.payload_type, envelope.payload)
    first = None
    for s in envelope.signatures:
        key = public_key(s.keyid)
        if key is None:
            continue
        try:
            key.verify(s.sig, message)
        except InvalidSignature:
            raise VerificationError(f"signature by key {s.keyid[:16]} does not verify") from None
        first = first or s.keyid
    if first is None:
        ids = ", ".join(s.keyid[:16] for s in envelope.signatures)
        raise VerificationError(f"envelope is not signed by any trusted key (signed by {ids})")
    return first
