"""Model-signing keys in the data directory: made, rotated, revoked as logged key events.

Each change is a key-event entry, the trust file keeps every key with its window, and the whole
log still verifies from public keys alone afterwards.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.errors import AuthorityError, ConfigError, InputError, TrustError
from evidence.home import Home, active_key
from evidence.keys import ModelSigningKey, Signer, TrustIndex, load_trust, save_trust
from evidence.verify import verify_log
from schemas.gpu import GPU_INVENTORY
from schemas.key_event import KEY_EVENT
from schemas.model import MODEL_RELEASE
from schemas.trust import TrustedKey, TrustFile

ORIGIN = "test.example/log"
PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def signing_home(tmp_path: Path) -> Home:
    """A data directory made as `annex init` makes it: log key at 0, model-signing key at 1."""
    home = Home(tmp_path / "annex", passphrase=PASSPHRASE)
    home.init(ORIGIN, model_signing_name="release-key")
    return home


def events(home: Home) -> list[dict[str, Any]]:
    with home.open_store() as store:
        entries = [store.get(i) for i in range(store.size())]
    return [e.statement["predicate"] for e in entries if e.predicate_type == KEY_EVENT]


def verifies(home: Home) -> int:
    with home.open_store() as store:
        return verify_log(store, home.trust()).size


def model_keys(home: Home) -> list[TrustedKey]:
    return [k for k in home.trust().trust.keys if k.role == "model-signing"]


def test_init_makes_and_logs_both_keys(signing_home: Home) -> None:
    log_key, model_key = signing_home.trust().trust.keys
    assert (log_key.role, log_key.algorithm) == ("log", "ed25519")
    assert (model_key.role, model_key.algorithm, model_key.name) == (
        "model-signing",
        "ecdsa-p256-sha256",
        "release-key",
    )
    assert (model_key.valid_from_size, model_key.status) == (1, "active")
    pem = signing_home.keys_dir / f"{model_key.keyid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in pem.read_bytes().split(b"\n", 1)[0]
    private = serialization.load_pem_private_key(pem.read_bytes(), PASSPHRASE)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert [(e["event"], e["role"], e.get("algorithm")) for e in events(signing_home)] == [
        ("created", "log", "ed25519"),
        ("created", "model-signing", "ecdsa-p256-sha256"),
    ]
    assert verifies(signing_home) == 2


def test_init_without_a_model_signing_key_logs_one_event(tmp_path: Path) -> None:
    home = Home(tmp_path / "annex")
    home.init(ORIGIN)
    assert model_keys(home) == []
    with pytest.raises(TrustError, match="there is no model-signing key: create one with"):
        home.model_signer()


def test_a_second_active_key_is_refused_rotate_instead(signing_home: Home) -> None:
    with pytest.raises(InputError, match="is active: replace it with `annex keys rotate"):
        signing_home.create_model_signing_key("another")
    assert len(model_keys(signing_home)) == 1
    assert verifies(signing_home) == 2  # nothing appended


def test_rotate_model_signing_key_leaves_the_log_key(signing_home: Home) -> None:
    log_before = active_key(signing_home.trust().trust, "log")
    old, new = signing_home.rotate(role="model-signing", reason="yearly")
    assert (old.status, old.valid_until_size, old.reason) == ("retired", 2, "yearly")
    assert (new.status, new.valid_from_size, new.name) == ("active", 2, "release-key")
    assert new.algorithm == "ecdsa-p256-sha256" and new.keyid != old.keyid
    assert active_key(signing_home.trust().trust, "log") == log_before
    assert signing_home.model_signer().key == new
    last = events(signing_home)[-1]
    assert (last["event"], last["keyid"], last["previousKeyid"]) == (
        "rotated",
        new.keyid,
        old.keyid,
    )
    assert verifies(signing_home) == 3


def test_revoked_key_cannot_sign_and_a_new_one_can_be_made(signing_home: Home) -> None:
    [key] = model_keys(signing_home)
    revoked = signing_home.revoke(key.keyid[:10], reason="leaked")
    assert (revoked.status, revoked.valid_until_size, revoked.reason) == ("revoked", 2, "leaked")
    assert [k.status for k in signing_home.trust().trust.keys] == [
        "active",
        "revoked",
    ]  # no rotation
    with pytest.raises(TrustError, match=r"is revoked \(leaked\); create a new one"):
        signing_home.model_signer()
    made = signing_home.create_model_signing_key("release-key-2")
    assert (made.valid_from_size, made.status) == (3, "active")
    assert signing_home.model_signer().key == made
    assert [e["event"] for e in events(signing_home)] == [
        "created",
        "created",
        "revoked",
        "created",
    ]
    assert verifies(signing_home) == 4


def test_a_key_revoked_while_signing_logs_nothing(signing_home: Home) -> None:
    """The key is checked again inside the sequencer lock, when the release is appended."""
    signer = signing_home.model_signer()
    signing_home.revoke(signer.key.keyid)
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model:m", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://annex.dev/predicates/model-release/v1",
        "predicate": {},
    }
    with pytest.raises(TrustError, match="was revoked at entry 2 while the model was signed"):
        signing_home.append_release(signer.key.keyid, statement)
    assert verifies(signing_home) == 3


def test_wrong_or_missing_passphrase_is_a_clear_config_error(signing_home: Home) -> None:
    wrong = Home(signing_home.path, passphrase=b"wrong")
    with pytest.raises(ConfigError, match="wrong passphrase"):
        wrong.model_signer()
    with pytest.raises(ConfigError, match="ANNEX_KEY_PASSPHRASE"):
        Home(signing_home.path).model_signer()


def test_a_model_signing_key_never_signs_log_entries(signing_home: Home) -> None:
    """It is no note verifier, no envelope key, and an entry naming it fails verification."""
    index = signing_home.trust()
    [key] = model_keys(signing_home)
    assert len(index.verifiers) == 1
    with pytest.raises(AuthorityError, match=r"model-signing key .* may not sign gpu-inventory"):
        index.entry_signer(key.keyid, 5, GPU_INVENTORY)
    assert index.entry_signer(key.keyid, 5, MODEL_RELEASE).trusted == key


def test_trust_file_round_trips_with_both_algorithms(tmp_path: Path) -> None:
    log_key = Signer.generate(ORIGIN).trusted_key(role="log", from_size=0)
    model_key = ModelSigningKey.generate("release-key").trusted_key(from_size=1)
    trust = TrustFile(origin=ORIGIN, keys=(log_key, model_key))
    save_trust(tmp_path / "trust.json", trust)
    assert load_trust(tmp_path / "trust.json") == trust
    assert TrustIndex(load_trust(tmp_path / "trust.json")).get(model_key.keyid) == model_key


def _other_curve_der() -> str:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _compressed_der(model_key: TrustedKey) -> str:
    """The same P-256 key with a compressed point: a second encoding, hence refused."""
    public = serialization.load_der_public_key(model_key.raw_public_key)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    prefix = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")
    return base64.b64encode(prefix + point).decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"role": "log"}, "a log key must be ed25519, not ecdsa-p256-sha256"),
        ({"algorithm": "ed25519"}, "32-byte Ed25519"),
        ({"algorithm": "rsa"}, "keys.0.algorithm"),
        ({"public_key": base64.b64encode(b"\x30\x03junk").decode()}, "DER SubjectPublicKeyInfo"),
        ({"public_key": "other-curve"}, "EC P-256"),
        ({"public_key": "compressed"}, "canonical DER"),
    ],
)
def test_bad_model_signing_entries_are_named(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    model_key = ModelSigningKey.generate("release-key").trusted_key(from_size=1)
    data = model_key.model_dump(mode="json")
    if change.get("public_key") == "other-curve":
        change = {"public_key": _other_curve_der()}
    elif change.get("public_key") == "compressed":
        change = {"public_key": _compressed_der(model_key)}
    data.update(change)
    path = tmp_path / "trust.json"
    path.write_text(json.dumps({"version": 1, "origin": ORIGIN, "keys": [data]}))
    with pytest.raises(InputError, match=message) as caught:
        load_trust(path)
    assert str(path) in str(caught.value)


def test_an_ed25519_collector_key_cannot_claim_the_ec_algorithm() -> None:
    collector = Signer.generate("node-7").trusted_key(role="collector", from_size=0)
    data = collector.model_dump() | {"algorithm": "ecdsa-p256-sha256"}
    with pytest.raises(ValueError, match="DER SubjectPublicKeyInfo"):
        TrustedKey.model_validate(data)
