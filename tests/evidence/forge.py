"""What an attacker with write access to the log's database does: rows written without Annex.

`forge_append` inserts entries as the sequencer would (entry, subjects, lookup keys, the tree
nodes they complete) and, given a note signer, a checkpoint over the new tree. The append-only
triggers refuse UPDATE and DELETE only, so nothing has to be dropped for this. What the rows
carry is exactly what the attacker's keys can sign; everything else is as Annex writes it, so
a verifier that fails on them fails because of who signed, never because a row is malformed
(each test file checks that with a forgery by a key that may sign: it verifies).
"""

from __future__ import annotations

import copy
import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from collectors.incidents import OpenRequest, open_incident
from evidence import lookup
from evidence.dsse import Envelope, content_hash
from evidence.entry import statement_metadata
from evidence.merkle import CompactRange, leaf_hash
from evidence.note import Checkpoint, NoteSigner, sign_checkpoint
from evidence.store import ENTRY_COLUMNS, NODE_COLUMNS, SUBJECT_COLUMNS, Store
from evidence.tables import (
    checkpoints,
    entries,
    insert_rows,
    lookup_recent,
    meta,
    nodes,
    subjects,
)
from schemas.incident import IncidentCategory, IncidentPredicate


def copy_database(source: Path, target: Path) -> str:
    """A consistent copy of a SQLite log (WAL included); its database URL."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return f"sqlite:///{target}"


def forge_append(
    url: str, envelopes: Sequence[Envelope], checkpoint_signer: NoteSigner | None
) -> range:
    """Appends `envelopes` as rows, and a checkpoint signed by `checkpoint_signer` (none when
    None); the indices they got."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            origin = conn.execute(select(meta.c.value).where(meta.c.key == "origin")).scalar_one()
            tree = CompactRange()
            for leaf in conn.execute(select(entries.c.leaf_hash).order_by(entries.c.idx)).scalars():
                tree.append(leaf)
            first = tree.size
            now = int(time.time())
            rows: list[tuple[object, ...]] = []
            subject_rows: list[tuple[object, ...]] = []
            node_rows: list[tuple[object, ...]] = []
            keys: list[tuple[int, int, int]] = []
            for envelope in envelopes:
                data = envelope.canonical()
                leaf = leaf_hash(data)
                index = tree.size
                derived = statement_metadata(json.loads(envelope.payload))
                rows.append(
                    (
                        index,
                        leaf,
                        data,
                        envelope.signatures[0].keyid,
                        derived.predicate_type,
                        derived.observed_at_us,
                        now * 1_000_000,
                    )
                )
                subject_rows.extend(
                    (index, pos, s.name, s.algorithm, s.digest)
                    for pos, s in enumerate(derived.subjects)
                )
                digests = (s.digest for s in derived.subjects)
                lookup.entry_keys(index, content_hash(envelope), digests, keys)
                node_rows.extend((n.level, n.index, h) for n, h in tree.append(leaf)[1:])
            insert_rows(conn, entries, ENTRY_COLUMNS, rows)  # as the sequencer writes them
            if subject_rows:
                insert_rows(conn, subjects, SUBJECT_COLUMNS, subject_rows)
            if node_rows:
                insert_rows(conn, nodes, NODE_COLUMNS, node_rows)
            insert_rows(conn, lookup_recent, lookup.COLUMNS, keys)
            if checkpoint_signer is not None:
                root = tree.root()
                note = sign_checkpoint(Checkpoint(origin, tree.size, root), checkpoint_signer, now)
                conn.execute(
                    checkpoints.insert(),
                    {
                        "size": tree.size,
                        "root": root,
                        "note": note,
                        "issued_at_us": now * 1_000_000,
                    },
                )
    finally:
        engine.dispose()
    return range(first, first + len(envelopes))


def held_incident_and_its_close(store: Store, now: datetime) -> tuple[int, dict[str, Any]]:
    """Opens an incident with a legal hold (the log signs it) and returns its entry and the
    statement of a close that releases the hold, as Annex itself would write one: what an
    attacker then signs with a key that may not sign incidents."""
    request = OpenRequest(
        system="chat-prod", category=IncidentCategory.DEATH, aware_at=now, incident_id="inc-1"
    )
    opened, _ = open_incident(store, request, now=now)
    close = copy.deepcopy(store.get(opened).statement)
    close["predicate"].update(action="close", legalHold=False, openedEntry=opened)
    IncidentPredicate.model_validate(close["predicate"])
    return opened, close
