"""`annex collect gpu` as a user runs it: on this GPU-less host for real, and on fake GPUs.

Fake GPUs come in at the boundary only: the real pynvml module's functions are replaced by the
fake's, in-process (`Annex.fast`), so the command runs the real backend code end to end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml
import pytest

from collectors import nvml_fake
from evidence.home import Home
from schemas.gpu import GPU_INVENTORY
from tests.api.conftest import Annex, Template, log_size

AnnexAt = Callable[[Path], Annex]


@pytest.fixture(autouse=True)
def no_site_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs inherit this environment: keep the tester's site labels out of it."""
    for name in ("ANNEX_SITE", "ANNEX_COUNTRY", "ANNEX_OPERATOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> nvml_fake.FakeNvml:
    """pynvml answers as the fake's mixed host of four GPUs."""
    fake = nvml_fake.fleet()
    for name, call in fake.calls().items():
        monkeypatch.setattr(pynvml, name, call)
    return fake


def logged(home: Path, index: int) -> dict[str, Any]:
    with Home(home).open_store() as store:
        statement: dict[str, Any] = store.get(index).statement
    return statement


# -- this host: no NVML ----------------------------------------------------------------------------


def test_no_nvml_is_recorded_and_succeeds(
    fresh: Path, annex_at: AnnexAt, template: Template
) -> None:
    result = annex_at(fresh)("collect", "gpu")
    assert result.code == 0, result.err
    assert result.out.startswith("no GPU evidence on ")
    assert "NVML library not found" in result.out
    assert result.out.rstrip().endswith(f"recorded at entry {template.size}")
    assert log_size(fresh) == template.size + 1
    statement = logged(fresh, template.size)
    assert statement["predicateType"] == GPU_INVENTORY
    assert statement["predicate"]["status"] == "no-nvml"
    assert statement["predicate"]["selfReported"] is True
    assert statement["subject"][0]["name"].startswith("host:")


def test_json_prints_the_entry_index_and_the_statement_logged(
    fresh: Path, annex_at: AnnexAt, template: Template
) -> None:
    result = annex_at(fresh)("collect", "gpu", "--json")
    assert result.code == 0, result.err
    printed = result.json()
    assert printed["index"] == template.size
    assert printed["statement"] == logged(fresh, template.size)


def test_dry_run_prints_the_statement_and_logs_nothing(
    fresh: Path, annex_at: AnnexAt, template: Template
) -> None:
    result = annex_at(fresh).fast("collect", "gpu", "--dry-run")
    assert result.code == 0, result.err
    assert json.loads(result.out)["predicateType"] == GPU_INVENTORY
    as_json = annex_at(fresh).fast("collect", "gpu", "--dry-run", "--json")
    assert as_json.json()["index"] is None
    assert as_json.json()["statement"]["predicate"]["status"] == "no-nvml"
    assert log_size(fresh) == template.size


def test_dry_run_needs_no_data_directory(tmp_path: Path, annex_at: AnnexAt) -> None:
    result = annex_at(tmp_path / "nowhere").fast("collect", "gpu", "--dry-run", "--json")
    assert result.code == 0, result.err
    assert not (tmp_path / "nowhere").exists()


def test_an_uninitialised_data_directory_is_refused(tmp_path: Path, annex_at: AnnexAt) -> None:
    result = annex_at(tmp_path / "nowhere").fast("collect", "gpu")
    assert result.code == 2
    assert "error:" in result.err


# -- site labels -----------------------------------------------------------------------------------


def test_site_labels_come_from_the_environment(fresh: Path, annex_at: AnnexAt) -> None:
    annex = annex_at(fresh).with_env(
        ANNEX_SITE="fra-dc-2", ANNEX_COUNTRY="de", ANNEX_OPERATOR="Example AI GmbH"
    )
    site = annex.fast("collect", "gpu", "--dry-run", "--json").json()["statement"]["predicate"]
    assert site["site"] == {"site": "fra-dc-2", "country": "DE", "operator": "Example AI GmbH"}


def test_options_beat_the_environment(fresh: Path, annex_at: AnnexAt) -> None:
    annex = annex_at(fresh).with_env(ANNEX_SITE="fra-dc-2", ANNEX_COUNTRY="DE")
    result = annex.fast("collect", "gpu", "--dry-run", "--json", "--country", "FR", "--site", "p1")
    site = result.json()["statement"]["predicate"]["site"]
    assert site == {"site": "p1", "country": "FR", "operator": None}


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        (["--country", "XX"], {}, "error: --country: 'XX' is not an ISO 3166-1 alpha-2"),
        (["--country", "UK"], {}, "the United Kingdom is GB"),
        ([], {"ANNEX_COUNTRY": "Germany"}, "error: ANNEX_COUNTRY: 'Germany' is not an ISO"),
    ],
)
def test_a_bad_country_is_refused_and_nothing_is_logged(
    fresh: Path,
    annex_at: AnnexAt,
    template: Template,
    options: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    result = annex_at(fresh).with_env(**env).fast("collect", "gpu", *options)
    assert result.code == 2
    assert message in result.err
    assert log_size(fresh) == template.size
    as_json = annex_at(fresh).with_env(**env).fast("collect", "gpu", "--json", *options)
    assert as_json.code == 2
    assert as_json.json()["ok"] is False
    assert log_size(fresh) == template.size


# -- fake GPUs behind the real pynvml module ------------------------------------------------------


@pytest.mark.usefixtures("fleet")
def test_summary_has_a_line_per_gpu(fresh: Path, annex_at: AnnexAt, template: Template) -> None:
    result = annex_at(fresh).fast("collect", "gpu")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("4 GPUs on ")
    assert lines[0].endswith("(driver 550.54.15, CUDA 12.4, NVML 12.550.54.15)")
    assert lines[1:5] == [
        "  gpu 0  NVIDIA H100 80GB HBM3  GPU-9f1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d  80.0 GiB  "
        "MIG enabled, 2 MIG devices  1 field unsupported",
        "  gpu 1  NVIDIA A100-SXM4-80GB  GPU-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d  80.0 GiB  "
        "MIG disabled (enabled after reset)",
        "  gpu 2  NVIDIA GeForce GTX 1080  GPU-7e8f9a0b-1c2d-3e4f-5a6b-7c8d9e0f1a2b  8.0 GiB  "
        "MIG unsupported  6 fields unsupported",
        "  gpu 3  NVIDIA L4  GPU-3c4d5e6f-7a8b-9c0d-1e2f-3a4b5c6d7e8f  24.0 GiB  MIG disabled  "
        "2 fields unreadable (NVML_ERROR_NO_PERMISSION, NVML_ERROR_UNKNOWN)",
    ]
    assert lines[5] == (
        f"recorded at entry {template.size} (self-reported by NVML, not hardware attestation)"
    )


def test_the_logged_entry_is_found_under_each_gpu(
    fresh: Path, annex_at: AnnexAt, template: Template, fleet: nvml_fake.FakeNvml
) -> None:
    result = annex_at(fresh).fast("collect", "gpu", "--json", "--country", "DE")
    assert result.code == 0, result.err
    statement = logged(fresh, template.size)
    assert statement == result.json()["statement"]
    names = [s["name"] for s in statement["subject"]]
    assert names[1:] == [f"gpu:{gpu.uuid}" for gpu in fleet.gpus]
    assert len(statement["predicate"]["devices"]) == 4
    assert fleet.initialised == 0


def test_no_driver(fresh: Path, annex_at: AnnexAt, monkeypatch: pytest.MonkeyPatch) -> None:
    def init() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", init)
    result = annex_at(fresh).fast("collect", "gpu")
    assert result.code == 0, result.err
    assert "the NVIDIA kernel driver is not loaded (NVML_ERROR_DRIVER_NOT_LOADED" in result.out
