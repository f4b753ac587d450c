"""PAdES signatures on a dossier: signed, checked, trusted only with its root, tamper caught."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pypdf import PdfReader

from evidence.errors import ConfigError, VerificationError
from evidence.home import Home
from reports.bundle import build_bundle, verify_dossier
from reports.pades import check_signatures, sign_pdf
from reports.render import BUNDLE_NAME, Attachment, render_pdf_bytes
from tests.reports.test_render import make_document, xmp_text


def self_signed(directory: Path, passphrase: bytes | None) -> PdfSigning:
    """An EC P-256 key and a self-signed certificate, as an operator's test setup would make."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Annex Dossier Signing"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Bank AG"),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return PdfSigning(cert_path, key_path, passphrase)


@dataclass(frozen=True)
class PdfSigning:
    cert: Path
    key: Path
    passphrase: bytes | None


@dataclass(frozen=True)
class Signed:
    home: Home
    pdf: Path
    signing: PdfSigning


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    root = tmp_path_factory.mktemp("pades")
    home = Home(root / "annex")
    home.init("test.example/log")
    signing = self_signed(root, b"correct horse")
    pdf = root / "dossier.pdf"
    with home.open_store(write=True) as store:
        doc = make_document(store)
        bundle = build_bundle(store, doc, home.trust_path.read_bytes())
    data = render_pdf_bytes(doc, attachments=[Attachment(BUNDLE_NAME, bundle)])
    pdf.write_bytes(sign_pdf(data, cert=signing.cert, key=signing.key, passphrase=b"correct horse"))
    yield Signed(home, pdf, signing)


def test_signed_dossier_is_intact_and_trusted_only_with_its_root(signed: Signed) -> None:
    data = signed.pdf.read_bytes()
    [status] = check_signatures(data)
    assert (status.intact, status.valid, status.trusted) == (True, True, False)
    assert "Annex Dossier Signing" in status.signer
    assert status.signing_time is not None
    assert status.coverage == "ENTIRE_FILE"
    [rooted] = check_signatures(data, roots=[signed.signing.cert])
    assert rooted.trusted


def test_signing_keeps_pdfa_and_the_bundle(signed: Signed) -> None:
    reader = PdfReader(signed.pdf)
    xmp = xmp_text(reader)
    assert re.search(r"pdfaid:part(=\"|>)3", xmp)
    assert list(reader.attachments) == ["evidence-bundle.json"]
    report = verify_dossier(signed.pdf, trust=signed.home.trust())
    [sig] = report.to_json()["signatures"]
    assert sig["intact"] and not sig["trusted"] and "Example Bank AG" in sig["signer"]
    assert any("intact, NOT trusted" in line for line in report.summary())


def test_changed_signed_bytes_fail_verify_dossier(signed: Signed, tmp_path: Path) -> None:
    data = signed.pdf.read_bytes()
    producer = data.index(b"WeasyPrint")
    changed = data[:producer] + b"X" + data[producer + 1 :]
    pdf = tmp_path / "changed.pdf"
    pdf.write_bytes(changed)
    [status] = check_signatures(changed)
    assert not status.intact
    with pytest.raises(VerificationError, match=r"signature .* does not verify"):
        verify_dossier(pdf, trust=signed.home.trust())


def test_wrong_passphrase_is_a_config_error(signed: Signed) -> None:
    with pytest.raises(ConfigError, match="wrong passphrase"):
        sign_pdf(
            signed.pdf.read_bytes(),
            cert=signed.signing.cert,
            key=signed.signing.key,
            passphrase=b"wrong",
        )
    with pytest.raises(ConfigError, match="no such file"):
        sign_pdf(b"", cert=signed.signing.cert, key=Path("/nonexistent/key.pem"), passphrase=None)
