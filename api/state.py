"""What every route module shares: the app's store handles, the scope dependencies, the limits
on work per request, and the small encoders the JSON bodies use."""

from __future__ import annotations

import base64
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Scope, TokenFile, TokenRecord
from api.group_commit import Appended, GroupCommit
from api.metrics import Counters
from api.problems import Forbidden, TooLarge, Unauthorized
from evidence.dsse import Envelope
from evidence.home import Home
from evidence.store import Store
from schemas.incident import INCIDENT
from schemas.oversight import OVERSIGHT_EVENT

PREFIX = "/api/v1"
MAX_PAGE = 500
DEFAULT_PAGE = 100
MAX_BODY = 1 << 20
SYSTEM_SCAN = 5_000
# The databases' integer: no index or tree size in the log is larger, and a larger number in a
# request would overflow the query (a 500) instead of being refused (a 422).
INT64_MAX = 2**63 - 1
IndexPath = Annotated[int, Path(le=INT64_MAX, description="an entry's index in the log")]
# Kinds that name their system in the predicate's `system` field rather than as a subject.
SYSTEM_FIELD_KINDS = (OVERSIGHT_EVENT, INCIDENT)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Stores:
    """The app's two store handles, opened on first use: reading needs no signing key."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self._lock = threading.Lock()
        self._read: Store | None = None
        self._write: Store | None = None
        self.counters = Counters()
        self.appends = GroupCommit(self.append_batch)

    def read(self) -> Store:
        with self._lock:
            if self._read is None:
                self._read = self.home.open_store()
            return self._read

    def write(self) -> Store:
        with self._lock:
            if self._write is None:
                self._write = self.home.open_store(write=True)
            return self._write

    def append_batch(self, envelopes: Sequence[Envelope]) -> Appended:
        store = self.write()
        result = store.append_envelopes(envelopes, labels=["envelope"] * len(envelopes))
        return Appended(result, store.inclusion_proofs(result.indices, result.checkpoint.size))

    def close(self) -> None:
        for store in (self._read, self._write):
            if store is not None:
                store.close()


async def stores_of(request: Request) -> Stores:
    # async: a sync dependency costs every request a trip through the thread pool.
    stores: Stores = request.app.state.stores
    return stores


StoresDep = Annotated[Stores, Depends(stores_of)]
_bearer = HTTPBearer(auto_error=False, description="An Annex API token: `annex tokens create`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require(
    scope: Scope,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[TokenRecord]]:
    """The one auth dependency: 401 without a live token, 403 without `scope` (or admin).

    It runs on the event loop, not in the thread pool: the token file is re-read only when its
    stat changes, so the usual check is a stat and a few constant-time comparisons.
    """

    async def check(request: Request, credentials: Credentials) -> TokenRecord:
        if credentials is None:
            raise Unauthorized("this route needs a bearer token (Authorization: Bearer annex_…)")
        tokens: TokenFile = request.app.state.tokens
        record = tokens.find(credentials.credentials)
        if record is None:
            raise Unauthorized("the bearer token is unknown or revoked")
        if not record.allows(scope):
            raise Forbidden(f"token {record.id} has scope {record.scope}; this route needs {scope}")
        return record

    check.__name__ = f"require_{scope}"
    return check


read = [Depends(require("read"))]
write = [Depends(require("write"))]


def aware(moment: datetime | None) -> datetime | None:
    """A time without an offset is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 past MAX_BODY whether or not Content-Length says so."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge(f"the body is {declared} bytes; the limit is {MAX_BODY}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge(f"the body exceeds the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
