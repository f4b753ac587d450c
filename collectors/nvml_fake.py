"""A fake NVML backend: made-up GPUs behind the same calls, results and errors as pynvml.

It answers every call of `NvmlBackend` with what pynvml returns (str, lists, tuples and
pynvml's own ctypes structures) and fails with real `pynvml.NVMLError(code)` instances, so the
collector's one code path is what the tests drive. `fleet()` is a mixed host: an H100 in MIG
mode with two MIG devices, an A100 with MIG pending, an old GeForce that supports neither ECC,
serial number nor energy counter, and an L4 whose calls fail with other NVML errors.
`without_library()`, `without_driver()` and `without_gpus()` are the hosts with nothing to see.

To run the real backend (the pynvml module) on fake GPUs, patch the module's functions:
`for name, call in fake.calls().items(): monkeypatch.setattr(pynvml, name, call)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml

from collectors.nvml import BACKEND_CALLS

GIB = 1024**3


@dataclass(frozen=True)
class FakeMig:
    """A MIG device: one compute instance of one GPU instance."""

    gpu_instance_id: int
    compute_instance_id: int
    uuid: str
    name: str
    memory_total: int


@dataclass(frozen=True, eq=False)
class FakeGpu:
    """One GPU. `errors` maps a pynvml function name to the NVML_ERROR_* code it raises."""

    name: str
    uuid: str
    serial: str
    pci_bus_id: str
    board_part_number: str
    vbios_version: str
    memory_total: int
    compute_capability: tuple[int, int]
    mig_mode: tuple[int, int] = (0, 0)
    mig_slots: tuple[FakeMig | None, ...] = ()  # None: an empty slot
    ecc_mode: tuple[int, int] = (1, 1)
    persistence_mode: int = 1
    power_limit: int = 300_000  # milliwatts
    enforced_power_limit: int = 300_000
    utilization: tuple[int, int] = (0, 0)
    temperature: int = 35
    total_energy: int = 0  # millijoules
    errors: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class _Handle:
    gpu: FakeGpu


@dataclass(frozen=True, eq=False)
class _MigHandle:
    mig: FakeMig


class FakeNvml:
    """The NVML of a made-up host. `errors` maps a system-level call to the code it raises."""

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        driver_version: str = "550.54.15",
        cuda_driver_version: int = 12040,
        nvml_version: str = "12.550.54.15",
        errors: Mapping[str, int] | None = None,
    ) -> None:
        self.gpus = tuple(gpus)
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.nvml_version = nvml_version
        self.errors = dict(errors or {})
        self.initialised = 0  # NVML counts nvmlInit calls and needs as many nvmlShutdown
        self.log: list[str] = []  # every call made, by name

    def calls(self) -> dict[str, Callable[..., Any]]:
        """The fake's calls by pynvml name, to patch onto the pynvml module."""
        return {name: getattr(self, name) for name in BACKEND_CALLS}

    # -- plumbing ---------------------------------------------------------------------------------

    def _enter(self, name: str, handle: object = None) -> None:
        self.log.append(name)
        if name != "nvmlInit" and not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        code = self.errors.get(name)
        if code is None and isinstance(handle, _Handle):
            code = handle.gpu.errors.get(name)
        if code is not None:
            raise pynvml.NVMLError(code)

    def _gpu(self, name: str, handle: object) -> FakeGpu:
        self._enter(name, handle)
        if not isinstance(handle, _Handle):  # a MIG handle, for a call only whole GPUs answer
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.gpu

    def _mig(self, name: str, handle: object) -> FakeMig:
        self._enter(name, handle)
        if not isinstance(handle, _MigHandle):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle.mig

    # -- system -----------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return self.nvml_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        code = gpu.errors.get("nvmlDeviceGetHandleByIndex")
        if code is not None:
            raise pynvml.NVMLError(code)
        return _Handle(gpu)

    # -- whole GPUs and MIG devices ---------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: object) -> str:
        if isinstance(handle, _MigHandle):
            return self._mig("nvmlDeviceGetName", handle).name
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUUID(self, handle: object) -> str:
        if isinstance(handle, _MigHandle):
            return self._mig("nvmlDeviceGetUUID", handle).uuid
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> Any:
        if isinstance(handle, _MigHandle):
            total = self._mig("nvmlDeviceGetMemoryInfo", handle).memory_total
        else:
            total = self._gpu("nvmlDeviceGetMemoryInfo", handle).memory_total
        return pynvml.c_nvmlMemory_t(total=total, free=total, used=0)

    # -- whole GPUs -------------------------------------------------------------------------------

    def nvmlDeviceGetSerial(self, handle: object) -> str:
        return self._gpu("nvmlDeviceGetSerial", handle).serial

    def nvmlDeviceGetBoardPartNumber(self, handle: object) -> str:
        return self._gpu("nvmlDeviceGetBoardPartNumber", handle).board_part_number

    def nvmlDeviceGetVbiosVersion(self, handle: object) -> str:
        return self._gpu("nvmlDeviceGetVbiosVersion", handle).vbios_version

    def nvmlDeviceGetPciInfo(self, handle: object) -> Any:
        bus_id = self._gpu("nvmlDeviceGetPciInfo", handle).pci_bus_id.encode()
        return pynvml.nvmlPciInfo_t(busId=bus_id)

    def nvmlDeviceGetCudaComputeCapability(self, handle: object) -> tuple[int, int]:
        return self._gpu("nvmlDeviceGetCudaComputeCapability", handle).compute_capability

    def nvmlDeviceGetMigMode(self, handle: object) -> list[int]:
        return list(self._gpu("nvmlDeviceGetMigMode", handle).mig_mode)

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: object) -> int:
        return len(self._gpu("nvmlDeviceGetMaxMigDeviceCount", handle).mig_slots)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: object, index: int) -> _MigHandle:
        gpu = self._gpu("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if gpu.mig_mode[0] != pynvml.NVML_DEVICE_MIG_ENABLE or not 0 <= index < len(gpu.mig_slots):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        mig = gpu.mig_slots[index]
        if mig is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return _MigHandle(mig)

    def nvmlDeviceGetGpuInstanceId(self, handle: object) -> int:
        return self._mig("nvmlDeviceGetGpuInstanceId", handle).gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, handle: object) -> int:
        return self._mig("nvmlDeviceGetComputeInstanceId", handle).compute_instance_id

    def nvmlDeviceGetEccMode(self, handle: object) -> list[int]:
        return list(self._gpu("nvmlDeviceGetEccMode", handle).ecc_mode)

    def nvmlDeviceGetPersistenceMode(self, handle: object) -> int:
        return self._gpu("nvmlDeviceGetPersistenceMode", handle).persistence_mode

    def nvmlDeviceGetPowerManagementLimit(self, handle: object) -> int:
        return self._gpu("nvmlDeviceGetPowerManagementLimit", handle).power_limit

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: object) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle).enforced_power_limit

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> Any:
        gpu_percent, memory_percent = self._gpu("nvmlDeviceGetUtilizationRates", handle).utilization
        return pynvml.c_nvmlUtilization_t(gpu=gpu_percent, memory=memory_percent)

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        return self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle).total_energy


# -- made-up hosts --------------------------------------------------------------------------------


def h100_mig() -> FakeGpu:
    """An H100 SXM in MIG mode: two 3g.40gb devices in slots 0 and 2 of its 7."""

    def mig(gi: int) -> FakeMig:
        uuid = f"MIG-5c3a1f2e-7d4b-5e6f-8a9b-0c1d2e3f4a{gi:02d}"
        return FakeMig(gi, 0, uuid, "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40 * GIB - 512 * 2**20)

    return FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-9f1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        serial="1654922010245",
        pci_bus_id="00000000:19:00.0",
        board_part_number="692-2G520-0200-000",
        vbios_version="96.00.74.00.0D",
        memory_total=80 * GIB,
        compute_capability=(9, 0),
        mig_mode=(1, 1),
        mig_slots=(mig(1), None, mig(2), None, None, None, None),
        power_limit=700_000,
        enforced_power_limit=700_000,
        temperature=41,
        total_energy=912_345_678_901,
        # In MIG mode the whole GPU reports no utilisation: each MIG device has its own.
        errors={"nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NOT_SUPPORTED},
    )


def a100() -> FakeGpu:
    """An A100 SXM with MIG off now and on after the next reset."""
    return FakeGpu(
        name="NVIDIA A100-SXM4-80GB",
        uuid="GPU-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
        serial="1323021034567",
        pci_bus_id="00000000:3B:00.0",
        board_part_number="692-2G506-0212-002",
        vbios_version="92.00.45.00.06",
        memory_total=80 * GIB,
        compute_capability=(8, 0),
        mig_mode=(0, 1),
        power_limit=400_000,
        enforced_power_limit=400_000,
        utilization=(87, 63),
        temperature=58,
        total_energy=45_678_901_234,
    )


def geforce_1080() -> FakeGpu:
    """An old consumer card: no ECC, no serial or part number, no energy counter, no MIG."""
    unsupported = pynvml.NVML_ERROR_NOT_SUPPORTED
    return FakeGpu(
        name="NVIDIA GeForce GTX 1080",
        uuid="GPU-7e8f9a0b-1c2d-3e4f-5a6b-7c8d9e0f1a2b",
        serial="",
        pci_bus_id="00000000:65:00.0",
        board_part_number="",
        vbios_version="86.04.17.00.80",
        memory_total=8 * GIB,
        compute_capability=(6, 1),
        persistence_mode=0,
        power_limit=180_000,
        enforced_power_limit=180_000,
        utilization=(3, 1),
        temperature=33,
        errors={
            "nvmlDeviceGetSerial": unsupported,
            "nvmlDeviceGetBoardPartNumber": unsupported,
            "nvmlDeviceGetEccMode": unsupported,
            "nvmlDeviceGetMigMode": unsupported,
            "nvmlDeviceGetTotalEnergyConsumption": unsupported,
        },
    )


def l4_failing() -> FakeGpu:
    """An L4 whose energy counter needs privileges and whose temperature sensor fails."""
    return FakeGpu(
        name="NVIDIA L4",
        uuid="GPU-3c4d5e6f-7a8b-9c0d-1e2f-3a4b5c6d7e8f",
        serial="1322923045678",
        pci_bus_id="00000000:CA:00.0",
        board_part_number="900-2G193-0000-001",
        vbios_version="95.04.29.00.06",
        memory_total=24 * GIB,
        compute_capability=(8, 9),
        power_limit=72_000,
        enforced_power_limit=72_000,
        utilization=(12, 4),
        errors={
            "nvmlDeviceGetTotalEnergyConsumption": pynvml.NVML_ERROR_NO_PERMISSION,
            "nvmlDeviceGetTemperature": pynvml.NVML_ERROR_UNKNOWN,
        },
    )


def fleet() -> FakeNvml:
    """The mixed host: H100 (MIG), A100 (MIG pending), GeForce GTX 1080, L4 with errors."""
    return FakeNvml([h100_mig(), a100(), geforce_1080(), l4_failing()])


def without_library() -> FakeNvml:
    """libnvidia-ml.so.1 is not installed: nvmlInit raises NVMLError_LibraryNotFound."""
    return FakeNvml(errors={"nvmlInit": pynvml.NVML_ERROR_LIBRARY_NOT_FOUND})


def without_driver() -> FakeNvml:
    """The library is there but the kernel driver is not loaded."""
    return FakeNvml(errors={"nvmlInit": pynvml.NVML_ERROR_DRIVER_NOT_LOADED})


def without_gpus() -> FakeNvml:
    """NVML works and counts no device (a GPU node whose cards are all passed through)."""
    return FakeNvml([])
