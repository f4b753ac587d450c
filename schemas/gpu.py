"""GPU inventory evidence: the host and every GPU on it, as the NVIDIA driver reports them.

Predicate type `GPU_INVENTORY` (https://annex.dev/predicates/gpu-inventory/v1). It is evidence
for Annex IV 1(e) (the hardware the system runs on), 1(c) (driver, CUDA and firmware versions),
2(c) (the computational resources used to develop, train and test it) and, through the site
labels, where the compute is (data sovereignty). Everything in it is **self-reported** by NVML
(the driver's management library): it is what the driver says, not hardware attestation. The
predicate says so itself (`selfReported`, `attestation`).

Predicate fields (camelCase JSON):
- `observedAt`: when the collector looked. `status`: `ok`, or why there is no GPU evidence:
  `no-nvml` (the NVML library or its Python binding cannot be loaded), `no-driver` (the kernel
  driver is not loaded), `no-gpu` (NVML works and counts no device), `nvml-error` (NVML failed
  otherwise); `reason` says which and why, and is null exactly when the status is `ok`.
- `site`: the operator's labels for where this host is (`site`, ISO 3166-1 alpha-2 `country`,
  `operator`), each null when not configured. They are declared, not observed.
- `host`: hostname, OS, kernel, CPU model, logical CPU count, memory: what the host says.
- `driverVersion`, `cudaDriverVersion` (the CUDA version the driver supports, e.g. "12.4"),
  `nvmlVersion`: null when NVML could not be started, else a reading (below).
- `devices`: one entry per GPU index (1(e)): name, UUID, serial number, PCI bus id, board part
  number, VBIOS version (1(c) firmware), total memory in bytes, CUDA compute capability, MIG
  mode (current and pending) and MIG devices (how the GPU is partitioned, who can share it),
  ECC mode, persistence mode, power limits (milliwatts), and a point reading of utilisation,
  temperature (Celsius) and the total energy counter (millijoules since the driver loaded).

A reading is one of exactly three shapes, so that a field a device cannot report is recorded
as such and never silently dropped:
- `{"value": X}`: the value NVML returned;
- `{"unsupported": true}`: NVML answered NVML_ERROR_NOT_SUPPORTED for this device;
- `{"error": "NVML_ERROR_..."}`: NVML failed with that error (no permission, GPU lost, ...).

Subjects: `host:<hostname>` with the SHA-256 of the RFC 8785 JSON of
`{"hostname": ..., "gpus": [sorted GPU UUIDs]}` (so the digest names this host with this set of
GPUs), and `gpu:<UUID>` with the SHA-256 of the UUID string for every GPU whose UUID was read,
so that evidence about one GPU is found by its UUID.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Generic, Literal, TypeVar

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from schemas.statement import STATEMENT_TYPE, parse_timestamp, predicate_type

GPU_INVENTORY = predicate_type("gpu-inventory")
ATTESTATION: Final = "none: self-reported by NVML, not hardware attestation"

Status = Literal["ok", "no-nvml", "no-driver", "no-gpu", "nvml-error"]
State = Literal["enabled", "disabled"]

T = TypeVar("T")


class _Shape(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


# -- readings -------------------------------------------------------------------------------------


class Value(_Shape, Generic[T]):
    """NVML returned this value."""

    value: T


class Unsupported(_Shape):
    """NVML said NVML_ERROR_NOT_SUPPORTED: this device cannot report the field."""

    unsupported: Literal[True]


class Failed(_Shape):
    """NVML failed with this error, e.g. NVML_ERROR_NO_PERMISSION or NVML_ERROR_GPU_IS_LOST."""

    error: str = Field(pattern=r"^NVML_ERROR_[A-Z0-9_]+$")


UNSUPPORTED = Unsupported(unsupported=True)


class Modes(_Shape):
    """A setting that changes on reset: what applies now, and what will after the next one."""

    current: State
    pending: State


class Utilization(_Shape):
    """Percent of the last sample period the GPU computed, and the memory was read or written."""

    gpu_percent: int = Field(ge=0, le=100)
    memory_percent: int = Field(ge=0, le=100)


class MigDevice(_Shape):
    """One MIG device: a GPU instance (its slice of memory) and a compute instance in it."""

    index: int = Field(ge=0)
    gpu_instance_id: int = Field(ge=0)
    compute_instance_id: int = Field(ge=0)
    uuid: str
    name: str  # NVML's name ends with the profile, e.g. "... MIG 3g.40gb"
    memory_total_bytes: int = Field(ge=0)


StrReading = Value[str] | Unsupported | Failed
IntReading = Value[int] | Unsupported | Failed
StateReading = Value[State] | Unsupported | Failed
ModesReading = Value[Modes] | Unsupported | Failed
UtilizationReading = Value[Utilization] | Unsupported | Failed
MigReading = Value[tuple[MigDevice, ...]] | Unsupported | Failed


# -- the predicate --------------------------------------------------------------------------------


class SiteLabels(_Shape):
    """Where the compute is, as the operator declares it (ANNEX_SITE, ANNEX_COUNTRY, ...)."""

    site: str | None = Field(default=None, min_length=1)
    country: str | None = None
    operator: str | None = Field(default=None, min_length=1)

    @field_validator("country")
    @classmethod
    def _iso_3166(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code in COUNTRY_HINTS:
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 code; {COUNTRY_HINTS[code]}")
        if code not in ISO_3166_ALPHA_2:
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE, FR)")
        return code


class Host(_Shape):
    """The machine the GPUs are in. Fields the host does not reveal are null."""

    hostname: str = Field(min_length=1)
    os: str | None
    kernel: str | None
    architecture: str | None
    cpu_model: str | None
    cpu_cores: int | None = Field(ge=1)  # logical CPUs, as os.cpu_count() counts them
    memory_bytes: int | None = Field(ge=0)


class Device(_Shape):
    """One GPU, by its NVML index."""

    index: int = Field(ge=0)
    name: StrReading
    uuid: StrReading
    serial: StrReading
    pci_bus_id: StrReading
    board_part_number: StrReading
    vbios_version: StrReading
    memory_total_bytes: IntReading
    compute_capability: StrReading
    mig_mode: ModesReading
    mig_devices: MigReading
    ecc_mode: ModesReading
    persistence_mode: StateReading
    power_limit_milliwatts: IntReading
    enforced_power_limit_milliwatts: IntReading
    utilization: UtilizationReading
    temperature_celsius: IntReading
    total_energy_millijoules: IntReading

    def readings(self) -> dict[str, Any]:
        """Field name (as in JSON) -> reading, for every field that is a reading."""
        return {
            (info.alias or name): getattr(self, name)
            for name, info in type(self).model_fields.items()
            if name != "index"
        }

    def unsupported(self) -> list[str]:
        return [name for name, r in self.readings().items() if isinstance(r, Unsupported)]

    def failed(self) -> dict[str, str]:
        return {name: r.error for name, r in self.readings().items() if isinstance(r, Failed)}

    @property
    def known_uuid(self) -> str | None:
        return self.uuid.value if isinstance(self.uuid, Value) else None


class GpuInventoryPredicate(_Shape):
    """Predicate of GPU_INVENTORY. See the module docstring for what each field is evidence of."""

    observed_at: str
    self_reported: Literal[True] = True
    attestation: Literal["none: self-reported by NVML, not hardware attestation"] = ATTESTATION
    status: Status
    reason: str | None
    site: SiteLabels
    host: Host
    driver_version: StrReading | None
    cuda_driver_version: StrReading | None
    nvml_version: StrReading | None
    devices: tuple[Device, ...]

    @field_validator("observed_at")
    @classmethod
    def _is_a_time(cls, value: str) -> str:
        parse_timestamp(value)
        return value

    @model_validator(mode="after")
    def _status_matches(self) -> GpuInventoryPredicate:
        if (self.status == "ok") != (self.reason is None):
            raise ValueError("reason must be given exactly when status is not 'ok'")
        if (self.status == "ok") != bool(self.devices):
            raise ValueError("devices must be listed exactly when status is 'ok'")
        if [d.index for d in self.devices] != list(range(len(self.devices))):
            raise ValueError("devices must be listed by index, 0, 1, 2, ...")
        return self

    def to_predicate(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# -- subjects and the statement -------------------------------------------------------------------


def host_identity_digest(hostname: str, gpu_uuids: list[str]) -> str:
    """SHA-256 of the RFC 8785 JSON of {"hostname", "gpus": sorted UUIDs}: this host, these GPUs."""
    identity = {"hostname": hostname, "gpus": sorted(set(gpu_uuids))}
    return hashlib.sha256(rfc8785.dumps(identity)).hexdigest()


def gpu_subjects(predicate: GpuInventoryPredicate) -> list[dict[str, Any]]:
    """The host first, then one subject per GPU whose UUID was read, in index order."""
    uuids = list(dict.fromkeys(u for d in predicate.devices if (u := d.known_uuid)))
    host = predicate.host.hostname
    subjects = [{"name": f"host:{host}", "digest": {"sha256": host_identity_digest(host, uuids)}}]
    subjects += [
        {"name": f"gpu:{u}", "digest": {"sha256": hashlib.sha256(u.encode()).hexdigest()}}
        for u in uuids
    ]
    return subjects


def gpu_statement(predicate: GpuInventoryPredicate) -> dict[str, Any]:
    """The in-toto statement of a GPU inventory."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": gpu_subjects(predicate),
        "predicateType": GPU_INVENTORY,
        "predicate": predicate.to_predicate(),
    }


# -- ISO 3166-1 alpha-2 ---------------------------------------------------------------------------

# The 249 officially assigned codes.
_ASSIGNED = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA
    RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ
    VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
ISO_3166_ALPHA_2: frozenset[str] = frozenset(_ASSIGNED.split())

# Reserved codes people type by mistake, and what to write instead.
COUNTRY_HINTS: dict[str, str] = {
    "UK": "the United Kingdom is GB",
    "EU": "the European Union is not a country; give the member state (e.g. DE)",
    "EL": "Greece is GR",
}
