"""API tokens: hashed at rest, shown once, scoped, revocable; every route refuses without one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.app import PUBLIC_PATHS, create_app
from api.auth import SCOPES, TokenFile
from api.web import PUBLIC_WEB_PATHS
from api.web.session import COOKIE, WEB
from evidence.errors import InputError
from evidence.home import Home
from tests.api.conftest import Annex


@pytest.fixture
def client(sqlite_home: Home) -> TestClient:
    return TestClient(create_app(sqlite_home))


def bearer(home: Home, scope: str) -> dict[str, str]:
    _, secret = TokenFile(home.path).create(scope)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {secret}"}


def test_tokens_are_stored_hashed_and_found(sqlite_home: Home) -> None:
    tokens = TokenFile(sqlite_home.path)
    record, secret = tokens.create("read", "grc")
    text = tokens.path.read_text()
    assert secret not in text and record.sha256 in text
    assert tokens.path.stat().st_mode & 0o777 == 0o600
    assert tokens.find(secret) == record
    assert tokens.find(secret + "x") is None
    assert record.allows("read") and not record.allows("write")


def test_admin_implies_every_scope(sqlite_home: Home) -> None:
    record, _ = TokenFile(sqlite_home.path).create("admin")
    assert all(record.allows(s) for s in SCOPES)


def test_revoked_token_is_refused(sqlite_home: Home, client: TestClient) -> None:
    tokens = TokenFile(sqlite_home.path)
    record, secret = tokens.create("read")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/checkpoint", headers=headers).status_code == 200
    tokens.revoke(record.id)
    refused = client.get("/api/v1/checkpoint", headers=headers)
    assert refused.status_code == 401
    with pytest.raises(InputError, match="already revoked"):
        tokens.revoke(record.id)
    with pytest.raises(InputError, match="no token 'nope'"):
        tokens.revoke("nope")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_refuses_a_missing_and_a_wrong_scope_token(
    sqlite_home: Home, client: TestClient
) -> None:
    """Walks app.routes: a route added without `require(scope)` fails here."""
    app = client.app
    tokens = {scope: bearer(sqlite_home, scope) for scope in ("read", "write", "report")}
    checked = 0
    for route in app.routes:  # type: ignore[attr-defined]
        if route.path in PUBLIC_PATHS | PUBLIC_WEB_PATHS:
            continue
        assert isinstance(route, APIRoute), f"{route.path} is not an API route"
        for method in (route.methods or set()) - {"HEAD", "OPTIONS"}:
            url = _concrete(route.path)
            if route.path.startswith(WEB + "/"):
                _check_web_page(client, method, url, tokens)
                checked += 1
                continue
            missing = client.request(method, url)
            assert missing.status_code == 401, (method, url, missing.text)
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert missing.headers["content-type"] == "application/problem+json"
            bad = client.request(method, url, headers={"Authorization": "Bearer annex_nope"})
            assert bad.status_code == 401, (method, url)
            statuses = [client.request(method, url, headers=h).status_code for h in tokens.values()]
            assert 403 in statuses, (method, url, statuses)
            assert 401 not in statuses
            checked += 1
    assert checked >= 8  # the eight routes of this slice, at least


def _check_web_page(
    client: TestClient, method: str, url: str, tokens: dict[str, dict[str, str]]
) -> None:
    """A browser page: no or a dead cookie goes to the login page (never the page itself), a live
    token without the scope gets 403, and the token is never a bearer header's business here."""
    login = f"{WEB}/login?next="
    for cookie in ({}, {"Cookie": f"{COOKIE}=annex_nope"}):
        answer = client.request(method, url, headers=cookie, follow_redirects=False)
        assert answer.status_code == 303, (method, url, cookie, answer.status_code)
        assert answer.headers["location"].startswith(login), (method, url)
    bearer_only = client.request(method, url, headers=tokens["read"], follow_redirects=False)
    assert bearer_only.status_code == 303, (method, url)  # the pages read the cookie alone
    statuses = []
    for header in tokens.values():
        secret = header["Authorization"].removeprefix("Bearer ")
        cookie = {"Cookie": f"{COOKIE}={secret}"}
        statuses.append(client.request(method, url, headers=cookie, follow_redirects=False))
    codes = [s.status_code for s in statuses]
    assert 403 in codes and 303 not in codes and 401 not in codes, (method, url, codes)


def test_public_routes_need_no_token(client: TestClient) -> None:
    assert client.get("/api/v1/healthz").json() == {"status": "ok"}
    ready = client.get("/api/v1/readyz").json()
    assert ready["status"] == "ready" and ready["size"] >= 1
    assert client.get("/api/v1/docs").status_code == 200


def test_readyz_is_503_without_a_log(tmp_path: Path) -> None:
    client = TestClient(create_app(Home(tmp_path / "none")))
    answer = client.get("/api/v1/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == 503


def test_tokens_cli_create_list_revoke(fresh: Path, annex_at: object) -> None:
    annex: Annex = annex_at(fresh)  # type: ignore[operator]
    made = annex.fast("tokens", "create", "--scope", "write", "--name", "gpu-node-1", "--json")
    assert made.code == 0, made.out + made.err
    created = made.json()
    assert created["token"].startswith("annex_") and created["scope"] == "write"
    assert TokenFile(fresh).find(created["token"]) is not None
    listed = annex.fast("tokens", "list", "--json").json()
    assert [t["id"] for t in listed] == [created["id"]]
    assert created["token"] not in json.dumps(listed) and "sha256" not in listed[0]
    assert annex.fast("tokens", "revoke", created["id"], "--json").json()["revoked_at"]
    assert TokenFile(fresh).find(created["token"]) is None
    again = annex.fast("tokens", "revoke", created["id"])
    assert again.code == 2 and "already revoked" in again.err
    wrong = annex.fast("tokens", "create", "--scope", "root")
    assert wrong.code == 2


def test_concurrent_creates_keep_every_token(sqlite_home: Home) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: TokenFile(sqlite_home.path).create("read"), range(16)))
    stored = TokenFile(sqlite_home.path)
    assert all(stored.find(secret) == record for record, secret in made)
