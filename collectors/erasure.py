"""Erasure (GDPR Art. 17) and retention expiry: destroy vault keys, log a signed receipt.

Order of work, so that a failure never leaves a receipt for keys that survive unnoticed nor keys
destroyed with no receipt: the legal-hold check, then (one vault transaction) the keys are
deleted, the receipt is appended to the log, and only then the vault commits and is vacuumed.
If the process dies between the append and the vault commit, the receipt is logged and the keys
are still there: running the same command again destroys them and logs a second receipt.

A legal hold (an incident opened with `legalHold: true` and not closed, see
collectors/incidents.py) blocks both erasure and expiry, whatever its scope: evidence under
investigation must not be destroyed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from evidence.entry import rfc3339
from evidence.errors import InputError
from evidence.store import Store
from evidence.vault import Destroyed, Vault
from schemas.inference import ERASURE, GDPR_ERASURE, INFERENCE_BATCH, ErasurePredicate
from schemas.statement import STATEMENT_TYPE, predicate_type


@dataclass(frozen=True)
class Receipt:
    """A logged erasure: the entry that records it and what it says."""

    entry: int | None
    predicate: ErasurePredicate


def refuse_under_hold(store: Store, what: str) -> None:
    """Raises InputError naming the first legal hold in force."""
    holds = _holds(store)
    if holds:
        entry, incident = holds[0]
        raise InputError(
            f"legal hold by incident {incident} (entry {entry}) blocks {what}: "
            "close the incident or lift its hold first"
        )


def _holds(store: Store) -> list[tuple[int, str]]:
    """(entry, incident id) of every hold in force, from collectors/incidents.py when present."""
    try:
        from collectors.incidents import active_holds
    except ImportError:
        return _holds_from_log(store)
    return [(h.entry, h.incident_id) for h in active_holds(store)]


def _holds_from_log(store: Store) -> list[tuple[int, str]]:
    """The incident contract read directly: held when the newest entry holds and is no close."""
    newest: dict[str, tuple[int, dict[str, Any]]] = {}
    after: int | None = None
    while page := store.query(predicate_type=predicate_type("incident"), after=after, limit=500):
        for entry in page:
            if not store.signed_by_authority(entry):
                continue  # a forged close lifts nothing
            predicate = entry.statement.get("predicate", {})
            newest[str(predicate.get("incidentId"))] = (entry.index, predicate)
        after = page[-1].index
    return [
        (index, incident)
        for incident, (index, p) in sorted(newest.items(), key=lambda kv: kv[1][0])
        if p.get("legalHold") is True and p.get("action") != "close"
    ]


def batch_entries(store: Store, batches: tuple[str, ...]) -> tuple[int, ...]:
    """Entry indices of the inference batches named `<source sha256>#<batch number>`."""
    wanted: dict[str, set[int]] = {}
    for name in batches:
        source, _, number = name.partition("#")
        wanted.setdefault(source, set()).add(int(number))
    found = []
    for source, numbers in wanted.items():
        for entry in store.query(
            predicate_type=INFERENCE_BATCH, subject_digest=f"sha256:{source}", limit=10_000
        ):
            if entry.statement["predicate"]["batch"]["number"] in numbers:
                found.append(entry.index)
    return tuple(sorted(found))


def batches_naming(store: Store, pseudonyms: tuple[str, ...]) -> tuple[int, ...]:
    """Entry indices of the inference batches whose callers list one of these pseudonyms."""
    wanted = set(pseudonyms)
    found = []
    after: int | None = None
    while page := store.query(predicate_type=INFERENCE_BATCH, after=after, limit=200):
        for entry in page:
            callers = entry.statement["predicate"].get("callers", ())
            if any(c.get("pseudonym") in wanted for c in callers):
                found.append(entry.index)
        after = page[-1].index
    return tuple(found)


def receipt_statement(predicate: ErasurePredicate) -> dict[str, Any]:
    """Subject `erasure:<pseudonym>` (or `retention-expiry`), digest over the pseudonyms."""
    label = predicate.pseudonyms[0] if predicate.trigger == "request" else "retention-expiry"
    digest = hashlib.sha256(",".join(predicate.pseudonyms).encode()).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f"erasure:{label}", "digest": {"sha256": digest}}],
        "predicateType": ERASURE,
        "predicate": predicate.to_predicate(),
    }


def _predicate(
    destroyed: Destroyed, store: Store, *, trigger: str, reason: str | None, now: datetime
) -> ErasurePredicate:
    return ErasurePredicate.model_validate(
        {
            "observedAt": rfc3339(now),
            "trigger": trigger,
            "pseudonyms": destroyed.pseudonyms,
            "keysDestroyed": destroyed.keys,
            "pseudonymSecretsDestroyed": destroyed.secrets,
            "batches": _affected(store, destroyed, trigger),
            "reason": reason,
            "legalBasis": GDPR_ERASURE if trigger == "request" else None,
        }
    )


def _affected(store: Store, destroyed: Destroyed, trigger: str) -> tuple[int, ...]:
    """Batches whose keys went; on request also those naming the pseudonym (no content kept)."""
    found = set(batch_entries(store, destroyed.batches))
    if trigger == "request":
        found.update(batches_naming(store, destroyed.pseudonyms))
    return tuple(sorted(found))


def erase(store: Store, vault: Vault, caller: str, *, reason: str | None, now: datetime) -> Receipt:
    """Destroys a caller's pseudonym secret and content keys; logs the receipt."""
    refuse_under_hold(store, "erasure")
    with vault.transaction():
        destroyed = vault.destroy(caller)
        predicate = _predicate(destroyed, store, trigger="request", reason=reason, now=now)
        result = store.append([receipt_statement(predicate)])
    vault.vacuum()
    return Receipt(result.first_index, predicate)


def expire(store: Store, vault: Vault, *, now: datetime, dry_run: bool = False) -> Receipt:
    """Destroys every content key expired at `now`; logs one receipt when any was destroyed."""
    refuse_under_hold(store, "retention expiry")
    reason = f"retention expired at or before {rfc3339(now)}"
    if dry_run:
        found = vault.expired(int(now.timestamp()))
        return Receipt(
            None, _predicate(found, store, trigger="retention-expiry", reason=reason, now=now)
        )
    with vault.transaction():
        destroyed = vault.expire(int(now.timestamp()))
        predicate = _predicate(destroyed, store, trigger="retention-expiry", reason=reason, now=now)
        if not destroyed.keys:
            return Receipt(None, predicate)
        result = store.append([receipt_statement(predicate)])
    vault.vacuum()
    return Receipt(result.first_index, predicate)
