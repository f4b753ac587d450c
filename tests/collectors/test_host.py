"""Host facts: read from os-release, /proc/cpuinfo and /proc/meminfo, null where not revealed."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from collectors.host import read_host

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""
ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 2000.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd4f\n"


def fake_root(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_facts_from_os_release_cpuinfo_and_meminfo(tmp_path: Path) -> None:
    root = fake_root(
        tmp_path,
        {
            "etc/os-release": 'NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\n',
            "proc/cpuinfo": CPUINFO,
            "proc/meminfo": "MemTotal:       2113494152 kB\nMemFree:         1000 kB\n",
        },
    )
    host = read_host(root)
    assert host.hostname == socket.gethostname()
    assert host.os == "Ubuntu 22.04.4 LTS"
    assert host.kernel == platform.release()
    assert host.architecture == platform.machine()
    assert host.cpu_model == "Intel(R) Xeon(R) Platinum 8480+"
    assert host.cpu_cores == os.cpu_count()
    assert host.memory_bytes == 2113494152 * 1024


def test_os_release_in_usr_lib_when_etc_has_none(tmp_path: Path) -> None:
    root = fake_root(tmp_path, {"usr/lib/os-release": "PRETTY_NAME='Fedora Linux 40'\n"})
    assert read_host(root).os == "Fedora Linux 40"


def test_what_the_host_does_not_reveal_is_not_guessed(tmp_path: Path) -> None:
    host = read_host(fake_root(tmp_path, {"proc/cpuinfo": ARM_CPUINFO}))
    assert host.os == (platform.system() or None)  # no os-release: only the OS family
    assert host.cpu_model == (platform.processor() or None)
    page = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert host.memory_bytes == page  # no /proc/meminfo: the page count


def test_this_host() -> None:
    host = read_host()
    assert host.hostname
    assert host.cpu_cores is not None and host.cpu_cores >= 1
    assert host.memory_bytes is not None and host.memory_bytes > 2**20
