"""The NVML boundary: the pynvml calls the GPU collector makes, and how their failures read.

The backend is anything with these calls, named and behaving as in pynvml (nvidia-ml-py): the
real one is the `pynvml` module itself, loaded lazily by `load_pynvml()`; the fake beside it
(collectors/nvml_fake.py) serves made-up GPUs and raises real `pynvml.NVMLError`s, so one code
path handles both. Nothing here needs pynvml to import: a host without it, without the NVIDIA
library or driver, or without a GPU gets an `Unavailable` (a status and a reason to record),
never an exception.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from schemas.gpu import UNSUPPORTED, Failed, Unsupported, Value

T = TypeVar("T")
U = TypeVar("U")

UnavailableStatus = Literal["no-nvml", "no-driver", "no-gpu", "nvml-error"]


class MemoryInfo(Protocol):
    """pynvml.c_nvmlMemory_t: bytes."""

    @property
    def total(self) -> int: ...


class PciInfo(Protocol):
    """pynvml.nvmlPciInfo_t: `busId` reads as str (bytes in old pynvml)."""

    @property
    def busId(self) -> str | bytes: ...


class UtilizationRates(Protocol):
    """pynvml.c_nvmlUtilization_t: percent."""

    @property
    def gpu(self) -> int: ...

    @property
    def memory(self) -> int: ...


Handle = object  # an opaque nvmlDevice_t


class NvmlBackend(Protocol):
    """The pynvml calls the GPU collector makes, with pynvml's names, arguments and results.

    Every call raises `pynvml.NVMLError` (the subclass for its code) when NVML fails. Strings
    come back as str from current pynvml and as bytes from old releases; both are accepted.
    """

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...
    def nvmlSystemGetNVMLVersion(self) -> str | bytes: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle: ...
    def nvmlDeviceGetName(self, handle: Handle) -> str | bytes: ...
    def nvmlDeviceGetUUID(self, handle: Handle) -> str | bytes: ...
    def nvmlDeviceGetSerial(self, handle: Handle) -> str | bytes: ...
    def nvmlDeviceGetBoardPartNumber(self, handle: Handle) -> str | bytes: ...
    def nvmlDeviceGetVbiosVersion(self, handle: Handle) -> str | bytes: ...
    def nvmlDeviceGetPciInfo(self, handle: Handle) -> PciInfo: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Handle) -> MemoryInfo: ...
    def nvmlDeviceGetCudaComputeCapability(self, handle: Handle) -> tuple[int, int]: ...
    def nvmlDeviceGetMigMode(self, handle: Handle) -> Sequence[int]: ...
    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Handle) -> int: ...
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, index: int) -> Handle: ...
    def nvmlDeviceGetGpuInstanceId(self, handle: Handle) -> int: ...
    def nvmlDeviceGetComputeInstanceId(self, handle: Handle) -> int: ...
    def nvmlDeviceGetEccMode(self, handle: Handle) -> Sequence[int]: ...
    def nvmlDeviceGetPersistenceMode(self, handle: Handle) -> int: ...
    def nvmlDeviceGetPowerManagementLimit(self, handle: Handle) -> int: ...
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Handle) -> int: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Handle) -> UtilizationRates: ...
    def nvmlDeviceGetTemperature(self, handle: Handle, sensor: int) -> int: ...
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Handle) -> int: ...


# The names of the calls above, each a function of the pynvml module.
BACKEND_CALLS: tuple[str, ...] = tuple(
    name for name in vars(NvmlBackend) if name.startswith("nvml")
)


@dataclass(frozen=True)
class Unavailable:
    """Why there is no GPU evidence on this host: recorded as the inventory's status."""

    status: UnavailableStatus
    reason: str


class NvmlCallError(Exception):
    """An NVML call failed; `code` is its NVML_ERROR_* value, `name` that constant's name."""

    def __init__(self, code: int, name: str) -> None:
        super().__init__(name)
        self.code = code
        self.name = name


# -- pynvml, loaded lazily ------------------------------------------------------------------------


def _pynvml() -> Any:
    """The pynvml module, imported on first use: importing Annex never needs it."""
    return importlib.import_module("pynvml")


def load_pynvml() -> NvmlBackend | Unavailable:
    """The real backend (the pynvml module), or why the Python binding cannot be loaded."""
    try:
        module: NvmlBackend = _pynvml()
    except (ImportError, OSError) as exc:
        return Unavailable(
            "no-nvml", f"the NVML Python binding (nvidia-ml-py, module pynvml) cannot load: {exc}"
        )
    return module


@functools.cache
def _error_names() -> dict[int, str]:
    module = _pynvml()
    return {getattr(module, n): n for n in dir(module) if n.startswith("NVML_ERROR_")}


def error_name(code: int) -> str:
    """NVML_ERROR_* name of a code; codes this pynvml does not know keep their number."""
    return _error_names().get(code, f"NVML_ERROR_CODE_{code}")


def nvml_call(call: Callable[[], T]) -> T:
    """Runs one NVML call; its NVMLError becomes an NvmlCallError naming the code."""
    nvml_error: type[Exception] = _pynvml().NVMLError
    try:
        return call()
    except nvml_error as exc:
        code = int(getattr(exc, "value", -1))
        raise NvmlCallError(code, error_name(code)) from exc


def is_not_supported(error: NvmlCallError) -> bool:
    return error.name == "NVML_ERROR_NOT_SUPPORTED"


def read(call: Callable[[], T], convert: Callable[[T], U]) -> Value[U] | Unsupported | Failed:
    """One reading: the converted value, NOT_SUPPORTED as unsupported, any other error by name."""
    try:
        raw = nvml_call(call)
    except NvmlCallError as error:
        return UNSUPPORTED if is_not_supported(error) else Failed(error=error.name)
    return Value[U](value=convert(raw))


def text(raw: str | bytes) -> str:
    """pynvml strings: str from current releases, bytes from old ones."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


# -- starting NVML --------------------------------------------------------------------------------

_INIT_STATUS: dict[str, tuple[UnavailableStatus, str]] = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": (
        "no-nvml",
        "NVML library not found: libnvidia-ml.so.1 is not installed or not on the loader path",
    ),
    "NVML_ERROR_DRIVER_NOT_LOADED": ("no-driver", "the NVIDIA kernel driver is not loaded"),
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": (
        "nvml-error",
        "the NVML library and the loaded kernel driver are different versions",
    ),
    "NVML_ERROR_NO_PERMISSION": ("nvml-error", "no permission to open the NVIDIA devices"),
}


def start(backend: NvmlBackend) -> Unavailable | None:
    """Initialises NVML; None when it is up (the caller must then call `stop`)."""
    try:
        nvml_call(backend.nvmlInit)
    except NvmlCallError as error:
        status, why = _INIT_STATUS.get(error.name, ("nvml-error", "NVML failed to initialise"))
        return Unavailable(status, f"{why} ({error.name} from nvmlInit)")
    return None


def stop(backend: NvmlBackend) -> None:
    """Shuts NVML down; a failure to do so changes nothing that was read."""
    with contextlib.suppress(NvmlCallError):
        nvml_call(backend.nvmlShutdown)
