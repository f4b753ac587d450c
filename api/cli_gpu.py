"""`annex collect gpu`: snapshot this host's NVIDIA GPUs through NVML and log the statement,
in this node's own log or, with --push, in a server's (signed with this node's key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from api.cli_base import HomeOpt, JsonOpt, collect_app, command
from api.output import count, print_json, stdout
from api.push import Pushed, push_envelope, read_token, sign_statement
from api.settings import Settings, get_settings
from collectors.gpu import collect_gpu
from collectors.nvml import load_pynvml
from evidence.errors import ConfigError, InputError
from evidence.keys import TrustIndex, load_trust
from schemas.gpu import Device, Failed, GpuInventoryPredicate, SiteLabels, Unsupported, Value

SiteOpt = Annotated[
    str | None, typer.Option(help="Site label, e.g. a data centre (default: $ANNEX_SITE).")
]
CountryOpt = Annotated[
    str | None,
    typer.Option(help="ISO 3166-1 alpha-2 country of the site (default: $ANNEX_COUNTRY)."),
]
OperatorOpt = Annotated[
    str | None, typer.Option(help="Who operates the site (default: $ANNEX_OPERATOR).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the statement and log nothing.")]
PushOpt = Annotated[
    str | None,
    typer.Option(
        "--push",
        metavar="URL",
        help="Sign with this node's key and POST to the Annex server at URL "
        "(URL/api/v1/entries); nothing is appended to this node's own log.",
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File whose first line is the server's write token (default: $ANNEX_TOKEN).",
    ),
]
ServerTrustOpt = Annotated[
    Path | None,
    typer.Option(
        "--server-trust",
        help="The server's trust file: also check its signature on the returned checkpoint.",
    ),
]


@command(collect_app, "gpu")
def collect_gpu_command(
    site: SiteOpt = None,
    country: CountryOpt = None,
    operator: OperatorOpt = None,
    dry_run: DryRunOpt = False,
    push: PushOpt = None,
    token_file: TokenFileOpt = None,
    server_trust: ServerTrustOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the host and every NVIDIA GPU: versions, identity, MIG, ECC, power, readings.

    Self-reported by NVML, not hardware attestation. No NVML, driver or GPU is recorded too.

    With --push URL the statement is signed with this node's log key (trusted on the server by
    `annex keys add-collector`) and logged by the server, not here; the server's inclusion proof
    is checked against its checkpoint before success is reported (exit 1 if it does not verify).
    """
    settings = get_settings(home)
    if push is None and (token_file is not None or server_trust is not None):
        raise InputError("--token-file and --server-trust go with --push URL")
    if push is not None and dry_run:
        raise InputError("--dry-run logs nothing and --push logs on a server: choose one")
    labels = site_labels(settings, site=site, country=country, operator=operator)
    token = read_token(token_file, settings.token) if push is not None else None
    trust = TrustIndex(load_trust(server_trust)) if server_trust is not None else None
    statement = collect_gpu(load_pynvml(), site=labels)
    index, pushed = None, None
    if push is not None and token is not None:
        pushed = push_statement(settings, statement, push, token, trust)
        index = pushed.index
    elif not dry_run:
        with settings.open_home().open_store(write=True) as store:
            index = store.append([statement], labels=["GPU inventory"]).first_index
    if json_out:
        out: dict[str, Any] = {"index": index, "statement": statement}
        if pushed is not None:
            out["pushed"] = pushed.to_json()
        print_json(out)
    elif dry_run:
        stdout.print(json.dumps(statement, indent=2, ensure_ascii=False))
    else:
        where = f"entry {index}" if pushed is None else f"entry {index} of {pushed.url}"
        say_summary(GpuInventoryPredicate.model_validate(statement["predicate"]), where)
        if pushed is not None:
            say_receipt(pushed)


def push_statement(
    settings: Settings,
    statement: dict[str, Any],
    server: str,
    token: str,
    trust: TrustIndex | None,
) -> Pushed:
    """Signs with this node's key (its home's log key) and pushes; the node's log is untouched."""
    signer = settings.open_home().signer()
    envelope = sign_statement(statement, signer, where="GPU inventory")
    return push_envelope(server, envelope, token, trust=trust)


def say_receipt(pushed: Pushed) -> None:
    signed = ", signed by the server's log key" if pushed.checkpoint_signed else ""
    stdout.print(
        f"inclusion proof verified against the server's checkpoint of size "
        f"{pushed.checkpoint.size}{signed}; nothing appended to this node's log"
    )


def site_labels(
    settings: Settings, *, site: str | None, country: str | None, operator: str | None
) -> SiteLabels:
    """The options, else the settings; a bad country names where it came from."""
    given = {"site": site, "country": country, "operator": operator}
    try:
        return SiteLabels(
            site=site or settings.site,
            country=country or settings.country,
            operator=operator or settings.operator,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        message = error["msg"].removeprefix("Value error, ")
        if given.get(field) is not None:
            raise InputError(f"--{field}: {message}") from None
        raise ConfigError(f"ANNEX_{field.upper()}: {message}") from None


# -- the human summary ----------------------------------------------------------------------------


def shown(reading: Any) -> str:
    if isinstance(reading, Value):
        return str(reading.value)
    return "unsupported" if isinstance(reading, Unsupported) else reading.error


def gib(reading: Any) -> str:
    return f"{reading.value / 2**30:.1f} GiB" if isinstance(reading, Value) else shown(reading)


def mig(device: Device) -> str:
    if not isinstance(device.mig_mode, Value):
        return f"MIG {shown(device.mig_mode)}"
    modes = device.mig_mode.value
    text = f"MIG {modes.current}"
    if modes.pending != modes.current:
        text += f" ({modes.pending} after reset)"
    if isinstance(device.mig_devices, Value) and device.mig_devices.value:
        text += f", {count(len(device.mig_devices.value), 'MIG device')}"
    elif isinstance(device.mig_devices, Failed):
        text += f", MIG devices {device.mig_devices.error}"
    return text


def device_line(device: Device) -> str:
    parts = [shown(device.name), shown(device.uuid), gib(device.memory_total_bytes), mig(device)]
    unsupported, failed = device.unsupported(), device.failed()
    if unsupported:
        parts.append(f"{count(len(unsupported), 'field')} unsupported")
    if failed:
        errors = ", ".join(sorted(set(failed.values())))
        parts.append(f"{count(len(failed), 'field')} unreadable ({errors})")
    return f"  gpu {device.index}  " + "  ".join(parts)


def say_summary(predicate: GpuInventoryPredicate, where: str) -> None:
    host = predicate.host.hostname
    if predicate.status != "ok":
        stdout.print(f"no GPU evidence on {host}: {predicate.reason}; recorded at {where}")
        return
    versions = (
        f"driver {shown(predicate.driver_version)}, CUDA {shown(predicate.cuda_driver_version)}, "
        f"NVML {shown(predicate.nvml_version)}"
    )
    stdout.print(f"{count(len(predicate.devices), 'GPU')} on {host} ({versions})")
    for device in predicate.devices:
        stdout.print(device_line(device))
    stdout.print(f"recorded at {where} (self-reported by NVML, not hardware attestation)")
