"""Schemathesis over the app's own OpenAPI schema, called in-process (ASGI, no server).

Every operation the schema documents gets generated requests with an admin token, so each route
is reached past auth; two promises are checked on every response: no 5xx, and a body and status
the schema documents. Bounded (a few examples an operation, no shrinking) so it stays well under
a minute; CI runs it with the rest. The log holds entries, a system card and oversight events so
reads find something.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import create_engine, text

from api.app import create_app
from api.auth import TokenFile
from evidence.home import Home
from schemas.oversight import OversightAction
from tests.conftest import postgres_url, statement
from tests.reports.oversight_fixture import Rig

CHECKS = [not_a_server_error, response_schema_conformance]
EXAMPLES = 12


def _fill(home: Home, tmp: Path) -> None:
    rig = Rig(home, tmp)
    try:
        rig.store.append([statement(i) for i in range(5)])
        rig.dataset("source: fuzz files\n")
        rig.card()
        rig.event(OversightAction.STOP, "rev-1", "2026-11-03T09:00:00Z", linked=False)
    finally:
        rig.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    """One log per database for the whole module: the schema bound to its app, and auth."""
    tmp = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with _database(request.param) as url:
        home = Home(tmp / "annex", url)
        home.init("test.example/log")
        _fill(home, tmp)
        _, secret = TokenFile(home.path).create("admin", "fuzz")
        app = create_app(home)
        yield app, {"Authorization": f"Bearer {secret}"}
        jobs = getattr(app.state, "jobs", None)  # what the lifespan would stop
        if jobs is not None:
            jobs.close()
        app.state.stores.close()


class _database:
    """None for SQLite; else a fresh database on the test server, dropped afterwards."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = "annex_fuzz_" + uuid.uuid4().hex[:10]
        self.server = postgres_url()

    def __enter__(self) -> str | None:
        if self.kind == "sqlite":
            return None
        if self.server is None:
            pytest.skip("no PostgreSQL server: set ANNEX_TEST_POSTGRES_URL")
        with create_engine(self.server, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f"CREATE DATABASE {self.name}"))
        return self.server.rsplit("/", 1)[0] + "/" + self.name

    def __exit__(self, *exc: object) -> None:
        if self.kind == "sqlite" or self.server is None:
            return
        admin = create_engine(self.server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def app(served: tuple[FastAPI, dict[str, str]]) -> FastAPI:
    return served[0]


@pytest.fixture
def auth(served: tuple[FastAPI, dict[str, str]]) -> dict[str, str]:
    return served[1]


# The schema as the app documents it; building the app reads nothing from disk (the store opens
# on first use), so any path will do here. Each test then calls the fixture's app.
schema = schemathesis.openapi.from_dict(create_app(Home(Path("/nonexistent"))).openapi())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_schema_conformance(
    case: schemathesis.Case[Any], app: FastAPI, auth: dict[str, str]
) -> None:
    case.headers.update(auth)  # the schema's own bearer scheme would send a random token
    case.call_and_validate(app=app, checks=CHECKS)


OVERSIZED = (
    "/entries/18577984355995406565376",
    "/entries/512/proof?treeSize=20480937157085698217552453539201024",
    "/entries?after=17821862767737155092480",
    "/reports/5906653815316685357568819766231040",
    "/reports/1577957476568673288192/receipt",
    "/consistency?old=1&new=9223372036854775808",
    "/systems/x/oscal?at=9223372036854775808",
)


@pytest.mark.parametrize("path", OVERSIZED)
def test_a_number_past_int64_is_refused_not_a_server_error(
    app: FastAPI, auth: dict[str, str], path: str
) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/api/v1" + path, headers=auth)
    assert 400 <= answer.status_code < 500, answer.text
