"""The sweeps an installation declares in its configuration file (TOML), read into frozen models.

```toml
timezone = "UTC"                 # of every schedule (default UTC)

[[sweep]]
name = "nightly"
schedule = "0 2 * * *"           # 5-field crontab: minute hour day month weekday (0, 7 = Sunday)
system = "credit-scoring"        # optional: the AI system it collects for
grace_minutes = 15               # optional: how late a run may start and still count

[[sweep.step]]
kind = "gpu"
[[sweep.step]]
kind = "model"
dirs = ["/models/llama-3-8b", "/models/adapter"]
[[sweep.step]]
kind = "dataset"
paths = ["/data/train.jsonl"]
[[sweep.step]]
kind = "inference-log"
files = ["/var/log/vllm/*.jsonl"]  # files or glob patterns
retain_content = false           # optional, with retention, retention_days, batch_size
[[sweep.step]]
kind = "eval"
suite = "evals.toml"             # [[eval]] tables: model, tasks, and the `annex eval run` options
```

Relative paths are read from the configuration file's directory. A bad file raises ConfigError
naming the file, the sweep and the field, so `annex serve` refuses to start on it.
"""

from __future__ import annotations

import hashlib
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from collectors.inference_log import DEFAULT_CLASS, MAX_DAYS, RetentionPolicy
from evidence.canonical import canonical_bytes
from evidence.errors import ConfigError, InputError
from reports.sweeps import Schedule, crontab_trigger
from schemas.sweep_run import SWEEP_NAME

RESERVED_NAMES = frozenset({"list"})  # `annex sweep list` lists; no sweep may take the name


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _under(base: Any, value: Path) -> Path:
    """A path as given, read from the configuration file's directory when relative."""
    value = value.expanduser()
    return value if value.is_absolute() or not isinstance(base, Path) else base / value


def _paths(values: tuple[Path, ...], info: ValidationInfo) -> tuple[Path, ...]:
    base = (info.context or {}).get("base")
    return tuple(_under(base, v) for v in values)


class GpuStep(_Frozen):
    """`annex collect gpu`: this host's GPUs through NVML."""

    kind: Literal["gpu"]


class ModelStep(_Frozen):
    """`annex collect model DIR` for each directory."""

    kind: Literal["model"]
    dirs: tuple[Path, ...] = Field(min_length=1)

    _resolve = field_validator("dirs")(_paths)


class DatasetStep(_Frozen):
    """`annex collect dataset PATH` for each path."""

    kind: Literal["dataset"]
    paths: tuple[Path, ...] = Field(min_length=1)

    _resolve = field_validator("paths")(_paths)


class InferenceLogStep(_Frozen):
    """`annex collect inference-log FILE` for each file and each file a glob pattern matches,
    with that command's retention options (`--retain-content`, `--retention`,
    `--retention-days`, `--batch-size`)."""

    kind: Literal["inference-log"]
    files: tuple[str, ...] = Field(min_length=1)
    retain_content: bool = False
    retention: str = Field(default=DEFAULT_CLASS, min_length=1, max_length=64)
    retention_days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    batch_size: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _a_policy(self) -> InferenceLogStep:
        self.policy()  # the collector's own rules (class logs keeps at least 184 days)
        return self

    def policy(self) -> RetentionPolicy:
        try:
            return RetentionPolicy.of(
                self.retain_content, self.retention, self.retention_days, option="retention_days"
            )
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("files")
    @classmethod
    def _resolve(cls, values: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        base = (info.context or {}).get("base")
        return tuple(str(_under(base, Path(v))) for v in values)


class EvalStep(_Frozen):
    """`annex eval run` for each [[eval]] of a suite file, read when the step runs."""

    kind: Literal["eval"]
    suite: Path

    _resolve = field_validator("suite")(lambda v, info: _paths((v,), info)[0])


Step = Annotated[
    GpuStep | ModelStep | DatasetStep | InferenceLogStep | EvalStep, Field(discriminator="kind")
]


class Sweep(_Frozen):
    name: str = Field(pattern=SWEEP_NAME)
    schedule: str
    system: str | None = Field(default=None, min_length=1)
    grace_minutes: int = Field(default=15, ge=1, le=24 * 60)
    steps: tuple[Step, ...] = Field(alias="step", min_length=1)

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved by `annex sweep {value}`")
        return value

    def declaration_sha256(self) -> str:
        """SHA-256 of the RFC 8785 JSON of this declaration: the sweep-run entry's subject."""
        data = self.model_dump(mode="json", by_alias=True)
        return hashlib.sha256(canonical_bytes(data, what=f"sweep {self.name}")).hexdigest()


class SweepConfig(_Frozen):
    timezone: str = "UTC"
    sweeps: tuple[Sweep, ...] = Field(default=(), alias="sweep")

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, LookupError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Europe/Berlin)"
            ) from None
        return value

    @model_validator(mode="after")
    def _schedules_and_names(self) -> SweepConfig:
        seen: set[str] = set()
        for sweep in self.sweeps:
            if sweep.name in seen:
                raise ValueError(f"sweep {sweep.name!r} is declared twice")
            seen.add(sweep.name)
        return self

    def schedule(self, sweep: Sweep) -> Schedule:
        return Schedule(
            sweep.name,
            sweep.schedule,
            self.timezone,
            timedelta(minutes=sweep.grace_minutes),
            sweep.system,
        )

    def find(self, name: str, where: Path) -> Sweep:
        for sweep in self.sweeps:
            if sweep.name == name:
                return sweep
        known = ", ".join(s.name for s in self.sweeps) or "none"
        raise ConfigError(f"{where}: no sweep named {name!r} (declared: {known})")


# -- reading the file -----------------------------------------------------------------------------


def load_config(path: Path) -> SweepConfig:
    """The configuration at `path`; ConfigError naming the file, sweep and field if it is bad."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration file at {path}: create it, or give --config or ANNEX_CONFIG"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path) -> SweepConfig:
    try:
        config = SweepConfig.model_validate(raw, context={"base": path.parent.absolute()})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_where(exc, raw)}") from None
    for sweep in config.sweeps:
        try:
            crontab_trigger(sweep.schedule, config.timezone)
        except ValueError as exc:
            raise ConfigError(f"{path}: sweep {sweep.name!r}: schedule: {exc}") from None
    return config


def _where(exc: ValidationError, raw: dict[str, Any]) -> str:
    """The first error as `sweep 'NAME', step 2 (model): dirs: message`."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    parts: list[str] = []
    if loc[:1] == ["sweep"] and len(loc) > 1 and isinstance(loc[1], int):
        sweeps = raw.get("sweep")
        table = sweeps[loc[1]] if isinstance(sweeps, list) and loc[1] < len(sweeps) else {}
        name = table.get("name") if isinstance(table, dict) else None
        parts.append(f"sweep {name!r}" if isinstance(name, str) else f"sweep {loc[1] + 1}")
        loc = loc[2:]
        if loc[:1] == ["step"] and len(loc) > 1 and isinstance(loc[1], int):
            parts.append(f"step {loc[1] + 1}" + (f" ({loc[2]})" if len(loc) > 2 else ""))
            loc = loc[3:]
    message = str(error["msg"]).removeprefix("Value error, ")
    field = ".".join(str(p) for p in loc)
    return ", ".join(parts) + (": " if parts else "") + (f"{field}: " if field else "") + message
