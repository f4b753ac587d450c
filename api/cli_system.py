"""AI systems: `annex system add | list | show`.

A card is validated and its components hashed before anything is logged, so a bad card appends
nothing. A card that says what the log already holds for that version is named, not logged again;
a changed card (or changed component bytes) under a version already recorded is refused, because
two different systems must never share one version in the documentation.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_base import HomeOpt, JsonOpt, app, command, open_home
from api.output import print_json, progress_bar, stdout
from collectors.hash_cache import CACHE_PATH, HashCache
from collectors.system_card import card_statement, read_card, resolve_components
from evidence.errors import InputError
from reports.systems import card_history, system_summaries

system_app = typer.Typer(help="AI systems: declare them with a system card, list and show them.")
app.add_typer(system_app, name="system", no_args_is_help=True)


@command(system_app, "add")
def system_add(
    card_path: Annotated[Path, typer.Argument(metavar="CARD.yaml", help="The system card.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate a system card, hash the components it names and log it as a new version."""
    target = open_home(home)
    loaded = read_card(card_path)
    with ExitStack() as stack:
        store = stack.enter_context(target.open_store(write=True))
        cache = stack.enter_context(HashCache(target.path / CACHE_PATH))
        progress = stack.enter_context(progress_bar("hashing components", enabled=not json_out))
        components = resolve_components(loaded, store, cache=cache, progress=progress)
        history = card_history(store, loaded.card.id)
        statement = card_statement(
            loaded, components, previous_entry=history[-1].entry.index if history else None
        )
        same = [v for v in history if v.card.version == loaded.card.version]
        if same and _content(same[-1].entry.statement) != _content(statement):
            raise InputError(
                f"{card_path}: version {loaded.card.version} of {loaded.card.id} is already "
                f"recorded at entry {same[-1].entry.index} with other content or component "
                "bytes: give the changed system a new version"
            )
        index = same[-1].entry.index if same else store.append([statement]).first_index
    result = {
        "system": loaded.card.id,
        "version": loaded.card.version,
        "index": index,
        "new": not same,
        "components": [c.model_dump(mode="json", by_alias=True) for c in components],
    }
    if json_out:
        print_json(result)
        return
    what = "recorded as entry" if not same else "already recorded at entry"
    stdout.print(f"system {loaded.card.id} {loaded.card.version}: {what} {index}")
    for c in components:
        where = f"entry {c.entry}" if c.entry is not None else "not in the log (a gap in reports)"
        stdout.print(f"  {c.role} {c.name}: sha256 {c.digest[:16]}… {where}")


def _content(statement: dict[str, Any]) -> tuple[Any, Any]:
    predicate = statement["predicate"]
    return predicate["card"], predicate.get("components", [])


@command(system_app, "list")
def system_list(home: HomeOpt = None, json_out: JsonOpt = False) -> None:
    """Every system with a card in the log, with its latest version."""
    with open_home(home).open_store() as store:
        rows = system_summaries(store)
    if json_out:
        print_json(rows)
        return
    if not rows:
        stdout.print("no systems yet: annex system add CARD.yaml")
    for r in rows:
        stdout.print(f"{r['system']}  {r['name']} {r['version']}  (entry {r['entry']})")


@command(system_app, "show")
def system_show(
    system_id: Annotated[str, typer.Argument(metavar="ID", help="The system's id.")],
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A system's card versions, newest last, and the components of the latest."""
    with open_home(home).open_store() as store:
        history = card_history(store, system_id)
    if not history:
        raise InputError(f"no system {system_id!r} in the log: annex system list")
    versions = [
        {
            "version": v.card.version,
            "entry": v.entry.index,
            "loggedAt": v.entry.logged_at.isoformat(),
            "card": v.predicate.card,
            "components": [
                c.model_dump(mode="json", by_alias=True) for c in v.predicate.components
            ],
        }
        for v in history
    ]
    if json_out:
        print_json({"system": system_id, "versions": versions})
        return
    latest = history[-1]
    stdout.print(f"{latest.card.name} ({system_id}), provider {latest.card.provider.name}")
    for v in versions:
        stdout.print(f"  version {v['version']}: entry {v['entry']}, logged {v['loggedAt']}")
    for c in latest.predicate.components:
        where = f"entry {c.entry}" if c.entry is not None else "not in the log"
        stdout.print(f"  {c.role} {c.name}: sha256 {c.digest[:16]}… {where}")
