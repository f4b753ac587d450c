"""GPU energy of a training run from NVML's cumulative energy counters, read before and after.

`nvmlDeviceGetTotalEnergyConsumption` counts millijoules since the driver was loaded (Volta and
later). A run's energy is the sum, over the GPUs present at both readings (by UUID), of the
counter's increase. A snapshot is a JSON object {"counters": {uuid: millijoules}, "takenAt"}:
take one before training (`annex collect energy-counters > start.json`) and pass it after
(`annex collect training-run ... --energy-from-nvml start.json`). A counter that went down (the
driver was reloaded in between) makes the energy unknown, never a wrong number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from collectors.nvml import NvmlBackend, NvmlCallError, Unavailable, nvml_call, start, stop, text
from evidence.canonical import json_error
from evidence.entry import rfc3339
from evidence.errors import InputError
from evidence.keys import utc_now


@dataclass(frozen=True)
class Snapshot:
    counters: dict[str, int]  # GPU UUID -> millijoules
    taken_at: str
    reason: str | None = None  # why there are no counters

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"counters": self.counters, "takenAt": self.taken_at}
        if self.reason:
            data["reason"] = self.reason
        return data


@dataclass(frozen=True)
class Measured:
    joules: float | None
    note: str


def read_counters(backend: NvmlBackend | Unavailable, now: datetime | None = None) -> Snapshot:
    """Every GPU's energy counter; GPUs without one (NOT_SUPPORTED) are left out, and said so."""
    taken = rfc3339(now or utc_now())
    if isinstance(backend, Unavailable):
        return Snapshot({}, taken, backend.reason)
    down = start(backend)
    if down is not None:
        return Snapshot({}, taken, down.reason)
    try:
        counters: dict[str, int] = {}
        skipped: list[str] = []
        for index in range(nvml_call(backend.nvmlDeviceGetCount)):
            handle = nvml_call(partial(backend.nvmlDeviceGetHandleByIndex, index))
            uuid = text(nvml_call(partial(backend.nvmlDeviceGetUUID, handle)))
            try:
                reading = nvml_call(partial(backend.nvmlDeviceGetTotalEnergyConsumption, handle))
                counters[uuid] = int(reading)
            except NvmlCallError as error:
                skipped.append(f"GPU {index} ({error.name})")
    except NvmlCallError as error:
        return Snapshot({}, taken, f"NVML failed: {error.name}")
    finally:
        stop(backend)
    reason = f"no energy counter on {', '.join(skipped)}" if skipped else None
    return Snapshot(counters, taken, reason if counters else reason or "no GPU on this host")


def load_snapshot(path: Path) -> Snapshot:
    """A snapshot written by `annex collect energy-counters`; InputError if it is not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: not an energy-counter snapshot: {exc}") from None
    except ValueError as exc:
        raise InputError(f"{path}: not an energy-counter snapshot: {json_error(exc)}") from None
    counters = doc.get("counters") if isinstance(doc, dict) else None
    taken = doc.get("takenAt") if isinstance(doc, dict) else None
    if not isinstance(counters, dict) or not isinstance(taken, str):
        raise InputError(f"{path}: an energy snapshot has `counters` (object) and `takenAt`")
    for uuid, value in counters.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{path}: field counters.{uuid}: millijoules must be an integer >= 0")
    return Snapshot(dict(counters), taken)


def energy_between(before: Snapshot, after: Snapshot) -> Measured:
    """Joules used between two snapshots, over the GPUs present in both."""
    common = sorted(before.counters.keys() & after.counters.keys())
    if not common:
        why = after.reason or before.reason or "no GPU has a counter in both snapshots"
        return Measured(None, f"no NVML energy reading: {why}")
    drops = [u for u in common if after.counters[u] < before.counters[u]]
    if drops:
        return Measured(
            None, f"energy counter went down on {', '.join(drops)} (driver reloaded?): unknown"
        )
    millijoules = sum(after.counters[u] - before.counters[u] for u in common)
    return Measured(
        millijoules / 1000,
        f"NVML total energy counters of {len(common)} GPU(s), {before.taken_at} to "
        f"{after.taken_at}",
    )
