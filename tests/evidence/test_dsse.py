"""DSSE envelopes: the spec's PAE example, and cross-checks with securesystemslib's DSSE."""

from __future__ import annotations

import base64
import copy
import json
import re

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.dsse import Envelope as SslEnvelope
from securesystemslib.exceptions import VerificationError as SslVerificationError
from securesystemslib.signer import SSlibKey

from evidence.canonical import canonical_bytes
from evidence.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    Signature,
    envelope_bytes,
    pae,
    sign_envelope,
    verify_envelope,
)
from evidence.errors import InputError, VerificationError
from evidence.keys import Signer
from tests.conftest import noncanonical_b64, statement


def _ssl_key(signer: Signer) -> SSlibKey:
    return SSlibKey(signer.keyid, "ed25519", "ed25519", {"public": signer.public_bytes.hex()})


def test_pae_matches_the_dsse_spec_example() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_envelope_verifies_with_securesystemslib() -> None:
    signer = Signer.generate("test.example/log")
    envelope = sign_envelope(canonical_bytes(statement(1)), signer)
    exported = json.loads(envelope.canonical())
    ssl = SslEnvelope.from_dict(exported)
    accepted = ssl.verify([_ssl_key(signer)], 1)
    assert list(accepted) == [signer.keyid]
    assert ssl.payload == canonical_bytes(statement(1))


def test_securesystemslib_rejects_what_we_reject() -> None:
    signer = Signer.generate("test.example/log")
    exported = json.loads(sign_envelope(b'{"a":1}', signer).canonical())
    exported["payload"] = base64.b64encode(b'{"a":2}').decode()
    with pytest.raises(SslVerificationError):
        # securesystemslib's from_dict consumes the dict it is given: hand it a copy.
        SslEnvelope.from_dict(copy.deepcopy(exported)).verify([_ssl_key(signer)], 1)
    with pytest.raises(VerificationError):
        verify_envelope(Envelope.from_dict(exported), {signer.keyid: _pub(signer)}.get)


def test_envelope_signed_by_securesystemslib_verifies_here() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from securesystemslib.signer import CryptoSigner

    private = Ed25519PrivateKey.generate()
    signer = Signer(private, "test.example/collector")
    ssl_signer = CryptoSigner(private, _ssl_key(signer))
    ssl = SslEnvelope(canonical_bytes(statement(2)), "application/vnd.in-toto+json", {})
    ssl.sign(ssl_signer)
    ours = Envelope.from_dict(ssl.to_dict())
    assert verify_envelope(ours, {signer.keyid: _pub(signer)}.get) == signer.keyid


def _pub(signer: Signer):  # type: ignore[no-untyped-def]
    return signer.private_key.public_key()


def test_canonical_form_is_stable_and_sorted() -> None:
    signer = Signer.generate("test.example/log")
    envelope = sign_envelope(b"{}", signer)
    data = envelope.canonical()
    assert data.startswith(b'{"payload":"e30=","payloadType":"application/vnd.in-toto+json"')
    assert Envelope.from_json(data).canonical() == data


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(max_size=64),
    payload_type=st.text(max_size=12) | st.just("application/vnd.in-toto+json"),
    keyids=st.lists(
        st.text(max_size=8) | st.from_regex(r"[0-9a-f]{64}", fullmatch=True), min_size=1, max_size=3
    ),
)
def test_canonical_envelope_equals_rfc8785(
    payload: bytes, payload_type: str, keyids: list[str]
) -> None:
    envelope = Envelope(payload_type, payload, tuple(Signature(k, b"s" * 64) for k in keyids))
    try:
        expected = rfc8785.dumps(envelope.to_dict())
    except rfc8785.CanonicalizationError:
        return  # e.g. a lone surrogate in a keyid: not representable
    assert envelope.canonical() == expected


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(max_size=300),
    keyid=st.text(max_size=8) | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    sig=st.binary(min_size=64, max_size=64),
)
def test_the_logs_own_envelope_bytes_are_rfc8785(payload: bytes, keyid: str, sig: bytes) -> None:
    """`envelope_bytes`, which the log writes for every statement it signs, skips building an
    Envelope; its bytes must still be the RFC 8785 form of that envelope."""
    envelope = Envelope(IN_TOTO_PAYLOAD_TYPE, payload, (Signature(keyid, sig),))
    try:
        expected = rfc8785.dumps(envelope.to_dict())
    except rfc8785.CanonicalizationError:
        return
    assert envelope_bytes(payload, keyid, sig) == expected


def test_unknown_keys_are_not_enough() -> None:
    signer = Signer.generate("test.example/log")
    envelope = sign_envelope(b"{}", signer)
    with pytest.raises(VerificationError, match="not signed by any trusted key"):
        verify_envelope(envelope, lambda keyid: None)


@pytest.mark.parametrize(
    "obj",
    [
        [],
        {"payload": "e30=", "payloadType": "x"},
        {"payload": "e30=", "payloadType": "x", "signatures": []},
        {"payload": "***", "payloadType": "x", "signatures": [{"keyid": "a", "sig": "AA=="}]},
        {"payload": "e30=", "payloadType": "", "signatures": [{"keyid": "a", "sig": "AA=="}]},
        {"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "AA=="}]},
        {"payload": "e30=", "payloadType": "x", "signatures": [], "extra": 1},
    ],
)
def test_malformed_envelopes(obj: object) -> None:
    with pytest.raises(InputError):
        Envelope.from_dict(obj)


def test_duplicate_json_keys_are_refused() -> None:
    with pytest.raises(InputError, match="duplicate key"):
        Envelope.from_json('{"payload":"e30=","payload":"e30=","payloadType":"x","signatures":[]}')


def _reencoded(field: str, how: str) -> tuple[dict[str, object], str]:
    """A signed envelope with one base64 field in another text of the same bytes."""
    signer = Signer.generate("test.example/log")
    obj = sign_envelope(b'{"a":1}', signer).to_dict()  # 7 bytes, 64 + 0 bytes: both padded
    holder = obj if field == "payload" else obj["signatures"][0]
    key = "payload" if field == "payload" else "sig"
    text = holder[key]
    raw = base64.b64decode(text)
    holder[key] = {
        "unused bits": noncanonical_b64(text),
        "unpadded": text.rstrip("="),
        "url-safe": base64.urlsafe_b64encode(b"\xfb\xff" + raw).decode(),  # starts "-_"
    }[how]
    assert holder[key] != text
    return obj, "envelope.payload" if field == "payload" else "envelope.signatures[0].sig"


@pytest.mark.parametrize("how", ["unused bits", "unpadded", "url-safe"])
@pytest.mark.parametrize("field", ["payload", "sig"])
def test_base64_other_than_canonical_is_refused(field: str, how: str) -> None:
    """DSSE readers often take URL-safe or unpadded base64; Annex signs and stores exact bytes,
    so it takes the one canonical text of each, naming the field otherwise."""
    obj, where = _reencoded(field, how)
    with pytest.raises(InputError, match=rf"^{re.escape(where)} is not canonical base64"):
        Envelope.from_dict(obj)
    with pytest.raises(InputError, match=re.escape(where)):
        Envelope.from_json(json.dumps(obj))
