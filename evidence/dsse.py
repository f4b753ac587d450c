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
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature

from evidence.b64 import b64decode
from evidence.canonical import canonical_bytes, parse_json
from evidence.errors import InputError, VerificationError

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_IN_TOTO_TYPE_BYTES = IN_TOTO_PAYLOAD_TYPE.encode()
_PLAIN = re.compile(r"[ !#-\[\]-~]*")
# Signatures an envelope may carry: each costs a verification at ingest and at every verify,
# and a statement needs one signer, two when a second party countersigns.
MAX_SIGNATURES = 4


class Signer(Protocol):
    """What DSSE and note signing need of a key: an id and a way to sign bytes."""

    @property
    def keyid(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def content_hash(envelope: Envelope) -> bytes:
    """SHA-256 of what the envelope's signatures sign (PAE of payload type and payload): two
    envelopes with the same content are the same evidence, whatever signatures they carry."""
    return hashlib.sha256(pae(envelope.payload_type, envelope.payload)).digest()


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
        _check_signature_list(sigs, what)
        return cls(payload_type, payload, tuple(sigs))

    @classmethod
    def from_json(cls, data: bytes | str, *, what: str = "envelope") -> Envelope:
        return cls.from_dict(parse_json(data, what=what), what=what)


def _check_signature_list(sigs: list[Signature], what: str) -> None:
    """At most MAX_SIGNATURES, each key once: copies of one signature would otherwise cost a
    verification each, and make the same statement look like new evidence."""
    if len(sigs) > MAX_SIGNATURES:
        raise InputError(
            f"{what}.signatures has {len(sigs)} signatures: at most {MAX_SIGNATURES} are accepted"
        )
    seen: set[str] = set()
    for i, s in enumerate(sigs):
        if s.keyid in seen:
            raise InputError(f"{what}.signatures[{i}]: key {s.keyid[:16]} signs twice")
        seen.add(s.keyid)


class SignatureKey(Protocol):
    """A public key as envelope verification needs it."""

    def verify(self, signature: bytes, data: bytes) -> None: ...


def sign_envelope(
    payload: bytes, signer: Signer, payload_type: str = IN_TOTO_PAYLOAD_TYPE
) -> Envelope:
    sig = signer.sign(pae(payload_type, payload))
    return Envelope(payload_type, payload, (Signature(signer.keyid, sig),))


def verify_envelope(envelope: Envelope, public_key: Callable[[str], SignatureKey | None]) -> str:
    """Checks every signature; returns the keyid of the first one.

    `public_key` maps a keyid to the key trusted for this envelope, or None when unknown; it
    raises (VerificationError, AuthorityError) for a key that may not sign it. Every signature
    must be by a known key and verify: a signature nobody can check is not carried into the log.
    """
    message = pae(envelope.payload_type, envelope.payload)
    if not envelope.signatures:
        raise VerificationError("envelope carries no signature")
    for s in envelope.signatures:
        key = public_key(s.keyid)
        if key is None:
            raise VerificationError(
                f"envelope is not signed by any trusted key: key {s.keyid[:16]} is unknown"
            )
        try:
            key.verify(s.sig, message)
        except InvalidSignature:
            raise VerificationError(f"signature by key {s.keyid[:16]} does not verify") from None
    return envelope.signatures[0].keyid
