"""Facts about the host the GPUs sit in, from the standard library and /proc and /etc.

A fact the host does not reveal (no /proc on macOS, no "model name" line on many ARM CPUs) is
recorded as null rather than guessed. `root` exists so tests can point at a made-up filesystem.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from schemas.gpu import Host


def read_host(root: Path = Path("/")) -> Host:
    """Hostname, OS, kernel, CPU architecture and model, logical CPUs and memory of this host."""
    return Host(
        hostname=socket.gethostname() or "localhost",
        os=os_name(root),
        kernel=platform.release() or None,
        architecture=platform.machine() or None,
        cpu_model=cpu_model(root),
        cpu_cores=os.cpu_count(),
        memory_bytes=memory_bytes(root),
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _fields(text: str, separator: str) -> dict[str, str]:
    """key<separator>value lines, keys and values stripped; the first of each key wins."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(separator)
        if sep:
            found.setdefault(key.strip(), value.strip())
    return found


def os_name(root: Path) -> str | None:
    """PRETTY_NAME from os-release (e.g. "Debian GNU/Linux 12 (bookworm)"), else the OS name."""
    for path in (root / "etc/os-release", root / "usr/lib/os-release"):
        text = _read(path)
        if text is not None:
            pretty = _fields(text, "=").get("PRETTY_NAME", "").strip("\"'")
            if pretty:
                return pretty
    return platform.system() or None


def cpu_model(root: Path) -> str | None:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    text = _read(root / "proc/cpuinfo")
    if text is not None:
        fields = _fields(text, ":")
        for key in ("model name", "Model", "Hardware"):
            if fields.get(key):
                return fields[key]
    return platform.processor() or None


def memory_bytes(root: Path) -> int | None:
    """Physical memory: MemTotal of /proc/meminfo, else the page count times the page size."""
    text = _read(root / "proc/meminfo")
    if text is not None:
        total = _fields(text, ":").get("MemTotal", "").split()
        if len(total) == 2 and total[0].isdigit() and total[1] == "kB":
            return int(total[0]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
