"""Reports and the gate over REST, on SQLite and PostgreSQL: a report generated off the request
path, polled, downloaded and verified offline; the queue's cap; refusals at POST time; files on
disk checked against the log before they are served; gate verdicts on a manifest or a digest."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import routes_reports
from api.app import create_app
from api.auth import TokenFile
from api.jobs import JobQueue
from evidence.errors import InputError
from evidence.home import Home
from schemas.report import REPORT
from schemas.statement import STATEMENT_TYPE
from tests.api.conftest import Annex
from tests.reports import gate_helpers
from tests.reports.oversight_fixture import SYSTEM, Rig

API = "/api/v1"


class Api:
    """A TestClient with a token of each scope, on a log holding a dataset and SYSTEM's card."""

    def __init__(self, home: Home, tmp: Path) -> None:
        self.home = home
        rig = Rig(home, tmp)
        try:
            rig.dataset("source: branch files\n")
            self.card = rig.card()
        finally:
            rig.close()
        tokens = TokenFile(home.path)
        self.secrets = {s: tokens.create(s)[1] for s in ("read", "write", "report")}
        self.client = TestClient(create_app(home))

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[scope]}"}

    def get(self, path: str, *, scope: str = "read", **params: Any) -> Any:
        return self.client.get(API + path, params=params, headers=self.headers(scope))

    def post(self, path: str, body: Any, *, scope: str = "report") -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {**self.headers(scope), "Content-Type": "application/json"}
        return self.client.post(API + path, content=data, headers=headers)

    def size(self) -> int:
        with self.home.open_store() as store:
            return store.size()

    def wait(self, location: str, seconds: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.client.get(location, headers=self.headers("report")).json()
            if job["status"] in ("done", "failed"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {location} did not finish in {seconds} s")


@pytest.fixture
def api(home: Home, tmp_path: Path) -> Iterator[Api]:
    made = Api(home, tmp_path)
    with made.client:
        yield made


def fake_report(api: Api, kind: str, system: str | None, pdf: bytes, bundle: bytes) -> int:
    """A REPORT entry as `issue` logs one, for bytes that are no real PDF (no render needed)."""
    scope = system or "all"
    predicate: dict[str, Any] = {
        "observedAt": "2026-11-24T09:00:00Z",
        "kind": kind,
        "title": f"{kind} of {scope}",
        "checkpoint": {"size": 1, "root": "ab" * 32},
        "pdf": {"name": f"{kind}-{scope}.pdf", "sha256": sha(pdf), "bytes": len(pdf)},
        "bundle": {"name": "evidence-bundle.json", "sha256": sha(bundle), "bytes": len(bundle)},
        "citations": 0,
        "coverage": {"complete": 0, "partial": 0, "missing": 0, "gaps": 0},
    }
    if system is not None:
        predicate["system"] = {"id": system, "version": "1"}
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f"report:{kind}:{scope}", "digest": {"sha256": sha(pdf)}}],
        "predicateType": REPORT,
        "predicate": predicate,
    }
    with api.home.open_store(write=True) as store:
        index = store.append([statement]).first_index
        envelope = json.loads(store.get(index).envelope_bytes)
    folder = api.home.path / "reports" / str(index)
    folder.mkdir(parents=True)
    (folder / f"{kind}-{scope}.pdf").write_bytes(pdf)
    (folder / f"{kind}-{scope}.bundle.json").write_bytes(bundle)
    receipt = {"envelope": envelope, "proof": "not checked here"}
    (folder / f"{kind}-{scope}.receipt.json").write_text(json.dumps(receipt))
    return index


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- generate, poll, download, verify ------------------------------------------------------------


def test_a_generated_report_downloads_and_verifies_offline(
    api: Api, annex_at: Callable[[Path], Annex], tmp_path: Path
) -> None:
    before = api.size()
    posted = api.post("/reports", {"kind": "annex-iv", "system": SYSTEM})
    assert posted.status_code == 202, posted.text
    location = posted.headers["location"]
    assert location == f"{API}/jobs/{posted.json()['id']}"
    assert posted.json()["status"] in ("queued", "running")
    job = api.wait(location)
    assert job["status"] == "done", job
    index = job["result"]["index"]
    assert index == before and api.size() == before + 1
    assert job["result"]["links"]["pdf"] == f"{API}/reports/{index}/pdf"

    listed = api.get("/reports", system=SYSTEM).json()["reports"]
    assert [r["index"] for r in listed] == [index]
    assert listed[0]["on_server"] is True and listed[0]["kind"] == "annex-iv"
    assert listed[0]["pdf"]["sha256"] == job["result"]["sha256"]
    assert api.get(f"/reports/{index}").json()["statement"]["predicateType"] == REPORT

    auditor = tmp_path / "auditor"
    auditor.mkdir()
    for which, media in (("pdf", "application/pdf"), ("bundle", "application/json")):
        got = api.get(f"/reports/{index}/{which}")
        assert got.status_code == 200 and got.headers["content-type"].startswith(media)
        name = got.headers["content-disposition"].split('filename="')[1].rstrip('"')
        (auditor / name).write_bytes(got.content)
    receipt = api.get(f"/reports/{index}/receipt")
    (auditor / f"annex-iv-{SYSTEM}.receipt.json").write_bytes(receipt.content)
    pdf = auditor / f"annex-iv-{SYSTEM}.pdf"
    assert sha(pdf.read_bytes()) == job["result"]["sha256"]

    trust = tmp_path / "trust.json"
    trust.write_bytes(api.home.trust_path.read_bytes())
    checked = annex_at(tmp_path / "no-home").fast("verify-dossier", pdf, "--trust", trust, "--json")
    assert checked.code == 0, checked.out + checked.err
    result = checked.json()
    assert result["bundle_beside_checked"] is True and result["receipt"] is not None


def test_a_record_of_processing_for_every_system_is_filed_under_all(api: Api) -> None:
    posted = api.post("/reports", {"kind": "ropa"})
    assert posted.status_code == 202, posted.text
    job = api.wait(posted.headers["location"])
    assert job["status"] == "done", job
    assert job["params"] == {"kind": "ropa"} and job["result"]["system"] is None
    listed = api.get("/reports", system="all").json()["reports"]
    assert [(r["index"], r["kind"], r["on_server"]) for r in listed] == [
        (job["result"]["index"], "ropa", True)
    ]
    assert not any((api.home.path / "reports" / ".staging").iterdir())


# -- refusals at POST time and the queue ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"kind": "summary", "system": SYSTEM}, 422, "kind"),
        ({"kind": "annex-iv"}, 422, "system"),
        ({"kind": "oversight", "system": SYSTEM}, 422, "from, to"),
        (
            {"kind": "oversight", "system": SYSTEM, "from": "2026-11-09", "to": "2026-11-02"},
            422,
            "to",
        ),
        (
            {"kind": "oversight", "system": SYSTEM, "from": "2026-13-01", "to": "2026-11-02"},
            422,
            "from",
        ),
        ({"kind": "annex-iv", "system": SYSTEM, "from": "2026-11-01"}, 422, "only an oversight"),
        ({"kind": "annex-iv", "system": SYSTEM, "at": 0}, 422, "at"),
        ({"kind": "annex-iv", "system": SYSTEM, "at": 999}, 422, "no checkpoint"),
        ({"kind": "annex-iv", "system": SYSTEM, "colour": "red"}, 422, "colour"),
        ({"kind": "dpia-inputs", "system": "nope"}, 404, "no system 'nope'"),
    ],
)
def test_bad_requests_are_refused_before_any_job(
    api: Api, body: dict[str, Any], status: int, words: str
) -> None:
    before = api.size()
    refused = api.post("/reports", body)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert words in refused.json()["detail"]
    assert api.size() == before
    jobs = getattr(api.client.app.state, "jobs", None)  # type: ignore[attr-defined]
    assert jobs is None or len(jobs) == 0


def test_not_json_and_a_read_token_are_refused(api: Api) -> None:
    assert api.post("/reports", b"{not json").status_code == 422
    assert api.post("/reports", {"kind": "ropa"}, scope="read").status_code == 403
    assert api.get("/jobs/nope", scope="report").status_code == 404


def test_the_queue_is_capped_with_429_and_jobs_report_failures(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def slow(stores: object, body: object, job_id: str) -> dict[str, Any]:
        release.wait(30)
        raise InputError("the build failed on purpose")

    monkeypatch.setattr(routes_reports, "generate", slow)
    api.client.app.state.jobs = JobQueue(workers=1, max_queued=1)  # type: ignore[attr-defined]
    body = {"kind": "ropa"}
    first, second = api.post("/reports", body), api.post("/reports", body)
    assert first.status_code == second.status_code == 202
    third = api.post("/reports", body)
    assert third.status_code == 429, third.text
    assert third.headers["retry-after"].isdigit()
    assert third.json()["type"].endswith("/queue-full")
    release.set()
    for answer in (first, second):
        job = api.wait(answer.headers["location"], seconds=30)
        assert job["status"] == "failed" and job["error"] == "the build failed on purpose"
    assert api.post("/reports", body).status_code == 202  # room again


# -- listing, metadata and the checks on files ---------------------------------------------------


def test_reports_list_with_filters_and_a_cursor(api: Api) -> None:
    a = fake_report(api, "annex-iv", SYSTEM, b"%PDF-a", b"{}")
    b = fake_report(api, "ropa", None, b"%PDF-b", b"{}")
    every = api.get("/reports").json()
    assert [r["index"] for r in every["reports"]] == [a, b] and every["next"] is None
    assert [r["index"] for r in api.get("/reports", kind="ropa").json()["reports"]] == [b]
    assert [r["index"] for r in api.get("/reports", system="all").json()["reports"]] == [b]
    both = api.get("/reports", kind="annex-iv", system=SYSTEM).json()["reports"]
    assert [r["index"] for r in both] == [a]
    first = api.get("/reports", limit=1).json()
    assert [r["index"] for r in first["reports"]] == [a] and first["next"] == a
    rest = api.get("/reports", limit=1, after=a).json()
    assert [r["index"] for r in rest["reports"]] == [b]
    assert api.get("/reports", kind="summary").status_code == 422
    (api.home.path / "reports" / str(b) / "ropa-all.pdf").unlink()
    assert api.get(f"/reports/{b}").json()["on_server"] is False


def test_a_file_changed_on_disk_is_never_served(api: Api) -> None:
    index = fake_report(api, "annex-iv", SYSTEM, b"%PDF-original", b'{"bundle": 1}')
    good = api.get(f"/reports/{index}/pdf")
    assert good.status_code == 200 and good.content == b"%PDF-original"
    folder = api.home.path / "reports" / str(index)
    (folder / f"annex-iv-{SYSTEM}.pdf").write_bytes(b"%PDF-tampered")  # same size
    (folder / f"annex-iv-{SYSTEM}.bundle.json").write_bytes(b'{"bundle": 2, "x": 3}')
    receipt = json.loads((folder / f"annex-iv-{SYSTEM}.receipt.json").read_text())
    receipt["envelope"]["signatures"][0]["sig"] = "AAAA"
    (folder / f"annex-iv-{SYSTEM}.receipt.json").write_text(json.dumps(receipt))
    for which in ("pdf", "bundle", "receipt"):
        refused = api.get(f"/reports/{index}/{which}")
        assert refused.status_code == 500, which
        assert refused.headers["content-type"] == "application/problem+json"
        assert "file on disk changed" in refused.json()["detail"]
        assert b"tampered" not in refused.content


def test_downloads_of_what_is_not_a_report_or_not_here_are_404(api: Api) -> None:
    for path in (f"/reports/{api.card}", f"/reports/{api.card}/pdf", "/reports/999/bundle"):
        missing = api.get(path)
        assert missing.status_code == 404, path
    index = fake_report(api, "ropa", None, b"%PDF", b"{}")
    (api.home.path / "reports" / str(index) / "ropa-all.receipt.json").unlink()
    gone = api.get(f"/reports/{index}/receipt")
    assert gone.status_code == 404 and "not on this server" in gone.json()["detail"]


# -- the gate ------------------------------------------------------------------------------------


@pytest.fixture
def released(api: Api, tmp_path: Path) -> Path:
    """A small model directory whose release is in the log."""
    directory = tmp_path / "tiny-model"
    directory.mkdir()
    (directory / "config.json").write_text('{"layers": 2}')
    (directory / "model.safetensors").write_bytes(b"\0" * 64)
    gate_helpers.release(api.home, directory, gate_helpers.model_signing_key(api.home))
    return directory


def manifest_json(directory: Path) -> dict[str, Any]:
    return gate_helpers.manifest_of(directory).model_dump(mode="json", by_alias=True)


def test_the_gate_passes_a_released_manifest_and_fails_a_changed_one(
    api: Api, released: Path
) -> None:
    passed = api.post("/gate", {"manifest": manifest_json(released)}, scope="read")
    assert passed.status_code == 200, passed.text
    verdict = passed.json()
    assert verdict["pass"] is True and verdict["passed"] is True and verdict["failures"] == []
    assert verdict["policy"] == "default (signed)" and verdict["source"] == "manifest"
    by_digest = api.post(
        "/gate", {"digest": verdict["manifest"]["digest"], "policy": "default"}, scope="read"
    ).json()
    assert by_digest["pass"] is True and by_digest["manifest"]["files"] == 2
    assert by_digest["name"] == "tiny-model"

    (released / "config.json").write_text('{"layers": 3}')
    changed = {"manifest": manifest_json(released), "name": "tiny-model"}
    failed = api.post("/gate", changed, scope="read")
    assert failed.status_code == 200
    verdict = failed.json()
    assert verdict["pass"] is False and verdict["failures"][0]["rule"] == "signed"
    assert "changed config.json" in verdict["failures"][0]["reason"]  # against the release
    assert "annex-gate-" not in failed.text  # no server path leaks into the reasons


def test_the_gate_takes_a_policy_as_yaml_or_json(api: Api, released: Path) -> None:
    yaml_policy = "version: 1\nrequire:\n  all_of:\n    - signed:\n    - lineage: {}\n"
    body = {"manifest": manifest_json(released), "policy": yaml_policy}
    verdict = api.post("/gate", body, scope="read").json()
    assert verdict["pass"] is False and verdict["policy"] == "policy (inline)"
    assert [f["rule"] for f in verdict["failures"]] == ["lineage"]
    as_json = {"version": 1, "require": {"signed": {}}}
    ok = api.post("/gate", {"manifest": manifest_json(released), "policy": as_json}, scope="read")
    assert ok.json()["pass"] is True
    unknown = "sha256:" + "0" * 64
    none = api.post("/gate", {"digest": unknown}, scope="read").json()
    assert none["pass"] is False and none["manifest"]["files"] == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"policy": "version: 1\nrequire:\n  eval: {task: mmlu, metric: acc, min: x}\n"},
            "policy: require.eval.min",
        ),
        ({"policy": "version: 1\nrequire: {signd: {}}\n"}, "policy: require"),
        ({"policy": "version: [1\n"}, "policy: not valid YAML"),
        ({"policy": {"version": 2, "require": {"signed": {}}}}, "policy: version"),
        (
            {"manifest": {"files": [], "digest": "ab" * 32, "modelSigningDigest": "ab" * 32}},
            "manifest",
        ),
        ({"manifest": {"files": "nope"}}, "manifest.files"),
        ({"digest": "sha256:xyz"}, "digest"),
        ({}, "give exactly one"),
        ({"digest": "sha256:" + "0" * 64, "name": "../etc"}, "name"),
    ],
)
def test_the_gate_refuses_malformed_input_naming_the_field(
    api: Api, released: Path, body: dict[str, Any], words: str
) -> None:
    if "manifest" not in body and "digest" not in body and body:
        body = {**body, "manifest": manifest_json(released)}
    refused = api.post("/gate", body, scope="read")
    assert refused.status_code == 422, refused.text
    assert words in refused.json()["detail"], refused.json()["detail"]
