"""The trust file: what it accepts, and the clear errors for what it does not."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from evidence.errors import InputError
from evidence.keys import Signer, load_trust, save_trust
from schemas.trust import TrustedKey, TrustFile
from tests.conftest import noncanonical_b64


def _key(**changes: Any) -> dict[str, Any]:
    signer = Signer.generate("test.example/log")
    data = signer.trusted_key(role="log", from_size=0).model_dump(mode="json")
    data.update(changes)
    return data


def _write(path: Path, keys: list[dict[str, Any]], **top: Any) -> Path:
    path.write_text(json.dumps({"version": 1, "origin": "test.example/log", "keys": keys, **top}))
    return path


def test_round_trip(tmp_path: Path) -> None:
    trust = TrustFile(origin="test.example/log", keys=(TrustedKey.model_validate(_key()),))
    save_trust(tmp_path / "trust.json", trust)
    assert load_trust(tmp_path / "trust.json") == trust
    assert not list(tmp_path.glob(".trust.json.*"))  # the temporary file is gone


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"keyid": "ab" * 32}, "not SHA-256 of the public key"),
        ({"keyid": "XYZ"}, "keys.0.keyid"),
        ({"public_key": base64.b64encode(b"short").decode()}, "32-byte Ed25519"),
        ({"public_key": "***"}, "base64"),
        ({"status": "retired"}, "active key has no end"),
        ({"valid_until_size": 3}, "active key has no end"),
        ({"status": "lost"}, "keys.0.status"),
        ({"name": "has space"}, "keys.0.name"),
        ({"surprise": True}, "keys.0.surprise"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = _write(tmp_path / "trust.json", [_key(**change)])
    with pytest.raises(InputError, match=message) as caught:
        load_trust(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("how", ["unused bits", "unpadded", "url-safe"])
def test_public_key_must_be_canonical_base64(tmp_path: Path, how: str) -> None:
    """Another text of the same key would be another trust file with the same keys."""
    key = _key()
    while not {"+", "/"} & set(key["public_key"]):  # one the URL-safe alphabet writes otherwise
        key = _key()
    text = key["public_key"]
    key["public_key"] = {
        "unused bits": noncanonical_b64(text),
        "unpadded": text.rstrip("="),
        "url-safe": text.replace("+", "-").replace("/", "_"),
    }[how]
    path = _write(tmp_path / "trust.json", [key])
    with pytest.raises(
        InputError, match=r"keys\.0\.public_key: .*public_key is not canonical base64"
    ):
        load_trust(path)


def test_retired_window_must_not_end_before_it_starts(tmp_path: Path) -> None:
    bad = _key(status="retired", valid_from_size=5, valid_until_size=4)
    with pytest.raises(InputError, match="before valid_from_size"):
        load_trust(_write(tmp_path / "t.json", [bad]))


def test_duplicate_keys_and_bad_files(tmp_path: Path) -> None:
    key = _key()
    with pytest.raises(InputError, match="keyid appears twice"):
        load_trust(_write(tmp_path / "t.json", [key, key]))
    with pytest.raises(InputError, match="version"):
        load_trust(_write(tmp_path / "t.json", [key], version=2))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_trust(tmp_path / "bad.json")
    with pytest.raises(InputError, match="cannot read trust file"):
        load_trust(tmp_path / "missing.json")


def test_windows_are_positions() -> None:
    key = TrustedKey.model_validate(_key(status="revoked", valid_from_size=2, valid_until_size=5))
    assert [key.signs_entry(i) for i in (1, 2, 4, 5)] == [False, True, True, False]
    assert [key.signs_checkpoint(s) for s in (1, 2, 5, 6)] == [False, True, True, False]
