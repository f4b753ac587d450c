"""A number past Python's digit limit (4,300 digits) is bad input like any other: a clear
answer naming where it is, exit 2 or a 4xx, nothing appended; never a traceback or a 500.

`json.loads` refuses such a number with a plain ValueError, not a JSONDecodeError, so every
parser that caught only the latter let it escape."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evidence.canonical import parse_json
from evidence.errors import InputError
from evidence.home import Home
from tests.api.conftest import Annex, Template, log_size
from tests.api.test_app import Api
from tests.conftest import statement

HUGE = "9" * 5000
MESSAGE = "more digits than Annex reads"


def with_huge(text: str) -> str:
    """The JSON text with its first `"n": 1` replaced by a 5,000-digit number."""
    done = text.replace('"n": 1', f'"n": {HUGE}', 1).replace('"n":1', f'"n":{HUGE}', 1)
    assert HUGE in done
    return done


def test_the_parser_names_the_number() -> None:
    with pytest.raises(InputError, match=f"statement.json is not valid JSON: .*{MESSAGE}"):
        parse_json(f'{{"n": {HUGE}}}', what="statement.json")


@pytest.fixture
def annex(fresh: Path, annex_at: Callable[[Path], Annex]) -> Annex:
    return annex_at(fresh)


def test_annex_append_of_a_statement_with_a_huge_number(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    path = tmp_path / "statement.json"
    path.write_text(with_huge(json.dumps(statement(1))))
    done = annex.fast("append", path)
    assert done.code == 2, done
    assert str(path) in done.err and MESSAGE in done.err
    assert "Traceback" not in done.err
    assert log_size(fresh) == template.size


def test_verify_entry_of_an_envelope_with_a_huge_number(annex: Annex, tmp_path: Path) -> None:
    envelope = tmp_path / "entry.dsse.json"
    envelope.write_text(f'{{"payload": "e30=", "payloadType": "x", "extra": {HUGE}}}')
    proof = tmp_path / "entry.tlog-proof"
    proof.write_text("c2sp.org/tlog-proof@v1\nindex 0\n\nnot a note\n")
    done = annex.fast("verify-entry", envelope, proof, "--trust", tmp_path / "trust.json")
    assert done.code == 2, done
    assert MESSAGE in done.err and "Traceback" not in done.err


def test_a_model_config_with_a_huge_number_is_refused(annex: Annex, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(f'{{"hidden_size": {HUGE}}}')
    (model / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    done = annex.fast("collect", "model", model, "--dry-run")
    assert done.code == 2, done
    assert "config.json" in done.err and MESSAGE in done.err


@pytest.fixture
def api(home: Home, tmp_path: Path) -> Iterator[Api]:
    made = Api(home, tmp_path)
    with made.client:
        yield made


def test_the_api_answers_4xx_to_huge_numbers_everywhere(api: Api) -> None:
    size = api.size()
    payload = with_huge(json.dumps(statement(1)))
    envelope = {
        "payload": base64.b64encode(payload.encode()).decode(),
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [{"keyid": "00", "sig": "AA=="}],
    }
    bodies = {
        "/entries": json.dumps(envelope).encode(),
        "/entries ": f'{{"payload": "e30=", "n": {HUGE}}}'.encode(),
        "/lineage": f'{{"eventType": "COMPLETE", "n": {HUGE}}}'.encode(),
        "/oversight/events": f'{{"action": "approve", "n": {HUGE}}}\n'.encode(),
        "/inference/batches": f'{{"created": 1, "n": {HUGE}}}\n'.encode(),
        "/reports": f'{{"kind": "annex-iv", "system": "x", "at": {HUGE}}}'.encode(),
        "/gate": f'{{"digest": "sha256:{"a" * 64}", "policy": {{"n": {HUGE}}}}}'.encode(),
    }
    for path, body in bodies.items():
        answer = api.post(path.strip(), body, scope="admin")
        assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text[:300])
    assert api.size() == size


BIG = str(10**20)  # past a BIGINT, which both databases' positions are


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", BIG), f"entry {BIG} is not a log position"),
        (("log", "proof", "1", "--tree-size", BIG), f"tree size {BIG} is not a log position"),
        (("log", "export", "--from", BIG), f"--from {BIG} is not a log position"),
        (("log", "export", "--to", BIG), f"--to {BIG} is not a log position"),
        (("log", "export", "--from", "-1"), "--from -1 is not a log position"),
        (("log", "export", "--from", "5", "--to", "2"), "--to 2 is before --from 5"),
        (("log", "consistency", "1", BIG), f"new size {BIG} is not a log position"),
    ],
)
def test_positions_past_what_a_database_holds_are_refused(
    annex: Annex, args: tuple[str, ...], message: str
) -> None:
    done = annex.fast(*args)
    assert done.code == 2, done
    assert message in done.err and "Traceback" not in done.err


def test_times_outside_what_utc_holds_are_refused(
    annex: Annex, fresh: Path, template: Template, tmp_path: Path
) -> None:
    """Year 1 at +14:00 is no moment in UTC, and a deadline of millions of days overflows."""
    early = statement(1, observed="0001-01-01T00:00:00+14:00")
    (tmp_path / "early.json").write_text(json.dumps(early))
    done = annex.fast("append", tmp_path / "early.json")
    assert done.code == 2, done
    assert "lies outside the years 1 to 9999 in UTC" in done.err
    late = annex.fast(
        "incident", "open", "--system", "x", "--category", "death", "--deadline-days", "3000000"
    )
    assert late.code == 2, late
    assert "--deadline-days" in late.err and "Traceback" not in late.err
    assert log_size(fresh) == template.size
