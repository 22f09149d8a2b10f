"""Attacks by name: each declares what it needs, so the audit stage knows what to train and read.

``needs`` is one of ``"scores"`` (the audited run's own scores), ``"references"`` (reference models trained
by the same mechanism on random halves of the population) or ``"canaries"`` (a canary run with each canary
included independently with probability ½). An attack is a function of an :class:`AuditContext` that
returns :class:`AttackResult` rows; adding one is one file in ``dpfair/audit/attacks/`` with
``@register_attack(name, needs=...)`` and an import line in that package's ``__init__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

NEEDS = ("scores", "references", "canaries")
#: The mechanism every run uses until training has a mechanism registry; the audit tables' ``method``.
DEFAULT_METHOD = "dpsgd"


@dataclass
class AuditContext:
    """What an attack may read about one audited run."""

    keys: dict                      # dataset, model, method, epsilon (float), seed
    table: pd.DataFrame             # the run's scores.csv: split, label, score, logit, sensitive attributes
    epsilon: float                  # the claimed (target) ε; inf for non-private runs
    delta: float                    # the run's δ, from its privacy card
    attributes: list[str]           # attribute columns to break results down by (intersections joined by ':')
    settings: dict                  # the benchmark's audit settings
    references: pd.DataFrame | None = None   # per row: row, in_<k>, logit_<k> for each reference model k
    canaries: pd.DataFrame | None = None     # per canary: row, included, label, logit, score
    unit: str = "record"                      # what the run's guarantee protects (its card's unit)


@dataclass
class AttackResult:
    rows: list[dict] = field(default_factory=list)  # metric, value, ci_low, ci_high, n (+ attribute, group)
    roc: pd.DataFrame | None = None                 # fpr, tpr points for the report's low-FPR plot


@dataclass(frozen=True)
class Attack:
    name: str
    needs: str
    run: Callable[[AuditContext], AttackResult]
    description: str


_ATTACKS: dict[str, Attack] = {}


def register_attack(name: str, *, needs: str, description: str = "", force: bool = False):
    """Decorator registering ``fn(context) -> AttackResult`` as attack ``name``."""
    if needs not in NEEDS:
        raise ValueError(f"attack {name!r}: needs must be one of {list(NEEDS)}, got {needs!r}")

    def decorate(fn):
        if name in _ATTACKS and not force:
            raise ValueError(f"attack {name!r} is already registered")
        _ATTACKS[name] = Attack(name=name, needs=needs, run=fn, description=description or (fn.__doc__ or "").strip())
        return fn

    return decorate


def _load_builtin() -> None:
    import dpfair.audit.attacks  # noqa: F401  (registers the built-in attacks)


def available_attacks() -> list[str]:
    """Names of the registered attacks.

    Example:
        >>> available_attacks()
        ['loss', 'one_run', 'rmia']
    """
    _load_builtin()
    return sorted(_ATTACKS)


def get_attack(name: str) -> Attack:
    """The attack registered as ``name``; an unknown name raises with the list of known ones."""
    _load_builtin()
    if name not in _ATTACKS:
        raise KeyError(f"unknown attack {name!r}; known attacks: {sorted(_ATTACKS)}")
    return _ATTACKS[name]
