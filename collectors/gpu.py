"""The GPU inventory collector: host facts plus what NVML says about every GPU, as a statement.

It reads through an NVML backend (collectors/nvml.py: the real pynvml, or the fake beside it)
and does no other I/O than the host facts. Missing NVML, a missing driver, no GPU or an NVML
failure become the inventory's status and reason; a field a device cannot report becomes an
`unsupported` or `error` reading. Nothing is dropped and nothing raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from collectors.host import read_host
from collectors.nvml import (
    NvmlBackend,
    NvmlCallError,
    Unavailable,
    is_not_supported,
    nvml_call,
    read,
    start,
    stop,
    text,
)
from evidence.entry import rfc3339
from schemas.gpu import (
    UNSUPPORTED,
    Device,
    Failed,
    GpuInventoryPredicate,
    Host,
    MigDevice,
    MigReading,
    Modes,
    ModesReading,
    SiteLabels,
    State,
    Status,
    StrReading,
    Utilization,
    Value,
    gpu_statement,
)
from schemas.statement import Statement

TEMPERATURE_GPU = 0  # pynvml.NVML_TEMPERATURE_GPU: the GPU die sensor


def collect_gpu(
    backend: NvmlBackend | Unavailable,
    *,
    site: SiteLabels,
    now: datetime | None = None,
    host: Host | None = None,
) -> dict[str, Any]:
    """The gpu-inventory statement of this host: validated, ready for `Store.append`."""
    inventory = take_inventory(backend)
    predicate = GpuInventoryPredicate(
        observed_at=rfc3339(now or datetime.now(UTC)),
        status=inventory.status,
        reason=inventory.reason,
        site=site,
        host=host or read_host(),
        driver_version=inventory.driver_version,
        cuda_driver_version=inventory.cuda_driver_version,
        nvml_version=inventory.nvml_version,
        devices=inventory.devices,
    )
    statement = gpu_statement(predicate)
    Statement.model_validate(statement)
    return statement


@dataclass(frozen=True)
class Inventory:
    """What NVML said: a status, and the versions and devices it got as far as reading."""

    status: Status
    reason: str | None
    driver_version: StrReading | None = None
    cuda_driver_version: StrReading | None = None
    nvml_version: StrReading | None = None
    devices: tuple[Device, ...] = ()


def take_inventory(backend: NvmlBackend | Unavailable) -> Inventory:
    """Starts NVML, reads everything, and always shuts it down again."""
    if isinstance(backend, Unavailable):
        return Inventory(backend.status, backend.reason)
    down = start(backend)
    if down is not None:
        return Inventory(down.status, down.reason)
    try:
        return _read_all(backend)
    finally:
        stop(backend)


def _read_all(nvml: NvmlBackend) -> Inventory:
    versions: dict[str, Any] = {
        "driver_version": read(nvml.nvmlSystemGetDriverVersion, text),
        "cuda_driver_version": read(nvml.nvmlSystemGetCudaDriverVersion, cuda_version),
        "nvml_version": read(nvml.nvmlSystemGetNVMLVersion, text),
    }
    try:
        count = nvml_call(nvml.nvmlDeviceGetCount)
    except NvmlCallError as error:
        why = f"NVML could not count the GPUs ({error.name} from nvmlDeviceGetCount)"
        return Inventory("nvml-error", why, **versions)
    if count == 0:
        return Inventory("no-gpu", "NVML is working and reports no GPU", **versions)
    devices = tuple(read_device(nvml, index) for index in range(count))
    return Inventory("ok", None, devices=devices, **versions)


def read_device(nvml: NvmlBackend, index: int) -> Device:
    """Every field of one GPU; a GPU whose handle NVML refuses has that error in every field."""
    try:
        handle = nvml_call(partial(nvml.nvmlDeviceGetHandleByIndex, index))
    except NvmlCallError as error:
        failed = UNSUPPORTED if is_not_supported(error) else Failed(error=error.name)
        fields = {name: failed for name in Device.model_fields if name != "index"}
        return Device(index=index, **fields)
    mig_mode = read(partial(nvml.nvmlDeviceGetMigMode, handle), modes)
    return Device(
        index=index,
        name=read(partial(nvml.nvmlDeviceGetName, handle), text),
        uuid=read(partial(nvml.nvmlDeviceGetUUID, handle), text),
        serial=read(partial(nvml.nvmlDeviceGetSerial, handle), text),
        pci_bus_id=read(partial(nvml.nvmlDeviceGetPciInfo, handle), lambda p: text(p.busId)),
        board_part_number=read(partial(nvml.nvmlDeviceGetBoardPartNumber, handle), text),
        vbios_version=read(partial(nvml.nvmlDeviceGetVbiosVersion, handle), text),
        memory_total_bytes=read(partial(nvml.nvmlDeviceGetMemoryInfo, handle), lambda m: m.total),
        compute_capability=read(
            partial(nvml.nvmlDeviceGetCudaComputeCapability, handle), lambda c: f"{c[0]}.{c[1]}"
        ),
        mig_mode=mig_mode,
        mig_devices=mig_devices(nvml, handle, mig_mode),
        ecc_mode=read(partial(nvml.nvmlDeviceGetEccMode, handle), modes),
        persistence_mode=read(partial(nvml.nvmlDeviceGetPersistenceMode, handle), state),
        power_limit_milliwatts=read(partial(nvml.nvmlDeviceGetPowerManagementLimit, handle), int),
        enforced_power_limit_milliwatts=read(
            partial(nvml.nvmlDeviceGetEnforcedPowerLimit, handle), int
        ),
        utilization=read(
            partial(nvml.nvmlDeviceGetUtilizationRates, handle),
            lambda u: Utilization(gpu_percent=u.gpu, memory_percent=u.memory),
        ),
        temperature_celsius=read(
            partial(nvml.nvmlDeviceGetTemperature, handle, TEMPERATURE_GPU), int
        ),
        total_energy_millijoules=read(
            partial(nvml.nvmlDeviceGetTotalEnergyConsumption, handle), int
        ),
    )


def mig_devices(nvml: NvmlBackend, handle: object, mode: ModesReading) -> MigReading:
    """The MIG devices of a GPU in MIG mode; none when MIG is off; as its mode when unreadable."""
    if not isinstance(mode, Value):
        return mode
    if mode.value.current == "disabled":
        return Value[tuple[MigDevice, ...]](value=())
    try:
        found = []
        for slot in range(nvml_call(partial(nvml.nvmlDeviceGetMaxMigDeviceCount, handle))):
            mig = _mig_handle(nvml, handle, slot)
            if mig is not None:
                found.append(_mig_device(nvml, mig, slot))
    except NvmlCallError as error:
        return UNSUPPORTED if is_not_supported(error) else Failed(error=error.name)
    return Value[tuple[MigDevice, ...]](value=tuple(found))


def _mig_handle(nvml: NvmlBackend, handle: object, slot: int) -> object | None:
    """The MIG device in a slot, or None for an empty slot (NVML_ERROR_NOT_FOUND)."""
    try:
        return nvml_call(partial(nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot))
    except NvmlCallError as error:
        if error.name == "NVML_ERROR_NOT_FOUND":
            return None
        raise


def _mig_device(nvml: NvmlBackend, mig: object, slot: int) -> MigDevice:
    return MigDevice(
        index=slot,
        gpu_instance_id=nvml_call(partial(nvml.nvmlDeviceGetGpuInstanceId, mig)),
        compute_instance_id=nvml_call(partial(nvml.nvmlDeviceGetComputeInstanceId, mig)),
        uuid=text(nvml_call(partial(nvml.nvmlDeviceGetUUID, mig))),
        name=text(nvml_call(partial(nvml.nvmlDeviceGetName, mig))),
        memory_total_bytes=nvml_call(partial(nvml.nvmlDeviceGetMemoryInfo, mig)).total,
    )


# -- conversions of pynvml results ----------------------------------------------------------------


def cuda_version(value: int) -> str:
    """nvmlSystemGetCudaDriverVersion's 12040 is CUDA 12.4."""
    return f"{value // 1000}.{value % 1000 // 10}"


def state(value: int) -> State:
    """NVML_FEATURE_ENABLED (1) or NVML_FEATURE_DISABLED (0); MIG uses the same values."""
    return "enabled" if value else "disabled"


def modes(values: Sequence[int]) -> Modes:
    """[current, pending] as nvmlDeviceGetMigMode and nvmlDeviceGetEccMode return them."""
    return Modes(current=state(values[0]), pending=state(values[1]))
