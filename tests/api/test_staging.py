"""Report staging folders a killed server left behind are dealt with at the next start: the one
whose report was logged goes to its index, the others are removed."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from api.app import create_app
from api.routes_reports import STAGING, reports_dir
from evidence.home import Home
from schemas.report import REPORT
from schemas.statement import STATEMENT_TYPE


def test_the_next_start_moves_a_logged_report_and_removes_the_rest(sqlite_home: Home) -> None:
    staging = reports_dir(sqlite_home) / STAGING
    logged, unlogged = staging / "job-logged", staging / "job-unlogged"
    for folder, data in ((logged, b"%PDF-1.7 logged"), (unlogged, b"%PDF-1.7 never logged")):
        folder.mkdir(parents=True)
        (folder / "annex-iv-x.pdf").write_bytes(data)
    (unlogged / "annex-iv-x.pdf.bundle.json").write_text("{}")
    digest = hashlib.sha256(b"%PDF-1.7 logged").hexdigest()
    with sqlite_home.open_store(write=True) as store:  # the job logged it, then was killed
        index = store.append(
            [
                {
                    "_type": STATEMENT_TYPE,
                    "subject": [{"name": "report:annex-iv:x", "digest": {"sha256": digest}}],
                    "predicateType": REPORT,
                    "predicate": {"observedAt": "2026-12-08T00:00:00Z"},
                }
            ]
        ).first_index
    with TestClient(create_app(sqlite_home)):
        pass
    moved = reports_dir(sqlite_home) / str(index) / "annex-iv-x.pdf"
    assert moved.read_bytes() == b"%PDF-1.7 logged"
    assert not logged.exists() and not unlogged.exists()
