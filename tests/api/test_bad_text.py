"""Text that is no text: an unpaired surrogate (`\\ud800`) decodes from JSON but can neither
be written as UTF-8 nor canonicalised, so every reader refuses it where it reads it, naming
the file, instead of failing later with a traceback."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from evidence.canonical import parse_json
from evidence.errors import InputError
from tests.api.conftest import Annex

LONE = '"\\ud800x"'  # JSON text of a string holding a lone high surrogate


def test_the_parser_refuses_a_lone_surrogate_and_keeps_pairs() -> None:
    with pytest.raises(InputError, match="body holds an unpaired surrogate"):
        parse_json(f'{{"a": {LONE}}}'.encode(), what="body")
    assert parse_json('{"a": "\\ud83d\\ude00"}', what="body") == {"a": "\U0001f600"}


@pytest.fixture
def annex(fresh: Path, annex_at: Callable[[Path], Annex]) -> Annex:
    return annex_at(fresh)


def test_safetensors_metadata_with_a_lone_surrogate_is_refused(
    annex: Annex, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gpt2"}')
    header = f'{{"__metadata__": {{"note": {LONE}}}}}'.encode()
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    done = annex.fast("collect", "model", model, "--dry-run", "--json")
    assert done.code == 2, done
    answer = done.json()  # with --json, the refusal is a JSON document too
    assert (answer["ok"], answer["error"]) == (False, "CollectorError")
    assert "model.safetensors" in answer["message"] and "unpaired surrogate" in answer["message"]
    assert "Traceback" not in done.err
