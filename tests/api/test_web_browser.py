"""The web pages in a real headless Chromium against a real uvicorn server: log in, open a
system, follow a citation to its entry, upload a dossier and see it verified. No page may break
its Content-Security-Policy (a violation is a console error). Screenshots go to
$ANNEX_WEB_SHOTS (default /tmp/web-shots/) for a person to look at.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from evidence.home import Home
from tests.api.test_web import build_site
from tests.reports.oversight_fixture import SYSTEM

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package `chromium`)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(sqlite_home: Home, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """uvicorn on a free loopback port serving a log with an issued dossier; (url, token, dir)."""
    site = build_site(sqlite_home, tmp_path, dossier=True)
    port = _free_port()
    app = create_app(sqlite_home)
    # log_config=None: uvicorn's access log goes to the root logger, where caplog reads it
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=True)
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", site.secrets["read"], tmp_path
    finally:
        running.should_exit = True
        thread.join(timeout=10)


def test_an_auditor_logs_in_follows_a_citation_and_verifies_a_dossier(
    server: tuple[str, str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url, token, files = server
    shots = Path(os.environ.get("ANNEX_WEB_SHOTS", "/tmp/web-shots"))
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            page.goto(f"{url}/web/")
            assert page.url == f"{url}/web/login?next=/web/"
            page.screenshot(path=shots / "1-login.png")
            page.fill("#token", token)
            page.click("button[type=submit]")
            assert page.url == f"{url}/web/"
            assert page.locator("table.list tbody tr").count() == 1
            page.screenshot(path=shots / "2-systems.png", full_page=True)

            page.click(f"a[href='/web/systems/{SYSTEM}']")
            assert page.url == f"{url}/web/systems/{SYSTEM}"
            assert page.locator(".gap").count() > 0
            page.screenshot(path=shots / "3-system.png")
            page.screenshot(path=shots / "3-system-full.png", full_page=True)
            # The stylesheet loaded under the CSP: the report's own rules are applied.
            color = page.eval_on_selector(".label-gap", "e => getComputedStyle(e).backgroundColor")
            assert color == "rgb(161, 26, 26)"

            citation = page.locator("td.cite a").first
            target = citation.get_attribute("href")
            assert target is not None and target.startswith("/web/entries/")
            citation.click()
            assert page.url == url + target
            assert page.locator("h1").inner_text() == "Entry #" + target.rsplit("/", 1)[1]
            page.screenshot(path=shots / "4-entry.png", full_page=True)

            page.click("a[href='/web/verify']")
            page.set_input_files("#dossier", str(files / "annex-iv.pdf"))
            page.set_input_files("#trust", str(files / "annex" / "trust.json"))
            page.click("form.upload button[type=submit]")
            assert page.locator(".outcome h2").inner_text() == "Dossier verified"
            assert page.locator("tr.check-fail").count() == 0
            page.screenshot(path=shots / "5-verified.png", full_page=True)

            page.click("a[href='/web/reports']")
            assert page.locator("a[href$='/pdf']").count() == 1
            page.screenshot(path=shots / "6-reports.png", full_page=True)

            page.click(".logout button")
            assert page.url.startswith(f"{url}/web/login")
            page.goto(f"{url}/web/reports")
            assert page.url == f"{url}/web/login?next=/web/reports"
        finally:
            browser.close()
    assert problems == []  # no CSP violation, no script error
    assert "POST /web/login" in caplog.text and "GET /web/systems/" in caplog.text
    assert token not in caplog.text
