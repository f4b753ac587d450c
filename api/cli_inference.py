"""Inference logs, retention and erasure: `annex collect inference-log`, `annex erase`,
`annex retention expire`, `annex inference prove` and `annex inference content`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_base import HomeOpt, JsonOpt, app, collect_app, command, open_home
from api.output import print_json, progress_bar, stdout
from collectors.erasure import Receipt, erase, expire
from collectors.inference_log import DEFAULT_CLASS, RetentionPolicy, ingest
from collectors.inference_proof import prove_line, read_content
from evidence.blobs import BlobStore
from evidence.errors import InputError
from evidence.home import Home
from evidence.keys import utc_now
from evidence.store import Store
from evidence.vault import Vault
from schemas.statement import parse_timestamp

inference_app = typer.Typer(help="Inference batches: prove a line, read retained content.")
retention_app = typer.Typer(help="Retention of inference content: expire keys past their time.")
app.add_typer(inference_app, name="inference", no_args_is_help=True)
app.add_typer(retention_app, name="retention", no_args_is_help=True)


@contextmanager
def _open(home: Path | None, *, write: bool) -> Iterator[tuple[Home, Store, Vault, BlobStore]]:
    target = open_home(home)
    with target.open_store(write=write) as store, Vault.open(target.path / "vault") as vault:
        yield target, store, vault, BlobStore(target.path / "blobs")


@command(collect_app, "inference-log")
def collect_inference_log(
    file: Annotated[Path, typer.Argument(help="JSON Lines inference log, one request a line.")],
    retain_content: Annotated[
        bool,
        typer.Option(
            "--retain-content",
            help="Keep prompts and completions, encrypted per caller (keys in the vault).",
        ),
    ] = False,
    retention: Annotated[
        str, typer.Option("--retention", help="Retention class of retained content.")
    ] = DEFAULT_CLASS,
    retention_days: Annotated[
        int | None,
        typer.Option(
            "--retention-days", help="Days before the content keys expire (class logs: >= 184)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Lines per log entry (default: the file is one batch)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the statements; log and keep nothing.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Log a batch digest of an inference log: counts, latency, models, pseudonymised callers.

    Prompts and completions never enter the log; with --retain-content they are kept encrypted.
    """
    policy = RetentionPolicy.of(
        retain_content, retention, retention_days, option="--retention-days"
    )
    with (
        _open(home, write=not dry_run) as (_, store, vault, blobs),
        progress_bar("reading", enabled=not json_out) as progress,
    ):
        done = ingest(
            store,
            vault,
            blobs,
            file,
            retention=policy,
            now=utc_now(),
            batch_size=batch_size,
            dry_run=dry_run,
            progress=progress,
        )
    indices = [] if done.first_index is None else done.entries
    if json_out:
        print_json(
            {
                "entries": indices,
                "duplicateOf": list(done.duplicate_of),
                "dryRun": dry_run,
                "statements": list(done.statements),
            }
        )
        return
    if done.duplicate_of:
        stdout.print(
            f"{file} is already logged (entries {_list(done.duplicate_of)}): nothing added"
        )
        return
    if dry_run:
        stdout.print(json.dumps(list(done.statements), indent=2, ensure_ascii=False))
    for line in _summary(done.statements, indices):
        stdout.print(line)


def _list(items: Any) -> str:
    return ", ".join(str(i) for i in items)


def _summary(made: tuple[dict[str, Any], ...], indices: list[int]) -> Iterator[str]:
    for n, statement in enumerate(made):
        p = statement["predicate"]
        where = f"entry {indices[n]}" if indices else "not logged (dry run)"
        batch = p["batch"]
        yield (
            f"{p['source']['name']} batch {batch['number']}/{batch['of']} "
            f"(lines {batch['firstLine']}-{batch['lastLine']}): {where}"
        )
        yield f"  requests      {p['requests']}  errors {p['errors']}  refusals {p['refusals']}"
        if "timeRange" in p:
            yield f"  time          {p['timeRange']['first']} .. {p['timeRange']['last']}"
        lat = p["latencyMs"]
        if lat["count"]:
            yield f"  latency ms    p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}"
        yield f"  callers       {len(p['callers'])} pseudonyms, {p['unattributed']} unattributed"
        for m in p["models"]:
            found = f"sha256:{m['digest']} (entry {m['entry']})" if "digest" in m else m["reason"]
            yield f"  model         {m['name']}: {m['requests']} requests, {found}"
        yield f"  merkle root   {p['merkleRoot']}"
        kept = p["retention"]
        if kept["content"]:
            yield f"  content       retained ({kept['class']}), keys expire {kept['expiresAt']}"
        else:
            yield "  content       not retained"


# -- erasure and expiry -----------------------------------------------------------------------


@command(app, "erase")
def erase_command(
    subject: Annotated[str, typer.Argument(help="The caller id, as it appears in the logs.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Destroy a data subject's keys (crypto-shredding) and log a signed erasure receipt."""
    with _open(home, write=True) as (_, store, vault, _blobs):
        receipt = erase(store, vault, subject, reason=reason, now=utc_now())
    _print_receipt(receipt, json_out)


@command(retention_app, "expire")
def expire_command(
    now: Annotated[
        str | None, typer.Option("--now", help="Expire as of this RFC 3339 time (default: now).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would expire; destroy nothing.")
    ] = False,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Destroy every content key past its retention; log one receipt for the run."""
    moment = utc_now() if now is None else _time(now)
    with _open(home, write=not dry_run) as (_, store, vault, _blobs):
        receipt = expire(store, vault, now=moment, dry_run=dry_run)
    _print_receipt(receipt, json_out)


def _time(value: str) -> datetime:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError(f"--now: {exc}") from None


def _print_receipt(receipt: Receipt, json_out: bool) -> None:
    p = receipt.predicate
    if json_out:
        print_json({"entry": receipt.entry, "receipt": p.to_predicate()})
        return
    if receipt.entry is None and not p.keys_destroyed:
        stdout.print("nothing expired: no key destroyed, nothing logged")
        return
    head = "would destroy" if receipt.entry is None else f"entry {receipt.entry}: destroyed"
    stdout.print(
        f"{head} {p.keys_destroyed} content keys, {p.pseudonym_secrets_destroyed} "
        f"pseudonym secrets ({p.trigger})"
    )
    stdout.print(f"  pseudonyms    {_list(p.pseudonyms) or '-'}")
    stdout.print(f"  batches       {_list(p.batches) or '-'}")


# -- proofs and access ------------------------------------------------------------------------


@command(inference_app, "prove")
def prove_command(
    entry: Annotated[int, typer.Argument(help="The inference batch's log entry.")],
    line: Annotated[int, typer.Argument(help="The line number in the source file.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Prove that a line of the source file belongs to a batch: its leaf, audit path and root.

    The root is the one the entry records; `annex log proof ENTRY` proves the entry is logged.
    """
    with _open(home, write=False) as (_, store, _vault, blobs):
        proof = prove_line(store, blobs, entry, line)
    if json_out:
        print_json({**proof.to_json(), "verified": True})
        return
    stdout.print(f"line {line} is leaf {proof.leaf_index} of {proof.size} in entry {entry}")
    stdout.print(f"  leaf   {proof.leaf.hex()}")
    for h in proof.path:
        stdout.print(f"  path   {h.hex()}")
    stdout.print(f"  root   {proof.root.hex()}  (recorded in entry {entry}; verified)")


@command(inference_app, "content")
def content_command(
    entry: Annotated[int, typer.Argument(help="The inference batch's log entry.")],
    subject: Annotated[str, typer.Option("--subject", help="The caller id.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Decrypt a data subject's retained content in one batch (an access request)."""
    with _open(home, write=False) as (_, store, vault, blobs):
        lines = read_content(store, vault, blobs, entry, subject)
    if json_out:
        print_json([{"line": r.line, "content": r.content, "digest": r.digest} for r in lines])
        return
    for r in lines:
        stdout.print(f"line {r.line}: {json.dumps(r.content, ensure_ascii=False)}")
    if not lines:
        stdout.print(f"no retained content of this subject in entry {entry}")
