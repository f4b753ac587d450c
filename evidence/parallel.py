"""Ed25519 on every core for large batches.

`cryptography` releases the GIL while it signs or verifies, so threads that do nothing else
run in parallel. Mixing Python work into those threads does not help (they queue on the GIL),
which is why callers do their Python work first and hand only the signing or verifying here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

PARALLEL_FROM = 64  # below this, starting threads costs more than it saves


def workers() -> int:
    return os.cpu_count() or 1


def map_chunked(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`[fn(x) for x in items]`, in order, spread over one thread per core."""
    if len(items) < PARALLEL_FROM or workers() == 1:
        return [fn(x) for x in items]
    step = -(-len(items) // workers())
    chunks = [items[i : i + step] for i in range(0, len(items), step)]
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = pool.map(lambda chunk: [fn(x) for x in chunk], chunks)
        return [r for part in parts for r in part]
