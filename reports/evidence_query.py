"""What every report builder reads the log with: entries of one kind cut at a checkpoint, the
systems' card history and served inference batches, and the small helpers that turn entries
into labelled document items (collected items cite what they counted)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collectors.inference_log import DEFAULT_DAYS
from evidence.entry import Entry
from evidence.errors import InputError
from evidence.store import Store
from reports.document import (
    Block,
    CheckpointRef,
    Citation,
    Item,
    Paragraph,
    Source,
    SystemRef,
)
from reports.systems import CardVersion, known_history
from schemas.inference import INFERENCE_BATCH, InferenceBatchPredicate
from schemas.statement import parse_timestamp

_PAGE = 500
MAX_ROWS = 50  # rows of any per-thing table (stops, reviewers); the bundle holds the rest
SIX_MONTHS_DAYS = DEFAULT_DAYS  # Art 19(1), 26(6): six calendar months are at most 184 days


def checkpoint_ref(store: Store, at: int | None) -> CheckpointRef:
    """The signed checkpoint evidence is cut at: exactly `at` entries, or the newest."""
    if at is not None and at < 1:
        raise InputError(f"--at {at}: a checkpoint holds at least one entry")
    cp = store.checkpoint(at)
    return CheckpointRef(
        origin=store.origin,
        size=cp.size,
        root_hex=cp.root.hex(),
        note=cp.note,
        issued_at=cp.issued_at,
    )


def scan(store: Store, predicate_type: str, size: int, **filters: Any) -> Iterator[Entry]:
    """Entries of one kind below `size`, in index order (`filters` as Store.query takes them),
    signed with authority: an entry whose signer may not sign its type is no evidence."""
    after: int | None = None
    while page := store.query(predicate_type=predicate_type, after=after, limit=_PAGE, **filters):
        for entry in page:
            if entry.index >= size:
                return
            if store.signed_by_authority(entry):
                yield entry
        after = page[-1].index


def cite(entries: Iterable[Entry]) -> tuple[Citation, ...]:
    seen: dict[int, Citation] = {}
    for entry in entries:
        seen.setdefault(entry.index, Citation.of(entry))
    return tuple(seen[i] for i in sorted(seen))


def declared(heading: str, *blocks: Block) -> Item:
    return Item(Source.DECLARED, heading, tuple(blocks))


def collected(heading: str, entries: Iterable[Entry], *blocks: Block) -> Item:
    return Item(Source.COLLECTED, heading, tuple(blocks), cite(entries))


def bullets(values: Iterable[str]) -> tuple[Paragraph, ...]:
    """One paragraph per value; bulleted when there are several."""
    found = list(values)
    return tuple(Paragraph(v if len(found) == 1 else f"• {v}") for v in found)


def system_ref(version: CardVersion) -> SystemRef:
    card = version.card
    return SystemRef(card.id, card.name, card.version, card.provider.name, version.entry.index)


def history(store: Store, system_id: str, size: int) -> list[CardVersion]:
    """Every card version below `size`; InputError naming the known systems when there is none."""
    return known_history(store, system_id, size=size)


def model_digests(versions: Iterable[CardVersion]) -> set[str]:
    """The base-model and adapter digests any version of the card resolved to."""
    return {c.digest for v in versions for c in v.predicate.components if c.role != "dataset"}


@dataclass(frozen=True)
class Served:
    """One inference batch and the requests in it served by the system's models."""

    entry: Entry
    predicate: InferenceBatchPredicate
    requests: int
    first: datetime | None


def served_batches(
    store: Store, digests: set[str], size: int, period: tuple[datetime, datetime] | None = None
) -> list[Served]:
    """Inference batches that served one of `digests`; in the period by their first request."""
    found: dict[int, Served] = {}
    for digest in sorted(digests):
        for entry in scan(store, INFERENCE_BATCH, size, subject_digest=f"sha256:{digest}"):
            if entry.index in found:
                continue
            predicate = InferenceBatchPredicate.model_validate(entry.statement["predicate"])
            first = (
                None
                if predicate.time_range is None
                else parse_timestamp(predicate.time_range.first)
            )
            moment = first or entry.observed_at or entry.logged_at
            if period is not None and not period[0] <= moment < period[1]:
                continue
            requests = sum(m.requests for m in predicate.models if m.digest in digests)
            found[entry.index] = Served(entry, predicate, requests, first)
    return [found[i] for i in sorted(found)]


def retention_text(p: InferenceBatchPredicate) -> str:
    r = p.retention
    if not r.content:
        return "content not retained (records and line digests only, kept in the log)"
    return f"content retained encrypted, class {r.class_ or 'unnamed'}, {r.days} days"


def day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def percent(part: int, whole: int) -> str:
    return (
        "n/a (nothing to divide by)"
        if whole == 0
        else f"{100 * part / whole:.1f}% ({part} of {whole})"
    )
