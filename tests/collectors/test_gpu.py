"""The GPU collector on fake NVML hosts, and on the real pynvml module patched at its boundary.

Every field of every made-up GPU, every way NVML can be missing or fail, and proof that the
real backend (the pynvml module) takes the same path as the fake.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import inspect
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pynvml
import pytest

from collectors import nvml_fake
from collectors.gpu import TEMPERATURE_GPU, collect_gpu, cuda_version
from collectors.nvml import BACKEND_CALLS, NvmlBackend, Unavailable, error_name, load_pynvml
from collectors.nvml_fake import FakeNvml
from schemas.gpu import GpuInventoryPredicate, Host, SiteLabels
from schemas.statement import Statement

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
HOST = Host(
    hostname="gpu-node-01",
    os="Ubuntu 22.04.4 LTS",
    kernel="5.15.0-105-generic",
    architecture="x86_64",
    cpu_model="Intel(R) Xeon(R) Platinum 8480+",
    cpu_cores=224,
    memory_bytes=2_164_000_000_000,
)
SITE = SiteLabels(site="fra-dc-2", country="DE", operator="Example AI GmbH")


def collect(backend: NvmlBackend | Unavailable) -> dict[str, Any]:
    return collect_gpu(backend, site=SITE, now=NOW, host=HOST)


def predicate_of(backend: NvmlBackend | Unavailable) -> dict[str, Any]:
    statement = collect(backend)
    Statement.model_validate(statement)
    GpuInventoryPredicate.model_validate(statement["predicate"])
    predicate: dict[str, Any] = statement["predicate"]
    return predicate


def values(device: dict[str, Any]) -> dict[str, Any]:
    """A device's readings with {"value": x} unwrapped to x; other readings as they are."""
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in device.items()}


UNSUPPORTED = {"unsupported": True}


# -- a mixed host: every field ---------------------------------------------------------------------


@pytest.fixture
def fleet() -> dict[str, Any]:
    return predicate_of(nvml_fake.fleet())


def test_host_site_and_versions(fleet: dict[str, Any]) -> None:
    assert fleet["observedAt"] == "2026-11-24T08:00:00Z"
    assert fleet["selfReported"] is True
    assert fleet["attestation"] == "none: self-reported by NVML, not hardware attestation"
    assert (fleet["status"], fleet["reason"]) == ("ok", None)
    assert fleet["site"] == {"site": "fra-dc-2", "country": "DE", "operator": "Example AI GmbH"}
    assert fleet["host"] == HOST.model_dump(by_alias=True)
    assert fleet["driverVersion"] == {"value": "550.54.15"}
    assert fleet["cudaDriverVersion"] == {"value": "12.4"}
    assert fleet["nvmlVersion"] == {"value": "12.550.54.15"}
    assert [d["index"] for d in fleet["devices"]] == [0, 1, 2, 3]


def test_h100_in_mig_mode_lists_its_mig_devices(fleet: dict[str, Any]) -> None:
    mig_memory = 40 * 2**30 - 512 * 2**20
    assert values(fleet["devices"][0]) == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-9f1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        "serial": "1654922010245",
        "pciBusId": "00000000:19:00.0",
        "boardPartNumber": "692-2G520-0200-000",
        "vbiosVersion": "96.00.74.00.0D",
        "memoryTotalBytes": 80 * 2**30,
        "computeCapability": "9.0",
        "migMode": {"current": "enabled", "pending": "enabled"},
        "migDevices": [  # slots 1 and 3 to 6 are empty and not listed
            {
                "index": 0,
                "gpuInstanceId": 1,
                "computeInstanceId": 0,
                "uuid": "MIG-5c3a1f2e-7d4b-5e6f-8a9b-0c1d2e3f4a01",
                "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
                "memoryTotalBytes": mig_memory,
            },
            {
                "index": 2,
                "gpuInstanceId": 2,
                "computeInstanceId": 0,
                "uuid": "MIG-5c3a1f2e-7d4b-5e6f-8a9b-0c1d2e3f4a02",
                "name": "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
                "memoryTotalBytes": mig_memory,
            },
        ],
        "eccMode": {"current": "enabled", "pending": "enabled"},
        "persistenceMode": "enabled",
        "powerLimitMilliwatts": 700_000,
        "enforcedPowerLimitMilliwatts": 700_000,
        "utilization": UNSUPPORTED,  # per MIG device only, in MIG mode
        "temperatureCelsius": 41,
        "totalEnergyMillijoules": 912_345_678_901,
    }


def test_a100_with_mig_pending_has_no_mig_devices_yet(fleet: dict[str, Any]) -> None:
    a100 = values(fleet["devices"][1])
    assert a100["name"] == "NVIDIA A100-SXM4-80GB"
    assert a100["computeCapability"] == "8.0"
    assert a100["migMode"] == {"current": "disabled", "pending": "enabled"}
    assert a100["migDevices"] == []
    assert a100["utilization"] == {"gpuPercent": 87, "memoryPercent": 63}
    assert a100["temperatureCelsius"] == 58
    assert a100["totalEnergyMillijoules"] == 45_678_901_234


def test_old_consumer_card_records_what_it_does_not_support(fleet: dict[str, Any]) -> None:
    geforce = values(fleet["devices"][2])
    unsupported = {k for k, v in geforce.items() if v == UNSUPPORTED}
    assert unsupported == {
        "serial",
        "boardPartNumber",
        "eccMode",
        "migMode",
        "migDevices",
        "totalEnergyMillijoules",
    }
    assert geforce["name"] == "NVIDIA GeForce GTX 1080"
    assert geforce["memoryTotalBytes"] == 8 * 2**30
    assert geforce["computeCapability"] == "6.1"
    assert geforce["persistenceMode"] == "disabled"
    assert geforce["vbiosVersion"] == "86.04.17.00.80"


def test_nvml_errors_are_recorded_by_name(fleet: dict[str, Any]) -> None:
    l4 = values(fleet["devices"][3])
    assert l4["totalEnergyMillijoules"] == {"error": "NVML_ERROR_NO_PERMISSION"}
    assert l4["temperatureCelsius"] == {"error": "NVML_ERROR_UNKNOWN"}
    assert l4["migMode"] == {"current": "disabled", "pending": "disabled"}
    assert l4["utilization"] == {"gpuPercent": 12, "memoryPercent": 4}
    assert l4["pciBusId"] == "00000000:CA:00.0"


def test_subjects_are_the_host_and_every_gpu() -> None:
    statement = collect(nvml_fake.fleet())
    uuids = [g.uuid for g in nvml_fake.fleet().gpus]
    names = [s["name"] for s in statement["subject"]]
    assert names == ["host:gpu-node-01", *(f"gpu:{u}" for u in uuids)]
    assert statement["subject"][1]["digest"] == {
        "sha256": hashlib.sha256(uuids[0].encode()).hexdigest()
    }


def test_nvml_is_shut_down_after_reading() -> None:
    fake = nvml_fake.fleet()
    collect(fake)
    assert fake.log[0] == "nvmlInit"
    assert fake.log[-1] == "nvmlShutdown"
    assert fake.initialised == 0


# -- hosts with nothing to see, and NVML failing ---------------------------------------------------


@pytest.mark.parametrize(
    ("fake", "status", "reason"),
    [
        (nvml_fake.without_library(), "no-nvml", "NVML library not found"),
        (nvml_fake.without_driver(), "no-driver", "the NVIDIA kernel driver is not loaded"),
        (
            FakeNvml(errors={"nvmlInit": pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH}),
            "nvml-error",
            "NVML_ERROR_LIB_RM_VERSION_MISMATCH from nvmlInit",
        ),
        (
            FakeNvml(errors={"nvmlInit": pynvml.NVML_ERROR_UNKNOWN}),
            "nvml-error",
            "NVML failed to initialise (NVML_ERROR_UNKNOWN from nvmlInit)",
        ),
    ],
)
def test_nvml_that_cannot_start_is_a_recorded_fact(
    fake: FakeNvml, status: str, reason: str
) -> None:
    predicate = predicate_of(fake)
    assert predicate["status"] == status
    assert reason in predicate["reason"]
    assert predicate["devices"] == []
    assert predicate["driverVersion"] is None
    assert "nvmlShutdown" not in fake.log  # nothing to shut down


def test_no_gpu_is_a_recorded_fact_with_the_driver_versions() -> None:
    fake = nvml_fake.without_gpus()
    predicate = predicate_of(fake)
    assert predicate["status"] == "no-gpu"
    assert predicate["reason"] == "NVML is working and reports no GPU"
    assert predicate["driverVersion"] == {"value": "550.54.15"}
    assert fake.initialised == 0
    assert [s["name"] for s in collect(fake)["subject"]] == ["host:gpu-node-01"]


def test_nvml_failing_to_count_gpus() -> None:
    fake = FakeNvml(
        [nvml_fake.a100()],
        errors={
            "nvmlDeviceGetCount": pynvml.NVML_ERROR_GPU_IS_LOST,
            "nvmlSystemGetNVMLVersion": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        },
    )
    predicate = predicate_of(fake)
    assert predicate["status"] == "nvml-error"
    assert "NVML_ERROR_GPU_IS_LOST from nvmlDeviceGetCount" in predicate["reason"]
    assert predicate["nvmlVersion"] == {"error": "NVML_ERROR_FUNCTION_NOT_FOUND"}
    assert fake.initialised == 0


def test_a_gpu_nvml_cannot_open_has_the_error_in_every_field() -> None:
    lost = replace(
        nvml_fake.a100(), errors={"nvmlDeviceGetHandleByIndex": pynvml.NVML_ERROR_GPU_IS_LOST}
    )
    predicate = predicate_of(FakeNvml([nvml_fake.l4_failing(), lost]))
    assert predicate["status"] == "ok"
    gone = predicate["devices"][1]
    assert gone.pop("index") == 1
    assert set(map(json.dumps, gone.values())) == {'{"error": "NVML_ERROR_GPU_IS_LOST"}'}
    subjects = [s["name"] for s in collect(FakeNvml([nvml_fake.l4_failing(), lost]))["subject"]]
    assert subjects == ["host:gpu-node-01", f"gpu:{nvml_fake.l4_failing().uuid}"]


def test_mig_devices_follow_an_unreadable_mig_mode() -> None:
    gpu = replace(
        nvml_fake.h100_mig(), errors={"nvmlDeviceGetMigMode": pynvml.NVML_ERROR_NO_PERMISSION}
    )
    device = predicate_of(FakeNvml([gpu]))["devices"][0]
    assert device["migMode"] == device["migDevices"] == {"error": "NVML_ERROR_NO_PERMISSION"}


@pytest.mark.parametrize(
    "call", ["nvmlDeviceGetMaxMigDeviceCount", "nvmlDeviceGetComputeInstanceId"]
)
def test_mig_devices_that_cannot_be_listed(call: str) -> None:
    fake = FakeNvml([nvml_fake.h100_mig()], errors={call: pynvml.NVML_ERROR_UNKNOWN})
    device = predicate_of(fake)["devices"][0]
    assert device["migMode"] == {"value": {"current": "enabled", "pending": "enabled"}}
    assert device["migDevices"] == {"error": "NVML_ERROR_UNKNOWN"}


def test_an_error_code_pynvml_does_not_know_keeps_its_number() -> None:
    gpu = replace(nvml_fake.a100(), errors={"nvmlDeviceGetSerial": 4242})
    device = predicate_of(FakeNvml([gpu]))["devices"][0]
    assert device["serial"] == {"error": "NVML_ERROR_CODE_4242"}
    assert error_name(pynvml.NVML_ERROR_NOT_SUPPORTED) == "NVML_ERROR_NOT_SUPPORTED"


def test_an_unavailable_backend_is_recorded_as_it_says() -> None:
    predicate = predicate_of(Unavailable("no-nvml", "pynvml is not installed"))
    assert (predicate["status"], predicate["reason"]) == ("no-nvml", "pynvml is not installed")


@pytest.mark.parametrize(("raw", "shown"), [(12040, "12.4"), (11080, "11.8"), (12090, "12.9")])
def test_cuda_driver_version(raw: int, shown: str) -> None:
    assert cuda_version(raw) == shown


def test_the_fake_needs_nvml_started_like_the_real_library() -> None:
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        FakeNvml([nvml_fake.a100()]).nvmlDeviceGetCount()


def test_a_mig_device_answers_only_mig_calls() -> None:
    fake = FakeNvml([nvml_fake.h100_mig()])
    fake.nvmlInit()
    gpu = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetGpuInstanceId(gpu)
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetMigDeviceHandleByIndex(gpu, 1)
    mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(gpu, 2)
    assert fake.nvmlDeviceGetGpuInstanceId(mig) == 2
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetSerial(mig)


# -- the real backend: the pynvml module ----------------------------------------------------------


def test_every_backend_call_is_a_pynvml_function_with_the_same_arguments() -> None:
    assert len(BACKEND_CALLS) == 27
    for name in BACKEND_CALLS:
        real = inspect.signature(getattr(pynvml, name))
        ours = inspect.signature(getattr(NvmlBackend, name))
        required = [p for p in real.parameters.values() if p.default is p.empty]
        assert len(required) == len(ours.parameters) - 1, name  # less self
    assert pynvml.NVML_TEMPERATURE_GPU == TEMPERATURE_GPU


def test_this_host_without_a_gpu_records_why_and_does_not_crash() -> None:
    """No patching: what `annex collect gpu` sees on this machine."""
    predicate = predicate_of(load_pynvml())
    if ctypes.util.find_library("nvidia-ml") is None:
        assert predicate["status"] == "no-nvml"
        assert "NVML_ERROR_LIBRARY_NOT_FOUND from nvmlInit" in predicate["reason"]
    elif predicate["status"] != "ok":
        assert predicate["reason"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (pynvml.NVMLError_LibraryNotFound, "no-nvml"),
        (pynvml.NVMLError_DriverNotLoaded, "no-driver"),
        (pynvml.NVMLError_NoPermission, "nvml-error"),
    ],
)
def test_real_backend_init_failures(
    monkeypatch: pytest.MonkeyPatch, error: type[pynvml.NVMLError], status: str
) -> None:
    def init() -> None:
        raise error()

    monkeypatch.setattr(pynvml, "nvmlInit", init)
    assert predicate_of(load_pynvml())["status"] == status


def test_real_backend_reads_the_same_as_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = nvml_fake.fleet()
    for name, call in fake.calls().items():
        monkeypatch.setattr(pynvml, name, call)
    backend = load_pynvml()
    assert backend is pynvml
    assert collect(backend) == collect(nvml_fake.fleet())
    assert fake.initialised == 0


def test_real_backend_accepts_bytes_from_old_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([nvml_fake.a100()])
    for name, call in fake.calls().items():
        monkeypatch.setattr(pynvml, name, call)
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: b"470.223.02")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda handle: b"NVIDIA A100-SXM4-80GB")
    pci = pynvml.nvmlPciInfo_t(busId=b"00000000:3B:00.0")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPciInfo", lambda handle: pci)
    predicate = predicate_of(load_pynvml())
    assert predicate["driverVersion"] == {"value": "470.223.02"}
    assert predicate["devices"][0]["name"] == {"value": "NVIDIA A100-SXM4-80GB"}
    assert predicate["devices"][0]["pciBusId"] == {"value": "00000000:3B:00.0"}


def test_without_the_pynvml_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    backend = load_pynvml()
    assert isinstance(backend, Unavailable)
    predicate = predicate_of(backend)
    assert predicate["status"] == "no-nvml"
    assert "nvidia-ml-py" in predicate["reason"]


def test_annex_imports_and_collects_without_pynvml() -> None:
    """Optional native parts load lazily: with pynvml unimportable the command still works."""
    code = (
        "import sys; sys.modules['pynvml'] = None\n"
        "from api.cli import main\n"
        "sys.argv = ['annex', 'collect', 'gpu', '--dry-run', '--json']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    predicate = json.loads(done.stdout)["statement"]["predicate"]
    assert predicate["status"] == "no-nvml"
    assert "pynvml" in predicate["reason"]


@pytest.mark.gpu
def test_a_real_gpu() -> None:
    """On a host with an NVIDIA GPU: every GPU is listed with its identity."""
    predicate = predicate_of(load_pynvml())
    if predicate["status"] in ("no-nvml", "no-driver", "no-gpu"):
        pytest.skip(f"no GPU here: {predicate['reason']}")
    assert predicate["status"] == "ok", predicate["reason"]
    assert predicate["driverVersion"]["value"]
    for device in predicate["devices"]:
        assert device["uuid"]["value"].startswith("GPU-")
        assert device["memoryTotalBytes"]["value"] > 0
        assert "value" in device["computeCapability"]
