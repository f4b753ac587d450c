"""`annex serve` refuses an address it cannot listen on before it starts, with exit 2 and the
reason: a port out of range, or one another process holds."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.api.conftest import Annex


def test_a_port_out_of_range_or_in_use_is_refused(
    fresh: Path, annex_at: Callable[[Path], Annex]
) -> None:
    annex = annex_at(fresh)
    out_of_range = annex.fast("serve", "--port", "99999", "--no-sweeps")
    assert out_of_range.code == 2 and "--port" in out_of_range.err
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        taken = annex.fast("serve", "--port", str(port), "--no-sweeps")
    assert taken.code == 2, taken
    assert f"cannot listen on 127.0.0.1:{port}" in taken.err


def test_a_token_in_a_query_string_never_reaches_the_access_log() -> None:
    import logging

    from api.cli_serve import RedactTokens

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/v1/entries?limit=5&token=s3cr3t&x=1", "1.1", 401), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    line = record.getMessage()
    assert "s3cr3t" not in line and "token=[redacted]&x=1" in line and "limit=5" in line
