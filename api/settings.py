"""Settings: the one place that reads the environment, once, into one immutable value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from evidence.errors import ConfigError
from evidence.home import Home

CONFIG_NAME = "annex.toml"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    passphrase: bytes | None
    # The bearer token `annex collect gpu --push` sends (ANNEX_TOKEN); never printed.
    token: str | None = field(default=None, repr=False)
    # Where the compute is, for GPU evidence (ANNEX_SITE, ANNEX_COUNTRY, ANNEX_OPERATOR).
    site: str | None = None
    country: str | None = None
    operator: str | None = None
    # PAdES signing of PDF reports (ANNEX_PDF_SIGN_CERT, ANNEX_PDF_SIGN_KEY): both or neither.
    pdf_sign_cert: Path | None = None
    pdf_sign_key: Path | None = None
    # The configuration file (sweeps): ANNEX_CONFIG, else annex.toml in the data directory.
    config: Path | None = None

    def open_home(self) -> Home:
        return Home(self.home, self.database_url, self.passphrase)

    @property
    def config_file(self) -> Path:
        return self.config if self.config is not None else self.home / CONFIG_NAME


def read_settings(env: Mapping[str, str], home: Path | None = None) -> Settings:
    """Builds settings from an environment; `home` (the --home option) beats ANNEX_HOME."""
    chosen = home or Path(env.get("ANNEX_HOME") or os.path.expanduser("~/.annex"))
    return Settings(
        home=chosen.expanduser().absolute(),
        database_url=env.get("ANNEX_DATABASE_URL") or None,
        passphrase=_passphrase(env),
        token=env.get("ANNEX_TOKEN") or None,
        site=env.get("ANNEX_SITE") or None,
        country=env.get("ANNEX_COUNTRY") or None,
        operator=env.get("ANNEX_OPERATOR") or None,
        config=Path(env["ANNEX_CONFIG"]).expanduser().absolute()
        if env.get("ANNEX_CONFIG")
        else None,
        **_pdf_signing(env),
    )


def _pdf_signing(env: Mapping[str, str]) -> dict[str, Path | None]:
    cert, key = env.get("ANNEX_PDF_SIGN_CERT") or None, env.get("ANNEX_PDF_SIGN_KEY") or None
    if (cert is None) != (key is None):
        raise ConfigError("set both ANNEX_PDF_SIGN_CERT and ANNEX_PDF_SIGN_KEY, or neither")
    return {
        "pdf_sign_cert": None if cert is None else Path(cert),
        "pdf_sign_key": None if key is None else Path(key),
    }


@lru_cache
def get_settings(home: Path | None = None) -> Settings:
    return read_settings(os.environ, home)


def _passphrase(env: Mapping[str, str]) -> bytes | None:
    """ANNEX_KEY_PASSPHRASE, or the first line of ANNEX_KEY_PASSPHRASE_FILE; never both."""
    value = env.get("ANNEX_KEY_PASSPHRASE")
    path = env.get("ANNEX_KEY_PASSPHRASE_FILE")
    if value is not None and path is not None:
        raise ConfigError("set ANNEX_KEY_PASSPHRASE or ANNEX_KEY_PASSPHRASE_FILE, not both")
    if path is not None:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(
                f"cannot read ANNEX_KEY_PASSPHRASE_FILE {path}: {exc.strerror}"
            ) from exc
        value = lines[0] if lines else ""
    if value is None:
        return None
    if not value:
        raise ConfigError("the key passphrase is empty")
    return value.encode()
