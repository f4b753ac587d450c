"""Walking a model directory: every regular file found, or a clear refusal.

A manifest must describe exactly what a loader would read, so the walk refuses what it cannot
describe faithfully instead of skipping it: symbolic links (inside the directory or leaving it;
model-signing refuses them too unless told otherwise), FIFOs, sockets and devices, names that
are not UTF-8, and names a POSIX manifest path cannot hold. The names model-signing leaves out by
default (IGNORED_NAMES and the signature file, at the top level) are not descended into, but
each one found is listed as ignored.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from evidence.errors import CollectorError
from schemas.model import IGNORED_NAMES, SIGNATURE_NAME

_SPECIAL = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


@dataclass(frozen=True)
class TreeFile:
    """One regular file and the stat fields that tell whether it changed since."""

    path: str  # relative POSIX path inside the root
    absolute: Path
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: str, absolute: Path, st: os.stat_result) -> TreeFile:
        return cls(path, absolute, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)

    def same_as(self, st: os.stat_result) -> bool:
        """Whether `st` describes this file unchanged (same object, size and times)."""
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev) == (
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            self.inode,
            self.device,
        )


@dataclass(frozen=True)
class Tree:
    root: Path  # absolute, symlinks in the root's own path resolved
    files: tuple[TreeFile, ...]  # sorted by path
    ignored: tuple[str, ...]
    listed_ns: int  # the wall clock before the first file was listed

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def walk_tree(root: Path) -> Tree:
    """Every regular file under `root`, refusing anything a manifest cannot describe."""
    base = _check_root(root)
    listed_ns = time.time_ns()
    files: list[TreeFile] = []
    ignored: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        for entry in _scan(base / prefix if prefix else base):
            rel = _relative(prefix, entry)
            st = _stat(entry, base)
            if not prefix and (entry.name in IGNORED_NAMES or entry.name == SIGNATURE_NAME):
                ignored.append(rel)
            elif stat.S_ISDIR(st.st_mode):
                pending.append(rel)
            else:
                files.append(TreeFile.of(rel, Path(entry.path), st))
    if not files:
        raise CollectorError(f"{base} holds no files to hash")
    files.sort(key=lambda f: f.path)
    return Tree(base, tuple(files), tuple(sorted(ignored)), listed_ns)


def _check_root(root: Path) -> Path:
    try:
        base = root.resolve(strict=True)
    except FileNotFoundError:
        raise CollectorError(f"{root} does not exist") from None
    except (OSError, RuntimeError) as exc:
        raise CollectorError(f"cannot resolve {root}: {exc}") from None
    if not base.is_dir():
        raise CollectorError(f"{root} is not a directory: a model is collected as a directory")
    return base


def _scan(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as listing:
            return sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        raise CollectorError(f"cannot list {directory}: {exc.strerror}") from None


def _relative(prefix: str, entry: os.DirEntry[str]) -> str:
    name = entry.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(entry.path).decode("utf-8", "backslashreplace")
        raise CollectorError(f"{shown}: the file name is not UTF-8") from None
    if "\\" in name:
        raise CollectorError(f"{entry.path}: a backslash in a file name cannot be a manifest path")
    return f"{prefix}/{name}" if prefix else name


def _stat(entry: os.DirEntry[str], base: Path) -> os.stat_result:
    """The entry's own stat; symlinks and special files are refused here."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        raise CollectorError(f"cannot stat {entry.path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise CollectorError(_symlink_message(Path(entry.path), base))
    kind = _SPECIAL.get(stat.S_IFMT(st.st_mode))
    if kind is not None:
        raise CollectorError(f"{entry.path} is {kind}, not a regular file: it cannot be hashed")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise CollectorError(f"{entry.path} is neither a regular file nor a directory")
    return st


def _symlink_message(link: Path, base: Path) -> str:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    resolved = Path(os.path.realpath(link))
    if resolved == base or base in resolved.parents:
        return (
            f"{link} is a symbolic link to {target}, inside the directory: symbolic links are "
            "refused (model-signing refuses them too); put the file itself in its place"
        )
    return (
        f"{link} is a symbolic link to {target}, which leaves the directory {base} (it "
        f"resolves to {resolved}): symbolic links are refused; copy the file into the directory"
    )
