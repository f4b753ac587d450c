"""`annex keys` for the model-signing key: create, list, export, rotate, revoke.

The template log (tests/api/conftest.py) has no model-signing key, as a data directory made
with `annex init --no-model-signing-key` or before model signing existed; `keys create` adds one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.home import Home
from tests.api.conftest import ORIGIN, PASSPHRASE, Annex, Result, Template, log_size

AnnexAt = Callable[[Path], Annex]


def failed(result: Result, code: int, *needles: str) -> None:
    assert result.code == code, result
    assert result.out == "", result
    for needle in needles:
        assert needle in result.err, (needle, result.err)


def trust_keys(home: Path) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = json.loads((home / "trust.json").read_text())["keys"]
    return keys


def create(run: Annex, *args: str) -> dict[str, Any]:
    done = run.fast("keys", "create", "--role", "model-signing", *args, "--json")
    assert done.code == 0, done
    created: dict[str, Any] = done.json()["created"]
    return created


def test_create_list_and_export(fresh: Path, annex_at: AnnexAt) -> None:
    run = annex_at(fresh)
    done = run("keys", "create", "--role", "model-signing", "--name", "release-key")
    assert done.code == 0, done
    log_key, model_key = trust_keys(fresh)
    assert (model_key["role"], model_key["algorithm"], model_key["name"]) == (
        "model-signing",
        "ecdsa-p256-sha256",
        "release-key",
    )
    assert done.out.splitlines()[0] == (
        f"created model-signing key {model_key['keyid'][:16]} (ecdsa-p256-sha256) release-key"
    )
    listed = run.fast("keys", "list").out.splitlines()
    assert re.fullmatch(rf"{log_key['keyid'][:16]}  log\s+ed25519\s+active .*", listed[0])
    assert re.fullmatch(
        rf"{model_key['keyid'][:16]}  model-signing ecdsa-p256-sha256 active\s+entries 10\.\.\s+"
        r"since [\d-]+ [\d:]+  release-key",
        listed[2],
    )
    assert listed[1].split() == [
        "may",
        "sign:",
        "checkpoints,",
        "any",
        "type",
        "but",
        "model-release",
    ]
    assert listed[3].split() == ["may", "sign:", "model-release"]
    as_json = run.fast("keys", "list", "--json").json()["keys"][1]
    assert (as_json["algorithm"], as_json["note_verifier"]) == ("ecdsa-p256-sha256", None)
    assert (as_json["may_sign"], as_json["signs_checkpoints"]) == ("model-release", False)

    pem = run("keys", "export-public", model_key["keyid"][:12])
    assert pem.code == 0, pem
    public = serialization.load_pem_public_key(pem.out.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert model_key["keyid"] == hashlib.sha256(der).hexdigest()
    failed(
        run.fast("keys", "export-public", model_key["keyid"][:12], "--format", "note"),
        2,
        "signs no notes",
    )
    with Home(fresh).open_store() as store:
        event = store.get(10).statement["predicate"]
    assert (event["event"], event["role"], event["keyid"]) == (
        "created",
        "model-signing",
        model_key["keyid"],
    )
    verified = run.fast("verify", "--json")
    assert verified.code == 0 and verified.json()["size"] == 11


def test_default_name_and_refusals(fresh: Path, annex_at: AnnexAt) -> None:
    run = annex_at(fresh)
    assert create(run)["name"] == f"{ORIGIN}/model-signing"
    failed(
        run.fast("keys", "create", "--role", "model-signing"),
        2,
        "is active",
        "annex keys rotate --role model-signing",
    )
    failed(run.fast("keys", "create", "--role", "log"), 2, "made by `annex init`")
    failed(run.fast("keys", "create", "--name", "has space"), 2, "without spaces")
    failed(run.fast("keys", "rotate", "--role", "collector"), 2, "--role must be")
    assert log_size(fresh) == 11


def test_rotate_the_model_signing_key_only(fresh: Path, annex_at: AnnexAt) -> None:
    run = annex_at(fresh)
    old = create(run, "--name", "release-key")
    log_key = trust_keys(fresh)[0]
    rotated = run("keys", "rotate", "--role", "model-signing", "--reason", "yearly", "--json")
    assert rotated.code == 0, rotated
    retired, active = rotated.json()["retired"], rotated.json()["active"]
    assert (retired["keyid"], retired["status"], retired["valid_until_size"]) == (
        old["keyid"],
        "retired",
        11,
    )
    assert (active["role"], active["name"], active["valid_from_size"]) == (
        "model-signing",
        "release-key",
        11,
    )
    assert trust_keys(fresh)[0] == log_key  # the log key is untouched
    default = run.fast("keys", "rotate")  # without --role: the log key, as before
    assert default.code == 0, default
    assert trust_keys(fresh)[0]["status"] == "retired"
    verified = run("verify", "--json")
    assert verified.code == 0 and verified.json()["size"] == 13


def test_revoke_then_create_again(fresh: Path, annex_at: AnnexAt) -> None:
    run = annex_at(fresh)
    old = create(run)
    revoked = run.fast("keys", "revoke", old["keyid"][:10], "--reason", "leaked")
    assert revoked.code == 0, revoked
    statuses = [(k["role"], k["status"]) for k in trust_keys(fresh)]
    assert statuses == [("log", "active"), ("model-signing", "revoked")]  # no log rotation
    new = create(run, "--name", "release-key-2")
    assert new["valid_from_size"] == 12
    verified = run("verify")
    assert verified.code == 0, verified
    assert verified.out.startswith("ok: 13 entries")


def test_wrong_passphrase_changes_nothing(
    fresh_encrypted: Path, encrypted: Template, annex_at: AnnexAt
) -> None:
    run = annex_at(fresh_encrypted)
    failed(run.with_env(ANNEX_KEY_PASSPHRASE="wrong").fast("keys", "create"), 2, "wrong passphrase")
    assert [k["role"] for k in trust_keys(fresh_encrypted)] == ["log"]
    assert log_size(fresh_encrypted) == encrypted.size
    done = run.with_env(ANNEX_KEY_PASSPHRASE=PASSPHRASE).fast("keys", "create", "--json")
    assert done.code == 0, done
    keyid = done.json()["created"]["keyid"]
    pem = (fresh_encrypted / "keys" / f"{keyid}.pem").read_bytes()
    assert b"ENCRYPTED" in pem.split(b"\n", 1)[0]
