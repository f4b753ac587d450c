"""Finding AI systems in the log: the versions of their cards, as of a checkpoint.

Every report reads a system through here, so "the card at checkpoint N" means one thing: the
newest SYSTEM_CARD entry for `system:<id>` below N.
"""

from __future__ import annotations

from dataclasses import dataclass

from evidence.entry import Entry
from evidence.errors import InputError
from evidence.store import Store
from schemas.system_card import SUBJECT_PREFIX, SYSTEM_CARD, SystemCard, SystemCardPredicate

_PAGE = 500


@dataclass(frozen=True)
class CardVersion:
    entry: Entry
    predicate: SystemCardPredicate
    card: SystemCard


def card_history(store: Store, system_id: str, *, size: int | None = None) -> list[CardVersion]:
    """Every recorded version of the system's card below `size`, oldest first."""
    found: list[CardVersion] = []
    after: int | None = None
    while page := store.query(
        predicate_type=SYSTEM_CARD,
        subject_name=SUBJECT_PREFIX + system_id,
        after=after,
        limit=_PAGE,
    ):
        for entry in page:
            if size is not None and entry.index >= size:
                return found
            if not store.signed_by_authority(entry):
                continue  # a card only the log key may record
            predicate = SystemCardPredicate.model_validate(entry.statement["predicate"])
            found.append(CardVersion(entry, predicate, predicate.parsed()))
        after = page[-1].index
    return found


def known_history(store: Store, system_id: str, *, size: int | None = None) -> list[CardVersion]:
    """`card_history`, or InputError naming the systems the log does hold."""
    history = card_history(store, system_id, size=size)
    if not history:
        known = ", ".join(system_ids(store, size=size)) or "none yet: annex system add CARD.yaml"
        at = "" if size is None else f" at checkpoint {size}"
        raise InputError(f"no system {system_id!r} in the log{at}; systems: {known}")
    return history


def latest_card(store: Store, system_id: str, *, size: int | None = None) -> CardVersion:
    return known_history(store, system_id, size=size)[-1]


def system_ids(store: Store, *, size: int | None = None) -> list[str]:
    """Ids of every system with a card below `size`, sorted."""
    ids: set[str] = set()
    after: int | None = None
    while page := store.query(predicate_type=SYSTEM_CARD, after=after, limit=_PAGE):
        for entry in page:
            if size is not None and entry.index >= size:
                return sorted(ids)
            if not store.signed_by_authority(entry):
                continue
            ids.update(
                s.name.removeprefix(SUBJECT_PREFIX)
                for s in entry.subjects
                if s.name.startswith(SUBJECT_PREFIX)
            )
        after = page[-1].index
    return sorted(ids)


def system_summaries(store: Store) -> list[dict[str, str | int]]:
    """Each system's id, name, latest version and the entry of its latest card."""
    rows: list[dict[str, str | int]] = []
    for system_id in system_ids(store):
        latest = card_history(store, system_id)[-1]
        rows.append(
            {
                "system": system_id,
                "name": latest.card.name,
                "version": latest.card.version,
                "entry": latest.entry.index,
            }
        )
    return rows
