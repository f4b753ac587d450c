"""Who may sign what, cell by cell: every Annex predicate type against every kind of key.

The expectation comes from `allowed` below, the table of schemas/authority.py written out again
by hand (short names, no import of the table's sets or of `may_sign`), so a wrong table fails
here. Each cell is checked at every door:
- append: `Store.append_envelopes` with an envelope signed by that key (the log key also
  through `Store.append`), accepted or refused with nothing appended;
- the log: the same envelope written straight into a copy of the database, with everything else
  an attacker could want (tree nodes, lookup keys, a checkpoint signed by the log key itself):
  `verify_log` fails naming that entry, and `verify_entry` fails on its envelope and tlog-proof;
  where the key may sign, the same forgery verifies, so the rows themselves are sound.
A collector key is never registered for a log-only type or a model release: those cells are
refused at registration, in `Home.add_collector_key` and in a hand-edited trust file.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evidence.canonical import canonical_bytes
from evidence.dsse import Envelope, sign_envelope
from evidence.errors import AuthorityError, InputError, TrustError, VerificationError
from evidence.home import Home, active_key
from evidence.keys import ModelSigningKey, Signer, TrustIndex, load_model_signing_key, parse_trust
from evidence.store import Store
from evidence.verify import verify_entry, verify_log
from schemas.authority import ANNEX_PREDICATES
from schemas.statement import PREDICATE_BASE, STATEMENT_TYPE
from tests.evidence.forge import copy_database, forge_append

ORIGIN = "test.example/log"

# The table, restated: the types only the log key signs, and the one only the model-signing key.
LOG_ONLY = {"key-event", "report", "incident", "erasure", "sweep-run", "system-card"}
RELEASE = "model-release"
EVERY_TYPE = {
    "dataset",
    "dataset-lineage",
    "erasure",
    "eval-run",
    "gpu-inventory",
    "incident",
    "inference-batch",
    "key-event",
    "model-manifest",
    "model-release",
    "openlineage-run",
    "oversight-event",
    "report",
    "reviewer-attestation",
    "sweep-run",
    "system-card",
    "training-run",
}
COLLECTABLE = sorted(EVERY_TYPE - LOG_ONLY - {RELEASE})

LOG = "log key"
MODEL = "model-signing key"
FOR_IT = "collector registered for it"
FOR_OTHER = "collector registered for another type only"
REVOKED = "revoked collector"
UNKNOWN = "key not in the trust file"
ROLES = (LOG, MODEL, FOR_IT, FOR_OTHER, REVOKED, UNKNOWN)


def uri(short: str) -> str:
    return f"{PREDICATE_BASE}{short}/v1"


def allowed(role: str, short: str) -> bool:
    """Whether a key of `role` may sign a statement of type `short`, from the table alone."""
    if role == LOG:
        return short != RELEASE
    if role == MODEL:
        return short == RELEASE
    if role == FOR_IT:
        return short not in LOG_ONLY and short != RELEASE
    return False  # another type's collector, a revoked key, an unknown key


def registrable(role: str, short: str) -> bool:
    """A collector registered for `short` exists only where one may be registered."""
    return role != FOR_IT or short in COLLECTABLE


# A collector "registered for" a type no collector may hold is no cell: registration refuses it.
CELLS = [(s, role) for s in sorted(EVERY_TYPE) for role in ROLES if registrable(role, s)]


def cell_id(short: str, role: str) -> str:
    return f"{short}-by-{role.replace(' ', '-')}"


@dataclass
class Keys:
    """The keys of the shared log, by role; `make` numbers statements so none repeats."""

    home: Home
    log: Signer
    model: ModelSigningKey
    for_all: Signer  # registered for every collectable type
    gpu_only: Signer
    dataset_only: Signer
    revoked: Signer
    unknown: Signer
    counter: int = 0

    def signer(self, role: str, short: str) -> Signer | ModelSigningKey:
        if role == FOR_OTHER:
            return self.dataset_only if short == "gpu-inventory" else self.gpu_only
        return {
            LOG: self.log,
            MODEL: self.model,
            FOR_IT: self.for_all,
            REVOKED: self.revoked,
            UNKNOWN: self.unknown,
        }[role]

    def statement(self, short: str) -> dict[str, Any]:
        self.counter += 1
        digest = canonical_bytes({"n": self.counter, "kind": short})
        return {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": f"thing-{self.counter}", "digest": {"sha256": _sha(digest)}}],
            "predicateType": uri(short),
            "predicate": {"observedAt": "2026-11-24T08:00:00Z", "n": self.counter},
        }

    def envelope(self, role: str, short: str) -> tuple[dict[str, Any], Envelope]:
        made = self.statement(short)
        return made, sign_envelope(canonical_bytes(made), self.signer(role, short))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    home = Home(tmp_path_factory.mktemp("authority") / "annex")
    home.init(ORIGIN, model_signing_name="release-key")
    model_key = active_key(home.trust().trust, "model-signing")
    model = load_model_signing_key(
        home.keys_dir / f"{model_key.keyid}.pem", model_key.name, home.passphrase
    )
    made = Keys(
        home=home,
        log=home.signer(),
        model=model,
        for_all=Signer.generate("node-all"),
        gpu_only=Signer.generate("node-gpu"),
        dataset_only=Signer.generate("node-dataset"),
        revoked=Signer.generate("node-revoked"),
        unknown=Signer.generate("stranger"),
    )
    every = [uri(s) for s in COLLECTABLE]
    home.add_collector_key("node-all", made.for_all.public_bytes, every)
    home.add_collector_key("node-gpu", made.gpu_only.public_bytes, [uri("gpu-inventory")])
    home.add_collector_key("node-dataset", made.dataset_only.public_bytes, [uri("dataset")])
    home.add_collector_key("node-revoked", made.revoked.public_bytes, every)
    home.revoke(made.revoked.keyid, reason="node stolen")
    return made


@pytest.fixture(scope="module")
def store(keys: Keys) -> Iterator[Store]:
    with keys.home.open_store(write=True) as opened:
        yield opened


def test_the_matrix_covers_every_annex_predicate_type() -> None:
    """A type added to ANNEX_PREDICATES without a row here fails: the matrix must grow too."""
    assert {p.removeprefix(PREDICATE_BASE).removesuffix("/v1") for p in ANNEX_PREDICATES} == (
        EVERY_TYPE
    )
    assert len(ANNEX_PREDICATES) == len(EVERY_TYPE)


# -- registration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("short", sorted(LOG_ONLY | {RELEASE}))
def test_no_collector_is_registered_for_a_type_only_another_role_signs(
    keys: Keys, short: str
) -> None:
    node = Signer.generate("would-be")
    trust_before = keys.home.trust_path.read_bytes()
    with keys.home.open_store() as reader:
        size = reader.size()
    with pytest.raises(ValueError, match=f"a collector key may never sign {short}"):
        keys.home.add_collector_key("would-be", node.public_bytes, [uri(short)])
    with pytest.raises(ValueError, match=f"a collector key may never sign {short}"):
        keys.home.add_collector_key(
            "would-be", node.public_bytes, [uri("gpu-inventory"), uri(short)]
        )
    assert keys.home.trust_path.read_bytes() == trust_before
    with keys.home.open_store() as reader:
        assert reader.size() == size  # no key event either


@pytest.mark.parametrize("short", sorted(LOG_ONLY | {RELEASE}))
def test_a_trust_file_edited_to_register_one_is_refused(keys: Keys, short: str) -> None:
    """Someone who can write the trust file adds the type to a collector's list by hand."""
    body = json.loads(keys.home.trust_path.read_bytes())
    for key in body["keys"]:
        if key["keyid"] == keys.gpu_only.keyid:
            key["predicates"].append(uri(short))
    with pytest.raises(InputError, match=f"a collector key may never sign {short}"):
        parse_trust(json.dumps(body), what="edited trust file")


def test_a_collector_of_an_older_trust_file_signs_gpu_inventory_alone(keys: Keys) -> None:
    body = json.loads(keys.home.trust_path.read_bytes())
    for key in body["keys"]:
        if key["keyid"] == keys.gpu_only.keyid:
            del key["predicates"]
    index = TrustIndex(parse_trust(json.dumps(body), what="older trust file"))
    size = 10_000
    assert index.entry_signer(keys.gpu_only.keyid, size, uri("gpu-inventory"))
    for short in sorted(EVERY_TYPE - {"gpu-inventory"}):
        with pytest.raises(AuthorityError, match=f"may not sign {short} statements"):
            index.entry_signer(keys.gpu_only.keyid, size, uri(short))


def test_only_log_keys_sign_checkpoints(keys: Keys) -> None:
    index = keys.home.trust()
    assert [v.public_key for v in index.verifiers] == [keys.log.public_bytes]
    for signer in (keys.for_all, keys.gpu_only, keys.revoked):
        assert index.get(signer.keyid).keyid == signer.keyid  # trusted, for entries only


# -- append ---------------------------------------------------------------------------------------


def _refusal(role: str, short: str) -> type[Exception]:
    """What a refused cell raises: the role's authority is checked before the key's window."""
    if role == UNKNOWN or (role == REVOKED and short in COLLECTABLE):
        return TrustError
    return AuthorityError


@pytest.mark.parametrize(("short", "role"), CELLS, ids=[cell_id(*c) for c in CELLS])
def test_append(keys: Keys, store: Store, short: str, role: str) -> None:
    made, envelope = keys.envelope(role, short)
    before = store.size()
    if allowed(role, short):
        done = store.append_envelopes([envelope])
        proof = store.inclusion_proof(done.first_index)
        report = verify_entry(envelope, proof, keys.home.trust())
        assert report.keyid == keys.signer(role, short).keyid
        if role == LOG:  # the log's own signing path too
            again = store.append([keys.statement(short)])
            assert again.first_index == done.first_index + 1
        return
    refusal = _refusal(role, short)
    with pytest.raises(refusal) as caught:
        store.append_envelopes([envelope])
    if refusal is AuthorityError:
        assert f"may not sign {short} statements" in str(caught.value)
        assert keys.signer(role, short).keyid[:16] in str(caught.value)
    if role == LOG:
        with pytest.raises(AuthorityError, match=f"log key .* may not sign {short} statements"):
            store.append([made])
    assert store.size() == before


# -- the log and the proofs -----------------------------------------------------------------------


def _check_refused(error: VerificationError, role: str, short: str) -> None:
    if _refusal(role, short) is AuthorityError:
        assert isinstance(error, AuthorityError), error
        assert f"may not sign {short} statements" in str(error)
    elif role == UNKNOWN:
        assert "is not in the trust file" in str(error)
    else:
        assert "revoked and not valid at entry" in str(error)


@pytest.mark.parametrize(("short", "role"), CELLS, ids=[cell_id(*c) for c in CELLS])
def test_forged_into_the_log(
    keys: Keys, store: Store, tmp_path: Path, short: str, role: str
) -> None:
    """The envelope written into the database with a checkpoint by the log key itself."""
    _, envelope = keys.envelope(role, short)
    url = copy_database(keys.home.path / "annex.db", tmp_path / "forged.db")
    [index] = forge_append(url, [envelope], keys.log)
    trust = keys.home.trust()
    with Store.open(url) as forged:
        proof = forged.inclusion_proof(index)
        if allowed(role, short):
            assert verify_log(forged, trust).size == index + 1
            assert verify_entry(envelope, proof, trust).index == index
            return
        with pytest.raises(VerificationError) as caught:
            verify_log(forged, trust)
    assert caught.value.index == index
    assert str(caught.value).startswith(f"entry {index}: ")
    _check_refused(caught.value, role, short)
    with pytest.raises(VerificationError) as offline:
        verify_entry(envelope, proof, trust)
    if role != UNKNOWN:  # an unknown key has no window: the error names no position
        assert offline.value.index == index
    _check_refused(offline.value, role, short)


def test_a_forged_checkpoint_alone_does_not_help(keys: Keys, tmp_path: Path) -> None:
    """Without the log key the forger signs the checkpoint with their own: named at the entry
    still, since the entry's signer is checked first, and the proof's checkpoint is refused."""
    _, envelope = keys.envelope(FOR_OTHER, "eval-run")
    url = copy_database(keys.home.path / "annex.db", tmp_path / "forged.db")
    forger = keys.signer(FOR_OTHER, "eval-run")
    assert isinstance(forger, Signer)
    [index] = forge_append(url, [envelope], forger)
    with Store.open(url) as forged:
        with pytest.raises(AuthorityError) as caught:
            verify_log(forged, keys.home.trust())
        proof = forged.inclusion_proof(index)
    assert caught.value.index == index
    with pytest.raises(VerificationError, match="note is not signed by a trusted key"):
        verify_entry(envelope, proof, keys.home.trust())


def test_the_shared_log_verifies(keys: Keys, store: Store) -> None:
    """What the accepted cells appended is a sound log, signatures counted."""
    report = verify_log(store, keys.home.trust())
    assert report.size == store.size()
    assert base64.b64decode(report.to_json()["root"]) == store.root(report.size)
