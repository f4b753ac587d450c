"""Fixtures for the CLI tests: `annex` run as a user runs it, and logs built once and copied.

Every `annex` process costs about half a second, so the logs the tests read are built once per
session with the Python API (which the CLI is a shell over) and copied for tests that change them,
and checks of pure logic (validation, refusals) run the same command in-process with `fast`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api import cli
from api.settings import get_settings
from evidence.home import Home
from tests.conftest import statement

ORIGIN = "test.example/log"
SETTINGS_ENV = (
    "ANNEX_DATABASE_URL",
    "ANNEX_KEY_PASSPHRASE",
    "ANNEX_KEY_PASSPHRASE_FILE",
    "ANNEX_SITE",
    "ANNEX_COUNTRY",
    "ANNEX_OPERATOR",
    "ANNEX_TOKEN",
    "ANNEX_CONFIG",
    "ANNEX_PDF_SIGN_CERT",
    "ANNEX_PDF_SIGN_KEY",
)
BATCHES = (3, 2, 4)  # after the key event at 0: checkpoints at sizes 1, 4, 6 and 10
PASSPHRASE = "correct horse battery staple"


def annex_command() -> list[str]:
    """The installed console script, as a user types `annex`; the entry point otherwise."""
    script = Path(sys.executable).with_name("annex")
    found = str(script) if script.exists() else shutil.which("annex")
    return [found] if found else [sys.executable, "-c", "from api.cli import main; main()"]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Annex:
    """`annex` in a subprocess whose environment holds only PATH, HOME and ANNEX_HOME (+ extra)."""

    home: Path
    cwd: Path
    extra: Mapping[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        user_home = self.cwd / "user-home"
        user_home.mkdir(exist_ok=True)
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(user_home),
            "ANNEX_HOME": str(self.home),
        }
        if "PYTHONPATH" in os.environ:  # a checkout other than the installed one
            base["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return {**base, **self.extra}

    def with_env(self, **extra: str) -> Annex:
        return Annex(self.home, self.cwd, {**self.extra, **extra})

    def __call__(self, *args: str | Path, stdin: str | None = None) -> Result:
        done = subprocess.run(
            [*annex_command(), *(str(a) for a in args)],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=self.env(),
            cwd=self.cwd,
            timeout=60,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def fast(self, *args: str | Path) -> Result:
        """The same command in-process (Typer's CliRunner), with the same environment."""
        env: dict[str, str | None] = {name: None for name in SETTINGS_ENV}
        env.update(self.env())
        get_settings.cache_clear()  # it caches what it read from the environment
        try:
            done = CliRunner().invoke(cli.app, [str(a) for a in args], env=env)
        finally:
            get_settings.cache_clear()
        return Result(done.exit_code, done.stdout, done.stderr)


@dataclass(frozen=True)
class Template:
    """A log of 10 entries whose statements, leaf hashes and checkpoint roots are known."""

    path: Path
    statements: dict[int, dict[str, Any]]
    leaves: list[bytes]
    roots: dict[int, bytes]  # checkpoint size -> root hash

    @property
    def size(self) -> int:
        return len(self.leaves)

    def trust_path(self) -> Path:
        return self.path / "trust.json"


def build_log(path: Path, batches: Sequence[int], *, passphrase: bytes | None = None) -> Template:
    """Initialises a log and appends numbered statements in batches (statement i at index i)."""
    home = Home(path, passphrase=passphrase)
    first = home.init(ORIGIN)
    leaves = list(first.leaf_hashes)
    roots = {first.checkpoint.size: first.checkpoint.root}
    statements: dict[int, dict[str, Any]] = {}
    with home.open_store(write=True) as store:
        for count in batches:
            batch = [statement(len(leaves) + k) for k in range(count)]
            result = store.append(batch)
            statements.update(zip(result.indices, batch, strict=True))
            leaves.extend(result.leaf_hashes)
            roots[result.checkpoint.size] = result.checkpoint.root
    return Template(path, statements, leaves, roots)


def log_size(path: Path) -> int:
    """The number of entries, read with the Python API: did a failed command append anything?"""
    with Home(path).open_store() as store:
        return store.size()


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The shared log; tests that would change it use `fresh`, a copy."""
    return build_log(tmp_path_factory.mktemp("template") / "annex", BATCHES)


@pytest.fixture(scope="session")
def other_log(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """Another log with the same origin but its own key: its trust file must not vouch for ours."""
    return build_log(tmp_path_factory.mktemp("other") / "annex", (1,))


@pytest.fixture(scope="session")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A log whose signing key is encrypted with PASSPHRASE."""
    return build_log(
        tmp_path_factory.mktemp("encrypted") / "annex", (1,), passphrase=PASSPHRASE.encode()
    )


@pytest.fixture
def annex_at(tmp_path: Path) -> Callable[[Path], Annex]:
    """`annex` for a data directory, run from this test's temporary directory."""
    return lambda home: Annex(home, tmp_path)


@pytest.fixture
def annex(template: Template, annex_at: Callable[[Path], Annex]) -> Annex:
    """`annex` on the shared template log: for commands that only read."""
    return annex_at(template.path)


@pytest.fixture
def fresh(template: Template, tmp_path: Path) -> Path:
    """A private copy of the template log, for commands that append or change keys."""
    target = tmp_path / "copy"
    shutil.copytree(template.path, target)
    return target


@pytest.fixture
def fresh_encrypted(encrypted: Template, tmp_path: Path) -> Path:
    """A private copy of the encrypted log."""
    target = tmp_path / "encrypted-copy"
    shutil.copytree(encrypted.path, target)
    return target
