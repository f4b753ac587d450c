"""The one exception hierarchy of Annex.

Every failure a user can cause or meet is an `AnnexError`; each kind carries the exit code the
CLI returns and the HTTP status the API answers with, so neither shell has to guess. A failed
verification is never a `ValueError`: a tampered log and a programming bug must be told apart.
"""

from __future__ import annotations


class AnnexError(Exception):
    """Base of every error Annex raises on purpose."""

    exit_code = 2
    http_status = 500


class InputError(AnnexError):
    """The caller gave something malformed: bad JSON, a wrong field, a bad digest, a bad index."""

    exit_code = 2
    http_status = 400


class CollectorError(InputError):
    """What a collector was pointed at cannot be recorded faithfully: a truncated model file, a
    symlink out of the directory, an unreadable file, a header that lies about its length."""


class ConfigError(AnnexError):
    """The installation is not usable as configured: no data directory, no key, bad passphrase."""

    exit_code = 2
    http_status = 500


class TrustError(AnnexError):
    """A key is unknown, outside its validity window, or cannot be loaded."""

    exit_code = 2
    http_status = 400


class StoreError(AnnexError):
    """The database refused or failed an operation."""

    exit_code = 2
    http_status = 503


class SigningUnavailable(StoreError):
    """The signing helper process could not start or never answered (no usable interpreter,
    a child that cannot import Annex). The store then signs in its own process instead."""


class DuplicateEntry(StoreError):
    """An envelope the log already holds was offered again (a replay): nothing was appended.

    `index` is the entry that already holds it. Refused inside the sequencer, so of two identical
    envelopes appended at the same instant exactly one lands. `logged` maps the position in the
    offered batch of every envelope the log holds to its entry, so that a caller batching many
    (the API's group commit) can append the others in one go.
    """

    exit_code = 2
    http_status = 409

    def __init__(self, message: str, *, index: int, logged: dict[int, int] | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.logged = logged or {}


class VerificationError(AnnexError):
    """Evidence does not verify: a bad signature, a broken proof, a rewritten log.

    `index` names the first log entry found bad, where one can be named.
    """

    exit_code = 1
    http_status = 422

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class AuthorityError(VerificationError):
    """A signature by a trusted key that its role may not make: a collector key on a model
    release, a model-signing key on a checkpoint (schemas/authority.py).

    Refused at every door: 403 when offered to the API, exit 1 from a verifier, naming the key
    and the predicate type.
    """

    exit_code = 1
    http_status = 403
