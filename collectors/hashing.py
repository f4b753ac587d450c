"""Hashing a model directory into a manifest: every file's SHA-256, across cores, memory bounded.

SHA-256 of one file is sequential, so the parallelism is across files: one worker thread per
core takes the largest file not yet started (hashlib releases the GIL while it hashes a large
buffer). Each worker reads into one fixed buffer (CHUNK_BYTES); once a read shows that a file is
not in the page cache, it asks the kernel to read the next window ahead while it hashes the
current one, so reading and hashing overlap on a cold cache too. Memory stays at
workers x CHUNK_BYTES whatever the model's size.

A file that changes while it is hashed (its size, times or inode differ after the read from
what the walk saw) is an error, never a digest of a state that did not exist. With a HashCache,
a file whose path, size, mtime, ctime, inode and device are unchanged since the last sweep is
not read again; see collectors/hash_cache.py for when that is safe (the release gate never uses
the cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collectors.hash_cache import HashCache
from collectors.tree import Tree, TreeFile, walk_tree
from evidence.errors import CollectorError
from schemas.model import Manifest, ManifestFile

# 2 MiB: big enough that a read costs little per byte, small enough that what was just read is
# still in the CPU cache when it is hashed (8 MiB chunks measured about 5% slower, warm).
CHUNK_BYTES = 2 << 20
READ_AHEAD_BYTES = 16 << 20  # asked of the kernel (posix_fadvise WILLNEED), not held by us
SLOW_READ_NS = 1_000_000  # a read of one chunk this slow waited for the device: the file is cold
_POLL_SECONDS = 0.1

Progress = Callable[[int, int], None]


class _Stopped(Exception):
    """Another worker failed: this one stops reading."""


def sha256_file(
    file: TreeFile,
    buffer: bytearray,
    advance: Callable[[int], None] = lambda n: None,
) -> str:
    """SHA-256 of one file as the walk saw it; CollectorError if it changed meanwhile.

    The one function that reads a file's contents; `advance(n)` is told of every n bytes read.
    """
    try:
        fd = os.open(file.absolute, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CollectorError(f"cannot open {file.absolute}: {exc.strerror}") from None
    try:
        if not file.same_as(os.fstat(fd)):
            raise CollectorError(f"{file.absolute} changed after the directory was listed")
        digest = _read_and_hash(fd, file, buffer, advance)
        if not file.same_as(os.fstat(fd)):
            raise CollectorError(f"{file.absolute} changed while it was being hashed")
        return digest
    except OSError as exc:
        raise CollectorError(f"cannot read {file.absolute}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _read_and_hash(
    fd: int, file: TreeFile, buffer: bytearray, advance: Callable[[int], None]
) -> str:
    hasher = hashlib.sha256()
    view = memoryview(buffer)
    ahead = _ReadAhead(fd, file.size)
    done = 0
    while True:
        ahead.ask(done)
        started = time.perf_counter_ns()
        got = os.readv(fd, [view])
        ahead.timed(time.perf_counter_ns() - started)
        if got == 0:
            break
        hasher.update(view[:got])
        done += got
        advance(got)
        if done > file.size:
            break
    if done != file.size:
        raise CollectorError(
            f"{file.absolute} changed while it was being hashed: read {done} bytes, "
            f"listed as {file.size}"
        )
    return hasher.hexdigest()


@dataclass
class _ReadAhead:
    """Asks the kernel to read ahead (posix_fadvise WILLNEED), once a read shows the file is cold.

    A file already in the page cache gains nothing from the hint and pays for the kernel's walk
    over its pages, so hints start only after a read had to wait for the device; from then on
    each byte of the window ahead is asked for once.
    """

    fd: int
    size: int
    cold: bool = False
    asked: int = 0

    def timed(self, nanoseconds: int) -> None:
        self.cold = self.cold or nanoseconds > SLOW_READ_NS

    def ask(self, done: int) -> None:
        until = min(done + READ_AHEAD_BYTES, self.size)
        if not self.cold or self.asked >= until or not hasattr(os, "posix_fadvise"):
            return
        start = max(self.asked, done)
        with contextlib.suppress(OSError):
            os.posix_fadvise(self.fd, start, until - start, os.POSIX_FADV_WILLNEED)
        self.asked = until


@dataclass
class _Shared:
    """What the workers share: the queue of files, the results, the byte count, the first error."""

    queue: list[TreeFile]
    digests: dict[str, str] = field(default_factory=dict)
    done_bytes: int = 0
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def next_file(self) -> TreeFile | None:
        with self.lock:
            if self.stop.is_set() or not self.queue:
                return None
            return self.queue.pop()

    def advance(self, n: int) -> None:
        if self.stop.is_set():
            raise _Stopped
        with self.lock:
            self.done_bytes += n

    def fail(self, error: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = error
        self.stop.set()


def hash_files(
    files: Sequence[TreeFile], *, workers: int | None = None, progress: Progress | None = None
) -> dict[str, str]:
    """path -> SHA-256 for every file, hashed in parallel; the first error is raised."""
    total = sum(f.size for f in files)
    shared = _Shared(queue=sorted(files, key=lambda f: f.size))  # popped from the end: largest
    count = min(workers or os.cpu_count() or 1, len(files)) or 1
    threads = [threading.Thread(target=_work, args=(shared,), daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        _wait(threads, shared, total, progress)
    except BaseException as exc:  # KeyboardInterrupt in the caller: stop the workers too
        shared.fail(exc)
        for thread in threads:
            thread.join()
        raise
    if shared.error is not None:
        raise shared.error
    return shared.digests


def _work(shared: _Shared) -> None:
    buffer = bytearray(CHUNK_BYTES)
    while (file := shared.next_file()) is not None:
        try:
            digest = sha256_file(file, buffer, shared.advance)
        except _Stopped:
            return
        except BaseException as exc:
            shared.fail(exc)
            return
        with shared.lock:
            shared.digests[file.path] = digest


def _wait(
    threads: list[threading.Thread], shared: _Shared, total: int, progress: Progress | None
) -> None:
    """Joins the workers on the calling thread, reporting progress from here (not the workers)."""
    for thread in threads:
        while thread.is_alive():
            thread.join(_POLL_SECONDS)
            if progress is not None:
                progress(shared.done_bytes, total)
    if progress is not None and shared.error is None:
        progress(total, total)


def hash_tree(
    root: Path,
    *,
    cache: HashCache | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """The manifest of a directory; with a cache, unchanged files are not read (unless `full`)."""
    tree = walk_tree(root)
    known = {} if cache is None or full else cache.lookup(tree.files)
    to_read = [f for f in tree.files if f.path not in known]
    digests = {**known, **hash_files(to_read, progress=progress)}
    if cache is not None:
        cache.store(to_read, digests, tree.listed_ns)
    return manifest_of(tree, digests)


def manifest_of(tree: Tree, digests: dict[str, str]) -> Manifest:
    entries = [ManifestFile(path=f.path, size=f.size, sha256=digests[f.path]) for f in tree.files]
    return Manifest.of(entries, list(tree.ignored))


def build_manifest(
    root: Path,
    *,
    cache: HashCache | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """The manifest of a model or adapter directory (the name the gate and `annex sign` use)."""
    return hash_tree(root, cache=cache, full=full, progress=progress)
