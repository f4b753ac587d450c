"""`annex collect model` as a user runs it: models, adapters bound to bases, and refusals."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evidence.home import Home
from schemas.model import MODEL_MANIFEST
from tests.api.conftest import Annex, Template, log_size
from tests.collectors.model_dirs import write_adapter, write_base_model

AnnexAt = Callable[[Path], Annex]


def logged(home: Path, index: int) -> dict[str, Any]:
    with Home(home).open_store() as store:
        statement: dict[str, Any] = store.get(index).statement
    return statement


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """The demo's base model (collected as `annex-demo-base`) and its LoRA adapter."""
    return write_base_model(tmp_path / "base"), write_adapter(tmp_path / "lora")


def test_base_then_adapter_binds_by_name(
    fresh: Path, annex_at: AnnexAt, template: Template, dirs: tuple[Path, Path]
) -> None:
    base, lora = dirs
    annex = annex_at(fresh)
    first = annex("collect", "model", base, "--name", "annex-demo-base")
    assert first.code == 0, first.err
    assert "model annex-demo-base" in first.out
    assert f"entry           {template.size}" in first.out
    second = annex.fast("collect", "model", lora, "--json")
    assert second.code == 0, second.err
    out = second.json()
    base_digest = logged(fresh, template.size)["subject"][0]["digest"]["sha256"]
    assert out["index"] == template.size + 1
    assert out["base"] == {"name": "annex-demo-base", "digest": base_digest, "index": template.size}
    assert out["note"] is None
    statement = logged(fresh, template.size + 1)
    assert statement == out["statement"]
    assert statement["predicateType"] == MODEL_MANIFEST
    assert [s["name"] for s in statement["subject"]] == ["adapter:lora", "model:annex-demo-base"]
    adapter = statement["predicate"]["adapter"]
    assert adapter["baseManifestDigest"] == base_digest
    assert adapter["baseManifestEntry"] == template.size


def test_adapter_whose_base_is_unknown_is_logged_unbound_and_says_so(
    fresh: Path, annex_at: AnnexAt, template: Template, dirs: tuple[Path, Path]
) -> None:
    result = annex_at(fresh).fast("collect", "model", dirs[1])
    assert result.code == 0, result.err
    assert "base model annex-demo-base is not in the log: not bound" in result.out
    statement = logged(fresh, template.size)
    assert [s["name"] for s in statement["subject"]] == ["adapter:lora"]
    assert "baseManifestDigest" not in statement["predicate"]["adapter"]


def test_base_option_logs_base_and_adapter_in_one_batch(
    fresh: Path, annex_at: AnnexAt, template: Template, dirs: tuple[Path, Path]
) -> None:
    base, lora = dirs
    annex = annex_at(fresh)
    result = annex.fast("collect", "model", lora, "--base", base, "--json")
    assert result.code == 0, result.err
    out = result.json()
    assert (out["index"], out["base"]["index"], out["baseAppended"]) == (
        template.size + 1,
        template.size,
        True,
    )
    base_statement = logged(fresh, template.size)
    assert base_statement["subject"][0]["name"] == "model:base"
    adapter = logged(fresh, template.size + 1)["predicate"]["adapter"]
    assert adapter["baseManifestDigest"] == base_statement["subject"][0]["digest"]["sha256"]
    assert adapter["baseManifestEntry"] == template.size
    # again: the base is in the log now, so only the adapter is appended, bound to it
    again = annex.fast("collect", "model", lora, "--base", base, "--json").json()
    assert (again["index"], again["base"]["index"], again["baseAppended"]) == (
        template.size + 2,
        template.size,
        False,
    )
    assert log_size(fresh) == template.size + 3


def test_dry_run_logs_nothing_and_needs_no_data_directory(
    tmp_path: Path, annex_at: AnnexAt, dirs: tuple[Path, Path]
) -> None:
    annex = annex_at(tmp_path / "never-initialised")
    result = annex.fast("collect", "model", dirs[0], "--dry-run", "--json")
    assert result.code == 0, result.err
    out = result.json()
    assert out["index"] is None
    assert out["statement"]["subject"][0]["name"] == "model:base"
    assert not (tmp_path / "never-initialised").exists()


def test_dry_run_on_a_log_appends_nothing(
    fresh: Path, annex_at: AnnexAt, template: Template, dirs: tuple[Path, Path]
) -> None:
    result = annex_at(fresh).fast("collect", "model", dirs[0], "--dry-run")
    assert result.code == 0, result.err
    assert "not logged (dry run)" in result.out
    assert log_size(fresh) == template.size


def test_cache_lives_in_the_data_directory_and_full_still_works(
    fresh: Path, annex_at: AnnexAt, dirs: tuple[Path, Path]
) -> None:
    annex = annex_at(fresh)
    one = annex.fast("collect", "model", dirs[0], "--json").json()
    assert (fresh / "cache" / "hashes.sqlite").is_file()
    two = annex.fast("collect", "model", dirs[0], "--full", "--json").json()
    manifest = one["statement"]["predicate"]["manifest"]
    assert two["statement"]["predicate"]["manifest"] == manifest


# -- refusals: exit 2, a clear message, nothing appended ------------------------------------------


def refused(annex: Annex, *args: str | Path) -> str:
    result = annex.fast(*args)
    assert result.code == 2, result.out + result.err
    return result.err


def test_symlink_escape_is_refused_and_nothing_logged(
    fresh: Path, annex_at: AnnexAt, template: Template, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    base = dirs[0]
    (tmp_path / "outside.bin").write_bytes(b"secret")
    os.symlink(tmp_path / "outside.bin", base / "extra.bin")
    message = refused(annex_at(fresh), "collect", "model", base)
    assert "extra.bin" in message
    assert "leaves the directory" in message
    assert log_size(fresh) == template.size


def test_truncated_weights_are_refused_in_json_too(
    fresh: Path, annex_at: AnnexAt, template: Template, dirs: tuple[Path, Path]
) -> None:
    weights = dirs[0] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = annex_at(fresh).fast("collect", "model", dirs[0], "--json")
    assert result.code == 2
    out = result.json()
    assert out["ok"] is False
    assert out["error"] == "CollectorError"
    assert "model.safetensors" in out["message"]
    assert log_size(fresh) == template.size


def test_base_option_needs_an_adapter_and_a_model(
    fresh: Path, annex_at: AnnexAt, template: Template, dirs: tuple[Path, Path]
) -> None:
    base, lora = dirs
    annex = annex_at(fresh)
    assert "not an adapter" in refused(annex, "collect", "model", base, "--base", lora)
    assert "is itself an adapter" in refused(annex, "collect", "model", lora, "--base", lora)
    assert log_size(fresh) == template.size


def test_missing_directory_and_uninitialised_home(
    tmp_path: Path, fresh: Path, annex_at: AnnexAt
) -> None:
    assert "does not exist" in refused(annex_at(fresh), "collect", "model", tmp_path / "nope")
    message = refused(annex_at(tmp_path / "no-home"), "collect", "model", tmp_path)
    assert "annex init" in message
