"""`annex oversight ...`: log human-oversight acts and reviewers' training (Art 14, Art 26(2)).

Reviewer ids are pseudonymised before anything is logged, by the vault (`<home>/vault`, the
same per-person secrets as inference callers): one person keeps one pseudonym, and `annex
erase ID` destroys the secret, so the log's pseudonyms no longer lead back to them. The vault
row and the log entry are written together: a refused append leaves no vault row behind.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from api.cli_base import HomeOpt, JsonOpt, app, command, open_home
from api.output import print_json, stdout
from collectors.oversight import (
    Attestation,
    Event,
    Pseudonymise,
    attestation_statement,
    ingest_feed,
    record_event,
)
from evidence.entry import rfc3339
from evidence.errors import InputError
from evidence.files import file_sha256
from evidence.home import Home
from evidence.keys import utc_now
from evidence.vault import Vault
from schemas.oversight import OversightAction, OversightLink
from schemas.statement import parse_timestamp

oversight_app = typer.Typer(
    help="Human oversight: reviews, overrides, stops (Art 14) and reviewers' training (Art 26(2))."
)
app.add_typer(oversight_app, name="oversight", no_args_is_help=True)

ReviewerOpt = Annotated[
    str,
    typer.Option(help="The reviewer's id (e-mail, staff number); only a pseudonym is logged."),
]
SystemOpt = Annotated[str | None, typer.Option(help="The AI system, e.g. triage-prod.")]


@contextmanager
def reviewer_pseudonyms(home: Home) -> Iterator[Pseudonymise]:
    """Pseudonyms from the vault, inside one vault transaction that rolls back if the block
    raises (then no row is left for a reviewer whose event was never logged)."""
    with Vault.open(home.path / "vault") as vault, vault.transaction():
        now = int(utc_now().timestamp())
        yield lambda reviewer: vault.subject(reviewer.strip(), now=now).pseudonym


def parse_moment(value: str, option: str, *, now: datetime | None = None) -> datetime:
    """An RFC 3339 time with an offset, a date (midnight UTC), or `now` (the given moment)."""
    if value == "now":
        return now or utc_now()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def _link(request: str | None, batch: int | None, entry: int | None) -> OversightLink | None:
    if sum(value is not None for value in (request, batch, entry)) > 1:
        raise InputError("give at most one of --request, --batch, --entry")
    if request is not None:
        return OversightLink(kind="request", id=request)
    for kind, index in (("batch", batch), ("entry", entry)):
        if index is not None and index < 0:
            raise InputError(f"--{kind} must be a log index >= 0, not {index}")
    if batch is not None:
        return OversightLink(kind="batch", entry=batch)
    return None if entry is None else OversightLink(kind="entry", entry=entry)


@command(oversight_app, "record")
def record(
    action: Annotated[OversightAction, typer.Option(help="What the reviewer did.")],
    reviewer: ReviewerOpt,
    reason: Annotated[str, typer.Option(help="Why.")],
    request: Annotated[str | None, typer.Option(help="The inference request id acted on.")] = None,
    batch: Annotated[int | None, typer.Option(help="Log index of the batch acted on.")] = None,
    entry: Annotated[int | None, typer.Option(help="Log index of the entry acted on.")] = None,
    system: SystemOpt = None,
    at: Annotated[str, typer.Option(help="When (RFC 3339 with offset; default now).")] = "now",
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Log one act of human oversight: review, approve, override, reverse, disregard,
    escalate, stop or resume."""
    moment = parse_moment(at, "--at")
    if moment > utc_now():
        raise InputError(f"--at {at} is in the future")
    event = Event(
        action, reviewer, reason, moment, link=_link(request, batch, entry), system=system
    )
    target = open_home(home)
    with target.open_store(write=True) as store, reviewer_pseudonyms(target) as pseudonymise:
        index = record_event(store, event, pseudonymise)
    if json_out:
        print_json({"index": index, "action": action.value})
    else:
        stdout.print(f"logged oversight event {action.value} at entry {index}")


@command(oversight_app, "ingest")
def ingest(
    file: Annotated[str, typer.Argument(help="A JSON Lines feed of oversight events, or '-'.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Log every event of a JSON Lines feed as one batch; a feed logged before is not repeated."""
    source = "stdin" if file == "-" else file
    data = _read_bytes(file)
    target = open_home(home)
    with target.open_store(write=True) as store, reviewer_pseudonyms(target) as pseudonymise:
        done = ingest_feed(store, data, source=source, pseudonymise=pseudonymise, now=utc_now())
    if json_out:
        print_json(
            {
                "first_index": done.first_index,
                "count": done.count,
                "already_logged": done.already,
                "sha256": done.digest,
            }
        )
    elif done.already:
        stdout.print(
            f"{source} already logged at entry {done.first_index} (sha256 {done.digest[:16]}): "
            "nothing appended"
        )
    else:
        last = done.first_index + done.count - 1
        noun = "event" if done.count == 1 else "events"
        stdout.print(f"logged {done.count} oversight {noun} ({done.first_index}..{last})")


def _read_bytes(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}") from exc


@command(oversight_app, "attest")
def attest(
    reviewer: ReviewerOpt,
    training: Annotated[str, typer.Option(help="The training or competence, by name.")],
    valid_until: Annotated[
        str, typer.Option(help="End of validity (a date, or RFC 3339 with offset).")
    ],
    valid_from: Annotated[str, typer.Option(help="Start of validity (default now).")] = "now",
    issuer: Annotated[str | None, typer.Option(help="Who issued or assessed it.")] = None,
    evidence: Annotated[
        Path | None, typer.Option(help="The certificate or record; its SHA-256 is logged.")
    ] = None,
    system: SystemOpt = None,
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Log a reviewer's training or competence attestation (Art 26(2))."""
    attestation = Attestation(
        reviewer=reviewer,
        training=training,
        valid_from=parse_moment(valid_from, "--valid-from"),
        valid_until=parse_moment(valid_until, "--valid-until"),
        issuer=issuer,
        evidence_digest=None if evidence is None else _file_digest(evidence),
        system=system,
    )
    target = open_home(home)
    with target.open_store(write=True) as store, reviewer_pseudonyms(target) as pseudonymise:
        statement = attestation_statement(attestation, pseudonymise, now=utc_now())
        index = store.append([statement], labels=["reviewer attestation"]).first_index
    until = rfc3339(attestation.valid_until)
    if json_out:
        print_json({"index": index, "reviewer": statement["predicate"]["reviewer"]})
    else:
        stdout.print(f"logged training {training!r} valid until {until} at entry {index}")


def _file_digest(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise InputError(f"--evidence {path}: {exc.strerror}") from exc
