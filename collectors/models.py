"""Model and adapter evidence: a directory's manifest and what its files say, as a statement."""

from __future__ import annotations

from collectors.hashing import build_manifest

__all__ = ["build_manifest"]
