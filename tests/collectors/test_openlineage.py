"""OpenLineage events: one object, an array or JSON Lines, checked whole, each a statement."""

from __future__ import annotations

import hashlib
import json
import traceback
from pathlib import Path
from typing import Any

import pytest

from collectors.openlineage import EVENT_PREFIX, log_events, parse_events, plan_ingest, statement_of
from evidence.errors import InputError
from evidence.home import Home
from evidence.store import Store
from schemas.lineage import OPENLINEAGE_RUN, name_digest
from schemas.statement import Statement
from tests.collectors.lineage_data import RUN_ID, complete_event, event
from tests.spawned import TIMEOUT_S, run_spawned


def jsonl(*events: dict[str, object]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def test_the_spec_examples_become_statements_with_the_event_kept_as_given() -> None:
    start, complete = event("START", custom={"kept": True}), complete_event()
    parsed = parse_events(jsonl(start, complete), "events.jsonl")
    assert [p.raw.line for p in parsed] == [1, 2]
    statement = statement_of(parsed[1], "events.jsonl", "ab" * 32)
    Statement.model_validate(statement)
    assert statement["predicateType"] == OPENLINEAGE_RUN
    names = [s["name"] for s in statement["subject"]]
    assert names == [
        "ol:my-namespace/my-job",
        "ol:my-namespace/my-input",
        "ol:my-namespace/my-output",
        f"ol-event:{RUN_ID}",
    ]
    job = statement["subject"][0]
    assert job["digest"] == {"sha256": hashlib.sha256(b"ol:my-namespace/my-job").hexdigest()}
    predicate = statement["predicate"]
    assert predicate["event"] == complete  # unchanged, facets included
    assert predicate["eventType"] == "COMPLETE"
    assert predicate["outputs"] == [{"namespace": "my-namespace", "name": "my-output"}]
    assert predicate["source"] == {"name": "events.jsonl", "sha256": "ab" * 32, "line": 2}
    assert statement_of(parsed[0], "x", "ab" * 32)["predicate"]["event"]["custom"] == {"kept": True}


def test_one_object_an_array_and_a_pretty_printed_object_are_read() -> None:
    one = json.dumps(event(), indent=2).encode()
    assert len(parse_events(one, "one.json")) == 1
    both = json.dumps([event(), complete_event()]).encode()
    assert len(parse_events(both, "both.json")) == 2


def test_event_type_is_optional() -> None:
    body = event()
    del body["eventType"]
    assert parse_events(json.dumps(body).encode(), "e.json")[0].model.event_type is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("eventTime"), "events.jsonl:2: field eventTime: Field required"),
        (lambda e: e["run"].pop("runId"), "events.jsonl:2: field run.runId: Field required"),
        (lambda e: e["job"].pop("namespace"), "field job.namespace: Field required"),
        (lambda e: e["job"].pop("name"), "field job.name: Field required"),
        (lambda e: e.pop("producer"), "field producer: Field required"),
        (lambda e: e.pop("schemaURL"), "field schemaURL: Field required"),
        (lambda e: e.update(eventType="DONE"), "field eventType: Input should be"),
        (lambda e: e.update(eventTime="yesterday"), "field eventTime: Value error"),
        (lambda e: e.update(inputs=[{"name": "x"}]), "field inputs.0.namespace: Field required"),
    ],
)
def test_a_missing_or_wrong_field_names_the_line_and_field(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    bad = event()
    mutate(bad)
    with pytest.raises(InputError) as caught:
        parse_events(jsonl(event(), bad), "events.jsonl")
    assert message in str(caught.value)


def test_a_malformed_line_and_a_non_utf8_byte_name_the_line() -> None:
    with pytest.raises(InputError, match=r"^events.jsonl:2 is not valid JSON"):
        parse_events(jsonl(event()) + b'{"eventType": \n', "events.jsonl")
    with pytest.raises(InputError, match=r"^events.jsonl:2: byte 0xff is not UTF-8"):
        parse_events(jsonl(event()) + b'{"a": "\xff"}\n', "events.jsonl")
    with pytest.raises(InputError, match=r"events.jsonl:1: an OpenLineage event is a JSON object"):
        parse_events(b"42\n", "events.jsonl")
    with pytest.raises(InputError, match=r"duplicate key 'run'"):
        parse_events(b'{"run": {}, "run": {}}\n{"a": 1}\n', "events.jsonl")
    with pytest.raises(InputError, match="no events"):
        parse_events(b"\n\n", "events.jsonl")


def test_the_same_event_twice_is_planned_once_and_a_logged_one_is_recognised(
    store: Store,
) -> None:
    parsed = parse_events(jsonl(event(), event(), complete_event()), "e.jsonl")
    plan = plan_ingest(store, parsed)
    assert len(plan.new) == 2 and plan.known == {}
    first = store.append([statement_of(p, "e.jsonl", "00" * 32) for p in plan.new]).first_index
    again = plan_ingest(store, parse_events(jsonl(complete_event()), "other.jsonl"))
    assert again.new == []
    assert again.known == {parsed[2].digest: first + 1}


def test_name_digest_is_sha256_of_the_name() -> None:
    assert name_digest("ol:a/b") == hashlib.sha256(b"ol:a/b").hexdigest()


def _events(count: int) -> bytes:
    return jsonl(*(event(run_id=f"00000000-0000-4000-8000-{n:012d}") for n in range(count)))


def test_log_events_appends_the_new_events_once_and_names_the_logged_ones(store: Store) -> None:
    base = store.size()  # the log's own key event
    parsed = parse_events(_events(3), "e.jsonl")
    first = log_events(store, parsed[:2], source="e.jsonl", source_sha256="00" * 32)
    assert first.first_index == base and len(first.statements) == 2
    assert first.where() == {parsed[0].digest: base, parsed[1].digest: base + 1}
    again = log_events(store, parsed, source="again.jsonl", source_sha256="11" * 32)
    assert again.first_index == base + 2
    assert [e.digest for e in again.plan.new] == [parsed[2].digest]
    assert again.where() == {p.digest: base + i for i, p in enumerate(parsed)}
    none_new = log_events(store, parsed, source="third.jsonl", source_sha256="22" * 32)
    assert none_new.first_index is None and none_new.statements == []
    assert store.size() == base + 3


def test_events_logged_by_another_writer_after_the_plan_are_not_logged_again(
    home: Home, store: Store
) -> None:
    """The plan is made again under the sequencer lock: what another process logged between
    the first plan and the lock is found there, not appended a second time."""
    base = store.size()
    parsed = parse_events(_events(4), "e.jsonl")
    locked = store.append_locked

    def other_writer_first(build: Any, **kwargs: Any) -> Any:
        with home.open_store(write=True) as other:  # its own engine: another process's view
            other.append([statement_of(p, "other", "33" * 32) for p in parsed[1:3]])
        return locked(build, **kwargs)

    store.append_locked = other_writer_first  # type: ignore[method-assign]
    logged = log_events(store, parsed, source="e.jsonl", source_sha256="00" * 32)
    assert [e.digest for e in logged.plan.new] == [parsed[0].digest, parsed[3].digest]
    assert logged.plan.known == {parsed[1].digest: base, parsed[2].digest: base + 1}
    assert logged.first_index == base + 2 and store.size() == base + 4
    assert logged.where() == {
        parsed[0].digest: base + 2,
        parsed[1].digest: base,
        parsed[2].digest: base + 1,
        parsed[3].digest: base + 3,
    }


WRITERS = 4


def _log_worker(path: str, url: str | None, data: bytes, start: Any, results: Any) -> None:
    try:
        with Home(Path(path), url).open_store(write=True) as store:
            parsed = parse_events(data, "feed.jsonl")
            start.wait(timeout=TIMEOUT_S)
            logged = log_events(store, parsed, source="feed.jsonl", source_sha256="00" * 32)
            results.put((len(logged.plan.new), None))
    except BaseException:
        results.put((0, traceback.format_exc()))


def test_writers_in_several_processes_log_each_event_once(home: Home, store: Store) -> None:
    """A server and a CLI (here: four processes) logging the same feed at once."""
    base = store.size()
    data = _events(30)
    args = [(str(home.path), home.database_url, data) for _ in range(WRITERS)]
    reports = run_spawned(_log_worker, args)
    assert [error for _, error in reports if error] == []
    assert sum(appended for appended, _ in reports) == 30
    assert store.size() == base + 30
    digests = [
        s.digest
        for e in store.query(limit=100)
        for s in e.subjects
        if s.name.startswith(EVENT_PREFIX)
    ]
    assert sorted(digests) == sorted(p.digest for p in parse_events(data, "x"))
