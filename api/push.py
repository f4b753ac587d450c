"""Pushing evidence to an Annex server: a collector node signs a statement with its own key and
POSTs the envelope to `{server}/api/v1/entries` with a bearer token.

The server's answer counts only once it checks out offline: its tlog-proof must lead from the
leaf hash of the envelope we sent to the root of the checkpoint it returned (and, given the
server's trust file, that checkpoint must be signed by the server's log key). Nothing is written
to the node's own log. Errors name the URL and never the token.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx

from evidence.b64 import b64decode
from evidence.canonical import canonical_bytes
from evidence.dsse import Envelope, sign_envelope
from evidence.errors import AnnexError, InputError, VerificationError
from evidence.keys import Signer, TrustIndex
from evidence.merkle import leaf_hash, verify_inclusion
from evidence.note import Checkpoint, TlogProof, split_note
from evidence.store import check_statement
from evidence.verify import open_checkpoint

ENTRIES_PATH = "/api/v1/entries"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_DETAIL_CHARS = 500  # of a server's error text quoted back


class PushError(AnnexError):
    """The server could not be reached, or refused the envelope: nothing is known to be logged."""

    exit_code = 2
    http_status = 502


@dataclass(frozen=True)
class Pushed:
    """A checked receipt: where the server logged the envelope, in which signed tree."""

    url: str
    index: int
    checkpoint: Checkpoint
    checkpoint_note: str
    tlog_proof: str
    checkpoint_signed: bool  # the checkpoint's signature was checked with the server's trust file

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "index": self.index,
            "checkpoint": {
                "size": self.checkpoint.size,
                "root": base64.b64encode(self.checkpoint.root).decode(),
                "note": self.checkpoint_note,
            },
            "tlog_proof": self.tlog_proof,
            "checkpoint_signature_checked": self.checkpoint_signed,
        }


def entries_url(server: str) -> str:
    """`https://host:8080` (or the same ending in /api/v1 or /api/v1/entries) -> the POST URL."""
    base = server.strip().rstrip("/")
    try:
        parsed = httpx.URL(base)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(f"--push {server!r}: give the server's http:// or https:// URL")
    if base.endswith(ENTRIES_PATH):
        return base
    if base.endswith("/api/v1"):
        return base + "/entries"
    return base + ENTRIES_PATH


def read_token(token_file: Path | None, env_token: str | None) -> str:
    """The bearer token: the first line of --token-file, else ANNEX_TOKEN."""
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InputError(f"the token file {token_file} is not UTF-8 text") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise InputError(f"the token file {token_file} is empty")
        return token
    if env_token:
        return env_token.strip()
    raise InputError(
        "pushing needs a token with scope write: --token-file FILE or ANNEX_TOKEN "
        "(made on the server with `annex tokens create --scope write`)"
    )


def sign_statement(statement: Mapping[str, Any], signer: Signer, *, where: str) -> Envelope:
    """Checks a statement and signs it as a DSSE envelope with the node's key."""
    check_statement(statement, where=where)
    return sign_envelope(canonical_bytes(statement, what=where), signer)


def push_envelope(
    server: str,
    envelope: Envelope,
    token: str,
    *,
    trust: TrustIndex | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Pushed:
    """POSTs one envelope and returns the checked receipt, or raises PushError or
    VerificationError (the server answered 201 with a receipt that does not check out)."""
    url = entries_url(server)
    body = json.dumps(envelope.to_dict()).encode()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    try:
        with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
            answer = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        raise PushError(f"{url} did not answer in time: nothing is known to be logged") from None
    except httpx.TransportError as exc:
        why = str(exc) or type(exc).__name__
        raise PushError(f"cannot reach {url}: {why}") from None
    if answer.status_code != HTTPStatus.CREATED:
        raise refusal(url, answer)
    return check_receipt(url, envelope, _json_of(url, answer), trust)


def refusal(url: str, answer: httpx.Response) -> PushError:
    """What a refusal means for the operator of the node: the server's own detail, and what to do
    where the problem type (RFC 9457) says more than the status."""
    status = answer.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    kind, detail = _problem(answer)
    hint = None
    if status == HTTPStatus.UNAUTHORIZED:
        hint = "use a write token made there with `annex tokens create --scope write`"
    elif kind == "trust-error":
        hint = "trust this node's key there: `annex keys add-collector NAME node.pem`"
    elif status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        hint = "nothing is known to be logged; try again"
    parts = [f"{url} answered {status} {phrase}", detail, hint]
    return PushError(": ".join(p for p in parts if p))


def _problem(answer: httpx.Response) -> tuple[str, str]:
    """The problem type's last path segment and the detail, or the start of a plain body."""
    try:
        body = answer.json()
    except ValueError:
        return "", answer.text.strip()[:_DETAIL_CHARS]
    if not isinstance(body, dict):
        return "", ""
    kind, detail = body.get("type"), body.get("detail")
    return (
        kind.rsplit("/", 1)[-1] if isinstance(kind, str) else "",
        detail[:_DETAIL_CHARS] if isinstance(detail, str) else "",
    )


def _json_of(url: str, answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise VerificationError(f"{url} answered 201 without a JSON receipt")
    return body


def check_receipt(
    url: str, envelope: Envelope, receipt: Mapping[str, Any], trust: TrustIndex | None
) -> Pushed:
    """Checks offline that the receipt proves our envelope is in the tree it names."""
    index, note, proof_text, leaf_b64 = (
        receipt.get(k) for k in ("index", "checkpoint", "tlog_proof", "leaf_hash")
    )
    if not (
        isinstance(index, int)
        and isinstance(note, str)
        and isinstance(proof_text, str)
        and isinstance(leaf_b64, str)
    ):
        raise VerificationError(
            f"{url} answered 201 without index, leaf_hash, checkpoint and tlog_proof"
        )
    leaf = leaf_hash(envelope.canonical())
    try:
        proof = TlogProof.parse(proof_text)
        text, _ = split_note(note)
        checkpoint = Checkpoint.parse(text)
        returned_leaf = b64decode(leaf_b64, what="leaf_hash")
    except InputError as exc:
        raise VerificationError(f"the receipt from {url} is malformed: {exc}") from None
    if returned_leaf != leaf:
        raise VerificationError(f"{url} logged other bytes than the envelope sent", index=index)
    if proof.index != index or proof.checkpoint != note:
        raise VerificationError(
            f"the tlog-proof from {url} is for another entry or checkpoint", index=index
        )
    if trust is not None:
        try:
            open_checkpoint(note, trust)
        except VerificationError as exc:
            raise VerificationError(f"the checkpoint from {url}: {exc}", index=index) from None
    try:
        verify_inclusion(leaf, index, checkpoint.size, proof.hashes, checkpoint.root)
    except VerificationError as exc:
        raise VerificationError(f"the receipt from {url}: {exc}", index=index) from None
    return Pushed(url, index, checkpoint, note, proof_text, trust is not None)
