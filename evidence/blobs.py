"""The content-addressed blob directory: large artifacts kept outside the log, named by SHA-256.

Layout: `<home>/blobs/sha256/<first two hex>/<64 hex>`; partial writes go to `<home>/blobs/tmp/`.
The log records a blob's digest, never its bytes, so a blob can be deleted (retention) while the
log still verifies.

Durability contract: `BlobWriter.commit` returns once the bytes are fsynced, the temporary file
is renamed to its digest's name and the directory entry is fsynced. A crash before that leaves
only a file under `tmp/`, never a blob whose name does not match its bytes. Writing a blob that
already exists keeps the existing file (same name, same bytes).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from evidence.errors import InputError, StoreError
from evidence.files import fsync_directory

_HEX64 = re.compile(r"[0-9a-f]{64}")


class BlobWriter:
    """A blob being written: `write` bytes, then `commit` (its digest) or `abort`."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        store.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="blob-")
        self._path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb", buffering=1 << 20)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise StoreError("blob already committed or aborted")
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def digest(self) -> str:
        """The hex SHA-256 of the bytes written so far (the name `commit` would give)."""
        return self._hash.hexdigest()

    def commit(self) -> str:
        """Makes the blob durable under its digest; returns the hex SHA-256."""
        if self._file is None:
            raise StoreError("blob already committed or aborted")
        digest = self._hash.hexdigest()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            target = self._store.path(digest)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(self._path, target)
            fsync_directory(target.parent)
        except OSError as exc:
            self.abort()
            raise StoreError(f"cannot store blob {digest}: {exc.strerror}") from exc
        return digest

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self.abort()


class BlobStore:
    """Blobs under `root` (normally `<home>/blobs`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def path(self, digest: str) -> Path:
        if not _HEX64.fullmatch(digest):
            raise InputError(f"blob digest {digest!r} is not 64 lowercase hex characters")
        return self.root / "sha256" / digest[:2] / digest

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put(self, data: bytes) -> str:
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        """Opens a blob for reading; refuses a missing one with its path."""
        path = self.path(digest)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise InputError(f"blob sha256:{digest} is not in {self.root}") from None

    def check(self, digest: str) -> None:
        """Re-hashes a blob; raises StoreError when its bytes no longer match its name."""
        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise StoreError(f"blob {self.path(digest)} does not match its digest: it was changed")

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
