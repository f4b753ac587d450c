"""API tokens: random bearer secrets with one scope each, stored only as SHA-256 hashes.

Storage: `tokens.json` in the data directory (mode 0600), written whole to a temporary file and
renamed, so a reader sees the old list or the new one; a change holds an flock on a lock file
beside it, so concurrent changes never lose one. A token is 32 random bytes, shown once at
creation as `annex_<base64url>`; the file keeps its SHA-256 only, so a leaked file grants nothing.
Tokens never appear in logs: the token is read from the Authorization header alone, never a query
string (which access logs print).

Scopes: read (entries, proofs, checkpoints, systems), write (append envelopes), report (report
generation), admin (everything). Only admin implies another scope.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from evidence.errors import ConfigError, InputError

Scope = Literal["read", "write", "report", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
PREFIX = "annex_"
FILE_NAME = "tokens.json"


class TokenRecord(BaseModel):
    """One token as stored: its hash, never the token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    scope: Scope
    sha256: str
    created_at: datetime
    revoked_at: datetime | None = None

    def allows(self, scope: Scope) -> bool:
        return self.revoked_at is None and self.scope in (scope, "admin")

    def public(self) -> dict[str, object]:
        """What `annex tokens list` shows: everything but the hash."""
        return self.model_dump(mode="json", exclude={"sha256"})


class _TokenList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: tuple[TokenRecord, ...] = ()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """The token list of one data directory, re-read when the file changes."""

    def __init__(self, home: Path) -> None:
        self.path = home / FILE_NAME
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._cached: tuple[TokenRecord, ...] = ()

    def records(self) -> tuple[TokenRecord, ...]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return ()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._stamp:
                self._cached = self._load()
                self._stamp = stamp
            return self._cached

    def _load(self) -> tuple[TokenRecord, ...]:
        try:
            return _TokenList.model_validate_json(self.path.read_bytes()).tokens
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        except ValidationError as exc:
            raise ConfigError(
                f"{self.path} is not a valid token file: {exc.errors()[0]['msg']}"
            ) from None

    def _save(self, records: tuple[TokenRecord, ...]) -> None:
        data = json.dumps(_TokenList(tokens=records).model_dump(mode="json"), indent=2) + "\n"
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """One writer at a time (across processes): two `tokens create` never lose one."""
        lock_path = self.path.with_name(f".{FILE_NAME}.lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def create(self, scope: Scope, name: str | None = None) -> tuple[TokenRecord, str]:
        """A new token: its record and the secret, which is not stored and cannot be shown again."""
        if scope not in SCOPES:
            raise InputError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
        secret = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        token_id = secrets.token_hex(6)
        record = TokenRecord(
            id=token_id,
            name=name or f"{scope}-{token_id}",
            scope=scope,
            sha256=hash_token(secret),
            created_at=datetime.now(UTC),
        )
        with self._changing():
            self._save((*self.records(), record))
        return record, secret

    def revoke(self, token_id: str) -> TokenRecord:
        with self._changing():
            return self._revoke(token_id)

    def _revoke(self, token_id: str) -> TokenRecord:
        records = self.records()
        found = [r for r in records if r.id == token_id]
        if not found:
            known = ", ".join(r.id for r in records) or "none"
            raise InputError(f"no token {token_id!r} in {self.path}; tokens: {known}")
        if found[0].revoked_at is not None:
            raise InputError(f"token {token_id} was already revoked at {found[0].revoked_at}")
        done = found[0].model_copy(update={"revoked_at": datetime.now(UTC)})
        self._save(tuple(done if r.id == token_id else r for r in records))
        return done

    def find(self, token: str) -> TokenRecord | None:
        """The live record of a presented token, compared in constant time."""
        digest = hash_token(token)
        match = None
        for r in self.records():
            if hmac.compare_digest(r.sha256, digest):
                match = r
        return None if match is None or match.revoked_at is not None else match
