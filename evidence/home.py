"""The data directory: the log database, the signing keys and the trust file, and their life.

Layout (default `~/.annex`):
    annex.db            the SQLite log (unless a database URL points elsewhere)
    keys/<keyid>.pem    private keys (Ed25519 log keys, EC P-256 model-signing keys), mode
                        0600, encrypted when a passphrase is set
    trust.json          the public keys and their validity windows: what an auditor needs

Key changes (create, rotate, revoke) happen inside the log's sequencer lock and are logged as
key-event statements, so the position where a key stopped signing is fixed by the tree.
At most one log key and one model-signing key are active at a time.
The trust file is written before the key event commits: a crash in between leaves the change
in effect but unlogged, never a log signed by a key the trust file does not list.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from evidence.canonical import canonical_bytes
from evidence.dsse import sign_envelope
from evidence.entry import rfc3339
from evidence.errors import ConfigError, InputError, TrustError
from evidence.keys import (
    ModelSigningKey,
    Signer,
    TrustIndex,
    find_key,
    keyid_of,
    load_model_signing_key,
    load_private_key,
    load_trust,
    save_trust,
    utc_now,
    write_private_key,
)
from evidence.model_signature import ModelSigner
from evidence.note import check_key_name
from evidence.store import AppendResult, Store
from schemas.authority import DEFAULT_COLLECTOR_PREDICATES
from schemas.key_event import KEY_EVENT, KeyEvent
from schemas.statement import STATEMENT_TYPE
from schemas.trust import KeyRole, KeyStatus, TrustedKey, TrustFile

RotatableRole = Literal["log", "model-signing"]
CREATE_MODEL_KEY = "annex keys create --role model-signing"


@dataclass
class _Cached:
    stamp: tuple[int, int, int] | None = None
    trust: TrustIndex | None = None
    signer: Signer | None = None


@dataclass(frozen=True)
class Home:
    path: Path
    database_url: str | None = None
    passphrase: bytes | None = None
    _cache: _Cached = field(default_factory=_Cached, compare=False, repr=False)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.path / 'annex.db'}"

    @property
    def keys_dir(self) -> Path:
        return self.path / "keys"

    @property
    def trust_path(self) -> Path:
        return self.path / "trust.json"

    # -- the Keys protocol of the store: re-read when the trust file changes ---------------------

    def _refresh(self) -> _Cached:
        try:
            st = self.trust_path.stat()
        except FileNotFoundError:
            raise ConfigError(
                f"{self.path} is not an Annex data directory: run `annex init` first"
            ) from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._cache.stamp:
            self._cache.trust = TrustIndex(load_trust(self.trust_path))
            self._cache.signer = None
            self._cache.stamp = stamp
        return self._cache

    def trust(self) -> TrustIndex:
        index = self._refresh().trust
        assert index is not None
        return index

    def signer(self) -> Signer:
        cache = self._refresh()
        if cache.signer is None:
            key = active_log_key(self.trust().trust)
            cache.signer = load_private_key(self._key_file(key.keyid), key.name, self.passphrase)
            if cache.signer.keyid != key.keyid:
                raise ConfigError(f"key file {self._key_file(key.keyid)} holds another key")
        return cache.signer

    def _key_file(self, keyid: str) -> Path:
        return self.keys_dir / f"{keyid}.pem"

    # -- model releases -----------------------------------------------------------------------

    def model_signer(self) -> ModelSigner:
        """The active model-signing key, loaded once to check the passphrase and the file.

        Refuses (TrustError) when no model-signing key is active: none made yet, or the last
        one retired or revoked.
        """
        trusted = active_key(self.trust().trust, "model-signing")
        path = self._key_file(trusted.keyid)
        key = load_model_signing_key(path, trusted.name, self.passphrase)
        if key.keyid != trusted.keyid:
            raise ConfigError(f"key file {path} holds another key")
        return ModelSigner(trusted, path, self.passphrase)

    def append_release(self, keyid: str, statement: Mapping[str, Any]) -> int:
        """Logs a release as the model-signing key `keyid`'s own signed statement; its index.

        The envelope is signed with that key, since only a model-signing key may say a model
        was released (schemas/authority.py). The key must still be active inside the sequencer
        lock, so a key revoked while the model was being signed cannot slip a release in.
        """
        trusted = find_key(self.trust().trust, keyid)
        key = load_model_signing_key(self._key_file(trusted.keyid), trusted.name, self.passphrase)
        payload = canonical_bytes(statement, what="release statement")
        envelope = sign_envelope(payload, key)

        def still_active(_size: int) -> None:
            now = find_key(self.trust().trust, keyid)
            if now.status != "active":
                raise TrustError(
                    f"model-signing key {now.keyid[:16]} ({now.name}) was {now.status} at "
                    f"entry {now.valid_until_size} while the model was signed: nothing logged"
                )

        with self.open_store(write=True) as store:
            done = store.append_envelopes([envelope], labels=["release"], inside=still_active)
            return done.first_index

    # -- opening and creating -----------------------------------------------------------------

    def open_store(self, *, write: bool = False) -> Store:
        """Opens the log; `write` also loads the signing key (and checks the passphrase)."""
        self.trust()  # a clear error when the directory is not initialised
        store = Store.open(self.db_url, keys=self if write else None, trust=self.trust)
        if write:
            self.signer()
        if store.origin != self.trust().trust.origin:
            raise ConfigError(
                f"the database holds log {store.origin!r} but {self.trust_path} is for "
                f"{self.trust().trust.origin!r}"
            )
        return store

    def init(self, origin: str, *, model_signing_name: str | None = None) -> AppendResult:
        """Creates the directory, the database, the first key and the trust file.

        With `model_signing_name`, also a model-signing key of that name, logged right after
        the log key (entries 0 and 1); without, the log holds the one key event at entry 0.
        """
        check_key_name(origin)
        if model_signing_name is not None:
            check_key_name(model_signing_name)
        if self.trust_path.exists():
            raise ConfigError(f"{self.path} is already an Annex data directory")
        created = not self.path.exists()
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.path.chmod(0o700)  # also when the directory existed: it will hold keys
            self.keys_dir.mkdir(mode=0o700, exist_ok=True)
            store = Store.create(self.db_url, origin, keys=self)
            signer = Signer.generate(origin)
            write_private_key(self._key_file(signer.keyid), signer, self.passphrase)
            keys = [signer.trusted_key(role="log", from_size=0)]
            if model_signing_name is not None:
                keys.append(self._new_model_key(model_signing_name, 1))
            save_trust(self.trust_path, TrustFile(origin=origin, keys=tuple(keys)))
            with store:
                return store.append_locked(lambda size: [key_event("created", k) for k in keys])
        except BaseException:
            if created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    # -- key life -----------------------------------------------------------------------------

    def rotate(
        self, *, role: RotatableRole = "log", reason: str | None = None
    ) -> tuple[TrustedKey, TrustedKey]:
        """Retires the active key of `role` and makes a new one; returns (old, new)."""
        result: list[TrustedKey] = []

        def build(size: int) -> list[dict[str, Any]]:
            old, new = self._rotate_at(size, reason, role)
            result.extend((old, new))
            return [key_event("rotated", new, previous=old, reason=reason)]

        with self.open_store(write=True) as store:
            store.append_locked(build)
        return result[0], result[1]

    def _rotate_at(
        self, size: int, reason: str | None, role: RotatableRole = "log"
    ) -> tuple[TrustedKey, TrustedKey]:
        trust = self.trust().trust
        old = active_key(trust, role)
        if role == "log":
            signer = Signer.generate(trust.origin)
            write_private_key(self._key_file(signer.keyid), signer, self.passphrase)
            new = signer.trusted_key(role="log", from_size=size)
        else:
            new = self._new_model_key(old.name, size)
        ended = _end(old, "retired", size, reason)
        self._save(trust, [ended, new])
        return ended, new

    def _new_model_key(self, name: str, size: int) -> TrustedKey:
        """A new model-signing key: its private key file written, its trust entry returned."""
        key = ModelSigningKey.generate(name)
        write_private_key(self._key_file(key.keyid), key, self.passphrase)
        return key.trusted_key(from_size=size)

    def create_model_signing_key(self, name: str) -> TrustedKey:
        """Makes the model-signing key, refusing while another is active (rotate that one)."""
        check_key_name(name)
        created: list[TrustedKey] = []

        def build(size: int) -> list[dict[str, Any]]:
            trust = self.trust().trust
            active = [k for k in trust.keys if k.role == "model-signing" and k.status == "active"]
            if active:
                raise InputError(
                    f"model-signing key {active[0].keyid[:16]} ({active[0].name}) is active: "
                    "replace it with `annex keys rotate --role model-signing`"
                )
            key = self._new_model_key(name, size)
            self._save(trust, [key])
            created.append(key)
            return [key_event("created", key)]

        with self.open_store(write=True) as store:
            store.append_locked(build)
        return created[0]

    def revoke(self, keyid: str, *, reason: str | None = None) -> TrustedKey:
        """Ends a key's validity now; the active log key is first replaced by a new one."""
        revoked: list[TrustedKey] = []

        def build(size: int) -> list[dict[str, Any]]:
            key = find_key(self.trust().trust, keyid)
            if key.status == "revoked":
                raise InputError(f"key {key.keyid[:16]} is already revoked")
            events = []
            if key.status == "active" and key.role == "log":
                old, new = self._rotate_at(size, reason)
                events.append(key_event("rotated", new, previous=old, reason=reason))
                key = old
            end = size if key.valid_until_size is None else key.valid_until_size
            done = _end(key, "revoked", end, reason)
            self._save(self.trust().trust, [done])
            revoked.append(done)
            events.append(key_event("revoked", done, reason=reason))
            return events

        with self.open_store(write=True) as store:
            store.append_locked(build)
        return revoked[0]

    def add_collector_key(
        self,
        name: str,
        public_key: bytes,
        predicates: Sequence[str] = DEFAULT_COLLECTOR_PREDICATES,
    ) -> TrustedKey:
        """Trusts a remote collector's Ed25519 key from the current position on, for the
        predicate types it may sign (full URIs) and no others."""
        check_key_name(name)
        added: list[TrustedKey] = []

        def build(size: int) -> list[dict[str, Any]]:
            key = TrustedKey(
                keyid=keyid_of(public_key),
                name=name,
                role="collector",
                public_key=base64.b64encode(public_key).decode(),
                valid_from=utc_now(),
                valid_from_size=size,
                predicates=tuple(predicates),
            )
            if key.keyid in {k.keyid for k in self.trust().trust.keys}:
                raise InputError(f"key {key.keyid[:16]} is already in the trust file")
            self._save(self.trust().trust, [key])
            added.append(key)
            return [key_event("created", key)]

        with self.open_store(write=True) as store:
            store.append_locked(build)
        return added[0]

    def _save(self, trust: TrustFile, changed: list[TrustedKey]) -> None:
        by_id = {k.keyid: k for k in changed}
        keys = [by_id.pop(k.keyid, k) for k in trust.keys] + list(by_id.values())
        save_trust(self.trust_path, TrustFile(origin=trust.origin, keys=tuple(keys)))


def default_model_signing_name(origin: str) -> str:
    """The model-signing key's name when none is given: the log's origin, suffixed."""
    return f"{origin}/model-signing"


def active_log_key(trust: TrustFile) -> TrustedKey:
    return active_key(trust, "log")


def active_key(trust: TrustFile, role: KeyRole) -> TrustedKey:
    """The one active key of `role`: exactly one log key; one model-signing key, if any."""
    active = [k for k in trust.keys if k.role == role and k.status == "active"]
    if role == "log" and len(active) != 1:
        raise ConfigError(f"the trust file must list exactly one active log key, not {len(active)}")
    if len(active) > 1:
        raise ConfigError(f"the trust file lists {len(active)} active {role} keys, not one")
    if not active:
        raise TrustError(_no_active(trust, role))
    return active[0]


def _no_active(trust: TrustFile, role: KeyRole) -> str:
    ended = [k for k in trust.keys if k.role == role]
    if not ended:
        return f"there is no {role} key: create one with `{CREATE_MODEL_KEY}`"
    last = ended[-1]
    why = f" ({last.reason})" if last.reason else ""
    return (
        f"no {role} key is active: {last.keyid[:16]} ({last.name}) is {last.status}{why}; "
        f"create a new one with `{CREATE_MODEL_KEY}`"
    )


def _end(key: TrustedKey, status: KeyStatus, size: int, reason: str | None) -> TrustedKey:
    return key.model_copy(
        update={
            "status": status,
            "valid_until": key.valid_until or utc_now(),
            "valid_until_size": size,
            "reason": reason or key.reason,
        }
    )


def key_event(
    event: Literal["created", "rotated", "revoked"],
    key: TrustedKey,
    *,
    previous: TrustedKey | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The statement that logs a key's creation, rotation or revocation."""
    predicate = KeyEvent(
        observedAt=rfc3339(utc_now()),
        event=event,
        keyid=key.keyid,
        name=key.name,
        role=key.role,
        algorithm=key.algorithm,
        publicKey=key.public_key,
        validFromSize=key.valid_from_size,
        validUntilSize=key.valid_until_size,
        previousKeyid=None if previous is None else previous.keyid,
        reason=reason,
        predicates=None if key.predicates is None else list(key.predicates),
    ).model_dump(exclude_none=True)
    subject = [{"name": f"key:{key.name}", "digest": {"sha256": key.keyid}}]
    if previous is not None:
        subject.append({"name": f"key:{previous.name}", "digest": {"sha256": previous.keyid}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": KEY_EVENT,
        "predicate": predicate,
    }
