"""Shared fixtures: fresh logs on SQLite and on a real PostgreSQL server, and statements."""

from __future__ import annotations

import hashlib
import os
import string
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from evidence.home import Home
from evidence.store import Store

PG_ENV = "ANNEX_TEST_POSTGRES_URL"
SHARED = Path(__file__).resolve().parents[2] / "shared"


# What the tests' collector keys are registered to sign: the kinds `statement` makes them post.
COLLECTOR_KINDS = tuple(f"https://annex.dev/predicates/{k}/v1" for k in ("example", "gpu"))


def statement(i: int, *, kind: str = "example", observed: str | None = None) -> dict[str, Any]:
    """A small valid in-toto statement whose subject digest depends on `i`."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": f"artifact-{i}", "digest": {"sha256": hashlib.sha256(b"%d" % i).hexdigest()}}
        ],
        "predicateType": f"https://annex.dev/predicates/{kind}/v1",
        "predicate": {"observedAt": observed or "2026-11-24T08:00:00Z", "n": i},
    }


B64_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"


def noncanonical_b64(text: str, bits: int = 1) -> str:
    """Canonical base64 with `bits` xored into the unused low bits of its last data character:
    other text, the same bytes to Python's decoder. `text` must end in padding."""
    data = text.rstrip("=")
    pad = len(text) - len(data)
    assert pad in (1, 2) and 0 < bits < 1 << (2 * pad), (text, bits)
    last = B64_ALPHABET[B64_ALPHABET.index(data[-1]) ^ bits]
    return data[:-1] + last + "=" * pad


def postgres_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server."""
    server = postgres_url()
    if server is None:
        pytest.skip(f"no PostgreSQL server: set {PG_ENV} (bash .ci/run starts one)")
    name = "annex_" + uuid.uuid4().hex[:12]
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = server.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None means the default SQLite file in the data directory."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database")
        return url
    return None


@pytest.fixture
def home(tmp_path: Path, database_url: str | None) -> Home:
    h = Home(tmp_path / "annex", database_url)
    h.init("test.example/log")
    return h


@pytest.fixture
def sqlite_home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "annex")
    h.init("test.example/log")
    return h


@pytest.fixture
def store(home: Home) -> Iterator[Store]:
    with home.open_store(write=True) as s:
        yield s
