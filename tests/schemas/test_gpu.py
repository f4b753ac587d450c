"""The gpu-inventory predicate: readings, site labels, the status invariants and the subjects."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from pydantic import TypeAdapter, ValidationError

from schemas.gpu import (
    ISO_3166_ALPHA_2,
    Failed,
    GpuInventoryPredicate,
    IntReading,
    SiteLabels,
    Unsupported,
    Value,
    gpu_statement,
    host_identity_digest,
)
from schemas.statement import Statement

ISO_TAB = Path("/usr/share/zoneinfo/iso3166.tab")
HOST = {
    "hostname": "node-7",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-18-amd64",
    "architecture": "x86_64",
    "cpuModel": "AMD EPYC 9654 96-Core Processor",
    "cpuCores": 192,
    "memoryBytes": 1_622_000_000_000,
}


def device(index: int, uuid: dict[str, Any] | None = None) -> dict[str, Any]:
    """A device whose readings are all unsupported except its UUID."""
    fields = [
        "name", "serial", "pciBusId", "boardPartNumber", "vbiosVersion", "memoryTotalBytes",
        "computeCapability", "migMode", "migDevices", "eccMode", "persistenceMode",
        "powerLimitMilliwatts", "enforcedPowerLimitMilliwatts", "utilization",
        "temperatureCelsius", "totalEnergyMillijoules",
    ]  # fmt: skip
    data: dict[str, Any] = {name: {"unsupported": True} for name in fields}
    return {"index": index, "uuid": uuid or {"value": f"GPU-{index:04d}"}, **data}


def predicate(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "observedAt": "2026-11-24T08:00:00Z",
        "selfReported": True,
        "attestation": "none: self-reported by NVML, not hardware attestation",
        "status": "ok",
        "reason": None,
        "site": {"site": "fra-1", "country": "DE", "operator": "Example GmbH"},
        "host": HOST,
        "driverVersion": {"value": "550.54.15"},
        "cudaDriverVersion": {"value": "12.4"},
        "nvmlVersion": {"value": "12.550.54.15"},
        "devices": [device(0), device(1)],
    }
    data.update(changes)
    return data


def test_a_predicate_reads_back_to_the_same_json() -> None:
    data = predicate()
    assert GpuInventoryPredicate.model_validate(data).to_predicate() == data


@pytest.mark.parametrize(
    ("reading", "kind"),
    [
        ({"value": 7}, Value),
        ({"unsupported": True}, Unsupported),
        ({"error": "NVML_ERROR_NO_PERMISSION"}, Failed),
    ],
)
def test_a_reading_is_a_value_unsupported_or_an_nvml_error(
    reading: dict[str, Any], kind: type
) -> None:
    assert isinstance(TypeAdapter(IntReading).validate_python(reading), kind)


@pytest.mark.parametrize(
    "reading",
    [
        {},
        {"unsupported": False},
        {"error": "permission denied"},
        {"value": 7, "unsupported": True},
        {"value": "seven"},
        None,
    ],
)
def test_anything_else_is_not_a_reading(reading: Any) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(IntReading).validate_python(reading)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reason": "why not"}, "reason must be given exactly when status is not 'ok'"),
        ({"status": "no-gpu", "devices": []}, "reason must be given exactly"),
        ({"devices": []}, "devices must be listed exactly when status is 'ok'"),
        ({"status": "no-nvml", "reason": "none here"}, "devices must be listed exactly"),
        ({"devices": [device(1), device(0)]}, "devices must be listed by index"),
        ({"selfReported": False}, "selfReported"),
        ({"attestation": "hardware"}, "attestation"),
        ({"observedAt": "yesterday"}, "observedAt"),
        ({"status": "broken"}, "status"),
        ({"extra": 1}, "extra"),
    ],
)
def test_inconsistent_predicates_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GpuInventoryPredicate.model_validate(predicate(**changes))


def test_statuses_without_devices_carry_a_reason_and_may_lack_versions() -> None:
    data = predicate(
        status="no-driver",
        reason="the NVIDIA kernel driver is not loaded",
        driverVersion=None,
        cudaDriverVersion=None,
        nvmlVersion=None,
        devices=[],
    )
    assert GpuInventoryPredicate.model_validate(data).status == "no-driver"


@pytest.mark.parametrize(("given", "stored"), [("DE", "DE"), ("fr", "FR"), (" nl ", "NL")])
def test_country_is_an_iso_3166_alpha_2_code(given: str, stored: str) -> None:
    assert SiteLabels(country=given).country == stored


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("XX", "'XX' is not an ISO 3166-1 alpha-2 country code"),
        ("DEU", "not an ISO 3166-1 alpha-2"),
        ("Germany", "not an ISO 3166-1 alpha-2"),
        ("UK", "the United Kingdom is GB"),
        ("EU", "give the member state"),
        ("", "not an ISO 3166-1 alpha-2"),
    ],
)
def test_other_countries_are_refused_with_a_hint(given: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SiteLabels(country=given)


def test_the_country_list_is_the_249_assigned_codes() -> None:
    assert len(ISO_3166_ALPHA_2) == 249
    assert {"DE", "GB", "US", "SS", "BQ", "AX"} <= ISO_3166_ALPHA_2
    assert not {"UK", "EU", "YU", "AN", "XK"} & ISO_3166_ALPHA_2
    if ISO_TAB.exists():  # the tz database's copy of the standard, where the OS has it
        lines = ISO_TAB.read_text().splitlines()
        codes = {line.split("\t")[0] for line in lines if line and not line.startswith("#")}
        assert codes == ISO_3166_ALPHA_2


def test_subjects_name_the_host_and_each_gpu_by_uuid() -> None:
    model = GpuInventoryPredicate.model_validate(predicate())
    statement = gpu_statement(model)
    Statement.model_validate(statement)
    identity = rfc8785.dumps({"hostname": "node-7", "gpus": ["GPU-0000", "GPU-0001"]})
    assert statement["subject"] == [
        {"name": "host:node-7", "digest": {"sha256": hashlib.sha256(identity).hexdigest()}},
        {"name": "gpu:GPU-0000", "digest": {"sha256": hashlib.sha256(b"GPU-0000").hexdigest()}},
        {"name": "gpu:GPU-0001", "digest": {"sha256": hashlib.sha256(b"GPU-0001").hexdigest()}},
    ]
    assert statement["predicateType"] == "https://annex.dev/predicates/gpu-inventory/v1"


def test_the_host_digest_does_not_depend_on_gpu_order_but_on_the_set() -> None:
    assert host_identity_digest("h", ["b", "a"]) == host_identity_digest("h", ["a", "b"])
    assert host_identity_digest("h", ["a"]) != host_identity_digest("h", ["a", "b"])
    assert host_identity_digest("h", ["a"]) != host_identity_digest("g", ["a"])


def test_a_gpu_whose_uuid_was_not_read_gets_no_gpu_subject() -> None:
    lost = device(1, uuid={"error": "NVML_ERROR_GPU_IS_LOST"})
    model = GpuInventoryPredicate.model_validate(predicate(devices=[device(0), lost]))
    names = [s["name"] for s in gpu_statement(model)["subject"]]
    assert names == ["host:node-7", "gpu:GPU-0000"]
    assert model.devices[1].failed() == {"uuid": "NVML_ERROR_GPU_IS_LOST"}
    assert len(model.devices[1].unsupported()) == 16
