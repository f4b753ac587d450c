"""The REST service on SQLite and PostgreSQL: reads with cursors, proofs that verify offline,
envelope ingest (append, replay, untrusted key, size), problem bodies, OpenAPI, and `annex serve`
over real HTTP."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import MAX_BODY, create_app
from api.auth import TokenFile
from evidence.canonical import canonical_bytes
from evidence.dsse import Envelope, sign_envelope
from evidence.home import Home
from evidence.keys import Signer
from evidence.note import TlogProof
from evidence.verify import verify_entry
from schemas.oversight import OVERSIGHT_EVENT, OversightAction
from tests.api.conftest import annex_command
from tests.conftest import COLLECTOR_KINDS, noncanonical_b64, statement
from tests.reports.oversight_fixture import SYSTEM, Rig

API = "/api/v1"


class Api:
    """A TestClient with one token of each scope, on a log holding: entry 0 (key event), 1-12
    (statements 100..111), a dataset, the card of SYSTEM, two oversight events."""

    def __init__(self, home: Home, tmp: Path) -> None:
        self.home = home
        rig = Rig(home, tmp)
        try:
            rig.store.append([statement(100 + i) for i in range(12)])
            rig.dataset("source: branch files\n")
            self.card = rig.card()
            self.events = [
                rig.event(OversightAction.STOP, "rev-1", "2026-11-03T09:00:00Z", linked=False),
                rig.event(
                    OversightAction.STOP,
                    "rev-2",
                    "2026-11-03T10:00:00Z",
                    linked=False,
                    system="other-system",
                ),
            ]
        finally:
            rig.close()
        tokens = TokenFile(home.path)
        self.secrets = {s: tokens.create(s)[1] for s in ("read", "write", "admin")}
        self.client = TestClient(create_app(home))

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[scope]}"}

    def get(self, path: str, *, scope: str = "read", **params: Any) -> Any:
        return self.client.get(API + path, params=params, headers=self.headers(scope))

    def post(self, path: str, body: bytes, scope: str = "write") -> Any:
        headers = {**self.headers(scope), "Content-Type": "application/json"}
        return self.client.post(API + path, content=body, headers=headers)

    def size(self) -> int:
        with self.home.open_store() as store:
            return store.size()


@pytest.fixture
def api(home: Home, tmp_path: Path) -> Iterator[Api]:
    made = Api(home, tmp_path)
    with made.client:
        yield made


def collector(home: Home, name: str = "gpu-node-1") -> Signer:
    signer = Signer.generate(name)
    home.add_collector_key(name, signer.public_bytes, COLLECTOR_KINDS)
    return signer


def envelope_bytes(signer: Signer, i: int) -> bytes:
    envelope = sign_envelope(canonical_bytes(statement(i, kind="gpu")), signer)
    return json.dumps(envelope.to_dict()).encode()


def test_entries_page_with_a_cursor(api: Api) -> None:
    seen: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 5} if after is None else {"limit": 5, "after": after}
        page = api.get("/entries", **params).json()
        seen.extend(e["index"] for e in page["entries"])
        after = page["next"]
        if after is None:
            break
    assert seen == list(range(api.size()))
    too_many = api.get("/entries", limit=501)
    assert too_many.status_code == 422
    # one problem type per kind of error, whether FastAPI or Annex refused it
    assert too_many.json()["type"] == "https://annex.dev/problems/unprocessable"
    garbled = api.post("/entries", b'{"payload": "!!"}')
    assert (garbled.status_code, garbled.json()["type"]) == (422, too_many.json()["type"])


def test_entries_filters(api: Api) -> None:
    kind = "https://annex.dev/predicates/example/v1"
    found = api.get("/entries", predicateType=kind, limit=500).json()["entries"]
    assert len(found) == 12 and all(e["predicate_type"] == kind for e in found)
    digest = statement(105)["subject"][0]["digest"]["sha256"]
    one = api.get("/entries", subjectDigest=f"sha256:{digest}").json()["entries"]
    assert [e["statement"]["predicate"]["n"] for e in one] == [105]
    assert api.get("/entries", since="2999-01-01T00:00:00Z").json()["entries"] == []
    assert len(api.get("/entries", until="2999-01-01T00:00:00Z", limit=500).json()["entries"]) == (
        api.size()
    )


def test_entries_of_a_system(api: Api) -> None:
    found = api.get("/entries", system=SYSTEM).json()
    indices = [e["index"] for e in found["entries"]]
    assert indices == [api.card, api.events[0]]  # not the other system's event
    only_events = api.get("/entries", system=SYSTEM, predicateType=OVERSIGHT_EVENT).json()
    assert [e["index"] for e in only_events["entries"]] == [api.events[0]]
    first = api.get("/entries", system=SYSTEM, limit=1).json()
    assert [e["index"] for e in first["entries"]] == [api.card] and first["next"] == api.card
    rest = api.get("/entries", system=SYSTEM, limit=1, after=api.card).json()
    assert [e["index"] for e in rest["entries"]] == [api.events[0]]


def test_system_pages_with_a_bounded_scan(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a scan of one entry a request, pages are short but the cursor reaches every match."""
    monkeypatch.setattr("api.state.SYSTEM_SCAN", 1)
    seen: list[int] = []
    after, requests = None, 0
    while requests < 100:
        params: dict[str, Any] = {"system": SYSTEM, "limit": 5}
        if after is not None:
            params["after"] = after
        page = api.get("/entries", **params).json()
        seen.extend(e["index"] for e in page["entries"])
        after, requests = page["next"], requests + 1
        if after is None:
            break
    assert seen == [api.card, api.events[0]]
    assert requests > 2


def test_one_entry_and_its_proof_verify_offline(api: Api) -> None:
    entry = api.get("/entries/3").json()
    assert entry["index"] == 3 and entry["statement"]["predicate"]["n"] == 102
    proof_json = api.get("/entries/3/proof").json()
    text = api.client.get(f"{API}/entries/3/proof?format=text", headers=api.headers("read"))
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == proof_json["tlog_proof"]
    proof = TlogProof.parse(text.text)
    report = verify_entry(Envelope.from_dict(entry["envelope"]), proof, api.home.trust())
    assert report.index == 3
    for path in ("/entries/999", "/entries/999/proof", "/entries/-1"):
        missing = api.get(path)
        assert missing.status_code == 404 and "no entry" in missing.json()["detail"], path


def test_checkpoint_and_consistency(api: Api) -> None:
    note = api.get("/checkpoint")
    assert note.headers["content-type"].startswith("text/plain")
    assert note.text.startswith("test.example/log\n")
    cp = api.get("/checkpoint", format="json").json()
    assert cp["size"] == api.size() and cp["note"] == note.text
    proof = api.get("/consistency", old=1, new=cp["size"]).json()
    assert proof["old_size"] == 1 and proof["new_size"] == cp["size"] and proof["hashes"]
    bad = api.get("/consistency", old=5, new=2)
    assert bad.status_code == 400 and bad.json()["type"].endswith("/input-error")


def test_systems(api: Api) -> None:
    listed = api.get("/systems").json()["systems"]
    assert [s["system"] for s in listed] == [SYSTEM] and listed[0]["entry"] == api.card
    one = api.get(f"/systems/{SYSTEM}").json()
    assert one["versions"][-1]["entry"] == api.card
    assert api.get("/systems/nope").status_code == 404


def test_ingest_appends_and_a_replay_is_409(api: Api) -> None:
    signer = collector(api.home)
    body = envelope_bytes(signer, 1)
    before = api.size()
    done = api.post("/entries", body)
    assert done.status_code == 201, done.text
    result = done.json()
    assert result["index"] == before and api.size() == before + 1
    proof = TlogProof.parse(result["tlog_proof"])
    envelope = Envelope.from_dict(json.loads(body))
    assert verify_entry(envelope, proof, api.home.trust()).keyid == signer.keyid
    replay = api.post("/entries", body)
    assert replay.status_code == 409 and f"entry {before}" in replay.json()["detail"]
    assert api.size() == before + 1
    assert api.post("/entries", envelope_bytes(signer, 2), scope="admin").status_code == 201


def test_untrusted_and_revoked_keys_are_refused(api: Api) -> None:
    before = api.size()
    stranger = Signer.generate("stranger")
    refused = api.post("/entries", envelope_bytes(stranger, 1))
    assert refused.status_code == 403 and "not signed by any trusted key" in refused.text
    revoked = collector(api.home, "old-node")
    api.home.revoke(revoked.keyid, reason="node retired")
    after_revoke = api.size()
    gone = api.post("/entries", envelope_bytes(revoked, 2))
    assert gone.status_code == 403, gone.text
    assert api.size() == after_revoke and after_revoke == before + 2  # the two key events


def test_malformed_and_oversized_bodies(api: Api) -> None:
    before = api.size()
    for body in (b"not json", b"[]", b'{"payloadType": "x"}', b'{"payload": "!!"}'):
        answer = api.post("/entries", body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    signer = collector(api.home)
    # Well-formed envelopes by a trusted key around what is not a valid statement: 422 too.
    no_type = statement(2, kind="gpu")
    del no_type["_type"]
    wrong_type = sign_envelope(canonical_bytes(statement(3, kind="gpu")), signer).to_dict()
    wrong_type["payloadType"] = "text/plain"
    for envelope in (sign_envelope(canonical_bytes(no_type), signer).to_dict(), wrong_type):
        answer = api.post("/entries", json.dumps(envelope).encode())
        assert answer.status_code == 422, answer.text
    payload = statement(1, kind="gpu")
    payload["predicate"]["padding"] = "x" * MAX_BODY
    big = json.dumps(sign_envelope(canonical_bytes(payload), signer).to_dict()).encode()
    assert api.post("/entries", big).status_code == 413
    chunks = iter([b"{" + b" " * MAX_BODY, b"}"])  # no Content-Length: counted while read
    streamed = api.client.post(f"{API}/entries", content=chunks, headers=api.headers("write"))
    assert streamed.status_code == 413
    assert api.size() == before + 1  # the collector key event only


def test_envelopes_in_other_base64_are_refused(api: Api) -> None:
    """The same bytes in another base64 text (unused bits set, no padding, URL-safe, a newline):
    a malformed envelope (422, like any other), the field named, nothing appended."""
    signer = collector(api.home)
    before = api.size()
    made = statement(1, kind="gpu")
    made["predicate"]["mark"] = "~~~~~?????"  # base64 "fn5+" and "Pz8/": '+' and '/' to rewrite
    signed = sign_envelope(canonical_bytes(made), signer).to_dict()
    sig, payload = signed["signatures"][0]["sig"], signed["payload"]
    url_safe = payload.replace("+", "-").replace("/", "_")
    assert base64.urlsafe_b64decode(url_safe) == base64.b64decode(payload) and url_safe != payload
    changes = [
        ("sig", noncanonical_b64(sig), "envelope.signatures[0].sig"),
        ("sig", sig.rstrip("="), "envelope.signatures[0].sig"),
        ("payload", url_safe, "envelope.payload"),
        ("payload", payload + "\n", "envelope.payload"),
    ]
    for field, text, where in changes:
        envelope = json.loads(json.dumps(signed))
        (envelope if field == "payload" else envelope["signatures"][0])[field] = text
        answer = api.post("/entries", json.dumps(envelope).encode())
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert f"{where} is not canonical base64" in answer.json()["detail"]
    assert api.size() == before
    assert api.post("/entries", json.dumps(signed).encode()).status_code == 201


def test_problem_bodies(api: Api) -> None:
    answer = api.get("/entries", limit="many")
    assert answer.status_code == 422
    body = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert body["status"] == 422 and body["instance"] == f"{API}/entries"
    assert "limit" in body["detail"]
    assert api.client.get(f"{API}/nowhere").json()["status"] == 404


def test_openapi_schema_loads(api: Api) -> None:
    schema = api.client.get(f"{API}/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert {f"{API}/entries", f"{API}/entries/{{index}}/proof", f"{API}/checkpoint"} <= set(paths)
    assert "requestBody" in paths[f"{API}/entries"]["post"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    # Every refusal a GRC tool may meet is documented as a problem body, not FastAPI's own shape.
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            needed = {"500"} if path in {f"{API}/healthz", f"{API}/readyz"} else {"401", "403"}
            assert needed <= set(responses), (method, path, sorted(responses))
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    body = response["content"]["application/problem+json"]["schema"]
                    assert body["required"] == ["type", "title", "status", "detail", "instance"]
    assert {"409", "413"} <= set(paths[f"{API}/entries"]["post"]["responses"])
    assert "404" in paths[f"{API}/entries/{{index}}"]["get"]["responses"]
    assert "HTTPValidationError" not in schema.get("components", {}).get("schemas", {})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_annex_serve_answers_over_http(sqlite_home: Home, tmp_path: Path) -> None:
    _, secret = TokenFile(sqlite_home.path).create("read")
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "ANNEX_HOME": str(sqlite_home.path),
    }
    server = subprocess.Popen(
        [*annex_command(), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}{API}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "annex serve did not start"
                time.sleep(0.1)
        answer = httpx.get(f"{url}/checkpoint", headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code == 200 and answer.text.startswith("test.example/log\n")
        assert httpx.get(f"{url}/checkpoint").status_code == 401
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert secret not in output


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics:\n{text}")


def test_metrics_count_the_log_and_the_api_appends(api: Api) -> None:
    before = api.get("/metrics")
    assert before.status_code == 200, before.text
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert _metric(before.text, "annex_log_entries") == api.size()
    assert 0 <= _metric(before.text, "annex_checkpoint_age_seconds") < 3600
    signer = collector(api.home)
    body = envelope_bytes(signer, 1)
    assert api.post("/entries", body).status_code == 201
    assert api.post("/entries", body).status_code == 409  # a replay is refused and counted
    after = api.get("/metrics").text
    assert _metric(after, "annex_api_envelopes_appended_total") == 1
    assert _metric(after, "annex_api_envelopes_refused_total") == 1
    assert _metric(after, "annex_log_entries") == api.size()
