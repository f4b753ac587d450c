"""A real `annex serve` (uvicorn) in a subprocess on a free port, for tests that push over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from evidence.home import Home
from tests.api.conftest import annex_command

API = "/api/v1"
START_TIMEOUT_S = 30


@dataclass(frozen=True)
class LiveServer:
    home: Home
    url: str  # http://127.0.0.1:PORT, what `--push` takes
    log: Path  # what the server printed (uvicorn's access log included)

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def annex_env(home: Home, cwd: Path) -> dict[str, str]:
    """What `annex` needs to run this checkout on `home` (and its database, if not SQLite)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "ANNEX_HOME": str(home.path),
    }
    if "PYTHONPATH" in os.environ:  # a checkout other than the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if home.database_url is not None:
        env["ANNEX_DATABASE_URL"] = home.database_url
    return env


@contextmanager
def serving(home: Home, cwd: Path) -> Iterator[LiveServer]:
    """Starts `annex serve` on `home`, waits until it answers, and stops it afterwards."""
    port = free_port()
    log = cwd / f"serve-{port}.log"
    with log.open("w") as out:  # a file, not a pipe: a full pipe would stall the server
        server = subprocess.Popen(
            [*annex_command(), "serve", "--port", str(port)],
            env=annex_env(home, cwd),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                httpx.get(f"{url}{API}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    raise AssertionError(f"annex serve exited:\n{log.read_text()}") from None
                assert time.monotonic() < deadline, "annex serve did not start"
                time.sleep(0.1)
        yield LiveServer(home, url, log)
    finally:
        server.terminate()
        server.wait(timeout=15)
