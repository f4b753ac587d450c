"""Who may sign what: the one table every verifier asks before a signature counts.

A valid signature by a trusted key proves only who said something; whether it counts depends
on whether that key's role may say it. A GPU node's collector key may say what its GPU
inventory is, never that a model was released, an incident closed, a key rotated or a report
issued. Every door asks this table: appending (`annex append`, `POST /api/v1/entries`),
`annex verify`, `verify-entry`, `verify-dossier`, the gate, the legal-hold logic and the
reports.

| role          | signs log entries of these predicate types           | signs checkpoints |
| ------------- | ---------------------------------------------------- | ----------------- |
| log           | every type but a model release                       | yes               |
| model-signing | model-release only                                   | no                |
| collector     | the types it was registered for, never `LOG_ONLY`    | no                |
| person        | sign-offs (a later release)                          | no                |
| witness       | none: it cosigns checkpoints (a later release)       | no                |

A collector key in a trust file written before keys carried their predicate types is read with
the narrowest sensible default, `DEFAULT_COLLECTOR_PREDICATES`: GPU inventory, the one kind of
evidence Annex's own collector nodes push.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.dataset import DATASET
from schemas.gpu import GPU_INVENTORY
from schemas.incident import INCIDENT
from schemas.inference import ERASURE, INFERENCE_BATCH
from schemas.key_event import KEY_EVENT
from schemas.lineage import OPENLINEAGE_RUN
from schemas.model import MODEL_MANIFEST, MODEL_RELEASE
from schemas.oversight import OVERSIGHT_EVENT, REVIEWER_ATTESTATION
from schemas.policy import DATASET_LINEAGE, EVAL_RUN
from schemas.report import REPORT
from schemas.statement import PREDICATE_BASE
from schemas.sweep_run import SWEEP_RUN
from schemas.system_card import SYSTEM_CARD
from schemas.training_run import TRAINING_RUN
from schemas.trust import KeyRole, TrustedKey

# Every predicate type Annex itself writes or reads.
ANNEX_PREDICATES: tuple[str, ...] = (
    DATASET,
    DATASET_LINEAGE,
    ERASURE,
    EVAL_RUN,
    GPU_INVENTORY,
    INCIDENT,
    INFERENCE_BATCH,
    KEY_EVENT,
    MODEL_MANIFEST,
    MODEL_RELEASE,
    OPENLINEAGE_RUN,
    OVERSIGHT_EVENT,
    REPORT,
    REVIEWER_ATTESTATION,
    SWEEP_RUN,
    SYSTEM_CARD,
    TRAINING_RUN,
)

# Decisions of the operator's own service: no collector may be registered for them.
LOG_ONLY: frozenset[str] = frozenset({KEY_EVENT, REPORT, INCIDENT, ERASURE, SWEEP_RUN, SYSTEM_CARD})
# Types only another role may sign, not even the log key.
NOT_BY_LOG: frozenset[str] = frozenset({MODEL_RELEASE})
DEFAULT_COLLECTOR_PREDICATES: tuple[str, ...] = (GPU_INVENTORY,)

# For people and the docs: what each role may sign, in words.
ROLE_TABLE: tuple[tuple[str, str, bool], ...] = (
    ("log", "every predicate type but model-release", True),
    ("model-signing", "model-release only", False),
    ("collector", "the predicate types it was registered for (never a log-only type)", False),
    ("person", "sign-offs (not yet issued by this release)", False),
    ("witness", "no log entries: it cosigns checkpoints (not yet issued by this release)", False),
)


def expand_predicate(name: str) -> str:
    """A predicate type from a short Annex name (`gpu-inventory`) or a full URI; ValueError
    for a short name Annex does not know (a typo would register nothing useful)."""
    if ":" in name:
        if any(ch.isspace() for ch in name):
            raise ValueError(f"{name!r} is not a predicate type URI")
        return name
    known = {short_predicate(uri): uri for uri in ANNEX_PREDICATES}
    if name not in known:
        raise ValueError(
            f"{name!r} is not an Annex predicate type (known: {', '.join(sorted(known))}; "
            "or give a full URI)"
        )
    return known[name]


def short_predicate(uri: str) -> str:
    """`gpu-inventory` for Annex's own `https://annex.dev/predicates/gpu-inventory/v1`."""
    if uri.startswith(PREDICATE_BASE) and uri.endswith("/v1"):
        return uri[len(PREDICATE_BASE) : -len("/v1")]
    return uri


def collector_predicates(key: TrustedKey) -> tuple[str, ...]:
    """The predicate types a collector key may sign (the default for an older trust file)."""
    return key.predicates if key.predicates is not None else DEFAULT_COLLECTOR_PREDICATES


def check_registration(role: KeyRole, predicates: Iterable[str] | None) -> None:
    """Raises ValueError unless `predicates` is a registration `role` can hold."""
    if role != "collector":
        if predicates is not None:
            raise ValueError(f"a {role} key's authority comes from its role: give no predicates")
        return
    if predicates is None:
        return
    listed = list(predicates)
    if not listed:
        raise ValueError("a collector key must be registered for at least one predicate type")
    for uri in listed:
        if uri in LOG_ONLY or uri in NOT_BY_LOG:
            raise ValueError(
                f"a collector key may never sign {short_predicate(uri)}: only "
                f"{'the model-signing key' if uri in NOT_BY_LOG else 'the log key'} may"
            )


def may_sign(key: TrustedKey, predicate: str) -> bool:
    """Whether `key`'s role lets it sign a statement of type `predicate`."""
    if key.role == "log":
        return predicate not in NOT_BY_LOG
    if key.role == "model-signing":
        return predicate == MODEL_RELEASE
    if key.role == "collector":
        return predicate in collector_predicates(key) and predicate not in LOG_ONLY
    return False


def may_sign_checkpoints(key: TrustedKey) -> bool:
    return key.role == "log"


def describe(key: TrustedKey) -> str:
    """What a key may sign, in a few words (for `annex keys list` and error messages)."""
    if key.role == "log":
        return "checkpoints, any type but model-release"
    if key.role == "model-signing":
        return "model-release"
    if key.role == "collector":
        found = ",".join(short_predicate(p) for p in collector_predicates(key))
        return found + (" (default for an older trust file)" if key.predicates is None else "")
    return "nothing in the log"
