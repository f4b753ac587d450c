"""The auditor's web pages: login by token cookie, every page's content, escaping of what a
system card says, the report's own HTML with citations linked to entries, downloads that verify
offline, and a dossier checked by upload (verified, tampered, refused)."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader, PdfWriter

from api.app import create_app
from api.auth import TokenFile
from api.routes_reports import reports_dir
from api.web import routes as web_routes
from api.web import upload
from api.web.session import COOKIE, safe_next
from evidence.dsse import Envelope
from evidence.home import Home
from evidence.note import TlogProof
from evidence.verify import verify_entry
from reports.annex_iv import build_annex_iv
from reports.dossier import issue
from schemas.report import REPORT
from tests.api.conftest import Annex
from tests.conftest import statement
from tests.reports.oversight_fixture import SYSTEM, Rig

HOSTILE = '<script>alert("card")</script> Loan & <b>Co</b>'
ESCAPED = "&lt;script&gt;alert(&#34;card&#34;)&lt;/script&gt; Loan &amp; &lt;b&gt;Co&lt;/b&gt;"
CSP = "default-src 'self'"


@dataclass
class Site:
    """A log with a system whose card name is hostile markup, tokens of each scope, a client."""

    home: Home
    secrets: dict[str, str]
    client: TestClient
    card: int

    def cookie(self, scope: str = "read") -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={self.secrets[scope]}"}

    def get(self, path: str, scope: str = "read") -> Any:
        return self.client.get(path, headers=self.cookie(scope), follow_redirects=False)


def build_site(home: Home, tmp: Path, *, dossier: bool = False) -> Site:
    rig = Rig(home, tmp)
    try:
        rig.store.append([statement(100 + i) for i in range(3)])
        rig.dataset("source: branch files\n")
        card = rig.card(name=HOSTILE)
        if dossier:  # issued as the API does: its files kept in reports/<index>/
            doc = build_annex_iv(rig.store, SYSTEM)
            made = issue(
                rig.store, doc, tmp / "annex-iv.pdf", trust_json=home.trust_path.read_bytes()
            )
            kept = reports_dir(home) / str(made.index)
            kept.mkdir(parents=True)
            for path in (made.pdf, made.bundle, made.receipt):
                shutil.copyfile(path, kept / path.name)
    finally:
        rig.close()
    tokens = TokenFile(home.path)
    secrets = {s: tokens.create(s, f"{s}-auditor")[1] for s in ("read", "write", "admin")}
    return Site(home, secrets, TestClient(create_app(home)), card)


@pytest.fixture
def site(home: Home, tmp_path: Path) -> Site:
    return build_site(home, tmp_path)


@dataclass(frozen=True)
class Dossier:
    site: Site
    pdf: bytes
    trust: bytes


@pytest.fixture(scope="module")
def dossier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dossier]:
    """A real Annex IV dossier (PDF with its bundle), issued once: rendering takes seconds."""
    tmp = tmp_path_factory.mktemp("web-dossier")
    home = Home(tmp / "annex")
    home.init("test.example/log")
    made = build_site(home, tmp, dossier=True)
    yield Dossier(made, (tmp / "annex-iv.pdf").read_bytes(), home.trust_path.read_bytes())


def login(client: TestClient, token: str, next_path: str = "") -> Any:
    data = {"token": token, "next": next_path}
    return client.post("/web/login", data=data, follow_redirects=False)


# -- login and refusals --------------------------------------------------------------------------


def test_pages_redirect_to_login_without_a_valid_cookie(site: Site) -> None:
    for path in ("/web/", "/web/systems/x", "/web/entries/0", "/web/reports", "/web/verify"):
        missing = site.client.get(path, follow_redirects=False)
        assert missing.status_code == 303, path
        assert missing.headers["location"] == f"/web/login?next={path}"
        forged = site.client.get(
            path, headers={"Cookie": f"{COOKIE}=annex_forged"}, follow_redirects=False
        )
        assert forged.status_code == 303 and forged.headers["location"].startswith("/web/login")
    form = site.client.get("/web/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert form.headers["content-security-policy"].startswith(CSP)


def test_login_sets_a_strict_cookie_and_logout_clears_it(site: Site) -> None:
    answer = login(site.client, site.secrets["read"], "/web/reports")
    assert answer.status_code == 303 and answer.headers["location"] == "/web/reports"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={site.secrets['read']};")
    for flag in ("HttpOnly", "Path=/web", "SameSite=strict", "Max-Age=28800"):
        assert flag in cookie
    assert "Secure" not in cookie  # plain http here; https gets Secure (test below)
    systems = site.client.get("/web/")
    assert systems.status_code == 200 and "read-auditor" in systems.text
    assert site.secrets["read"] not in systems.text
    out = site.client.post("/web/logout", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/web/login"
    assert f'{COOKIE}=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert site.client.get("/web/", follow_redirects=False).status_code == 303


def test_the_cookie_is_secure_over_https(site: Site) -> None:
    https = TestClient(site.client.app, base_url="https://annex.example")
    assert "Secure" in login(https, site.secrets["read"]).headers["set-cookie"]


def test_login_refuses_unknown_revoked_and_write_only_tokens(site: Site) -> None:
    unknown = login(site.client, "annex_nope")
    assert unknown.status_code == 401 and "unknown or revoked" in unknown.text
    assert "set-cookie" not in unknown.headers
    writer = login(site.client, site.secrets["write"])
    assert writer.status_code == 403 and "these pages need read" in writer.text
    assert site.secrets["write"] not in writer.text and "set-cookie" not in writer.headers
    assert site.get("/web/", scope="write").status_code == 403
    assert site.get("/web/", scope="admin").status_code == 200


def test_a_revoked_token_is_sent_back_to_login(site: Site) -> None:
    tokens = TokenFile(site.home.path)
    assert site.get("/web/").status_code == 200
    tokens.revoke(next(r.id for r in tokens.records() if r.scope == "read"))
    again = site.get("/web/")
    assert again.status_code == 303 and again.headers["location"] == "/web/login?next=/web/"
    assert login(site.client, site.secrets["read"]).status_code == 401


def test_a_form_posted_from_another_site_is_refused(site: Site) -> None:
    evil = {"Origin": "https://evil.example"}
    data = {"token": site.secrets["read"], "next": ""}
    forged = site.client.post("/web/login", data=data, headers=evil, follow_redirects=False)
    assert forged.status_code == 403 and "another site" in forged.text
    assert "set-cookie" not in forged.headers
    hidden = site.client.post(
        "/web/login", data=data, headers={"Origin": "null"}, follow_redirects=False
    )
    assert hidden.status_code == 403
    own = {"Origin": "http://testserver"}
    signed_in = site.client.post("/web/login", data=data, headers=own, follow_redirects=False)
    assert signed_in.status_code == 303 and "set-cookie" in signed_in.headers


def test_after_login_only_a_web_path_is_followed() -> None:
    assert safe_next("/web/systems/a?b=1") == "/web/systems/a?b=1"
    for hostile in ("https://evil.example/", "//evil.example/web/", "/api/v1/entries", "/web\\x"):
        assert safe_next(hostile) == "/web/"
    assert safe_next(None) == "/web/"


def test_pages_are_outside_the_openapi_document(site: Site) -> None:
    paths = site.client.get("/api/v1/openapi.json").json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/web")]


# -- pages ---------------------------------------------------------------------------------------


def test_systems_page_shows_coverage_and_gaps(site: Site) -> None:
    page = site.get("/web/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith(CSP)
    assert page.headers["cache-control"] == "no-store"
    with site.home.open_store() as store:
        doc = build_annex_iv(store, SYSTEM)
    counts = [n for n in doc.coverage().values()]
    cells = re.findall(r'<td class="num[^"]*">(\d+)</td>', page.text)
    assert [int(c) for c in cells] == [*counts, len(doc.gaps())]
    assert f'href="/web/systems/{SYSTEM}"' in page.text
    assert f'href="/web/entries/{site.card}"' in page.text
    assert ESCAPED in page.text and "<script" not in page.text


def test_systems_page_counts_a_bounded_number_of_systems(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_COVERAGE_ROWS a system is listed and linked, its coverage left to its own page."""
    monkeypatch.setattr(web_routes, "MAX_COVERAGE_ROWS", 0)
    page = site.get("/web/")
    assert page.status_code == 200
    assert f'href="/web/systems/{SYSTEM}"' in page.text
    assert "on the system's page (this page counts the first 0)" in page.text
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', page.text) == []


def test_system_page_is_the_report_html_with_citations_linked(site: Site) -> None:
    page = site.get(f"/web/systems/{SYSTEM}")
    assert page.status_code == 200
    with site.home.open_store() as store:
        doc = build_annex_iv(store, SYSTEM)
    cited = doc.citations()
    assert cited
    for c in cited:
        assert f'href="/web/entries/{c.index}"' in page.text, c.index
    assert 'href="#entry-' not in page.text
    for _, gap in doc.gaps():
        assert f'<span class="label label-gap">Gap</span> {gap.what}' in page.text.replace(
            "&#39;", "'"
        ).replace("&#34;", '"')
    assert 'class="gap"' in page.text and "Appendix B. Checkpoint and how to verify" in page.text
    assert ESCAPED in page.text and "<script" not in page.text and "<b>Co" not in page.text
    assert "<style" not in page.text and "style=" not in page.text  # the CSP allows neither
    assert '<link rel="stylesheet" href="/web/static/document.css">' in page.text
    css = site.client.get("/web/static/document.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["cache-control"].startswith("public")  # the same for everyone
    assert site.client.get("/web/static/..%2Fauth.py").status_code == 404


def test_unknown_system_and_entry_are_404_pages(site: Site) -> None:
    system = site.get("/web/systems/nope")
    assert system.status_code == 404 and "no system &#39;nope&#39;" in system.text
    assert system.headers["content-type"].startswith("text/html")
    assert system.headers["content-security-policy"].startswith(CSP)
    for path in (
        "/web/entries/9999",
        "/web/entries/-1",
        "/web/entries/9999/envelope.json",
        "/web/entries/9999/proof",
    ):
        missing = site.get(path)
        assert missing.status_code == 404 and "no entry" in missing.text, path
    assert site.get("/web/entries/abc").status_code == 422


def test_entry_page_and_its_download_verify_offline(
    site: Site, tmp_path: Path, annex_at: Callable[[Path], Annex]
) -> None:
    page = site.get(f"/web/entries/{site.card}")
    assert page.status_code == 200
    assert f'href="/web/entries/{site.card}/envelope.json"' in page.text
    assert "&#34;predicateType&#34;: &#34;https://annex.dev/predicates/system-card/v1&#34;" in (
        page.text
    )
    assert "alert(\\&#34;card\\&#34;)" in page.text and "<script" not in page.text
    assert "test.example/log\n" in page.text  # the proof's checkpoint note
    got = site.get(f"/web/entries/{site.card}/envelope.json")
    assert got.headers["content-disposition"] == f'attachment; filename="entry-{site.card}.json"'
    body = got.json()
    report = verify_entry(
        Envelope.from_dict(body["envelope"]), TlogProof.parse(body["proof"]), site.home.trust()
    )
    assert report.index == site.card and report.statement["predicate"]["card"]
    proof = site.get(f"/web/entries/{site.card}/proof")
    assert proof.headers["content-type"].startswith("text/plain")
    assert proof.text == body["proof"]
    (tmp_path / "entry.json").write_bytes(got.content)
    (tmp_path / "entry.proof").write_text(proof.text)
    checked = annex_at(tmp_path / "auditor").fast(
        "verify-entry",
        tmp_path / "entry.json",
        tmp_path / "entry.proof",
        "--trust",
        site.home.trust_path,
    )
    assert checked.code == 0, checked.err


def test_reports_page_lists_issued_dossiers(dossier: Dossier) -> None:
    page = dossier.site.get("/web/reports")
    assert page.status_code == 200
    found = re.search(r'href="/web/reports/(\d+)/pdf">annex-iv.pdf</a>', page.text)
    assert found is not None
    for which in ("bundle", "receipt"):
        assert f'href="/web/reports/{found.group(1)}/{which}"' in page.text
    digest = hashlib.sha256(dossier.pdf).hexdigest()
    assert digest in page.text and ESCAPED in page.text


def _report_index(site: Site) -> int:
    found = re.search(r'href="/web/reports/(\d+)/pdf"', site.get("/web/reports").text)
    assert found is not None
    return int(found.group(1))


def test_report_files_download_with_the_cookie_checked_against_the_log(dossier: Dossier) -> None:
    site = dossier.site
    index = _report_index(site)
    pdf = site.get(f"/web/reports/{index}/pdf")
    assert pdf.status_code == 200 and pdf.content == dossier.pdf
    assert pdf.headers["content-type"] == "application/pdf"
    assert 'filename="annex-iv.pdf"' in pdf.headers["content-disposition"]
    bundle = site.get(f"/web/reports/{index}/bundle")
    assert bundle.status_code == 200 and bundle.json()["checkpoint"]
    receipt = site.get(f"/web/reports/{index}/receipt")
    assert receipt.status_code == 200 and "envelope" in receipt.json()
    # Without the cookie: the login page, not the file.
    anonymous = site.client.get(f"/web/reports/{index}/pdf", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.content != dossier.pdf
    assert site.get(f"/web/reports/{index}/secrets").status_code == 404
    assert site.get("/web/reports/0/pdf").status_code == 404  # entry 0 is not a report


def test_a_report_file_changed_on_disk_is_not_served(dossier: Dossier) -> None:
    site = dossier.site
    index = _report_index(site)
    path = reports_dir(site.home) / str(index) / "annex-iv.pdf"
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"%%EOF", b"%%EOF\n% changed", 1))
        answer = site.get(f"/web/reports/{index}/pdf")
        assert answer.status_code == 500
        assert "file on disk changed" in answer.text and answer.content != original
    finally:
        path.write_bytes(original)


def test_a_report_issued_elsewhere_is_listed_without_a_link(dossier: Dossier) -> None:
    site = dossier.site
    index = _report_index(site)
    kept = reports_dir(site.home) / str(index)
    moved = kept.with_name("away")
    kept.rename(moved)
    try:
        page = site.get("/web/reports").text
        assert 'annex-iv.pdf <span class="muted">(not on this server)</span>' in page
        assert f'href="/web/reports/{index}/pdf"' not in page
        assert site.get(f"/web/reports/{index}/pdf").status_code == 404
    finally:
        moved.rename(kept)


def test_a_report_entry_annex_cannot_read_does_not_break_the_reports_page(site: Site) -> None:
    """Anyone with a write token may append a REPORT statement that says anything: the page
    leaves it out instead of failing for every auditor."""
    odd = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "report:annex-iv:x", "digest": {"sha256": "ab" * 32}}],
        "predicateType": REPORT,
        "predicate": {"kind": "annex-iv"},
    }
    with site.home.open_store(write=True) as store:
        index = store.append([odd]).first_index
    page = site.get("/web/reports")
    assert page.status_code == 200
    assert f'href="/web/entries/{index}"' not in page.text


def test_empty_log_pages_say_what_to_do(sqlite_home: Home) -> None:
    _, secret = TokenFile(sqlite_home.path).create("read")
    client = TestClient(create_app(sqlite_home))
    headers = {"Cookie": f"{COOKIE}={secret}"}
    assert "annex system add CARD.yaml" in client.get("/web/", headers=headers).text
    assert "annex report annex-iv" in client.get("/web/reports", headers=headers).text


# -- verify by upload ----------------------------------------------------------------------------


def post_dossier(
    site: Site, pdf: bytes | None, trust: bytes | None = None, scope: str = "read"
) -> Any:
    files = {}
    if pdf is not None:
        files["dossier"] = ("dossier.pdf", pdf, "application/pdf")
    if trust is not None:
        files["trust"] = ("trust.json", trust, "application/json")
    return site.client.post(
        "/web/verify",
        files=files or {"other": ("x.txt", b"x", "text/plain")},
        headers=site.cookie(scope),
        follow_redirects=False,
    )


def test_a_dossier_with_the_auditors_trust_file_verifies(dossier: Dossier) -> None:
    form = dossier.site.get("/web/verify")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
    answer = post_dossier(dossier.site, dossier.pdf, dossier.trust)
    assert answer.status_code == 200
    assert "Dossier verified" in answer.text
    results = re.findall(r'<tr class="check-(\w+)"><td>([^<]+)</td>', answer.text)
    assert results and all(status == "pass" for status, _ in results), results
    assert {"Checkpoint", "Cited entries", "Citations in the text", "Trust"} <= {
        name for _, name in results
    }
    assert ESCAPED in answer.text and "<script" not in answer.text


def test_without_a_trust_file_the_bundles_own_is_flagged(dossier: Dossier) -> None:
    answer = post_dossier(dossier.site, dossier.pdf)
    assert answer.status_code == 200 and "Dossier verified" in answer.text
    assert re.search(r'<tr class="check-warn"><td>Trust</td>', answer.text)


def test_a_tampered_or_foreign_dossier_is_not_verified(dossier: Dossier, tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(dossier.pdf)))
    writer.add_metadata({"/Title": "Forged <i>title</i>"})
    out = io.BytesIO()
    writer.write(out)
    retitled = post_dossier(dossier.site, out.getvalue(), dossier.trust)
    assert retitled.status_code == 422 and "Forged &lt;i&gt;title&lt;/i&gt;" in retitled.text
    for pdf in (b"%PDF-1.7 not really", b"plain text"):
        answer = post_dossier(dossier.site, pdf, dossier.trust)
        assert answer.status_code == 422 and "cannot be read as a PDF" in answer.text
        assert "Dossier NOT verified" in answer.text and 'class="check-fail"' in answer.text
        assert "annex-web-verify" not in answer.text and "the uploaded PDF" in answer.text
    other = Home(tmp_path / "other")
    other.init("other.example/log")
    foreign = post_dossier(dossier.site, dossier.pdf, other.trust_path.read_bytes())
    assert foreign.status_code == 422 and "Dossier NOT verified" in foreign.text


def test_upload_refusals(dossier: Dossier, monkeypatch: pytest.MonkeyPatch) -> None:
    site = dossier.site
    none = post_dossier(site, None)
    assert none.status_code == 422 and "choose a dossier PDF" in none.text
    bad_trust = post_dossier(site, dossier.pdf, b'{"origin": 1}')
    assert bad_trust.status_code == 422 and "the trust file" in bad_trust.text
    not_form = site.client.post(
        "/web/verify", content=dossier.pdf, headers=site.cookie(), follow_redirects=False
    )
    assert not_form.status_code == 422 and "multipart/form-data" in not_form.text
    monkeypatch.setattr(upload, "MAX_UPLOAD", 4096)
    big = post_dossier(site, dossier.pdf)
    assert big.status_code == 413 and "limit" in big.text
    declared = site.client.post(
        "/web/verify",
        content=b"x",
        headers={
            **site.cookie(),
            "Content-Length": str(10**9),
            "Content-Type": "multipart/form-data; boundary=b",
        },
    )
    assert declared.status_code == 413


def test_an_upload_without_a_login_is_redirected_unread(dossier: Dossier) -> None:
    answer = dossier.site.client.post(
        "/web/verify",
        files={"dossier": ("d.pdf", dossier.pdf, "application/pdf")},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/web/login?next=/web/verify"
    writer = post_dossier(dossier.site, dossier.pdf, scope="write")
    assert writer.status_code == 403 and "Dossier" not in writer.text
