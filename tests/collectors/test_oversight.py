"""Oversight events and reviewer attestations: every action, strict feeds, dedup, pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collectors.oversight import (
    Attestation,
    Event,
    attestation_statement,
    event_statement,
    ingest_feed,
    parse_feed,
    record_event,
)
from evidence.errors import InputError
from evidence.home import Home
from evidence.store import Store
from schemas.oversight import (
    FEED_SUBJECT,
    OVERSIGHT_EVENT,
    REVIEWER_ATTESTATION,
    OversightAction,
    OversightEventPredicate,
    OversightLink,
    ReviewerAttestationPredicate,
)
from schemas.statement import Statement

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def pseudonymise(reviewer: str) -> str:
    """A keyed pseudonym, as the vault gives (the CLI tests use the vault itself)."""
    return "p-" + hmac.new(b"k" * 32, reviewer.encode(), hashlib.sha256).hexdigest()[:32]


@pytest.fixture
def sqlite_store(sqlite_home: Home) -> Iterator[Store]:
    with sqlite_home.open_store(write=True) as s:
        yield s


def line(**fields: Any) -> str:
    base = {
        "action": "override",
        "reviewer": "alice@example.com",
        "reason": "wrong dosage",
        "at": "2026-11-24T07:59:00Z",
    }
    return json.dumps({**base, **fields})


def feed(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("action", list(OversightAction))
def test_every_action_is_recorded(sqlite_store: Store, action: OversightAction) -> None:
    link = None if action in ("stop", "resume") else OversightLink(kind="request", id="req-7")
    event = Event(action, "alice@example.com", "because", NOW, link=link, system="triage")
    index = record_event(sqlite_store, event, pseudonymise)
    statement = sqlite_store.get(index).statement
    Statement.model_validate(statement)
    assert statement["predicateType"] == OVERSIGHT_EVENT
    predicate = OversightEventPredicate.model_validate(statement["predicate"])
    assert predicate.action == action
    assert predicate.reviewer == pseudonymise("alice@example.com")
    assert predicate.link == link
    assert predicate.system == "triage"
    assert statement["subject"][0]["name"] == f"reviewer:{predicate.reviewer}"
    assert "alice" not in json.dumps(statement)


def test_feed_links_and_fields() -> None:
    events = parse_feed(
        feed(
            line(request="req-1", system="triage"),
            "",
            line(action="approve", batch=12),
            line(action="stop", entry=0, at="2026-11-24T09:00:00+01:00"),
            line(action="resume"),
        ),
        source="feed.jsonl",
        now=NOW,
    )
    assert [e.action for e in events] == ["override", "approve", "stop", "resume"]
    assert [e.link for e in events] == [
        OversightLink(kind="request", id="req-1"),
        OversightLink(kind="batch", entry=12),
        OversightLink(kind="entry", entry=0),
        None,
    ]
    assert events[0].system == "triage"
    assert events[2].at == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "feed.jsonl line 2: Invalid JSON"),
        ("[1, 2]", "feed.jsonl line 2: Input should be an object"),
        (line(action="approved"), "line 2: action: Input should be 'review'"),
        (line(batch="12"), "line 2: batch: Input should be a valid integer"),
        (line(batch=True), "line 2: batch: Input should be a valid integer"),
        (line(batch=-1), "line 2: batch: Input should be greater than or equal to 0"),
        (line(reason=""), "line 2: reason: String should have at least 1 character"),
        (line(reviewer=7), "line 2: reviewer: Input should be a valid string"),
        (line(colour="red"), "line 2: colour: Extra inputs are not permitted"),
        (line(at="2026-11-24T07:00:00"), "line 2: at: timestamp '2026-11-24T07:00:00' has no UTC"),
        (line(at="yesterday"), "line 2: at: 'yesterday' is not an RFC 3339 timestamp"),
        (line(at="2026-12-24T07:00:00Z"), "line 2: at 2026-12-24T07:00:00Z is in the future"),
        (line(request="r", batch=1), "line 2: give at most one of request, batch, entry"),
        ('{"action": "stop"}', "line 2: reviewer: Field required"),
    ],
)
def test_bad_lines_are_named(bad: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        parse_feed(feed(line(), bad, line()), source="feed.jsonl", now=NOW)


def test_non_utf8_byte_is_named_with_line_and_column() -> None:
    data = feed(line(), line()).replace(b"wrong", b"wr\xffng", 1)
    data = feed(line()) + data
    with pytest.raises(InputError, match=r"f line 2: not UTF-8 \(byte 0xff at column \d+\)"):
        parse_feed(data, source="f", now=NOW)
    with pytest.raises(InputError, match="no oversight events"):
        parse_feed(b"\n  \n", source="f", now=NOW)


def test_ingest_is_atomic_and_recognises_a_feed_logged_before(sqlite_store: Store) -> None:
    store = sqlite_store
    size = store.size()
    with pytest.raises(InputError, match="line 3"):
        ingest_feed(
            store,
            feed(line(), line(), line(action="nope")),
            source="f",
            pseudonymise=pseudonymise,
            now=NOW,
        )
    assert store.size() == size  # nothing from the bad feed
    with pytest.raises(InputError, match=f"f line 2: batch {size} is not in the log"):
        ingest_feed(
            store, feed(line(), line(batch=size)), source="f", pseudonymise=pseudonymise, now=NOW
        )
    assert store.size() == size

    data = feed(line(request="a"), line(action="escalate", request="b"))
    first = ingest_feed(store, data, source="f", pseudonymise=pseudonymise, now=NOW)
    assert (first.first_index, first.count, first.already) == (size, 2, False)
    logged = [store.get(size + i).statement for i in range(2)]
    assert [s["predicate"]["action"] for s in logged] == ["override", "escalate"]
    assert all(
        s["subject"][1] == {"name": FEED_SUBJECT, "digest": {"sha256": first.digest}}
        for s in logged
    )
    again = ingest_feed(store, data, source="g", pseudonymise=pseudonymise, now=NOW)
    assert (again.first_index, again.count, again.already) == (size, 0, True)
    assert store.size() == size + 2
    # other bytes are another feed, even with the same events
    changed = ingest_feed(store, data + b"\n", source="f", pseudonymise=pseudonymise, now=NOW)
    assert not changed.already and changed.first_index == size + 2


def test_attestation(sqlite_store: Store) -> None:
    attestation = Attestation(
        reviewer="alice@example.com",
        training="Clinical AI oversight, level 2",
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=365),
        issuer="Example Hospital Academy",
        evidence_digest="a" * 64,
    )
    statement = attestation_statement(attestation, pseudonymise, now=NOW)
    Statement.model_validate(statement)
    assert statement["predicateType"] == REVIEWER_ATTESTATION
    predicate = ReviewerAttestationPredicate.model_validate(statement["predicate"])
    assert predicate.reviewer == pseudonymise("alice@example.com")
    assert (predicate.valid_from, predicate.valid_until) == (
        "2026-11-23T08:00:00Z",
        "2027-11-24T08:00:00Z",
    )
    assert statement["subject"][0]["name"] == f"reviewer:{predicate.reviewer}"
    backwards = Attestation("alice", "t", NOW, NOW - timedelta(days=1))
    with pytest.raises(InputError, match=r"validUntil .* is not after validFrom"):
        attestation_statement(backwards, pseudonymise, now=NOW)
    with pytest.raises(InputError, match="reviewer is empty"):
        event_statement(Event(OversightAction.STOP, " ", "r", NOW), pseudonymise)
