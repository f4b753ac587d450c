"""The `annex` command line: a thin shell over evidence/ (and later collectors/ and reports/).

Exit codes: 0 success, 1 verification failed, 2 bad input, usage or configuration.
Every command takes --json and then prints one JSON document on stdout, errors included.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from api.cli_base import (
    HomeOpt,
    JsonOpt,
    app,
    b64,
    command,
    keys_app,
    log_app,
    open_home,
    read_input,
    write_output,
)
from api.cli_gpu import site_labels
from api.output import count, print_json, progress_bar, stdout
from api.settings import get_settings
from evidence.canonical import parse_json
from evidence.dsse import Envelope
from evidence.entry import rfc3339
from evidence.errors import InputError
from evidence.home import active_key, active_log_key, default_model_signing_name
from evidence.keys import (
    TrustIndex,
    entry_window,
    find_key,
    load_trust,
    note_verifier,
    public_pem,
)
from evidence.note import TlogProof
from evidence.store import Store, check_position
from evidence.verify import verify_entry, verify_log
from schemas import authority
from schemas.trust import TrustedKey

# -- init, append, show ---------------------------------------------------------------------------


@command(app)
def init(
    home: HomeOpt = None,
    origin: Annotated[
        str | None,
        typer.Option(help="Log name in checkpoints, a schema-less URL (default: HOSTNAME/annex)."),
    ] = None,
    model_signing_key: Annotated[
        bool,
        typer.Option(
            "--model-signing-key/--no-model-signing-key",
            help="Also create the EC P-256 key that `annex sign model` signs with.",
        ),
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Create the data directory, the log database, signing keys and the trust file."""
    target = open_home(home)
    chosen = origin or f"{socket.gethostname()}/annex"
    model_name = default_model_signing_name(chosen) if model_signing_key else None
    result = target.init(chosen, model_signing_name=model_name)
    trust = target.trust().trust
    key = active_log_key(trust)
    model_key = active_key(trust, "model-signing") if model_signing_key else None
    if json_out:
        print_json(
            {
                "home": str(target.path),
                "database": target.db_url,
                "origin": trust.origin,
                "keyid": key.keyid,
                "model_signing_keyid": None if model_key is None else model_key.keyid,
                "trust_file": str(target.trust_path),
                "checkpoint": result.checkpoint.note,
            }
        )
        return
    stdout.print(f"initialised {target.path}")
    stdout.print(f"  log origin  {key.name}")
    stdout.print(f"  log key     {key.keyid}")
    if model_key is not None:
        stdout.print(f"  model key   {model_key.keyid}  (EC P-256, signs model releases)")
    stdout.print(f"  trust file  {target.trust_path}  (give this to auditors)")


def _load_items(text: str, source: str) -> list[tuple[str, Any]]:
    """One JSON document (object or array) or JSON Lines; each item with where it came from."""
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{source} is empty")
    try:
        json.loads(stripped)
        one_document = True
    except ValueError:  # not one document (or not JSON at all: parse_json names why below)
        one_document = False
    if one_document:
        whole = parse_json(stripped, what=source)  # again, now refusing duplicate keys
        if isinstance(whole, list):
            items = [(f"{source} item {i + 1}", item) for i, item in enumerate(whole)]
        else:
            items = [(source, whole)]
    else:
        items = [
            (f"{source} line {n}", parse_json(line, what=f"{source} line {n}"))
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    if not items:
        raise InputError(f"{source} holds no statements")
    return items


@command(app)
def append(
    file: Annotated[str, typer.Argument(help="Statement JSON, JSON Lines, or '-' for stdin.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign in-toto statements and append them to the log as one atomic batch.

    DSSE envelopes signed by a trusted key are accepted too and appended as they are.
    """
    source = "stdin" if file == "-" else file
    items = _load_items(read_input(file), source)
    labels = [where for where, _ in items]
    with open_home(home).open_store(write=True) as store:
        if all(isinstance(obj, dict) and "payloadType" in obj for _, obj in items):
            envelopes = [Envelope.from_dict(obj, what=where) for where, obj in items]
            result = store.append_envelopes(envelopes, labels=labels)
        else:
            for where, obj in items:
                if not isinstance(obj, dict):
                    raise InputError(f"{where}: a statement must be a JSON object")
            result = store.append([obj for _, obj in items], labels=labels)
    if json_out:
        print_json(
            {
                "first_index": result.first_index,
                "count": len(result.leaf_hashes),
                "leaf_hashes": [b64(h) for h in result.leaf_hashes],
                "checkpoint": {
                    "size": result.checkpoint.size,
                    "root": b64(result.checkpoint.root),
                    "note": result.checkpoint.note,
                },
            }
        )
        return
    count, last = len(result.indices), result.indices[-1]
    stdout.print(
        f"appended {count} {'entry' if count == 1 else 'entries'} ({result.first_index}..{last}); "
        f"checkpoint signed at size {result.checkpoint.size}"
    )


@command(app)
def show(
    index: Annotated[int, typer.Argument(help="Entry index.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one entry: what the log recorded and the statement it holds."""
    with open_home(home).open_store() as store:
        entry = store.get(index)
    data = entry.to_json()
    data["envelope"] = entry.envelope.to_dict()
    if json_out:
        print_json(data)
        return
    stdout.print(f"entry {entry.index}")
    stdout.print(f"  predicate type  {entry.predicate_type}")
    for s in entry.subjects:
        stdout.print(f"  subject         {s.name}  {s.algorithm}:{s.digest}")
    stdout.print(f"  observed at     {data['observed_at'] or '(not stated)'}")
    stdout.print(f"  logged at       {data['logged_at']}")
    stdout.print(f"  signed by       {entry.keyid}")
    stdout.print(f"  leaf hash       {data['leaf_hash']}")
    stdout.print(json.dumps(entry.statement, indent=2, ensure_ascii=False))


# -- the log --------------------------------------------------------------------------------------


@command(log_app, "checkpoint")
def log_checkpoint(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Print the latest signed checkpoint (a C2SP signed note), as is."""
    with open_home(home).open_store() as store:
        cp = store.checkpoint()
    if json_out:
        print_json({"size": cp.size, "root": b64(cp.root), "note": cp.note})
    else:
        sys.stdout.write(cp.note)


@command(log_app, "proof")
def log_proof(
    index: Annotated[int, typer.Argument(help="Entry index.")],
    tree_size: Annotated[
        int | None, typer.Option(help="Prove against the checkpoint of this size.")
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print a C2SP tlog-proof: index, inclusion hashes and the signed checkpoint."""
    with open_home(home).open_store() as store:
        proof = store.inclusion_proof(index, tree_size)
    if json_out:
        print_json(
            {
                "index": proof.index,
                "hashes": [b64(h) for h in proof.hashes],
                "checkpoint": proof.checkpoint,
                "tlog_proof": proof.format(),
            }
        )
        if output is not None:
            write_output(proof.format(), output)
        return
    write_output(proof.format(), output)


@command(log_app, "consistency")
def log_consistency(
    old_size: Annotated[int, typer.Argument(help="The earlier tree size.")],
    new_size: Annotated[int | None, typer.Argument(help="The later size (default: now).")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print an RFC 9162 consistency proof between two tree sizes."""
    with open_home(home).open_store() as store:
        proof = store.consistency_proof(old_size, new_size)
    hashes = [b64(h) for h in proof.hashes]
    data = {
        "old_size": proof.old_size,
        "new_size": proof.new_size,
        "old_root": b64(proof.old_root),
        "new_root": b64(proof.new_root),
        "hashes": hashes,
    }
    if json_out:
        print_json(data)
        return
    stdout.print(f"old {proof.old_size} {data['old_root']}")
    stdout.print(f"new {proof.new_size} {data['new_root']}")
    for h in hashes:
        stdout.print(h)


@command(log_app, "export")
def log_export(
    start: Annotated[int, typer.Option("--from", help="First index.")] = 0,
    end: Annotated[int | None, typer.Option("--to", help="Last index, inclusive.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export entries as JSON Lines: index, DSSE envelope and leaf hash.

    With --json, one document {"entries": [...]} instead of one line an entry.
    """
    check_position(start, "--from")
    if end is not None and check_position(end, "--to") < start:
        raise InputError(f"--to {end} is before --from {start}: no entry lies between")
    with open_home(home).open_store() as store:
        stop = None if end is None else end + 1
        records = (
            {"index": i, "envelope": json.loads(env), "leaf_hash": b64(leaf)}
            for i, env, leaf in store.export(start, stop)
        )
        if json_out:
            text = json.dumps({"entries": list(records)}, indent=2) + "\n"
        else:
            text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        write_output(text, output)


# -- verification ---------------------------------------------------------------------------------


@command(app)
def verify(
    trusted_checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint saved earlier: the log must still extend it."),
    ] = None,
    trust: Annotated[
        Path | None, typer.Option(help="Trust file to use instead of the data directory's.")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify the whole log from public keys only: signatures, tree, checkpoints.

    An auditor without a data directory gives --trust and the database in ANNEX_DATABASE_URL.
    """
    target = open_home(home)
    index = TrustIndex(load_trust(trust)) if trust else target.trust()
    pinned = None if trusted_checkpoint is None else read_input(str(trusted_checkpoint))
    with Store.open(target.db_url) if trust else target.open_store() as store:
        if store.origin != index.trust.origin:
            raise InputError(
                f"the trust file is for log {index.trust.origin!r}, this log is {store.origin!r}"
            )
        with progress_bar("verifying", enabled=not json_out) as progress:
            report = verify_log(store, index, trusted_checkpoint=pinned, progress=progress)
    if json_out:
        print_json(report.to_json())
        return
    stdout.print(
        f"ok: {count(report.size, 'entry', 'entries')}, {count(report.signatures, 'signature')} "
        f"and {count(report.checkpoints, 'checkpoint')} verified; root {b64(report.root)}"
    )
    if report.trusted_checkpoint_size is not None:
        stdout.print(
            f"the log extends the trusted checkpoint of size {report.trusted_checkpoint_size}"
        )


def _read_envelope(text: str, source: str) -> Envelope:
    obj = parse_json(text, what=source)
    if isinstance(obj, dict) and "envelope" in obj and "payloadType" not in obj:
        obj = obj["envelope"]  # a line of `annex log export`
    return Envelope.from_dict(obj, what=source)


@command(app, "verify-entry")
def verify_entry_cmd(
    envelope: Annotated[Path, typer.Argument(help="DSSE envelope JSON, or an export line.")],
    proof: Annotated[Path, typer.Argument(help="Its tlog-proof (from `annex log proof`).")],
    trust: Annotated[Path, typer.Option(help="The log's trust file (public keys).")],
    json_out: JsonOpt = False,
) -> None:
    """Verify one exported entry offline: envelope + tlog-proof + trust file, no database."""
    env = _read_envelope(read_input(str(envelope)), str(envelope))
    tlog = TlogProof.parse(read_input(str(proof)))
    report = verify_entry(env, tlog, TrustIndex(load_trust(trust)))
    if json_out:
        print_json(report.to_json())
        return
    stdout.print(
        f"ok: entry {report.index} is in the log of size {report.tree_size}, "
        f"signed by {report.keyid[:16]}, logged by {rfc3339(report.logged_by)}"
    )
    stdout.print(f"  {report.statement['predicateType']}")
    for s in report.statement["subject"]:
        for algorithm, value in s["digest"].items():
            stdout.print(f"  {s['name']}  {algorithm}:{value}")


# -- keys -----------------------------------------------------------------------------------------


def _key_json(key: TrustedKey) -> dict[str, Any]:
    data = key.model_dump(mode="json")
    data["note_verifier"] = str(note_verifier(key)) if key.algorithm == "ed25519" else None
    data["may_sign"] = authority.describe(key)
    data["signs_checkpoints"] = authority.may_sign_checkpoints(key)
    if key.role == "collector":
        data["predicates"] = list(authority.collector_predicates(key))
    return data


@command(keys_app, "list")
def keys_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """List the keys of the trust file: role, algorithm, status, the entries each may sign
    and what its role lets it sign (schemas/authority.py)."""
    trust = open_home(home).trust().trust
    if json_out:
        print_json({"origin": trust.origin, "keys": [_key_json(k) for k in trust.keys]})
        return
    for k in trust.keys:
        stdout.print(
            f"{k.keyid[:16]}  {k.role:13} {k.algorithm:17} {k.status:8} "
            f"entries {entry_window(k):12} since {k.valid_from:%Y-%m-%d %H:%M}  {k.name}",
            highlight=False,
        )
        stdout.print(f"{'':18}may sign: {authority.describe(k)}", highlight=False)


RoleOpt = Annotated[
    str,
    typer.Option("--role", help="log (the key that signs the log) or model-signing."),
]
CreateRoleOpt = Annotated[
    str, typer.Option("--role", help="model-signing: the only role this command makes.")
]


def _rotatable(role: str) -> Literal["log", "model-signing"]:
    if role == "log":
        return "log"
    if role == "model-signing":
        return "model-signing"
    raise InputError(f"--role must be log or model-signing, not {role!r}")


@command(keys_app, "create")
def keys_create(
    role: CreateRoleOpt = "model-signing",
    name: Annotated[
        str | None, typer.Option(help="Key name (default: ORIGIN/model-signing).")
    ] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create the model-signing key (EC P-256) that `annex sign model` signs with.

    The log key is made by `annex init` and replaced by `annex keys rotate`; a second active
    model-signing key is refused: rotate it instead.
    """
    if role != "model-signing":
        raise InputError(
            f"--role {role}: only a model-signing key is created this way; the log key is "
            "made by `annex init` and replaced by `annex keys rotate`"
        )
    target = open_home(home)
    key = target.create_model_signing_key(
        name or default_model_signing_name(target.trust().trust.origin)
    )
    if json_out:
        print_json({"created": _key_json(key)})
        return
    stdout.print(f"created {key.role} key {key.keyid[:16]} ({key.algorithm}) {key.name}")
    stdout.print(f"  public key for model_signing: annex keys export-public {key.keyid[:16]}")


@command(keys_app, "rotate")
def keys_rotate(
    role: RoleOpt = "log",
    reason: Annotated[str | None, typer.Option(help="Why, recorded in the log.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Retire the active key of a role (default: the log key) and make a new one.

    Old entries (and releases signed by a retired model-signing key) still verify.
    """
    old, new = open_home(home).rotate(role=_rotatable(role), reason=reason)
    if json_out:
        print_json({"retired": _key_json(old), "active": _key_json(new)})
        return
    stdout.print(f"retired {old.keyid[:16]} (signed entries {entry_window(old)})")
    stdout.print(f"active  {new.keyid[:16]} from entry {new.valid_from_size}")


@command(keys_app, "revoke")
def keys_revoke(
    keyid: Annotated[str, typer.Argument(help="Key id, or a unique prefix of it.")],
    reason: Annotated[str | None, typer.Option(help="Why, recorded in the log.")] = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a key: anything it signs from now on fails verification."""
    key = open_home(home).revoke(keyid, reason=reason)
    if json_out:
        print_json({"revoked": _key_json(key)})
        return
    stdout.print(
        f"revoked {key.keyid[:16]}: entries it signed at index {key.valid_until_size} "
        "or later fail verification"
    )


@command(keys_app, "export-public")
def keys_export_public(
    keyid: Annotated[str | None, typer.Argument(help="Key id or prefix (default: active).")] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="pem, note (signed-note verifier key) or trust (file)."),
    ] = "pem",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print a public key as PEM, as a signed-note verifier key, or the whole trust file.

    The PEM of a model-signing key is what `model_signing verify key --public_key` takes.
    """
    target = open_home(home)
    trust = target.trust().trust
    if fmt == "trust":
        sys.stdout.write(target.trust_path.read_text())
        return
    if fmt not in ("pem", "note"):
        raise InputError(f"--format must be pem, note or trust, not {fmt!r}")
    key = active_log_key(trust) if keyid is None else find_key(trust, keyid)
    if json_out:
        print_json({"keyid": key.keyid, "pem": public_pem(key), **_key_json(key)})
    elif fmt == "note":
        sys.stdout.write(str(note_verifier(key)) + "\n")
    else:
        sys.stdout.write(public_pem(key))


@command(keys_app, "add-collector")
def keys_add_collector(
    name: Annotated[str, typer.Argument(help="The collector's name, e.g. gpu-node-1.")],
    public_key: Annotated[
        Path, typer.Argument(metavar="PUBLIC.pem", help="Its Ed25519 public key (PEM).")
    ],
    predicates: Annotated[
        str,
        typer.Option(
            "--predicates",
            help="Comma-separated predicate types it may sign: Annex names (gpu-inventory, "
            "eval-run, ...) or full URIs. Never model-release or a log-only type.",
        ),
    ] = "gpu-inventory",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Trust a remote collector's Ed25519 key for the predicate types it may sign, from now on.

    Envelopes it signs of any other type are refused (403) and fail verification.
    """
    kinds = _predicate_list(predicates)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        loaded = serialization.load_pem_public_key(public_key.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {public_key}: {exc.strerror}") from None
    except ValueError:
        raise InputError(f"{public_key}: not a PEM public key") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise InputError(f"{public_key}: a collector key must be Ed25519")
    raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = open_home(home).add_collector_key(name, raw, kinds)
    if json_out:
        print_json(_key_json(key))
        return
    stdout.print(
        f"trusted collector {name}: key {key.keyid[:16]} (role collector), "
        f"may sign: {authority.describe(key)}",
        highlight=False,
    )


def _predicate_list(text: str) -> list[str]:
    """`--predicates` as full predicate type URIs; InputError naming the one that is refused."""
    names = [n for n in (part.strip() for part in text.split(",")) if n]
    if not names:
        raise InputError("--predicates: name at least one predicate type")
    kinds = []
    for name in names:
        try:
            kind = authority.expand_predicate(name)
            authority.check_registration("collector", [kind])
        except ValueError as exc:
            raise InputError(f"--predicates {name}: {exc}") from None
        if kind in kinds:
            raise InputError(f"--predicates: {name} is listed twice")
        kinds.append(kind)
    return kinds


# -- demo -----------------------------------------------------------------------------------------


@command(app)
def demo(
    home: Annotated[Path, typer.Option("--home", help="Where to build the demo store.")] = Path(
        "annex-demo"
    ),
    json_out: JsonOpt = False,
) -> None:
    """Build a signed store from built-in example evidence, export a proof and verify it all."""
    settings = get_settings(home.absolute())
    labels = site_labels(settings, site=settings.site or "annex-demo", country=None, operator=None)
    from api import demo as demo_module  # numpy, safetensors, lm-eval: only for the demo

    summary = demo_module.run(home.absolute(), say=None if json_out else stdout.print, site=labels)
    if json_out:
        print_json(summary)


# Command modules register their commands on the shared apps (api/cli_base.py) when imported.
from api import (  # noqa: E402, F401
    cli_eval,
    cli_export,
    cli_gate,
    cli_gpu,
    cli_incident,
    cli_inference,
    cli_lineage,
    cli_models,
    cli_oversight,
    cli_report,
    cli_serve,
    cli_sign,
    cli_sweep,
    cli_system,
    cli_tokens,
)


def main() -> None:
    app()
