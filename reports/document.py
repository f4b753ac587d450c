"""The document model every report is built as: sections of points, each point a list of
labelled items (collected from the log, or declared in the system card) and a list of gaps.

Builders (annex_iv, oversight, gdpr) produce a `Document`; the renderer turns the same value
into HTML and PDF; the evidence bundle is cut from `Document.citations()`. Nothing here does I/O.

A point's coverage is judged from what it holds, never set by hand: no items is `missing`, items
with gaps `partial`, items and no gaps `complete`. A gap names what is missing and how to fill it,
so a report never shows a blank or placeholder where evidence should be.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from evidence.entry import Entry


class Source(StrEnum):
    COLLECTED = "collected"
    DECLARED = "declared"


class Coverage(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    MISSING = "missing"


@dataclass(frozen=True)
class Citation:
    """One log entry a collected statement rests on; `digest` is the RFC 9162 leaf hash (hex)."""

    index: int
    digest: str
    signer: str
    predicate_type: str
    observed_at: datetime | None
    logged_at: datetime

    @classmethod
    def of(cls, entry: Entry) -> Citation:
        return cls(
            index=entry.index,
            digest=entry.leaf_hash.hex(),
            signer=entry.keyid,
            predicate_type=entry.predicate_type,
            observed_at=entry.observed_at,
            logged_at=entry.logged_at,
        )

    @property
    def kind(self) -> str:
        """The predicate's short name: `gpu-inventory` for .../predicates/gpu-inventory/v1."""
        parts = self.predicate_type.rstrip("/").split("/")
        return parts[-2] if len(parts) >= 2 and parts[-1].startswith("v") else parts[-1]


# -- blocks: what an item shows ---------------------------------------------------------------


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Facts:
    """Label/value pairs, shown as a two-column list."""

    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Table:
    """A bounded table: builders summarise, the full list lives in the evidence bundle."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table row {row!r} has {len(row)} cells for {self.columns!r}")


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class Chart:
    """Data for a chart; the renderer draws it (SVG), builders never produce markup."""

    title: str
    kind: Literal["bar", "stacked-bar", "line"]
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    y_label: str = ""

    def __post_init__(self) -> None:
        for s in self.series:
            if len(s.values) != len(self.categories):
                raise ValueError(f"chart series {s.name!r} does not match its categories")


Block = Paragraph | Facts | Table | Chart


@dataclass(frozen=True)
class Gap:
    """Evidence neither collected nor declared: what is missing and how to supply it."""

    what: str
    fill: str


@dataclass(frozen=True)
class Item:
    """One labelled piece of a point. A collected item cites the entries it was read from."""

    source: Source
    heading: str
    blocks: tuple[Block, ...]
    citations: tuple[Citation, ...] = ()

    def __post_init__(self) -> None:
        if self.source is Source.COLLECTED and not self.citations:
            raise ValueError(f"collected item {self.heading!r} cites no entry")


@dataclass(frozen=True)
class Point:
    """A numbered requirement (Annex IV 2(g)) or a report section's sub-part."""

    ref: str
    title: str
    asks: str
    items: tuple[Item, ...] = ()
    gaps: tuple[Gap, ...] = ()

    @property
    def coverage(self) -> Coverage:
        if not self.items:
            return Coverage.MISSING
        return Coverage.PARTIAL if self.gaps else Coverage.COMPLETE

    @property
    def anchor(self) -> str:
        return "pt-" + "".join(c if c.isalnum() else "-" for c in self.ref).strip("-")


@dataclass(frozen=True)
class Section:
    title: str
    points: tuple[Point, ...]
    intro: tuple[Block, ...] = ()


@dataclass(frozen=True)
class SystemRef:
    id: str
    name: str
    version: str
    provider: str
    card_entry: int | None = None


@dataclass(frozen=True)
class CheckpointRef:
    """The signed checkpoint the report was built at: evidence is cut at `size`."""

    origin: str
    size: int
    root_hex: str
    note: str
    issued_at: datetime


@dataclass(frozen=True)
class Document:
    kind: Literal["annex-iv", "oversight", "ropa", "dpia-inputs"]
    title: str
    subtitle: str
    generated_at: datetime
    checkpoint: CheckpointRef
    sections: tuple[Section, ...]
    system: SystemRef | None = None
    period: tuple[datetime, datetime] | None = None
    notes: tuple[str, ...] = field(default=())

    def points(self) -> Iterator[Point]:
        for section in self.sections:
            yield from section.points

    def citations(self) -> tuple[Citation, ...]:
        """Every entry the document cites, once, in index order."""
        found: dict[int, Citation] = {}
        for point in self.points():
            for item in point.items:
                for c in item.citations:
                    found.setdefault(c.index, c)
        return tuple(found[i] for i in sorted(found))

    def gaps(self) -> tuple[tuple[Point, Gap], ...]:
        return tuple((p, g) for p in self.points() for g in p.gaps)

    def coverage(self) -> dict[Coverage, int]:
        counts = dict.fromkeys(Coverage, 0)
        for p in self.points():
            counts[p.coverage] += 1
        return counts
