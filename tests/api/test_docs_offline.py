"""The API's docs page works on an air-gapped network: every asset it loads is served by Annex
itself, from the installed package; and `/` leads a browser to the auditor's pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.app import create_app
from evidence.home import Home


def test_the_docs_page_loads_nothing_from_elsewhere(sqlite_home: Home) -> None:
    with TestClient(create_app(sqlite_home)) as client:
        page = client.get("/api/v1/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower() and "https://" not in page.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
        for asset in assets:
            assert asset.startswith("/api/v1/docs/assets/"), asset
            assert client.get(asset).status_code == 200, asset
        assert "/api/v1/openapi.json" in page.text
        root = client.get("/", follow_redirects=False)
        assert (root.status_code, root.headers["location"]) == (307, "/web")
