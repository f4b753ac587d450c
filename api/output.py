"""How the CLI speaks: JSON for machines on stdout, prose for people, errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from evidence.errors import AnnexError, VerificationError

# No markup or emoji codes: what we print quotes evidence, and evidence is data, not markup.
stdout = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def report_error(error: AnnexError, json_mode: bool) -> None:
    if json_mode:
        body: dict[str, Any] = {"ok": False, "error": type(error).__name__, "message": str(error)}
        if isinstance(error, VerificationError):
            body["index"] = error.index
        print_json(body)
        return
    label = "verification failed" if isinstance(error, VerificationError) else "error"
    stderr.print(Text.assemble((f"{label}:", "bold red"), " ", str(error)))


@contextmanager
def progress_bar(label: str, *, enabled: bool) -> Iterator[Any]:
    """A progress bar on stderr for a person at a terminal; silent otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 checkpoint`, `2 checkpoints`, `1 entry`, `3 entries` (with `plural` given)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
