"""The ingest routes on SQLite and PostgreSQL: OpenLineage events exactly as OpenLineage's HTTP
transport posts them, oversight feeds, inference logs, the lineage graph of a digest; each
idempotent, each refusal a problem body with nothing appended, and nothing personal in the
request log."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from api.app import MAX_BODY, create_app
from api.auth import TokenFile
from collectors.datasets import collect_dataset
from evidence.home import Home
from evidence.verify import verify_log
from schemas.inference import INFERENCE_BATCH
from schemas.lineage import OPENLINEAGE_RUN, name_digest, subject_name
from schemas.oversight import OVERSIGHT_EVENT

API = "/api/v1"
Response = Any  # what TestClient returns (httpx's Response, whichever build)
REVIEWER = "alice.reviewer@example.com"
CALLER = "bob.caller@example.com"

# What openlineage-python 1.54.0 posts for a COMPLETE RunEvent: `Serde.to_json(event)` as the
# body, headers Content-Type: application/json and Authorization: Bearer <api_key>, to
# urljoin(url, "api/v1/lineage") (captured from HttpTransport._prepare_request).
CLIENT_BODY = (
    '{"eventTime": "2026-11-24T10:00:00.000Z", "eventType": "COMPLETE", "inputs": [{"facets": {},'
    ' "inputFacets": {}, "name": "/data/tickets.jsonl", "namespace": "file"}], "job": {"facets":'
    ' {}, "name": "finetune-llama", "namespace": "training"}, "outputs": [{"facets": {}, "name": '
    '"/models/llama-ft", "namespace": "file", "outputFacets": {}}], "producer": '
    '"https://example.com/pipeline", "run": {"facets": {}, "runId": '
    '"0192f0a4-7c1e-7b3a-9d2e-5f6a7b8c9d0e"}, "schemaURL": '
    '"https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"}'
)


def event(run: str, job: str, inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-24T11:00:00Z",
        "producer": "https://example.com/pipeline",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run},
        "job": {"namespace": "training", "name": job},
        "inputs": [{"namespace": "file", "name": n} for n in inputs],
        "outputs": [{"namespace": "file", "name": n} for n in outputs],
    }


def feed_line(reviewer: str = REVIEWER, **extra: Any) -> dict[str, Any]:
    line = {
        "action": "override",
        "reviewer": reviewer,
        "reason": "wrong dosage",
        "request": "req-8812",
        "system": "triage-prod",
        "at": "2026-11-24T08:02:11Z",
    }
    return {**line, **extra}


def jsonl(*items: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def request_line(n: int, **extra: Any) -> dict[str, Any]:
    line = {
        "timestamp": f"2026-11-24T08:00:0{n}Z",
        "request_id": f"req-{n}",
        "model": "llama-ft",
        "user": CALLER,
        "messages": [{"role": "user", "content": "my secret prompt"}],
        "response": "an answer",
        "latency_ms": 100 + n,
    }
    return {**line, **extra}


@dataclass
class Ingest:
    home: Home
    client: TestClient
    secrets: dict[str, str]

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[scope]}"}

    def post(
        self,
        path: str,
        body: bytes | str,
        *,
        scope: str = "write",
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> Response:
        sent = {**self.headers(scope), "Content-Type": "application/json", **(headers or {})}
        return self.client.post(API + path, content=body, headers=sent, params=params)

    def get(self, path: str, **params: Any) -> Response:
        return self.client.get(API + path, headers=self.headers("read"), params=params)

    def size(self) -> int:
        with self.home.open_store() as store:
            return store.size()

    def statements(self, kind: str) -> list[dict[str, Any]]:
        with self.home.open_store() as store:
            return [e.statement for e in store.query(predicate_type=kind, limit=500)]

    def entry(self, index: int) -> dict[str, Any]:
        with self.home.open_store() as store:
            return store.get(index).statement


@pytest.fixture
def api(home: Home) -> Iterator[Ingest]:
    tokens = TokenFile(home.path)
    secrets = {s: tokens.create(s)[1] for s in ("read", "write")}
    with TestClient(create_app(home)) as client:
        yield Ingest(home, client, secrets)


def refused(answer: Response, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    for word in words:
        assert word in detail, (word, detail)


# -- OpenLineage ---------------------------------------------------------------------------------


def test_openlineage_client_post_is_logged_once(api: Ingest) -> None:
    url = urljoin("http://testserver", "api/v1/lineage")  # the transport's own URL rule
    headers = {"Content-Type": "application/json", **api.headers("write")}
    first = api.client.post(url, content=CLIENT_BODY, headers=headers)
    assert first.status_code == 201, first.text
    index = first.json()["index"]
    assert first.json()["appended"] == [index]
    statement = api.entry(index)
    assert statement["predicateType"] == OPENLINEAGE_RUN
    assert statement["predicate"]["event"] == json.loads(CLIENT_BODY)
    assert statement["predicate"]["job"] == {"namespace": "training", "name": "finetune-llama"}
    names = [s["name"] for s in statement["subject"]]
    assert "ol:file//data/tickets.jsonl" in names and "ol:file//models/llama-ft" in names
    size = api.size()
    again = api.client.post(url, content=CLIENT_BODY, headers=headers)
    assert again.status_code == 200
    assert again.json()["index"] == index and again.json()["already_logged"] == [index]
    assert api.size() == size
    with api.home.open_store() as store:
        verify_log(store, api.home.trust())


def test_openlineage_array_and_gzip(api: Ingest) -> None:
    one = event("run-1", "prep", ["/raw"], ["/clean"])
    two = event("run-2", "train", ["/clean"], ["/model"])
    first = api.post("/lineage", json.dumps(one))
    assert first.status_code == 201
    both = api.post("/lineage", json.dumps([one, two, two]))
    assert both.status_code == 201, both.text
    answer = both.json()
    assert answer["events"] == 3 and answer["already_logged"] == [first.json()["index"]]
    assert len(answer["appended"]) == 1
    assert answer["entries"] == [first.json()["index"], *answer["appended"] * 2]
    three = event("run-3", "eval", ["/model"], [])
    zipped = api.post(
        "/lineage", gzip.compress(json.dumps(three).encode()), headers={"Content-Encoding": "gzip"}
    )
    assert zipped.status_code == 201, zipped.text
    assert api.entry(zipped.json()["index"])["predicate"]["runId"] == "run-3"


def test_openlineage_refusals_append_nothing(api: Ingest) -> None:
    size = api.size()
    refused(api.post("/lineage", b'{"eventTime": '), 422, "not valid JSON")
    broken = event("run-9", "x", [], [])
    del broken["run"]["runId"]
    two = json.dumps([event("ok", "x", [], []), broken])
    refused(api.post("/lineage", two), 422, "request body item 2: field run.runId")
    refused(api.post("/lineage", b"[1, "), 422, "not valid JSON")
    refused(api.post("/lineage", b"[]"), 422, "at least one event")
    refused(api.post("/lineage", b"{}", headers={"Content-Encoding": "br"}), 422, "gzip")
    big = json.dumps({**event("big", "x", [], []), "pad": "x" * MAX_BODY})
    refused(api.post("/lineage", big), 413, "limit")
    bomb = gzip.compress(big.encode())
    refused(api.post("/lineage", bomb, headers={"Content-Encoding": "gzip"}), 413, "inflates")
    refused(api.post("/lineage", CLIENT_BODY, scope="read"), 403, "needs write")
    assert api.client.post(API + "/lineage", content=CLIENT_BODY).status_code == 401
    assert api.size() == size
    metrics = api.get("/metrics").text
    assert "annex_api_envelopes_refused_total 7.0" in metrics


# -- the lineage graph ---------------------------------------------------------------------------


def test_lineage_graph_of_a_digest(api: Ingest) -> None:
    prep = api.post("/lineage", json.dumps(event("r1", "prep", ["/raw"], ["/clean"])))
    train = api.post("/lineage", json.dumps(event("r2", "train", ["/clean"], ["/model"])))
    clean = f"sha256:{name_digest(subject_name('file', '/clean'))}"
    graph = api.get(f"/lineage/{clean}")
    assert graph.status_code == 200, graph.text
    found = graph.json()
    raw, model = (f"sha256:{name_digest(subject_name('file', n))}" for n in ("/raw", "/model"))
    prep_job = f"sha256:{name_digest(subject_name('training', 'prep'))}"
    assert found["subject"]["id"] == clean
    assert found["upstream"][-1] == raw and prep_job in found["upstream"]
    assert found["downstream"][-1] == model and not found["truncated"]
    edge = next(e for e in found["edges"] if e["to"] == clean)
    assert edge == {
        "from": prep_job,
        "to": clean,
        "relation": "ol-output",
        "entries": [prep.json()["index"]],
    }
    nodes = {n["id"]: n for n in found["nodes"]}
    assert nodes[model]["entries"] == [train.json()["index"]]
    near = api.get(f"/lineage/{clean.removeprefix('sha256:')}", depth=1).json()
    assert near["upstream"] == [prep_job] and near["truncated"]
    refused(api.get(f"/lineage/sha256:{'0' * 64}"), 404, "not in the lineage graph")
    refused(api.get("/lineage/tickets"), 422, "64 hex digits")
    assert api.get(f"/lineage/{clean}", depth=17).status_code == 422


def test_lineage_joins_a_collected_dataset(api: Ingest, tmp_path: Path) -> None:
    """An OpenLineage `file` dataset at the path a dataset was collected from is that dataset."""
    folder = tmp_path / "tickets"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a ticket"}\n', encoding="utf-8")
    with api.home.open_store(write=True) as store:
        index = store.append([collect_dataset(folder)]).first_index
        dataset = store.get(index).statement["subject"][0]["digest"]["sha256"]
    job = api.post("/lineage", json.dumps(event("r1", "train", [str(folder)], ["/model"])))
    found = api.get(f"/lineage/sha256:{dataset}").json()
    assert found["subject"]["kind"] == "dataset" and index in found["subject"]["entries"]
    model = f"sha256:{name_digest(subject_name('file', '/model'))}"
    assert found["upstream"] == [] and found["downstream"][-1] == model
    assert {e["relation"] for e in found["edges"]} == {"ol-input", "ol-output"}
    assert all(e["entries"] == [job.json()["index"]] for e in found["edges"])


# -- oversight events ----------------------------------------------------------------------------


def test_oversight_feed_is_logged_pseudonymised_once(api: Ingest) -> None:
    feed = jsonl(feed_line(), feed_line(action="stop", request=None))
    first = api.post("/oversight/events", feed, headers={"Content-Type": "application/x-ndjson"})
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["count"] == 2 and len(answer["entries"]) == 2
    logged = [api.entry(i) for i in answer["entries"]]
    assert [s["predicate"]["action"] for s in logged] == ["override", "stop"]
    assert all(s["predicateType"] == OVERSIGHT_EVENT for s in logged)
    assert logged[0]["predicate"]["reviewer"] == logged[1]["predicate"]["reviewer"]
    assert REVIEWER not in json.dumps(logged)
    size = api.size()
    again = api.post("/oversight/events", feed)
    assert again.status_code == 200 and again.json()["already_logged"]
    assert again.json()["first_index"] == answer["first_index"] and api.size() == size
    array = api.post("/oversight/events", json.dumps([feed_line(reason="second look")]))
    assert array.status_code == 201, array.text
    assert api.entry(array.json()["entries"][0])["predicate"]["reason"] == "second look"


def test_oversight_refusals_name_line_item_and_field(api: Ingest) -> None:
    size = api.size()
    bad_line = jsonl(feed_line(), feed_line(action="shrug"))
    refused(api.post("/oversight/events", bad_line), 422, "request body line 2", "action")
    bad_item = json.dumps([feed_line(), feed_line(at="yesterday")])
    refused(api.post("/oversight/events", bad_item), 422, "request body item 2", "at")
    refused(api.post("/oversight/events", b'[{"a": 1, "a": 2}]'), 422, "duplicate key")
    refused(api.post("/oversight/events", b"\n\n"), 422, "no oversight events")
    big = jsonl(*[feed_line(reason="x" * 1000)] * (MAX_BODY // 1000))
    refused(api.post("/oversight/events", big), 413)
    refused(api.post("/oversight/events", jsonl(feed_line()), scope="read"), 403)
    assert api.size() == size
    assert REVIEWER not in api.post("/oversight/events", bad_line).text


# -- inference logs ------------------------------------------------------------------------------


def test_inference_log_is_logged_once(api: Ingest) -> None:
    body = jsonl(*(request_line(n) for n in range(3)))
    first = api.post("/inference/batches", body, source="gateway-1124.jsonl")
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["source"]["name"] == "gateway-1124.jsonl" and len(answer["entries"]) == 1
    assert answer["batches"][0]["requests"] == 3 and answer["batches"][0]["callers"] == 1
    statement = api.entry(answer["entries"][0])
    assert statement["predicateType"] == INFERENCE_BATCH
    assert statement["subject"][0]["name"] == "inference-log:gateway-1124.jsonl"
    assert statement["predicate"]["requests"] == 3
    text = json.dumps(statement)
    assert CALLER not in text and "my secret prompt" not in text
    size = api.size()
    again = api.post("/inference/batches", body, source="another-name.jsonl")
    assert again.status_code == 200 and again.json()["already_logged"]
    assert again.json()["entries"] == answer["entries"] and api.size() == size


def test_inference_options_as_the_cli_takes_them(api: Ingest) -> None:
    body = jsonl(*(request_line(n) for n in range(5)))
    made = api.post(
        "/inference/batches",
        body,
        retainContent="true",
        retention="support",
        retentionDays=30,
        batchSize=2,
    )
    assert made.status_code == 201, made.text
    answer = made.json()
    assert answer["source"]["name"].startswith("inference-") and len(answer["entries"]) == 3
    assert [b["requests"] for b in answer["batches"]] == [2, 2, 1]
    retention = api.entry(answer["entries"][0])["predicate"]["retention"]
    assert retention["content"] and retention["class"] == "support" and retention["days"] == 30


def test_inference_refusals_append_nothing(api: Ingest, monkeypatch: pytest.MonkeyPatch) -> None:
    size = api.size()
    bad = jsonl(request_line(1), {"request_id": "x", "model": "m"})
    answer = api.post("/inference/batches", bad, source="bad.jsonl")
    refused(answer, 422, "bad.jsonl line 2", "timestamp")
    assert "/tmp" not in answer.json()["detail"] and "annex-upload" not in answer.text
    refused(api.post("/inference/batches", b"not json\n"), 422, "line 1", "not valid JSON")
    short = api.post("/inference/batches", jsonl(request_line(1)), retentionDays=10)
    refused(short, 422, "184")
    refused(api.post("/inference/batches", jsonl(request_line(1)), retention="x"), 422)
    assert api.post("/inference/batches", b"{}", source="../etc").status_code == 422
    monkeypatch.setattr("api.routes_ingest.MAX_INFERENCE_BODY", 100)
    refused(api.post("/inference/batches", jsonl(request_line(1), request_line(2))), 413)
    refused(api.post("/inference/batches", jsonl(request_line(1)), scope="read"), 403)
    assert api.size() == size
    with api.home.open_store() as store:
        assert store.query(predicate_type=INFERENCE_BATCH, limit=1) == []


def test_concurrent_identical_posts_are_logged_once(api: Ingest) -> None:
    size = api.size()
    bodies = {
        "/lineage": CLIENT_BODY.encode(),
        "/oversight/events": jsonl(feed_line()),
        "/inference/batches": jsonl(request_line(1)),
    }
    with ThreadPoolExecutor(4) as pool:
        for path, body in bodies.items():
            answers = list(pool.map(api.post, [path] * 4, [body] * 4))
            assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], path
    assert api.size() == size + 3


def test_deeply_nested_json_is_refused_not_a_crash(api: Ingest) -> None:
    size = api.size()
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        for path in ("/lineage", "/oversight/events", "/inference/batches"):
            answer = api.post(path, body)
            assert answer.status_code == 422, (path, answer.text[:200])
    assert api.size() == size


# -- the request log -----------------------------------------------------------------------------


def test_request_log_holds_no_token_and_no_person(
    api: Ingest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.post("/lineage", CLIENT_BODY)
    api.post("/oversight/events", jsonl(feed_line()))
    api.post("/oversight/events", jsonl(feed_line(action="shrug")))
    api.post("/inference/batches", jsonl(request_line(1)))
    api.post("/inference/batches", jsonl({**request_line(2), "latency_ms": -1}))
    api.get(f"/lineage/sha256:{'0' * 64}")
    assert any(r.name == "annex.api.ingest" for r in caplog.records)
    for secret in (*api.secrets.values(), REVIEWER, CALLER, "my secret prompt"):
        assert secret not in caplog.text
