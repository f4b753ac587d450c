"""A local cache of file digests, so a sweep of unchanged model files does not read them again.

Keyed by absolute path; an entry is used only when the file's size, mtime, ctime, inode and
device are all what they were when it was hashed. Rewriting a file changes its ctime (which no
unprivileged call can set back), and replacing it changes its inode, so a file changed with
the same size and a restored mtime is still read again. A file whose ctime is too close to the
moment the directory was listed is not cached at all: a write within the same clock tick could
leave every stamp unchanged (git's "racy clean" problem).

Threat model. The cache trusts this host's file system metadata and the cache file itself
(mode 0700 under the Annex home). Someone who can write the cache, set the clock and ctime
(root), or swap a block device under an inode can make a sweep record a stale digest. That is
acceptable for routine sweeps, whose statements say what was observed; it is not for a release
decision, so the gate and `annex sign model` hash every byte and never use the cache, and
`annex collect model --full` does the same.

It is a plain SQLite file (stdlib sqlite3): a cache on one host, not evidence; deleting it only
costs a full re-read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from collectors.tree import TreeFile
from evidence.errors import ConfigError

CACHE_PATH = Path("cache") / "hashes.sqlite"  # in the data directory: what every command uses
SETTLE_NS = 2_000_000_000  # files changed this close to the listing are not cached
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS file_digests ("
    " path TEXT PRIMARY KEY, stamp TEXT NOT NULL, sha256 TEXT NOT NULL) WITHOUT ROWID"
)


def _stamp(file: TreeFile) -> str:
    # Text, not integers: inode numbers may exceed SQLite's signed 64 bits.
    return f"{file.size}:{file.mtime_ns}:{file.ctime_ns}:{file.inode}:{file.device}"


class HashCache:
    """(absolute path, size, mtime, ctime, inode, device) -> SHA-256, in one SQLite file."""

    def __init__(self, path: Path, *, settle_ns: int = SETTLE_NS) -> None:
        self.path = path
        self.settle_ns = settle_ns
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"hash cache {path} is unusable ({exc}); it is only a cache: delete it"
            ) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def lookup(self, files: Iterable[TreeFile]) -> dict[str, str]:
        """relative path -> SHA-256 for the files unchanged since they were cached."""
        found: dict[str, str] = {}
        try:
            for file in files:
                row = self._db.execute(
                    "SELECT stamp, sha256 FROM file_digests WHERE path = ?", (str(file.absolute),)
                ).fetchone()
                if row is not None and row[0] == _stamp(file):
                    found[file.path] = row[1]
        except sqlite3.Error as exc:
            raise ConfigError(f"hash cache {self.path} cannot be read ({exc}): delete it") from None
        return found

    def store(self, files: Sequence[TreeFile], digests: Mapping[str, str], listed_ns: int) -> int:
        """Records the digests of files that had settled before `listed_ns`; returns how many."""
        rows = [
            (str(f.absolute), _stamp(f), digests[f.path])
            for f in files
            if max(f.ctime_ns, f.mtime_ns) < listed_ns - self.settle_ns
        ]
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR REPLACE INTO file_digests (path, stamp, sha256) VALUES (?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            raise ConfigError(f"hash cache {self.path} cannot be written ({exc})") from None
        return len(rows)
