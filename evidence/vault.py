"""The vault: per-data-subject secrets kept outside the log, so that erasure can destroy them.

Layout: `<home>/vault/` (mode 0700) holds `vault.db` (SQLite, its own file, never the log
database: rows here must be deletable) and `master.key` (32 random bytes, mode 0600).

Per data subject (a caller id as it appears in inference logs) the vault keeps:
- a pseudonym secret (256 bits): the subject's pseudonym is HMAC-SHA256(secret, caller id), hex,
  first 32 characters. Pseudonyms enter the log; the secret never does. Once the secret is
  destroyed the pseudonym cannot be recomputed from the caller id, so the log's pseudonyms can
  no longer be linked to the person.
- content keys (AES-256, one per subject and batch), each with a retention class and an expiry.
  Retained prompts and completions are encrypted under them; destroying a key shreds the content.

Rows are found by a keyed index, HMAC-SHA256(master key, caller id), so the vault file does not
hold caller ids in clear. The trade-off: whoever holds both `master.key` and `vault.db` can test
whether a *given* caller id has a row (a membership test), but cannot list the caller ids. The
master key is not a per-subject secret and is never destroyed by an erasure.

Deletion: every connection runs with `PRAGMA secure_delete=ON` (SQLite overwrites deleted
content with zeros) and the rollback journal in DELETE mode (no WAL copy outlives a commit);
`vacuum()` then rebuilds the file. What the file system or the disk keeps of earlier blocks
(unlinked journals, SSD remapping, backups of the home directory) is outside this guarantee.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evidence.errors import ConfigError, InputError, StoreError

PSEUDONYM_LENGTH = 32
_BUSY_TIMEOUT_S = 30

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    lookup TEXT PRIMARY KEY,
    secret BLOB NOT NULL,
    pseudonym TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS content_keys (
    key_id BLOB PRIMARY KEY,
    lookup TEXT NOT NULL REFERENCES subjects(lookup),
    key BLOB NOT NULL,
    batch TEXT NOT NULL,
    retention TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS content_keys_by_subject ON content_keys(lookup);
CREATE INDEX IF NOT EXISTS content_keys_by_expiry ON content_keys(expires_at);
"""


def pseudonym_of(secret: bytes, caller: str) -> str:
    """HMAC-SHA256(secret, caller id), hex, truncated to 32 characters (128 bits)."""
    mac = hmac.new(secret, caller.encode("utf-8"), hashlib.sha256).hexdigest()
    return mac[:PSEUDONYM_LENGTH]


@dataclass(frozen=True)
class Subject:
    """A data subject's vault row, without its secret: what callers may hold on to."""

    lookup: str
    pseudonym: str


@dataclass(frozen=True)
class ContentKey:
    key_id: bytes  # 16 random bytes, written beside each ciphertext; no link to the caller id
    key: bytes  # AES-256
    pseudonym: str


@dataclass(frozen=True)
class Destroyed:
    """What a destruction removed: pseudonyms, key count, and the batches whose keys went."""

    pseudonyms: tuple[str, ...]
    keys: int
    secrets: int
    batches: tuple[str, ...]


class Vault:
    """Open with `Vault.open(directory)`; use as a context manager to close it."""

    def __init__(self, directory: Path, conn: sqlite3.Connection, master: bytes) -> None:
        self.directory = directory
        self._conn = conn
        self._master = master

    @classmethod
    def open(cls, directory: Path) -> Vault:
        """Opens the vault, creating the directory, master key and database on first use."""
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            master = _master_key(directory / "master.key")
            conn = sqlite3.connect(
                directory / "vault.db", timeout=_BUSY_TIMEOUT_S, isolation_level=None
            )
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            (directory / "vault.db").chmod(0o600)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the vault in {directory}: {exc}") from exc
        return cls(directory, conn, master)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"the vault is busy ({exc}): try again") from exc
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- subjects -------------------------------------------------------------------------------

    def lookup(self, caller: str) -> str:
        """The keyed index of a caller id: HMAC-SHA256(master key, caller id), hex."""
        return hmac.new(self._master, caller.encode("utf-8"), hashlib.sha256).hexdigest()

    def find(self, caller: str) -> Subject | None:
        row = self._conn.execute(
            "SELECT lookup, pseudonym FROM subjects WHERE lookup = ?", (self.lookup(caller),)
        ).fetchone()
        return None if row is None else Subject(row[0], row[1])

    def subject(self, caller: str, *, now: int) -> Subject:
        """The caller's row, made (with a new random secret) on first sight."""
        found = self.find(caller)
        if found is not None:
            return found
        secret = secrets.token_bytes(32)
        made = Subject(self.lookup(caller), pseudonym_of(secret, caller))
        self._conn.execute(
            "INSERT INTO subjects (lookup, secret, pseudonym, created_at) VALUES (?, ?, ?, ?)",
            (made.lookup, secret, made.pseudonym, now),
        )
        return made

    def pseudonym(self, caller: str) -> str | None:
        """Recomputes a caller's pseudonym from its secret; None once the secret is destroyed."""
        row = self._conn.execute(
            "SELECT secret FROM subjects WHERE lookup = ?", (self.lookup(caller),)
        ).fetchone()
        return None if row is None else pseudonym_of(row[0], caller)

    # -- content keys ---------------------------------------------------------------------------

    def new_content_key(
        self, subject: Subject, *, batch: str, retention: str, expires_at: int
    ) -> ContentKey:
        """A fresh random AES-256 key for one subject's content in one batch."""
        made = ContentKey(secrets.token_bytes(16), secrets.token_bytes(32), subject.pseudonym)
        self._conn.execute(
            "INSERT INTO content_keys (key_id, lookup, key, batch, retention, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (made.key_id, subject.lookup, made.key, batch, retention, expires_at),
        )
        return made

    def content_key(self, key_id: bytes) -> bytes | None:
        """The key for a ciphertext's key id; None when it was destroyed (or never existed)."""
        row = self._conn.execute(
            "SELECT key FROM content_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def key_owner(self, key_id: bytes) -> str | None:
        """The keyed index of the subject a content key belongs to."""
        row = self._conn.execute(
            "SELECT lookup FROM content_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def batches_of(self, caller: str) -> tuple[str, ...]:
        rows = self._conn.execute(
            "SELECT DISTINCT batch FROM content_keys WHERE lookup = ? ORDER BY batch",
            (self.lookup(caller),),
        ).fetchall()
        return tuple(r[0] for r in rows)

    # -- destruction ----------------------------------------------------------------------------

    def destroy(self, caller: str) -> Destroyed:
        """Deletes a subject's pseudonym secret and every content key (call in a transaction)."""
        subject = self.find(caller)
        if subject is None:
            raise InputError(
                "no such data subject in the vault: the caller id was never seen in an "
                "ingested log, or it was already erased"
            )
        batches = self.batches_of(caller)
        keys = self._conn.execute(
            "DELETE FROM content_keys WHERE lookup = ?", (subject.lookup,)
        ).rowcount
        self._conn.execute("DELETE FROM subjects WHERE lookup = ?", (subject.lookup,))
        return Destroyed((subject.pseudonym,), keys, 1, batches)

    def expired(self, now: int) -> Destroyed:
        """What `expire(now)` would destroy: content keys whose expiry is at or before `now`."""
        rows = self._conn.execute(
            "SELECT s.pseudonym, k.batch FROM content_keys k JOIN subjects s USING (lookup) "
            "WHERE k.expires_at <= ?",
            (now,),
        ).fetchall()
        return Destroyed(
            tuple(sorted({r[0] for r in rows})), len(rows), 0, tuple(sorted({r[1] for r in rows}))
        )

    def expire(self, now: int) -> Destroyed:
        """Deletes expired content keys (call in a transaction). Pseudonym secrets stay."""
        found = self.expired(now)
        self._conn.execute("DELETE FROM content_keys WHERE expires_at <= ?", (now,))
        return found

    def vacuum(self) -> None:
        """Rebuilds the file so that no free page keeps a copy of deleted rows."""
        try:
            self._conn.execute("VACUUM")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot vacuum the vault: {exc}") from exc


def _master_key(path: Path) -> bytes:
    """Reads the master key, creating it (mode 0600) when absent.

    The key is written whole to a private temporary file and then hard-linked into place, so a
    second process opening the vault at the same moment sees either no key or all 32 bytes of
    the one that won, never an empty file.
    """
    if not path.exists():
        key = secrets.token_bytes(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        else:
            return key
        finally:
            tmp.unlink()
    data = path.read_bytes()
    if len(data) != 32:
        raise ConfigError(f"{path} must hold 32 bytes, not {len(data)}")
    return data
