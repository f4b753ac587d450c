"""Model and adapter statements: what they record, how an adapter is bound to its base."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.models import BaseRef, bind, collect_model, find_base, find_model
from evidence.errors import CollectorError
from evidence.home import Home
from schemas.model import MODEL_MANIFEST, ModelManifestPredicate
from schemas.statement import Statement
from tests.collectors.model_dirs import (
    gguf_file,
    sharded_model,
    write_adapter,
    write_base_model,
    write_json,
)

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def predicate_of(statement: dict) -> ModelManifestPredicate:  # type: ignore[type-arg]
    Statement.model_validate(statement)
    return ModelManifestPredicate.model_validate(statement["predicate"])


def test_base_model_statement(tmp_path: Path) -> None:
    root = write_base_model(tmp_path / "tiny-gpt")
    statement = collect_model(root, now=NOW)
    predicate = predicate_of(statement)
    assert statement["predicateType"] == MODEL_MANIFEST
    assert statement["subject"] == [
        {"name": "model:tiny-gpt", "digest": {"sha256": predicate.manifest.digest}}
    ]
    assert predicate.kind == "model"
    assert predicate.observed_at == "2026-11-24T08:00:00Z"
    assert predicate.path == str(root.resolve())
    assert predicate.parameters == 82048
    assert predicate.config is not None and predicate.config.architectures == ("GPT2LMHeadModel",)
    assert [s.path for s in predicate.safetensors] == ["model.safetensors"]
    files = predicate.manifest.by_path()
    assert predicate.tokenizer_digests == {
        "tokenizer.json": files["tokenizer.json"].sha256,
        "tokenizer_config.json": files["tokenizer_config.json"].sha256,
    }
    assert predicate.generation_config_digest == files["generation_config.json"].sha256
    assert predicate.adapter is None


def test_name_overrides_the_directory_name(tmp_path: Path) -> None:
    statement = collect_model(write_base_model(tmp_path / "dir"), name="llama-3.1-8b")
    assert statement["subject"][0]["name"] == "model:llama-3.1-8b"
    assert statement["predicate"]["name"] == "llama-3.1-8b"


def test_adapter_without_a_known_base(tmp_path: Path) -> None:
    statement = collect_model(write_adapter(tmp_path / "lora"))
    predicate = predicate_of(statement)
    assert predicate.kind == "adapter"
    assert [s["name"] for s in statement["subject"]] == ["adapter:lora"]
    assert predicate.adapter is not None
    assert (predicate.adapter.rank, predicate.adapter.alpha) == (8, 16.0)
    assert predicate.adapter.target_modules == ("c_attn",)
    assert predicate.adapter.base_model_name == "annex-demo-base"
    assert predicate.adapter.base_manifest_digest is None
    assert "baseManifestDigest" not in statement["predicate"]["adapter"]
    assert predicate.parameters == 2 * (8 * 64 + 3 * 64 * 8)


def test_adapter_bound_to_a_base_names_both_digests(tmp_path: Path) -> None:
    base = collect_model(write_base_model(tmp_path / "base"), name="annex-demo-base")
    digest = base["subject"][0]["digest"]["sha256"]
    statement = collect_model(
        write_adapter(tmp_path / "lora"), base=BaseRef("annex-demo-base", digest, 7)
    )
    assert statement["subject"][1] == {
        "name": "model:annex-demo-base",
        "digest": {"sha256": digest},
    }
    adapter = predicate_of(statement).adapter
    assert adapter is not None
    assert (adapter.base_manifest_digest, adapter.base_manifest_entry) == (digest, 7)


def test_only_an_adapter_can_be_bound(tmp_path: Path) -> None:
    with pytest.raises(CollectorError, match="only an adapter"):
        collect_model(write_base_model(tmp_path / "base"), base=BaseRef("x", "0" * 64))
    predicate = predicate_of(collect_model(tmp_path / "base"))
    with pytest.raises(CollectorError, match="only an adapter"):
        bind(predicate, BaseRef("x", "0" * 64))


def test_sharded_model_counts_only_the_indexed_shards(tmp_path: Path) -> None:
    predicate = predicate_of(collect_model(sharded_model(tmp_path / "m")))
    assert len(predicate.safetensors) == 3  # every file's header is recorded
    assert predicate.parameters == 16 + 10 + 6  # consolidated.safetensors is not counted twice


def test_index_naming_a_missing_shard_is_refused(tmp_path: Path) -> None:
    root = sharded_model(tmp_path / "m", with_consolidated=False)
    (root / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CollectorError, match=r"model-00002-of-00002\.safetensors"):
        collect_model(root)


def test_truncated_weights_refuse_the_whole_directory(tmp_path: Path) -> None:
    root = write_base_model(tmp_path / "m")
    weights = root / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CollectorError, match=r"model\.safetensors"):
        collect_model(root)


def test_gguf_quantisations_of_one_model_share_a_count(tmp_path: Path) -> None:
    root = tmp_path / "gguf"
    root.mkdir()
    gguf_file(root / "tiny-Q8_0.gguf")
    gguf_file(root / "tiny-F32.gguf")
    predicate = predicate_of(collect_model(root))
    assert [g.path for g in predicate.gguf] == ["tiny-F32.gguf", "tiny-Q8_0.gguf"]
    assert predicate.parameters == 136
    gguf_file(root / "other.gguf", rows=32)
    assert predicate_of(collect_model(root)).parameters is None  # two models: no one count


def test_gguf_split_parts_are_summed(tmp_path: Path) -> None:
    root = tmp_path / "split"
    root.mkdir()
    gguf_file(root / "m-00001-of-00002.gguf", rows=16)
    gguf_file(root / "m-00002-of-00002.gguf", rows=32)
    assert predicate_of(collect_model(root)).parameters == (16 * 8 + 8) + (32 * 8 + 8)


def test_bad_config_names_the_file(tmp_path: Path) -> None:
    root = write_base_model(tmp_path / "m")
    (root / "config.json").write_text("{oops")
    with pytest.raises(CollectorError, match=r"config\.json"):
        collect_model(root)


# -- finding the base in the log --------------------------------------------------------------


def test_find_base_by_name_and_last_path_component(tmp_path: Path, sqlite_home: Home) -> None:
    base = collect_model(write_base_model(tmp_path / "base"), name="annex-demo-base")
    with sqlite_home.open_store(write=True) as store:
        assert find_base(store, "annex-demo-base") is None
        index = store.append([base]).first_index
        found = find_base(store, "annex-demo-base")
        assert found == BaseRef("annex-demo-base", base["subject"][0]["digest"]["sha256"], index)
        assert find_base(store, "some-org/annex-demo-base") == found
        assert find_base(store, "other") is None
        assert find_base(store, None) is None


def test_find_model_takes_the_newest_and_ignores_adapters_naming_it(
    tmp_path: Path, sqlite_home: Home
) -> None:
    root = write_base_model(tmp_path / "base")
    old = collect_model(root, name="b")
    (root / "generation_config.json").write_text("{}")
    new = collect_model(root, name="b")
    with sqlite_home.open_store(write=True) as store:
        first = store.append([old, new]).first_index
        new_digest = new["subject"][0]["digest"]["sha256"]
        # an adapter entry names the base as its second subject: never taken for the base
        adapter = collect_model(
            write_adapter(tmp_path / "lora"), base=BaseRef("b", new_digest, first + 1)
        )
        store.append([adapter])
        assert find_model(store, name="b") == BaseRef("b", new_digest, first + 1)
        old_digest = old["subject"][0]["digest"]["sha256"]
        assert find_model(store, digest=old_digest) == BaseRef("b", old_digest, first)
        adapter_digest = adapter["subject"][0]["digest"]["sha256"]
        assert find_model(store, digest=adapter_digest) is None


def test_ignored_files_are_listed(tmp_path: Path) -> None:
    root = write_base_model(tmp_path / "m")
    write_json(root / ".git" / "config.json", {})
    (root / "model.sig").write_text("{}")
    manifest = predicate_of(collect_model(root)).manifest
    assert manifest.ignored == (".git", "model.sig")
    assert all(not f.path.startswith(".git") for f in manifest.files)
