"""`annex sign model DIR`: approve a model or adapter for release, in the log and as a file.

The release is two things made from one manifest of the files, read again in full (no digest
cache): a MODEL_RELEASE statement in the log, and a signature file in the OpenSSF Model Signing
format that `model_signing verify key` checks without Annex. The statement is appended first;
the file is written after, atomically. A failed append leaves no file behind; a failed write
after the append says so (the log entry stands; signing again makes a new release entry).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_base import HomeOpt, JsonOpt, command, open_home, sign_app
from api.output import print_json, progress_bar, stdout
from collectors.formats import ADAPTER_CONFIG_NAME, read_adapter_config
from collectors.hashing import build_manifest
from collectors.models import BaseRef, find_base
from evidence.entry import rfc3339
from evidence.errors import CollectorError, InputError
from evidence.home import Home
from evidence.keys import utc_now
from evidence.model_signature import ModelSigner, release_statement, write_signature
from reports.gate import directory_kind
from schemas.model import SIGNATURE_NAME, Manifest


@dataclass(frozen=True)
class Release:
    """What was signed and where it went, for the report."""

    directory: Path
    kind: str
    name: str
    approver: str
    manifest: Manifest
    signer: ModelSigner
    signature: Path
    index: int


@command(sign_app, "model")
def sign_model_command(
    directory: Annotated[Path, typer.Argument(help="The model or adapter directory.")],
    name: Annotated[
        str | None, typer.Option(help="Name to record (default: the directory's name).")
    ] = None,
    approver: Annotated[
        str | None, typer.Option(help="Who approves the release (default: the key's name).")
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the release.")] = None,
    signature: Annotated[
        Path | None,
        typer.Option(help=f"Signature file to write (default: DIR/{SIGNATURE_NAME})."),
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign a model or adapter for release: a logged approval plus a model-signing bundle.

    Every file is read again. The signature file verifies with the OpenSSF model-signing tool:
    model_signing verify key DIR --public_key PEM --signature DIR/model.sig
    """
    with progress_bar("hashing", enabled=not json_out) as progress:
        done = sign_release(
            open_home(home),
            directory,
            name=name,
            approver=approver,
            note=note,
            signature=signature,
            progress=progress,
        )
    _report(done, json_out)


def sign_release(
    target: Home,
    directory: Path,
    *,
    name: str | None = None,
    approver: str | None = None,
    note: str | None = None,
    signature: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Release:
    """Hashes every file, logs the release, then writes the signature file."""
    _check_directory(directory)
    sig_path = signature_path(directory, signature)
    with target.open_store(write=True):
        pass  # the log key and its passphrase are checked before any file is read
    signer = target.model_signer()
    manifest = build_manifest(directory, cache=None, full=True, progress=progress)
    label = name or directory.resolve().name
    kind = directory_kind(directory)
    base = _logged_base(target, directory, manifest) if kind == "adapter" else None
    bundle = signer.sign(manifest, label)
    statement = release_statement(
        manifest,
        name=label,
        kind=kind,
        approved_by=approver or signer.key.name,
        observed_at=rfc3339(utc_now()),
        signing_keyid=signer.key.keyid,
        bundle=bundle,
        note=note,
        base_manifest_digest=None if base is None else base.digest,
    )
    index = target.append_release(signer.key.keyid, statement)
    try:
        write_signature(sig_path, bundle)
    except InputError as exc:
        raise InputError(
            f"the release is logged at entry {index}, but {exc}; the entry stands: run "
            "`annex sign model` again to sign and write the file anew"
        ) from None
    approved = statement["predicate"]["approvedBy"]
    return Release(directory, kind, label, approved, manifest, signer, sig_path, index)


def _logged_base(target: Home, directory: Path, manifest: Manifest) -> BaseRef | None:
    """The logged base model an adapter names, so its release records base + adapter."""
    config = manifest.by_path()[ADAPTER_CONFIG_NAME]
    adapter = read_adapter_config(directory / config.path, config.sha256)
    with target.open_store() as store:
        return find_base(store, adapter.base_model_name)


def _check_directory(directory: Path) -> None:
    if not directory.exists():
        raise CollectorError(f"{directory} does not exist")
    if not directory.is_dir():
        raise CollectorError(f"{directory} is not a directory: a model is signed as a directory")


def signature_path(directory: Path, chosen: Path | None) -> Path:
    """Where the signature goes: DIR/model.sig, or outside DIR (anything else in DIR is hashed)."""
    default = directory / SIGNATURE_NAME
    path = (chosen or default).absolute()
    try:
        inside = path.resolve().relative_to(directory.resolve())
    except ValueError:
        inside = None
    if inside is not None and inside != Path(SIGNATURE_NAME):
        raise InputError(
            f"--signature {chosen} is inside {directory}: every file there but {SIGNATURE_NAME} "
            f"is part of the model; write it to {default} or outside the directory"
        )
    if path.is_dir():
        raise InputError(f"--signature {path} is a directory")
    if not path.parent.is_dir():
        raise InputError(f"cannot write the signature file {path}: {path.parent} is no directory")
    return path


def verify_commands(release: Release) -> list[str]:
    """What a user runs to check the signature without Annex."""
    keyid = release.signer.key.keyid[:16]
    public = "model-signing.pub"
    directory, signature = shlex.quote(str(release.directory)), shlex.quote(str(release.signature))
    return [
        f"annex keys export-public {keyid} > {public}",
        f"model_signing verify key {directory} --public_key {public} --signature {signature}",
    ]


def _report(release: Release, json_out: bool) -> None:
    manifest, key = release.manifest, release.signer.key
    if json_out:
        data: dict[str, Any] = {
            "index": release.index,
            "subject": f"{release.kind}:{release.name}",
            "kind": release.kind,
            "name": release.name,
            "approvedBy": release.approver,
            "files": len(manifest.files),
            "manifestDigest": manifest.digest,
            "modelSigningDigest": manifest.model_signing_digest,
            "signingKeyid": key.keyid,
            "signature": str(release.signature),
            "verify": verify_commands(release),
        }
        print_json(data)
        return
    stdout.print(f"signed {release.kind} {release.name}  ({release.directory})")
    stdout.print(f"  release entry   {release.index}, approved by {release.approver}")
    stdout.print(f"  files           {len(manifest.files)}")
    stdout.print(f"  manifest        sha256:{manifest.digest}")
    stdout.print(f"  model signing   sha256:{manifest.model_signing_digest}")
    stdout.print(f"  signing key     {key.keyid[:16]} ({key.name}, EC P-256)")
    stdout.print(f"  signature       {release.signature}")
    stdout.print("verify the signature without Annex:")
    for line in verify_commands(release):
        stdout.print(f"  {line}")
