"""`annex incident open|update|close|list` as a user runs them, on a private copy of a log."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors.incidents import Hold, active_holds
from evidence.entry import rfc3339
from evidence.home import Home
from schemas.incident import INCIDENT
from schemas.model import MODEL_MANIFEST
from schemas.statement import STATEMENT_TYPE
from tests.api.conftest import Annex, Template, log_size

AnnexAt = Callable[[Path], Annex]


def holds(home: Path) -> list[Hold]:
    with Home(home).open_store() as store:
        return active_holds(store)


def logged(home: Path, index: int) -> dict[str, Any]:
    with Home(home).open_store() as store:
        statement: dict[str, Any] = store.get(index).statement
    return statement


def ago(**delta: float) -> str:
    return rfc3339(datetime.now(UTC) - timedelta(**delta))


def open_incident(annex: Annex, *args: str | Path) -> dict[str, Any]:
    done = annex.fast("incident", "open", "--system", "triage-prod", *args, "--json")
    assert done.code == 0, done.err + done.out
    result: dict[str, Any] = done.json()
    return result


@pytest.mark.parametrize(
    ("category", "days"),
    [
        ("death", 10),
        ("critical-infrastructure", 2),
        ("widespread-infringement", 2),
        ("serious-harm-to-health", 15),
        ("fundamental-rights", 15),
        ("property-or-environment", 15),
        ("other", 15),
    ],
)
def test_open_sets_the_deadline_of_its_category(
    fresh: Path, annex_at: AnnexAt, category: str, days: int
) -> None:
    aware = "2026-11-20T09:30:00Z"
    opened = open_incident(annex_at(fresh), "--category", category, "--aware-at", aware)
    assert opened["deadlineDays"] == days
    expected = datetime(2026, 11, 20, 9, 30, tzinfo=UTC) + timedelta(days=days)
    assert opened["deadlineAt"] == rfc3339(expected)
    assert logged(fresh, opened["entry"])["predicate"]["deadlineAt"] == rfc3339(expected)


def test_deadlines_configurable_by_file_and_option(fresh: Path, annex_at: AnnexAt) -> None:
    annex = annex_at(fresh)
    (fresh / "incident-deadlines.json").write_text('{"death": 3}')
    assert open_incident(annex, "--category", "death")["deadlineDays"] == 3
    assert open_incident(annex, "--category", "other")["deadlineDays"] == 15
    assert open_incident(annex, "--category", "other", "--deadline-days", "1")["deadlineDays"] == 1
    (fresh / "incident-deadlines.json").write_text('{"deaths": 3}')
    size = log_size(fresh)
    done = annex.fast("incident", "open", "--system", "s", "--category", "death")
    assert done.code == 2 and "unknown incident category 'deaths'" in done.err
    assert log_size(fresh) == size


def test_open_freezes_snapshot_and_sets_hold_close_releases_it(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    manifest_digest = hashlib.sha256(b"weights").hexdigest()
    with Home(fresh).open_store(write=True) as store:
        store.append(
            [
                {
                    "_type": STATEMENT_TYPE,
                    "subject": [{"name": "model:triage", "digest": {"sha256": manifest_digest}}],
                    "predicateType": MODEL_MANIFEST,
                    "predicate": {"observedAt": "2026-11-20T08:00:00Z"},
                }
            ]
        )
        checkpoint = store.checkpoint()
    config = tmp_path / "serving.yaml"
    config.write_text("temperature: 0\n")
    annex = annex_at(fresh)
    opened = open_incident(
        annex, "--category", "death", "--id", "inc-7", "--config", config, "--description", "x"
    )
    snapshot = opened["predicate"]["snapshot"]
    assert snapshot["checkpoint"] == {
        "size": template.size + 1,
        "root": base64.b64encode(checkpoint.root).decode(),
    }
    assert snapshot["manifests"] == [
        {
            "name": "model:triage",
            "digest": manifest_digest,
            "entry": template.size,
            "kind": "manifest",
        }
    ]
    assert snapshot["configs"] == [
        {"name": "serving.yaml", "digest": hashlib.sha256(b"temperature: 0\n").hexdigest()}
    ]
    assert logged(fresh, opened["entry"])["predicateType"] == INCIDENT
    assert holds(fresh) == [Hold(opened["entry"], "inc-7", "triage-prod")]

    size = log_size(fresh)
    refused = annex.fast("incident", "close", "inc-7")
    assert refused.code == 2 and "--release-hold" in refused.err
    assert log_size(fresh) == size and holds(fresh)

    updated = annex.fast("incident", "update", "inc-7", "--note", "model rolled back", "--json")
    assert updated.code == 0, updated.err
    assert holds(fresh) == [Hold(updated.json()["entry"], "inc-7", "triage-prod")]
    closed = annex.fast("incident", "close", "inc-7", "--release-hold", "--note", "fixed")
    assert closed.code == 0, closed.err
    assert "closed incident inc-7" in closed.out
    assert holds(fresh) == []
    final = logged(fresh, log_size(fresh) - 1)["predicate"]
    assert [u["note"] for u in final["updates"]] == ["model rolled back", "fixed"]
    assert final["snapshot"] == snapshot
    again = annex.fast("incident", "update", "inc-7", "--note", "late")
    assert again.code == 2 and "was closed at entry" in again.err


def test_list_shows_deadlines_and_overdue(fresh: Path, annex_at: AnnexAt) -> None:
    annex = annex_at(fresh)
    open_incident(
        annex, "--category", "critical-infrastructure", "--id", "late", "--aware-at", ago(days=3)
    )
    open_incident(annex, "--category", "death", "--id", "due", "--aware-at", ago(days=1))
    open_incident(
        annex, "--category", "widespread-infringement", "--id", "told", "--aware-at", ago(days=5)
    )
    reported = annex.fast("incident", "update", "told", "--reported-at", ago(days=4))
    assert reported.code == 0, reported.err

    listed = annex.fast("incident", "list", "--json").json()["incidents"]
    by_id = {i["incidentId"]: i for i in listed}
    assert list(by_id) == ["late", "due", "told"]
    assert [i for i, v in by_id.items() if v["overdue"]] == ["late"]
    assert by_id["late"]["secondsLeft"] < -86000
    assert 8 * 86400 < by_id["due"]["secondsLeft"] <= 9 * 86400
    assert by_id["told"]["status"].startswith("reported ")

    text = annex.fast("incident", "list").out.splitlines()
    assert [line.split()[0] for line in text[1:]] == ["late", "due", "told"]
    assert "OVERDUE by 1d" in text[1]
    assert "8d 23h left" in text[2] or "9d 0h left" in text[2]

    overdue = annex.fast("incident", "list", "--overdue").out.splitlines()
    assert [line.split()[0] for line in overdue[1:]] == ["late"]
    as_json = annex.fast("incident", "list", "--overdue", "--json").json()
    assert [i["incidentId"] for i in as_json["incidents"]] == ["late"]


def test_refusals_exit_2_and_append_nothing(fresh: Path, annex_at: AnnexAt) -> None:
    annex = annex_at(fresh)
    open_incident(annex, "--category", "other", "--id", "one")
    size = log_size(fresh)
    for args, message in (
        (("open", "--system", "s", "--category", "deaths"), "deaths"),
        (("open", "--system", "s", "--category", "other", "--id", "one"), "exists already"),
        (("open", "--system", "s", "--category", "other", "--id", "a b"), "incidentId"),
        (
            ("open", "--system", "s", "--category", "other", "--aware-at", "2999-01-01T00:00:00Z"),
            "future",
        ),
        (("open", "--system", "s", "--category", "other", "--aware-at", "monday"), "--aware-at"),
        (
            ("open", "--system", "s", "--category", "other", "--config", "/no/such.yaml"),
            "such.yaml",
        ),
        (("update", "one"), "nothing to update"),
        (("update", "nope", "--note", "x"), "no incident 'nope'"),
        (("close", "nope"), "no incident 'nope'"),
    ):
        done = annex.fast("incident", *args)
        assert done.code == 2, (args, done.out)
        assert message in done.err + done.out, (args, done.err)
    assert log_size(fresh) == size
    as_json = annex.fast("incident", "close", "one", "--json")
    assert as_json.code == 2
    assert json.loads(as_json.out)["ok"] is False


def test_list_on_a_log_without_incidents(annex: Annex) -> None:
    done = annex.fast("incident", "list")
    assert done.code == 0 and "no incidents" in done.out


def test_legal_hold_blocks_erasure_until_released(fresh: Path, annex_at: AnnexAt) -> None:
    annex = annex_at(fresh)
    reviewer = ("oversight", "record", "--action", "review", "--reviewer", "dana@example.com")
    assert annex.fast(*reviewer, "--reason", "r").code == 0
    opened = open_incident(annex, "--category", "other", "--id", "inc-hold")
    size = log_size(fresh)
    blocked = annex.fast("erase", "dana@example.com")
    assert blocked.code == 2
    assert f"legal hold by incident inc-hold (entry {opened['entry']})" in blocked.err
    assert log_size(fresh) == size
    released = annex.fast("incident", "update", "inc-hold", "--release-hold")
    assert released.code == 0, released.err
    assert annex.fast("erase", "dana@example.com").code == 0
