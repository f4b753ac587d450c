"""The digest cache: unchanged files are not read again, and any change is noticed."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collectors import hashing
from collectors.hash_cache import HashCache
from collectors.hashing import build_manifest
from evidence.errors import ConfigError


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Relative paths of the files whose contents were read, in order (a spy, not a fake)."""
    seen: list[str] = []
    real: Callable[..., str] = hashing.sha256_file

    def spy(file: Any, *args: Any, **kwargs: Any) -> str:
        seen.append(file.path)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(hashing, "sha256_file", spy)
    return seen


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    for name, data in {"a.bin": b"a" * 5000, "b.bin": b"b" * 7000, "sub/c.json": b"{}"}.items():
        (root / name).write_bytes(data)
    time.sleep(0.01)  # the files' ctime is now before the sweep's listing
    return root


@pytest.fixture
def cache(tmp_path: Path) -> HashCache:
    # settle_ns=0: the files were just written; the settle window has its own test below
    return HashCache(tmp_path / "home" / "cache" / "hashes.sqlite", settle_ns=0)


def test_unchanged_files_are_not_read_again(
    model: Path, cache: HashCache, reads: list[str]
) -> None:
    first = build_manifest(model, cache=cache)
    assert sorted(reads) == ["a.bin", "b.bin", "sub/c.json"]
    reads.clear()
    second = build_manifest(model, cache=cache)
    assert reads == []
    assert second == first


def test_full_reads_everything_again(model: Path, cache: HashCache, reads: list[str]) -> None:
    build_manifest(model, cache=cache)
    reads.clear()
    build_manifest(model, cache=cache, full=True)
    assert sorted(reads) == ["a.bin", "b.bin", "sub/c.json"]


def test_changed_content_with_same_size_and_restored_mtime_is_read(
    model: Path, cache: HashCache, reads: list[str]
) -> None:
    before = build_manifest(model, cache=cache)
    target = model / "a.bin"
    stamp = target.stat()
    with target.open("r+b") as handle:  # same inode, same size
        handle.write(b"X")
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # mtime put back; ctime cannot be
    assert target.stat().st_mtime_ns == stamp.st_mtime_ns
    reads.clear()
    after = build_manifest(model, cache=cache)
    assert reads == ["a.bin"]
    assert after.by_path()["a.bin"].sha256 != before.by_path()["a.bin"].sha256


def test_replaced_file_with_new_inode_is_read(
    model: Path, cache: HashCache, reads: list[str]
) -> None:
    build_manifest(model, cache=cache)
    target = model / "b.bin"
    stamp = target.stat()
    replacement = model / "b.tmp"
    replacement.write_bytes(b"c" * 7000)
    os.utime(replacement, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    os.replace(replacement, target)
    reads.clear()
    after = build_manifest(model, cache=cache)
    assert reads == ["b.bin"]
    assert after.by_path()["b.bin"].sha256 == hashlib.sha256(b"c" * 7000).hexdigest()


def test_added_and_removed_files(model: Path, cache: HashCache, reads: list[str]) -> None:
    build_manifest(model, cache=cache)
    (model / "sub" / "c.json").unlink()
    (model / "new.bin").write_bytes(b"new")
    reads.clear()
    after = build_manifest(model, cache=cache)
    assert reads == ["new.bin"]
    assert [f.path for f in after.files] == ["a.bin", "b.bin", "new.bin"]


def test_files_changed_just_before_the_sweep_are_not_cached(
    model: Path, tmp_path: Path, reads: list[str]
) -> None:
    """A write in the same clock tick as the listing could leave every stamp as it was."""
    with HashCache(tmp_path / "settling.sqlite") as cache:  # default settle window (2 s)
        (model / "a.bin").write_bytes(b"fresh")
        old = time.time_ns() - 60_000_000_000
        for name in ("b.bin", "sub/c.json"):  # these two look a minute old (mtime), but
            os.utime(model / name, ns=(old, old))  # utime itself just set their ctime
        build_manifest(model, cache=cache)
        reads.clear()
        build_manifest(model, cache=cache)
    assert sorted(reads) == ["a.bin", "b.bin", "sub/c.json"]


def test_cache_is_per_absolute_path(
    tmp_path: Path, model: Path, cache: HashCache, reads: list[str]
) -> None:
    build_manifest(model, cache=cache)
    copy = tmp_path / "copy"
    os.rename(model, copy)
    reads.clear()
    build_manifest(copy, cache=cache)
    assert sorted(reads) == ["a.bin", "b.bin", "sub/c.json"]


def test_unusable_cache_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "hashes.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="hash cache"):
        HashCache(bad)
