"""`annex report ...` and `annex verify-dossier` as a user and an auditor run them, on the demo's
log: real PDFs read back with pdftotext, bundles and receipts checked, every refusal named.

The demo log is built once per session (it already holds the demo's own dossier); tests that
issue reports work on a copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from api import demo
from api.demo_data import DEMO_SYSTEM
from evidence.home import Home
from schemas.report import REPORT
from tests.api.conftest import Annex
from tests.reports.test_pades import self_signed

AnnexAt = Callable[[Path], Annex]
needs_pdftotext = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) is not installed"
)


def pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report-demo") / "home"
    demo.run(path, None)
    return path


@pytest.fixture
def home_copy(demo_home: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(demo_home, copy)
    return copy


@pytest.fixture
def annex(home_copy: Path, annex_at: AnnexAt) -> Annex:
    return annex_at(home_copy)


def size_of(home: Path) -> int:
    with Home(home).open_store() as store:
        return store.size()


def test_the_demo_dossier_verifies_offline_with_the_auditors_trust_file(
    demo_home: Path, annex_at: AnnexAt, tmp_path: Path
) -> None:
    pdf = demo_home / "reports" / "annex-iv.pdf"
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    for name in ("annex-iv.pdf", "annex-iv.bundle.json", "annex-iv.receipt.json"):
        shutil.copy(pdf.with_name(name), auditor / name)
    shutil.copy(demo_home / "trust.json", auditor / "trust.json")
    checked = annex_at(tmp_path / "no-home")(
        "verify-dossier", auditor / "annex-iv.pdf", "--trust", auditor / "trust.json", "--json"
    )
    assert checked.code == 0, checked.err
    got = checked.json()
    assert got["trust_source"] == "given"
    assert got["bundle_beside_checked"] is True
    assert got["receipt"] is not None
    assert got["entries_checked"] >= 10
    assert got["document"]["kind"] == "annex-iv"


@needs_pdftotext
def test_an_annex_iv_dossier_is_issued_logged_and_lists_its_gaps(
    annex: Annex, home_copy: Path, tmp_path: Path
) -> None:
    before = size_of(home_copy)
    out = tmp_path / "dossier.pdf"
    done = annex(
        "report",
        "annex-iv",
        "--system",
        DEMO_SYSTEM,
        "-o",
        out,
        "--html",
        tmp_path / "d.html",
        "--json",
    )
    assert done.code == 0, done.err
    got = done.json()
    assert got["index"] == before  # the REPORT entry is the one new entry
    assert size_of(home_copy) == before + 1
    assert (tmp_path / "dossier.bundle.json").exists()
    assert (tmp_path / "dossier.receipt.json").exists()
    text = pdf_text(out)
    for ref in ("1(a)", "1(h)", "2(a)", "2(g)", "2(h)", "3 ", "9 "):
        assert ref in text, ref
    assert "COLLECTED" in text.upper() and "DECLARED" in text.upper()
    assert got["gaps"] > 0
    assert "Page 1 of" in text
    html = (tmp_path / "d.html").read_text()
    assert "Annex demo ticket assistant" in html
    with Home(home_copy).open_store() as store:
        entry = store.get(got["index"])
    assert entry.predicate_type == REPORT
    assert entry.subjects[0].name == f"report:annex-iv:{DEMO_SYSTEM}"
    assert entry.subjects[0].digest == got["sha256"]
    listed = annex("report", "list", "--json").json()
    assert [r["index"] for r in listed][-1] == got["index"]
    ok = annex("verify-dossier", out, "--trust", home_copy / "trust.json")
    assert ok.code == 0, ok.err
    assert "OK" in ok.out


def test_a_dossier_at_an_earlier_checkpoint_cites_nothing_after_it(
    annex: Annex, home_copy: Path, tmp_path: Path
) -> None:
    with Home(home_copy).open_store() as store:
        card = store.query(predicate_type="https://annex.dev/predicates/system-card/v1")[0]
    at = card.index + 1
    out = tmp_path / "early.pdf"
    done = annex.fast("report", "annex-iv", "--system", DEMO_SYSTEM, "--at", str(at), "-o", out)
    assert done.code == 0, done.err
    bundle = json.loads((tmp_path / "early.bundle.json").read_text())
    assert bundle["document"]["checkpointSize"] == at
    cited = [c["index"] for c in bundle["document"]["citations"]]
    assert cited and max(cited) < at
    too_early = annex.fast("report", "annex-iv", "--system", DEMO_SYSTEM, "--at", str(card.index))
    assert too_early.code == 2
    assert f"no system '{DEMO_SYSTEM}'" in too_early.err


def test_a_tampered_bundle_or_pdf_fails_verification(
    demo_home: Path, annex_at: AnnexAt, tmp_path: Path
) -> None:
    for name in ("annex-iv.pdf", "annex-iv.bundle.json", "annex-iv.receipt.json"):
        shutil.copy(demo_home / "reports" / name, tmp_path / name)
    annex = annex_at(tmp_path / "no-home")
    trust = demo_home / "trust.json"
    bundle = tmp_path / "annex-iv.bundle.json"
    original = bundle.read_bytes()
    bundle.write_bytes(original.replace(b'"index":', b'"index": ', 1))
    changed = annex.fast("verify-dossier", tmp_path / "annex-iv.pdf", "--trust", trust)
    assert changed.code == 1
    assert "bundle" in changed.err
    bundle.write_bytes(original)
    pdf = tmp_path / "annex-iv.pdf"
    pdf.write_bytes(pdf.read_bytes() + b"\n% appended\n")
    appended = annex.fast("verify-dossier", pdf, "--trust", trust)
    assert appended.code == 1
    assert "receipt" in appended.err


@needs_pdftotext
def test_oversight_ropa_and_dpia_reports_are_issued(
    annex: Annex, home_copy: Path, tmp_path: Path
) -> None:
    from evidence.keys import utc_now

    today = utc_now().date()
    over = tmp_path / "oversight.pdf"
    done = annex.fast(
        "report",
        "oversight",
        "--system",
        DEMO_SYSTEM,
        "--from",
        str(today.replace(day=1)),
        "--to",
        str(today),
        "-o",
        over,
    )
    assert done.code == 0, done.err
    text = pdf_text(over)
    assert "override" in text.lower()
    for kind in ("ropa", "dpia-inputs"):
        args = ["report", kind, "-o", tmp_path / f"{kind}.pdf"]
        if kind == "dpia-inputs":
            args += ["--system", DEMO_SYSTEM]
        issued = annex.fast(*args)
        assert issued.code == 0, issued.err
        assert (tmp_path / f"{kind}.pdf").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["annex-iv", "--system", "nope"], "no system 'nope'"),
        (["annex-iv", "--system", DEMO_SYSTEM, "-o", "dossier.txt"], "must be a .pdf"),
        (
            ["oversight", "--system", DEMO_SYSTEM, "--from", "2026-11-20", "--to", "2026-11-01"],
            "--to 2026-11-01 is before --from 2026-11-20",
        ),
        (
            ["oversight", "--system", DEMO_SYSTEM, "--from", "yesterday", "--to", "2026-11-01"],
            "give a date as YYYY-MM-DD",
        ),
        (["annex-iv", "--system", DEMO_SYSTEM, "--sign-cert", "c.pem"], "--sign-key"),
    ],
)
def test_bad_report_requests_are_refused_and_log_nothing(
    annex: Annex, home_copy: Path, args: list[str], message: str
) -> None:
    before = size_of(home_copy)
    refused = annex.fast("report", *args)
    assert refused.code == 2, refused.out
    assert message in refused.err
    assert size_of(home_copy) == before


def test_a_signed_dossier_reports_its_pades_signature(
    annex: Annex, home_copy: Path, tmp_path: Path
) -> None:
    signing = self_signed(tmp_path, None)
    out = tmp_path / "signed.pdf"
    done = annex.fast(
        "report",
        "annex-iv",
        "--system",
        DEMO_SYSTEM,
        "-o",
        out,
        "--sign-cert",
        signing.cert,
        "--sign-key",
        signing.key,
    )
    assert done.code == 0, done.err
    checked = annex.fast(
        "verify-dossier",
        out,
        "--trust",
        home_copy / "trust.json",
        "--signature-root",
        signing.cert,
        "--json",
    )
    assert checked.code == 0, checked.err
    signatures = json.loads(checked.out)["signatures"]
    assert len(signatures) == 1
    assert signatures[0]["intact"] is True and signatures[0]["trusted"] is True


def test_half_a_signing_configuration_is_a_config_error(annex: Annex, tmp_path: Path) -> None:
    refused = annex.with_env(ANNEX_PDF_SIGN_CERT=str(tmp_path / "c.pem")).fast(
        "report", "annex-iv", "--system", DEMO_SYSTEM, "-o", tmp_path / "d.pdf"
    )
    assert refused.code == 2
    assert "ANNEX_PDF_SIGN_CERT and ANNEX_PDF_SIGN_KEY" in refused.err


def test_verify_dossier_of_a_directory_says_so(annex: Annex, tmp_path: Path) -> None:
    done = annex.fast("verify-dossier", tmp_path)
    assert done.code == 2, done
    assert f"{tmp_path} is a directory: give the dossier's PDF file" in done.err
