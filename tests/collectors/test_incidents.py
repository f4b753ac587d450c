"""Incidents: Art 73 deadlines per category, the frozen snapshot, legal holds set and released."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors.incidents import (
    Change,
    Hold,
    OpenRequest,
    active_holds,
    close_incident,
    deadline_table,
    find_incident,
    incident_states,
    load_deadline_table,
    open_incident,
    time_left,
    update_incident,
)
from evidence.entry import rfc3339
from evidence.errors import ConfigError, InputError
from evidence.home import Home
from evidence.store import Store
from schemas.incident import INCIDENT, IncidentCategory, IncidentPredicate
from schemas.model import MODEL_MANIFEST, MODEL_RELEASE
from schemas.statement import STATEMENT_TYPE, Statement

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
AWARE = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def model_statement(
    name: str, content: bytes, predicate_type: str = MODEL_MANIFEST
) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": hashlib.sha256(content).hexdigest()}}],
        "predicateType": predicate_type,
        "predicate": {"observedAt": "2026-11-19T08:00:00Z"},
    }


def open_one(
    store: Store, category: IncidentCategory, **kwargs: Any
) -> tuple[int, IncidentPredicate]:
    request = OpenRequest(system="chat-prod", category=category, aware_at=AWARE, **kwargs)
    return open_incident(store, request, now=NOW)


@pytest.mark.parametrize(
    ("category", "days"),
    [
        (IncidentCategory.DEATH, 10),
        (IncidentCategory.CRITICAL_INFRASTRUCTURE, 2),
        (IncidentCategory.WIDESPREAD_INFRINGEMENT, 2),
        (IncidentCategory.HEALTH, 15),
        (IncidentCategory.FUNDAMENTAL_RIGHTS, 15),
        (IncidentCategory.PROPERTY_OR_ENVIRONMENT, 15),
        (IncidentCategory.OTHER, 15),
    ],
)
def test_deadline_per_category_in_calendar_days(
    store: Store, category: IncidentCategory, days: int
) -> None:
    index, predicate = open_one(store, category)
    assert predicate.deadline_days == days
    assert predicate.awareness_at == "2026-11-20T09:30:00Z"
    assert predicate.deadline_at == rfc3339(AWARE + timedelta(days=days))
    logged = store.get(index).statement
    Statement.model_validate(logged)
    assert logged["predicateType"] == INCIDENT
    assert logged["predicate"]["deadlineAt"] == predicate.deadline_at


def test_deadlines_are_configurable(sqlite_store: Store, tmp_path: Path) -> None:
    table = deadline_table({"death": 5, "other": 30})
    assert table[IncidentCategory.DEATH] == 5
    assert table[IncidentCategory.CRITICAL_INFRASTRUCTURE] == 2  # unchanged
    request = OpenRequest(system="s", category=IncidentCategory.OTHER, aware_at=AWARE)
    _, predicate = open_incident(sqlite_store, request, now=NOW, table=table)
    assert predicate.deadline_days == 30
    # one incident's deadline, given outright, beats the table
    fixed = OpenRequest(
        system="s", category=IncidentCategory.DEATH, aware_at=AWARE, deadline_days=1
    )
    _, predicate = open_incident(sqlite_store, fixed, now=NOW, table=table)
    assert predicate.deadline_at == "2026-11-21T09:30:00Z"

    path = tmp_path / "incident-deadlines.json"
    assert load_deadline_table(path)[IncidentCategory.DEATH] == 10  # no file: the defaults
    path.write_text('{"critical-infrastructure": 1}')
    assert load_deadline_table(path)[IncidentCategory.CRITICAL_INFRASTRUCTURE] == 1
    for bad, message in (
        ('{"deaths": 3}', "unknown incident category 'deaths'"),
        ('{"death": -1}', "death: days must be a whole number"),
        ('{"death": 2.5}', "death: days must be a whole number"),
        ("[1]", "must be a JSON object"),
        ("{", "cannot read incident deadlines"),
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_deadline_table(path)


@pytest.fixture
def sqlite_store(sqlite_home: Any) -> Any:
    with sqlite_home.open_store(write=True) as s:
        yield s


def test_snapshot_freezes_newest_manifests_configs_and_checkpoint(
    store: Store, home: Home, tmp_path: Path
) -> None:
    store.append([model_statement("model:base", b"v1"), model_statement("adapter:lora", b"a1")])
    store.append([model_statement("model:base", b"v2")])
    releaser = home.create_model_signing_key("release-key")  # entry 4: its key event
    home.append_release(releaser.keyid, model_statement("model:base", b"v2", MODEL_RELEASE))
    config = tmp_path / "serving.yaml"
    config.write_text("max_tokens: 512\n")
    before = store.checkpoint()
    index, predicate = open_incident(
        store,
        OpenRequest(system="chat-prod", category=IncidentCategory.HEALTH, aware_at=AWARE),
        now=NOW,
        configs=[config],
    )
    snap = predicate.snapshot
    assert snap.checkpoint is not None
    assert snap.checkpoint.size == before.size == index
    assert base64.b64decode(snap.checkpoint.root) == store.root(index)
    digest = {n: hashlib.sha256(n).hexdigest() for n in (b"v1", b"v2", b"a1")}
    assert [(m.name, m.kind, m.digest, m.entry) for m in snap.manifests] == [
        ("adapter:lora", "manifest", digest[b"a1"], 2),
        ("model:base", "manifest", digest[b"v2"], 3),  # the newest, not v1
        ("model:base", "release", digest[b"v2"], 5),
    ]
    assert [(c.name, c.digest) for c in snap.configs] == [
        ("serving.yaml", hashlib.sha256(b"max_tokens: 512\n").hexdigest())
    ]
    # a query by a frozen model's digest finds the incident
    found = store.query(predicate_type=INCIDENT, subject_digest=f"sha256:{digest[b'v2']}")
    assert [e.index for e in found] == [index]
    # later changes to the log do not change the frozen snapshot
    store.append([model_statement("model:base", b"v3")])
    _, updated = update_incident(store, predicate.incident_id, Change(note="x"), now=NOW)
    assert updated.snapshot == snap


def test_legal_hold_set_on_open_and_released_on_close(store: Store) -> None:
    assert active_holds(store) == []
    index, opened = open_one(store, IncidentCategory.DEATH, incident_id="inc-1")
    assert opened.legal_hold
    assert active_holds(store) == [Hold(index, "inc-1", "chat-prod")]
    # an update keeps the hold; the hold now rests on the newest entry
    index, _ = update_incident(store, "inc-1", Change(note="root cause found"), now=NOW)
    assert active_holds(store) == [Hold(index, "inc-1", "chat-prod")]
    # closing without releasing the hold is refused and logs nothing
    size = store.size()
    with pytest.raises(InputError, match="--release-hold"):
        close_incident(store, "inc-1", Change(note="done"), now=NOW)
    assert store.size() == size
    index, closed = close_incident(store, "inc-1", Change(release_hold=True), now=NOW)
    assert closed.action == "close" and not closed.legal_hold
    assert closed.opened_entry == opened_index(store, "inc-1")
    assert active_holds(store) == []
    with pytest.raises(InputError, match="closed at entry"):
        update_incident(store, "inc-1", Change(note="late"), now=NOW)


def opened_index(store: Store, incident_id: str) -> int:
    return store.query(predicate_type=INCIDENT, subject_name=f"incident:{incident_id}")[0].index


def test_holds_of_several_incidents_and_scopes(sqlite_store: Store) -> None:
    store = sqlite_store
    a, _ = open_one(store, IncidentCategory.OTHER, incident_id="a", hold_scope="*")
    open_one(store, IncidentCategory.OTHER, incident_id="b", legal_hold=False)
    c, _ = open_one(store, IncidentCategory.OTHER, incident_id="c")
    assert active_holds(store) == [Hold(a, "a", "*"), Hold(c, "c", "chat-prod")]
    update_incident(store, "c", Change(release_hold=True), now=NOW)
    assert active_holds(store) == [Hold(a, "a", "*")]


def test_active_holds_reads_the_minimal_shape(sqlite_store: Store) -> None:
    """A statement of the INCIDENT shape with only the fields a hold needs is judged too."""

    def minimal(incident_id: str, action: str, hold: bool) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": f"incident:{incident_id}", "digest": {"sha256": "0" * 64}}],
            "predicateType": INCIDENT,
            "predicate": {
                "observedAt": "2026-11-24T08:00:00Z",
                "incidentId": incident_id,
                "action": action,
                "legalHold": hold,
            },
        }

    store = sqlite_store
    result = store.append([minimal("x", "open", True), minimal("y", "open", True)])
    store.append([minimal("y", "close", True)])
    assert active_holds(store) == [Hold(result.first_index, "x", "*")]


def test_updates_accumulate_reclassify_and_report(sqlite_store: Store) -> None:
    store = sqlite_store
    open_one(store, IncidentCategory.HEALTH, incident_id="inc-2", description="wrong dosage")
    update_incident(store, "inc-2", Change(note="patient died"), now=NOW)
    _, p = update_incident(
        store, "inc-2", Change(category=IncidentCategory.DEATH), now=NOW + timedelta(hours=1)
    )
    assert (p.category, p.deadline_days, p.deadline_at) == ("death", 10, "2026-11-30T09:30:00Z")
    assert [u.note for u in p.updates] == ["patient died"]
    reported = NOW + timedelta(hours=2)
    _, p = update_incident(
        store, "inc-2", Change(note="reported", reported_at=reported), now=reported
    )
    assert p.reported_at == "2026-11-24T10:00:00Z"
    assert [u.note for u in p.updates] == ["patient died", "reported"]
    assert p.description == "wrong dosage"
    state = find_incident(store, "inc-2")
    assert state is not None and state.predicate == p
    with pytest.raises(InputError, match="nothing to update"):
        update_incident(store, "inc-2", Change(), now=NOW)
    with pytest.raises(InputError, match="no incident 'nope'"):
        update_incident(store, "nope", Change(note="x"), now=NOW)


def test_overdue_and_time_left_at_a_fixed_now(sqlite_store: Store) -> None:
    store = sqlite_store
    open_one(store, IncidentCategory.CRITICAL_INFRASTRUCTURE, incident_id="late")  # due 11-22
    open_one(store, IncidentCategory.DEATH, incident_id="due")  # due 11-30
    open_one(store, IncidentCategory.WIDESPREAD_INFRINGEMENT, incident_id="reported")
    update_incident(store, "reported", Change(reported_at=AWARE + timedelta(days=1)), now=NOW)
    states = {s.predicate.incident_id: s for s in incident_states(store)}
    assert list(states) == ["late", "due", "reported"]
    assert [i for i, s in states.items() if s.overdue(NOW)] == ["late"]
    assert time_left(states["late"].predicate, NOW) == timedelta(days=-1, hours=-22, minutes=-30)
    assert time_left(states["due"].predicate, NOW) == timedelta(days=6, hours=1, minutes=30)


def test_refusals(sqlite_store: Store) -> None:
    store = sqlite_store
    with pytest.raises(InputError, match="in the future"):
        open_incident(
            store,
            OpenRequest(system="s", category=IncidentCategory.OTHER, aware_at=NOW + timedelta(1)),
            now=NOW,
        )
    with pytest.raises(InputError, match="incidentId"):
        open_one(store, IncidentCategory.OTHER, incident_id="bad id/")
    open_one(store, IncidentCategory.OTHER, incident_id="same")
    size = store.size()
    with pytest.raises(InputError, match="exists already"):
        open_one(store, IncidentCategory.OTHER, incident_id="same")
    with pytest.raises(InputError, match="configuration file"):
        open_incident(
            store,
            OpenRequest(system="s", category=IncidentCategory.OTHER, aware_at=AWARE),
            now=NOW,
            configs=[Path("/nonexistent/serving.yaml")],
        )
    assert store.size() == size
