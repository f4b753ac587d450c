"""Base64 as Annex reads it: the canonical standard form and nothing else.

Python's decoder, like most, maps several texts to one byte string: it ignores the unused low
bits of the last character before the padding, and other decoders take missing padding, the
URL-safe alphabet or line breaks. Where base64 is signed or stored (DSSE envelopes, signed
notes, checkpoints, tlog proofs, keys, the trust file) that slack would let stored bytes change
under a signature that still verifies. So each byte string has one accepted text: the standard
alphabet with padding, exactly as `base64.b64encode` writes it.
"""

from __future__ import annotations

import base64

from evidence.errors import InputError


def b64decode(text: object, *, what: str) -> bytes:
    """The bytes of canonical standard base64; InputError naming `what` for any other text.

    One text per byte string, so what is signed and stored cannot be re-encoded unnoticed.
    """
    if not isinstance(text, str):
        raise InputError(f"{what} must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        data = None
    if data is None or base64.b64encode(data).decode() != text:
        raise InputError(
            f"{what} is not canonical base64 (standard alphabet, padded, no unused bits set)"
        )
    return data
