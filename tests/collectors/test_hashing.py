"""Manifests of directories: every file, exact digests, model-signing's digest, and refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from collectors import hashing
from collectors.hashing import build_manifest, hash_files
from collectors.tree import walk_tree
from evidence.errors import CollectorError
from schemas.model import Manifest
from tests.collectors.model_dirs import write_base_model


def tree_of(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FILES = {
    "config.json": b"{}",
    "a/b": b"nested" * 1000,
    "a-b": b"dash",
    "a.txt": b"",
    "deep/er/still.bin": os.urandom(3 * 4096 + 17),
}


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", FILES)
    manifest = build_manifest(root)
    assert [(f.path, f.size, f.sha256) for f in manifest.files] == sorted(
        (rel, len(data), sha(data)) for rel, data in FILES.items()
    )
    assert manifest.digest == Manifest.of(list(manifest.files)).digest
    assert manifest.ignored == ()


def test_manifest_does_not_depend_on_where_the_directory_is(tmp_path: Path) -> None:
    one = build_manifest(tree_of(tmp_path / "one", FILES))
    two = build_manifest(tree_of(tmp_path / "elsewhere" / "two", FILES))
    assert one == two


def test_one_changed_byte_changes_the_digest(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", FILES)
    before = build_manifest(root)
    (root / "a" / "b").write_bytes(b"Nested" + FILES["a/b"][6:])
    after = build_manifest(root)
    assert after.digest != before.digest
    assert after.by_path()["a/b"].sha256 != before.by_path()["a/b"].sha256


@pytest.mark.parametrize("cold", [False, True], ids=["warm", "read-ahead"])
def test_reads_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cold: bool
) -> None:
    monkeypatch.setattr(hashing, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(hashing, "READ_AHEAD_BYTES", 3 * 4096)
    if cold:  # every read counts as slow: the read-ahead path runs from the first chunk
        monkeypatch.setattr(hashing, "SLOW_READ_NS", -1)
    sizes = [0, 1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 1]
    files = {f"f{n}": os.urandom(n) for n in sizes}
    manifest = build_manifest(tree_of(tmp_path / "m", files))
    assert {f.path: f.sha256 for f in manifest.files} == {k: sha(v) for k, v in files.items()}


def test_many_files_on_more_workers_than_cores(tmp_path: Path) -> None:
    files = {f"shard-{i:03d}.bin": os.urandom(1000 + i * 37) for i in range(60)}
    tree = walk_tree(tree_of(tmp_path / "m", files))
    assert hash_files(tree.files, workers=7) == {k: sha(v) for k, v in files.items()}


def test_progress_reaches_the_total_and_never_goes_back(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", FILES)
    seen: list[tuple[int, int]] = []
    build_manifest(root, progress=lambda done, total: seen.append((done, total)))
    total = sum(len(v) for v in FILES.values())
    assert seen[-1] == (total, total)
    assert all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_memory_stays_bounded_by_workers_times_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk = 1 << 20
    monkeypatch.setattr(hashing, "CHUNK_BYTES", chunk)
    root = tree_of(tmp_path / "m", {f"w{i}": os.urandom(8 * chunk) for i in range(4)})
    tree = walk_tree(root)
    tracemalloc.start()
    try:
        hash_files(tree.files, workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * chunk  # two buffers and change, for 32 MiB of files


# -- model-signing compatibility -----------------------------------------------------------------


def test_model_signing_digest_and_file_set_match_model_signing(tmp_path: Path) -> None:
    from model_signing import hashing as ms_hashing

    root = tree_of(tmp_path / "m", FILES)
    tree_of(root, {".git/HEAD": b"ref", ".gitattributes": b"*", "model.sig": b"{}"})
    ours = build_manifest(root)
    theirs = ms_hashing.Config().set_ignored_paths(paths=["model.sig"]).hash(root)
    descriptors = list(theirs.resource_descriptors())
    assert [d.identifier for d in descriptors] == sorted(
        (f.path for f in ours.files), key=lambda p: p.split("/")
    )
    assert {d.identifier: d.digest.digest_hex for d in descriptors} == {
        f.path: f.sha256 for f in ours.files
    }
    root_digest = hashlib.sha256(b"".join(d.digest.digest_value for d in descriptors))
    assert ours.model_signing_digest == root_digest.hexdigest()
    assert ours.ignored == (".git", ".gitattributes", "model.sig")


def test_model_signing_cli_signs_the_digest_annex_records(tmp_path: Path) -> None:
    """`model_signing sign key` (the CLI users run) names our modelSigningDigest as its subject."""
    root = write_base_model(tmp_path / "base")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cli = Path(sys.executable).with_name("model_signing")
    signature = root / "model.sig"
    subprocess.run(
        [
            str(cli),
            "sign",
            "key",
            str(root),
            "--private_key",
            str(pem),
            "--signature",
            str(signature),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    payload = json.loads(
        base64.b64decode(json.loads(signature.read_text())["dsseEnvelope"]["payload"])
    )
    manifest = build_manifest(root)
    assert payload["subject"][0]["digest"]["sha256"] == manifest.model_signing_digest
    assert manifest.ignored == ("model.sig",)


# -- refusals ------------------------------------------------------------------------------------


def refused(root: Path) -> str:
    with pytest.raises(CollectorError) as caught:
        build_manifest(root)
    return str(caught.value)


def test_symlink_leaving_the_directory_is_refused(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"config.json": b"{}"})
    (tmp_path / "secret").write_text("outside")
    (root / "weights.bin").symlink_to(tmp_path / "secret")
    message = refused(root)
    assert str(root / "weights.bin") in message
    assert str(tmp_path / "secret") in message
    assert "leaves the directory" in message


def test_relative_symlink_escaping_through_dotdot_is_refused(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"sub/config.json": b"{}"})
    (tmp_path / "blob").write_text("outside")
    (root / "sub" / "w.bin").symlink_to("../../blob")
    assert "leaves the directory" in refused(root)


def test_symlink_inside_the_directory_is_refused_too(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"model.safetensors": b"x"})
    (root / "alias.safetensors").symlink_to("model.safetensors")
    message = refused(root)
    assert "alias.safetensors" in message
    assert "inside the directory" in message


def test_symlinked_directory_and_dangling_link_are_refused(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"a": b"x"})
    (tmp_path / "other").mkdir()
    (root / "linked").symlink_to(tmp_path / "other", target_is_directory=True)
    assert "symbolic link" in refused(root)
    (root / "linked").unlink()
    (root / "gone").symlink_to(tmp_path / "nowhere")
    assert "symbolic link" in refused(root)


def test_symlinked_git_directory_is_refused_though_git_is_ignored(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"a": b"x"})
    (tmp_path / "repo").mkdir()
    (root / ".git").symlink_to(tmp_path / "repo", target_is_directory=True)
    assert ".git" in refused(root)


def test_fifo_is_refused(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"a": b"x"})
    os.mkfifo(root / "pipe")
    assert "FIFO" in refused(root)


def test_non_utf8_name_is_refused(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"a": b"x"})
    with open(os.path.join(os.fsencode(root), b"bad-\xff.bin"), "wb") as handle:
        handle.write(b"y")
    assert "not UTF-8" in refused(root)


def test_backslash_in_a_name_is_refused(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"a\\b": b"x"})
    assert "backslash" in refused(root)


def test_empty_directories_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert "no files" in refused(tmp_path / "empty")
    only_ignored = tree_of(tmp_path / "ignored", {".gitattributes": b"*", "model.sig": b"s"})
    assert "no files" in refused(only_ignored)


def test_missing_root_and_file_root_are_refused(tmp_path: Path) -> None:
    assert "does not exist" in refused(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    assert "not a directory" in refused(tmp_path / "file")


def test_a_file_changed_after_listing_is_refused(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"w.bin": b"0123456789"})
    tree = walk_tree(root)
    (root / "w.bin").write_bytes(b"0123")
    with pytest.raises(CollectorError, match="changed"):
        hash_files(tree.files)


def test_ignored_names_only_count_at_the_top_level(tmp_path: Path) -> None:
    root = tree_of(tmp_path / "m", {"sub/.gitattributes": b"*", "sub/model.sig": b"s"})
    manifest = build_manifest(root)
    assert [f.path for f in manifest.files] == ["sub/.gitattributes", "sub/model.sig"]
    assert manifest.ignored == ()
