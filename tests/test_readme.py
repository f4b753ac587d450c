"""The README is the user's manual: its commands must exist and its set-up must match CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _annex_commands() -> set[tuple[str, ...]]:
    """`annex sub [subsub]` as the README's shell examples write them."""
    found = set()
    for line in _shell_lines():
        for match in re.finditer(r"(?:^|\s|\|\s)annex ((?:[a-z][a-z-]*\s?){1,2})", line):
            words = tuple(w for w in match.group(1).split() if not w.startswith("-"))
            found.add(words)
    return found


def test_the_two_commands_of_a_fresh_machine() -> None:
    lines = _shell_lines()
    assert any(line.endswith("pip install -e . && annex demo") for line in lines)
    tests = [line for line in lines if line.endswith("python -m pytest")]
    assert tests, "the README gives no test command"
    assert all("pip install torch==2.13.0 && pip install -e '.[dev,eval]'" in t for t in tests)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pip install --quiet torch==2.13.0" in ci
    assert "python -m pip install --quiet -e '.[dev,eval]'" in ci
    assert re.search(r"^python -m pytest$", ci, flags=re.M), ".ci/run must run the same command"


@pytest.mark.parametrize("words", sorted(_annex_commands()), ids=" ".join)
def test_every_command_the_readme_shows_exists(words: tuple[str, ...]) -> None:
    # After a group (log, keys) the second word is a command; otherwise it is an argument.
    groups = {group.name for group in app.registered_groups}
    command = list(words if words[0] in groups else words[:1])
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"annex {' '.join(command)}: {result.output}"


def test_the_readme_shows_the_commands_it_promises() -> None:
    shown = {w[0] for w in _annex_commands()}
    assert {"init", "append", "show", "log", "verify", "verify-entry", "keys", "demo"} <= shown
