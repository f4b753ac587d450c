"""Model and adapter evidence: the manifest of a directory, what its files say, its release.

A manifest lists every file of a model or adapter directory by relative POSIX path, size and
SHA-256. Its digest is SHA-256 over the RFC 8785 bytes of that list, so it binds names and
sizes as well as contents. (The OpenSSF Model Signing root digest hashes only the concatenated
file digests; Annex records it too, as `modelSigningDigest`, so the two can be matched.)

Paths that model signing tools leave out by convention (`.git`, `.gitattributes`, `.github`,
`.gitignore` and the signature file itself) are not hashed, but every one found is listed
under `ignored`: nothing is skipped silently.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.statement import predicate_type

MODEL_MANIFEST = predicate_type("model-manifest")
MODEL_RELEASE = predicate_type("model-release")

# Top-level names left out of a manifest, as model-signing leaves them out by default.
IGNORED_NAMES: frozenset[str] = frozenset({".git", ".gitattributes", ".github", ".gitignore"})
SIGNATURE_NAME = "model.sig"

_SHA256 = r"^[0-9a-f]{64}$"
_BAD_SEGMENT = re.compile(r"(^|/)(\.|\.\.)?(/|$)")


class ManifestFile(BaseModel):
    """One file: where it sits in the directory, how big it is, its SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=_SHA256)

    @field_validator("path")
    @classmethod
    def _relative_posix(cls, value: str) -> str:
        if value.startswith("/") or "\\" in value or "\x00" in value or _BAD_SEGMENT.search(value):
            raise ValueError(f"manifest path {value!r} is not a clean relative POSIX path")
        return value


class Manifest(BaseModel):
    """The files of a directory, sorted by path, and the digest that binds them."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    files: tuple[ManifestFile, ...]
    digest: str = Field(pattern=_SHA256)
    model_signing_digest: str = Field(alias="modelSigningDigest", pattern=_SHA256)
    ignored: tuple[str, ...] = ()

    @classmethod
    def of(cls, files: list[ManifestFile], ignored: list[str] | None = None) -> Manifest:
        ordered = sorted(files, key=lambda f: f.path)
        return cls(
            files=tuple(ordered),
            digest=manifest_digest(ordered),
            model_signing_digest=model_signing_digest(ordered),
            ignored=tuple(sorted(ignored or ())),
        )

    @model_validator(mode="after")
    def _digests_match(self) -> Manifest:
        paths = [f.path for f in self.files]
        if paths != sorted(paths) or len(set(paths)) != len(paths):
            raise ValueError("manifest files must be sorted by path, each path once")
        if manifest_digest(self.files) != self.digest:
            raise ValueError("manifest digest does not match its files")
        if model_signing_digest(self.files) != self.model_signing_digest:
            raise ValueError("modelSigningDigest does not match the files")
        return self

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def by_path(self) -> dict[str, ManifestFile]:
        return {f.path: f for f in self.files}


def manifest_digest(files: tuple[ManifestFile, ...] | list[ManifestFile]) -> str:
    """SHA-256 of the RFC 8785 bytes of [{path, sha256, size}, ...] in path order."""
    listing = [f.model_dump() for f in sorted(files, key=lambda f: f.path)]
    return hashlib.sha256(rfc8785.dumps(listing)).hexdigest()


def model_signing_digest(files: tuple[ManifestFile, ...] | list[ManifestFile]) -> str:
    """The OpenSSF Model Signing subject digest: SHA-256 over the file digests in path order.

    model-signing orders paths as PurePosixPath does, component by component ("a/b" before
    "a-b"), not as plain strings ("a-b" before "a/b").
    """
    hasher = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path.split("/")):
        hasher.update(bytes.fromhex(f.sha256))
    return hasher.hexdigest()


class SafetensorsSummary(BaseModel):
    """What one safetensors file's header says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    tensors: int = Field(ge=0)
    parameters: int = Field(ge=0)
    dtypes: dict[str, int]  # dtype -> parameter count
    metadata: dict[str, str] = Field(default_factory=dict)


class GgufSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    version: int
    tensors: int = Field(ge=0)
    parameters: int = Field(ge=0)
    architecture: str | None = None
    name: str | None = None
    file_type: str | None = Field(default=None, alias="fileType")
    context_length: int | None = Field(default=None, alias="contextLength")


class ModelConfigSummary(BaseModel):
    """The parts of config.json that Annex IV asks about; the file's digest binds the rest."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    architectures: tuple[str, ...] = ()
    model_type: str | None = Field(default=None, alias="modelType")
    hidden_size: int | None = Field(default=None, alias="hiddenSize")
    num_layers: int | None = Field(default=None, alias="numLayers")
    num_attention_heads: int | None = Field(default=None, alias="numAttentionHeads")
    vocab_size: int | None = Field(default=None, alias="vocabSize")
    context_length: int | None = Field(default=None, alias="contextLength")
    torch_dtype: str | None = Field(default=None, alias="torchDtype")


class AdapterSummary(BaseModel):
    """A LoRA/PEFT adapter, from adapter_config.json, and the base it was bound to."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    peft_type: str | None = Field(default=None, alias="peftType")
    rank: int | None = None
    alpha: float | None = None
    target_modules: tuple[str, ...] = Field(default=(), alias="targetModules")
    base_model_name: str | None = Field(default=None, alias="baseModelName")
    # The base's manifest digest and the log entry that recorded it, when the base is known.
    base_manifest_digest: str | None = Field(default=None, alias="baseManifestDigest")
    base_manifest_entry: int | None = Field(default=None, alias="baseManifestEntry")


class ModelManifestPredicate(BaseModel):
    """Predicate of MODEL_MANIFEST: a model or adapter directory as a collector saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    observed_at: str = Field(alias="observedAt")
    kind: Literal["model", "adapter"]
    name: str = Field(min_length=1)
    host: str
    path: str  # absolute path on the host at collection time
    manifest: Manifest
    config: ModelConfigSummary | None = None
    safetensors: tuple[SafetensorsSummary, ...] = ()
    gguf: tuple[GgufSummary, ...] = ()
    parameters: int | None = None
    # path -> sha256 of the files that define behaviour beyond the weights
    tokenizer_digests: dict[str, str] = Field(default_factory=dict, alias="tokenizerDigests")
    generation_config_digest: str | None = Field(default=None, alias="generationConfigDigest")
    adapter: AdapterSummary | None = None

    def to_predicate(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ModelReleasePredicate(BaseModel):
    """Predicate of MODEL_RELEASE: someone approved these exact files for release.

    The subject is the manifest digest. The full manifest is repeated here so that the log
    alone lets a gate re-check the files on disk. `signingKeyid` names the model-signing key
    (EC P-256) whose OpenSSF Model Signing bundle accompanies the release.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    observed_at: str = Field(alias="observedAt")
    name: str = Field(min_length=1)
    kind: Literal["model", "adapter"]
    manifest: Manifest
    approved_by: str = Field(alias="approvedBy", min_length=1)
    signing_keyid: str = Field(alias="signingKeyid", pattern=_SHA256)
    signature_digest: str | None = Field(default=None, alias="signatureDigest", pattern=_SHA256)
    base_manifest_digest: str | None = Field(default=None, alias="baseManifestDigest")
    note: str | None = None

    def to_predicate(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
