"""YAML files people write (datasheets, system cards): read, parsed, validated, or refused
naming the file, the line or the field."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from evidence.errors import InputError

M = TypeVar("M", bound=BaseModel)


def read_yaml_model(path: Path, model: type[M], *, what: str, shape: str) -> tuple[M, str]:
    """The file parsed as `model` and its SHA-256; `shape` says what a top level must be."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: byte {exc.start + 1} is not UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{where}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a {what} is {shape}")
    try:
        parsed = model.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors()
        field = ".".join(str(p) for p in errors[0]["loc"]) or f"({what})"
        also = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(f"{path}: field {field}: {errors[0]['msg']}{also}") from None
    return parsed, hashlib.sha256(raw).hexdigest()
