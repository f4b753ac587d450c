"""`annex oversight record|ingest|attest` as a user runs them, on a private copy of a log."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evidence.home import Home
from evidence.vault import Vault
from schemas.oversight import OVERSIGHT_EVENT, REVIEWER_ATTESTATION, OversightAction
from tests.api.conftest import Annex, Template, log_size

AnnexAt = Callable[[Path], Annex]
REVIEWER = "alice.reviewer@example.com"


def logged(home: Path, index: int) -> dict[str, Any]:
    with Home(home).open_store() as store:
        statement: dict[str, Any] = store.get(index).statement
    return statement


def event_line(**fields: Any) -> str:
    base = {
        "action": "review",
        "reviewer": REVIEWER,
        "reason": "spot check",
        "at": "2026-11-24T07:00:00Z",
    }
    return json.dumps({**base, **fields})


@pytest.mark.parametrize("action", list(OversightAction))
def test_record_each_action(
    fresh: Path, annex_at: AnnexAt, template: Template, action: OversightAction
) -> None:
    annex = annex_at(fresh)
    done = annex.fast(
        "oversight", "record", "--action", action.value, "--reviewer", REVIEWER,
        "--reason", "output contradicted the chart", "--request", "req-77",
        "--system", "triage-prod", "--json",
    )  # fmt: skip
    assert done.code == 0, done.err
    index = done.json()["index"]
    assert index == template.size
    statement = logged(fresh, index)
    assert statement["predicateType"] == OVERSIGHT_EVENT
    predicate = statement["predicate"]
    assert predicate["action"] == action.value
    assert predicate["link"] == {"kind": "request", "id": "req-77"}
    assert predicate["system"] == "triage-prod"
    assert len(predicate["reviewer"]) == 32


def test_record_links_and_refusals(fresh: Path, annex_at: AnnexAt, template: Template) -> None:
    annex = annex_at(fresh)
    base = ("oversight", "record", "--reviewer", REVIEWER, "--reason", "r")
    done = annex.fast(*base, "--action", "approve", "--batch", "3", "--json")
    assert done.code == 0, done.err
    assert logged(fresh, done.json()["index"])["predicate"]["link"] == {"kind": "batch", "entry": 3}
    done = annex.fast(*base, "--action", "stop", "--at", "2026-11-24T08:00:00+01:00", "--json")
    predicate = logged(fresh, done.json()["index"])["predicate"]
    assert "link" not in predicate and predicate["observedAt"] == "2026-11-24T07:00:00Z"
    size = log_size(fresh)
    for args, message in (
        (("--action", "approve", "--batch", "1", "--request", "x"), "at most one of"),
        (("--action", "approve", "--entry", "-1"), "must be a log index"),
        (("--action", "approve", "--entry", "999"), "entry 999 is not in the log"),
        (("--action", "approve", "--at", "2026-11-24T08:00:00"), "has no UTC offset"),
        (("--action", "approve", "--at", "2999-01-01T00:00:00Z"), "in the future"),
        (("--action", "approve", "--reason", ""), "reason"),
        (
            (
                "--action",
                "approved",
            ),
            "approved",
        ),
    ):
        done = annex.fast(*base, *args)
        assert done.code == 2, (args, done.out)
        assert message in done.err + done.out, (args, done.err)
    assert log_size(fresh) == size


def test_ingest_feed_then_again_is_recognised(
    fresh: Path, annex_at: AnnexAt, template: Template, tmp_path: Path
) -> None:
    annex = annex_at(fresh)
    feed = tmp_path / "oversight.jsonl"
    feed.write_text(
        "\n".join(
            [
                event_line(action="override", request="req-1"),
                event_line(action="escalate", batch=4, system="triage-prod"),
                event_line(action="stop", reviewer="bob@example.com"),
            ]
        )
        + "\n"
    )
    done = annex("oversight", "ingest", feed)
    assert done.code == 0, done.err
    assert f"logged 3 oversight events ({template.size}..{template.size + 2})" in done.out
    assert [logged(fresh, template.size + i)["predicate"]["action"] for i in range(3)] == [
        "override",
        "escalate",
        "stop",
    ]
    again = annex("oversight", "ingest", "-", stdin=feed.read_text())
    assert again.code == 0, again.err
    assert f"stdin already logged at entry {template.size}" in again.out
    assert "nothing appended" in again.out
    assert log_size(fresh) == template.size + 3
    as_json = annex.fast("oversight", "ingest", feed, "--json").json()
    assert as_json["already_logged"] is True and as_json["first_index"] == template.size
    assert as_json["count"] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{broken\n", "line 2: Invalid JSON"),
        (b'"just a string"\n', "line 2: Input should be an object"),
        (
            json.dumps({"action": "stop", "reviewer": REVIEWER, "reason": 3}).encode() + b"\n",
            "line 2: reason: Input should be a valid string",
        ),
        (event_line(entry="7").encode() + b"\n", "line 2: entry: Input should be a valid integer"),
        (
            event_line(reason="cafe").encode().replace(b"cafe", b"caf\xe9") + b"\n",
            "line 2: not UTF-8 (byte 0xe9 at column",
        ),
    ],
)
def test_bad_feed_line_exit_2_names_file_and_line_and_logs_nothing(
    fresh: Path, annex_at: AnnexAt, tmp_path: Path, content: bytes, message: str
) -> None:
    feed = tmp_path / "bad.jsonl"
    feed.write_bytes(event_line().encode() + b"\n" + content + event_line().encode() + b"\n")
    size = log_size(fresh)
    done = annex_at(fresh).fast("oversight", "ingest", feed)
    assert done.code == 2
    assert f"{feed} {message}" in done.err
    assert log_size(fresh) == size


def test_attest(fresh: Path, annex_at: AnnexAt, tmp_path: Path) -> None:
    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(b"%PDF-1.7 certificate")
    annex = annex_at(fresh)
    done = annex.fast(
        "oversight", "attest", "--reviewer", REVIEWER, "--training", "AI oversight level 2",
        "--valid-from", "2026-01-01", "--valid-until", "2027-01-01", "--issuer", "Academy",
        "--evidence", certificate, "--json",
    )  # fmt: skip
    assert done.code == 0, done.err
    statement = logged(fresh, done.json()["index"])
    assert statement["predicateType"] == REVIEWER_ATTESTATION
    predicate = statement["predicate"]
    assert predicate["training"] == "AI oversight level 2"
    assert (predicate["validFrom"], predicate["validUntil"]) == (
        "2026-01-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
    )
    assert predicate["evidenceDigest"] == hashlib.sha256(certificate.read_bytes()).hexdigest()
    # the same reviewer has the same pseudonym in events and attestations
    event = annex.fast(
        "oversight", "record", "--action", "review", "--reviewer", REVIEWER, "--reason", "r",
        "--json",
    )  # fmt: skip
    assert logged(fresh, event.json()["index"])["predicate"]["reviewer"] == predicate["reviewer"]
    size = log_size(fresh)
    bad = annex.fast(
        "oversight", "attest", "--reviewer", REVIEWER, "--training", "t",
        "--valid-from", "2027-01-01", "--valid-until", "2026-01-01",
    )  # fmt: skip
    assert bad.code == 2 and "not after validFrom" in bad.err
    missing = annex.fast(
        "oversight", "attest", "--reviewer", REVIEWER, "--training", "t",
        "--valid-until", "2027-01-01", "--evidence", tmp_path / "nope.pdf",
    )  # fmt: skip
    assert missing.code == 2 and "nope.pdf" in missing.err
    assert log_size(fresh) == size


def test_reviewer_ids_never_reach_the_database(
    fresh: Path, annex_at: AnnexAt, tmp_path: Path
) -> None:
    annex = annex_at(fresh)
    feed = tmp_path / "feed.jsonl"
    feed.write_text(event_line(action="reverse") + "\n")
    assert annex.fast("oversight", "ingest", feed).code == 0
    record = ("oversight", "record", "--action", "disregard", "--reviewer", REVIEWER)
    assert annex.fast(*record, "--reason", "r").code == 0
    attest = ("oversight", "attest", "--reviewer", REVIEWER, "--training", "t")
    assert annex.fast(*attest, "--valid-until", "2030-01-01").code == 0

    # every file under the data directory: the log database, its WAL, the vault
    raw = b"".join(p.read_bytes() for p in fresh.rglob("*") if p.is_file())
    clear = REVIEWER.encode()
    assert clear not in raw
    for shift in range(3):  # nor base64-encoded, as a DSSE payload would hold it
        encoded = base64.b64encode(b"\0" * shift + clear)[4:-4]
        assert encoded not in raw
    with Home(fresh).open_store() as store:
        payloads = [json.loads(e.envelope.payload) for e in store.query(after=9, limit=50)]
    assert REVIEWER not in json.dumps(payloads)
    pseudonyms = {p["predicate"]["reviewer"] for p in payloads}
    with Vault.open(fresh / "vault") as vault:
        assert pseudonyms == {vault.pseudonym(REVIEWER)}  # one person, one pseudonym
    assert pseudonyms.pop().encode() in raw  # what a leak would look like is findable


def test_erasing_a_reviewer_unlinks_their_pseudonym(fresh: Path, annex_at: AnnexAt) -> None:
    annex = annex_at(fresh)
    record = ("oversight", "record", "--action", "approve", "--reviewer", REVIEWER, "--reason")
    first = logged(fresh, annex.fast(*record, "r", "--json").json()["index"])
    assert annex.fast("erase", REVIEWER, "--reason", "left the company").code == 0
    with Vault.open(fresh / "vault") as vault:
        assert vault.pseudonym(REVIEWER) is None
    second = logged(fresh, annex.fast(*record, "r", "--json").json()["index"])
    assert second["predicate"]["reviewer"] != first["predicate"]["reviewer"]


def test_refused_event_leaves_no_vault_row(fresh: Path, annex_at: AnnexAt) -> None:
    record = ("oversight", "record", "--action", "stop", "--reviewer", "carol@example.com")
    done = annex_at(fresh).fast(*record, "--reason", "r", "--system", "")
    assert done.code == 2 and "system" in done.err
    with Vault.open(fresh / "vault") as vault:
        assert vault.find("carol@example.com") is None
