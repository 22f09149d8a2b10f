"""Attacks by name: one module per attack in ``dpfair/audit/attacks/``, found on first lookup.

An attack is a function of an :class:`AuditContext` that returns an :class:`AttackResult` (rows of the
audit table, and optionally ROC points). It is registered with ``@register_attack(name, label=...,
needs=...)``:

- ``label`` is what the report calls it ("loss threshold", "RMIA");
- ``needs`` is what the audit must train for it beyond the audited run, a subset of :data:`NEEDS`:
  ``"reference_models"`` (models trained by the run's mechanism on random halves of the population) and
  ``"canaries"`` (a canary run, each canary's bit an independent fair coin: included or not, or for a
  label guarantee its training label flipped or not, :func:`dpfair.audit.one_run.canary_design`). The default,
  nothing, means the attack reads only the run's own scores and runs on every seed; an attack with needs
  runs on the reference seeds only, and the audit plan trains only what the configured attacks need;
- ``units`` is which privacy units' guarantee the attack's guesses test (:data:`MEMBERSHIP_UNITS` by
  default: membership of a record or a patient). A run whose mechanism protects another unit (``label_rr``
  protects labels only, under ``replace_one`` of one label) is not attacked by it: the stage writes a
  ``skipped`` row whose ``note`` says why (:func:`skip_reason`), so no figure stands for a relation the run
  does not claim.

Adding an attack is one file in ``dpfair/audit/attacks/`` plus its name in a benchmark's
``audit.attacks`` (docs/adding-an-attack.md): this module imports every module of that package on the
first lookup, as the mechanism and dataset registries do, so nothing else lists the attacks. Attack
modules import this module, never the other way round at import time, so there is no import cycle.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from dpfair.errors import ConfigError

#: The package whose modules are the attacks.
ATTACKS_PACKAGE = "dpfair.audit.attacks"
#: The mechanism every run uses until training has a mechanism registry; the audit tables' ``method``.
DEFAULT_METHOD = "dpsgd"
#: What a membership attack tests: whether one record (or one patient's rows) was trained on. The units
#: are those of :data:`dpfair.training.mechanisms.UNITS`; a mechanism's unit is its guarantee's.
MEMBERSHIP_UNITS: frozenset[str] = frozenset({"record", "patient"})
#: The metric of the row the stage writes for an attack that does not test the run's unit.
SKIPPED_METRIC = "skipped"


@dataclass(frozen=True)
class Need:
    """Something an attack may need trained beyond the audited run (by the ``audit_train`` rule).

    A need's name (the key in :data:`NEEDS`) is also the ``audit:`` setting that says how many to train.

    Attributes:
        parameter: the ``audit_train`` parameter the count becomes (``n_reference``, ``n_canaries``).
        file: the file ``audit_train`` writes it to, per audited cell and reference seed.
        field: the :class:`AuditContext` field the audit stage loads that file into.
    """

    parameter: str
    file: str
    field: str


#: What an attack may need (``register_attack(..., needs=...)``). This vocabulary is closed: each entry is
#: something :func:`dpfair.audit.train_models.train_audit_models` knows how to train.
NEEDS: dict[str, Need] = {
    "reference_models": Need(parameter="n_reference", file="references.csv.gz", field="references"),
    "canaries": Need(parameter="n_canaries", file="canaries.csv", field="canaries"),
}


@dataclass
class AuditContext:
    """What an attack may read about one audited run.

    Attributes:
        keys: dataset, model, method, epsilon (float) and seed of the run.
        table: the run's scores.csv: split, label, score, logit and the sensitive attributes.
        epsilon: the claimed (target) ε; inf for a non-private run.
        delta: the run's δ, from its privacy card.
        attributes: attribute columns to break results down by (intersections joined by ':').
        settings: the benchmark's ``audit:`` settings.
        references: with need ``reference_models``: per row, ``row``, ``in_<k>`` and ``logit_<k>`` of each
            reference model k.
        canaries: with need ``canaries``: per canary, ``row``, ``included``, ``label``, ``logit``, ``score``
            and ``design`` (``membership``: ``included`` is whether the canary was trained on; ``label``: every
            canary was trained on, ``included`` is whether its training label was the flipped one).
        unit: what the run's guarantee protects (its card's unit: record, patient, label).
        relation: the neighbouring relation of the run's guarantee (its card's ``neighboring_relation``).
    """

    keys: dict
    table: pd.DataFrame
    epsilon: float
    delta: float
    attributes: list[str]
    settings: dict
    references: pd.DataFrame | None = None
    canaries: pd.DataFrame | None = None
    unit: str = "record"
    relation: str = "add_or_remove_one"


@dataclass
class AttackResult:
    """What an attack found on one run.

    Attributes:
        rows: one dict per metric: ``metric``, ``value`` and optionally ``ci_low``, ``ci_high``, ``n`` (and
            ``attribute``, ``group`` for a per-group row). A row with metric ``epsilon_lower_bound`` is a
            certified bound: the stage fails a finite-ε run it exceeds, and the report shows it as such.
        roc: ``fpr``, ``tpr``, ``n_nonmembers`` points for the report's low-FPR plot, or None.

    A row may carry a ``note`` (text: what was tested, e.g. the canary design), written to the table as is.
    """

    rows: list[dict] = field(default_factory=list)
    roc: pd.DataFrame | None = None


@dataclass(frozen=True)
class Attack:
    """A registered attack (see :func:`register_attack`)."""

    name: str
    label: str
    needs: frozenset[str]
    run: Callable[[AuditContext], AttackResult]
    description: str = ""
    units: frozenset[str] = MEMBERSHIP_UNITS

    def tests(self, unit: str) -> bool:
        """Whether the attack's guesses test the guarantee of a run whose privacy unit is ``unit``."""
        return unit in self.units


_ATTACKS: dict[str, Attack] = {}


def register_attack(
    name: str,
    *,
    label: str = "",
    needs: Iterable[str] = (),
    description: str = "",
    units: Iterable[str] = MEMBERSHIP_UNITS,
    force: bool = False,
):
    """Decorator registering ``fn(context) -> AttackResult`` as attack ``name`` (an ``audit.attacks`` entry).

    Args:
        name: the name a benchmark lists in ``audit.attacks`` and the audit table's ``attack`` column.
        label: what the report calls the attack (default: ``name``).
        needs: what the audit must train for it, a subset of :data:`NEEDS` (default: nothing, so the
            attack reads the run's own scores only). One name may be given as a plain string.
        description: one line for listings (default: the function's docstring).
        units: the privacy units whose guarantee the attack tests (default :data:`MEMBERSHIP_UNITS`); runs of
            other units get a ``skipped`` row instead (:func:`skip_reason`).
        force: replace an attack already registered as ``name``.

    Example:
        >>> @register_attack("toy", label="toy attack", force=True)
        ... def toy(ctx):
        ...     return AttackResult(rows=[{"metric": "auroc", "value": 0.5}])
        >>> get_attack("toy").label, get_attack("toy").needs
        ('toy attack', frozenset())
        >>> unregister_attack("toy")
    """
    needs = frozenset((needs,) if isinstance(needs, str) else needs)
    unknown = sorted(needs - set(NEEDS))
    if unknown:
        raise ValueError(f"attack {name!r}: needs {unknown} are not known; allowed: {list(NEEDS)}")
    units = frozenset((units,) if isinstance(units, str) else units)
    if not units:
        raise ValueError(f"attack {name!r}: units must name at least one privacy unit it tests")

    def decorate(fn):
        if name in _ATTACKS and not force:
            raise ValueError(f"attack {name!r} is already registered")
        _ATTACKS[name] = Attack(
            name=name,
            label=label or name,
            needs=needs,
            run=fn,
            description=description or (fn.__doc__ or "").strip(),
            units=units,
        )
        return fn

    return decorate


def unregister_attack(name: str) -> None:
    """Remove attack ``name`` from the registry (a test's or a notebook's temporary attack).

    A module still imported is not imported again, so an attack module that stays on disk stays
    unregistered in this process until its module is dropped from ``sys.modules``.
    """
    _ATTACKS.pop(name, None)


def _load_all() -> None:
    """Import every module of :data:`ATTACKS_PACKAGE`, so each ``@register_attack`` has run.

    Called on every lookup (not once): a module added to the package's path later is found too, and an
    import of an already imported module costs a dictionary lookup.
    """
    package = importlib.import_module(ATTACKS_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{ATTACKS_PACKAGE}.{info.name}")


def available_attacks() -> list[str]:
    """Names of the registered attacks, sorted.

    Example:
        >>> available_attacks()
        ['loss', 'one_run', 'rmia']
    """
    _load_all()
    return sorted(_ATTACKS)


def get_attack(name: str) -> Attack:
    """The attack registered as ``name``.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    _load_all()
    if name not in _ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; allowed: {sorted(_ATTACKS)}")
    return _ATTACKS[name]


def check_attack_names(names: Iterable[str], *, where: str = "audit.attacks") -> list[str]:
    """Refuse a name that is not a registered attack, naming the config key and the allowed values.

    Example:
        >>> check_attack_names(["loss", "lira"])
        Traceback (most recent call last):
        ...
        dpfair.errors.ConfigError: audit.attacks[1] = 'lira' is not a known attack; allowed: ['loss', 'one_run', 'rmia']
    """
    names = list(names)
    known = available_attacks()
    for i, name in enumerate(names):
        if name not in known:
            raise ConfigError(f"{where}[{i}] = {name!r} is not a known attack; allowed: {known}")
    return names


def needs_of(names: Iterable[str]) -> frozenset[str]:
    """Everything the attacks ``names`` need trained, together (empty when they read only scores).

    Example:
        >>> sorted(needs_of(["loss", "rmia"]))
        ['reference_models']
    """
    return frozenset().union(*(get_attack(n).needs for n in names))


def skip_reason(attack: Attack, *, unit: str, relation: str, method: str) -> str | None:
    """Why ``attack`` is not run on a run whose guarantee protects ``unit`` under ``relation``; None if it is run.

    Example:
        >>> skip_reason(get_attack("loss"), unit="label", relation="replace_one", method="label_rr")
        "not run: loss tests membership of a patient or record, but label_rr's guarantee covers one label (replace_one) only"
        >>> skip_reason(get_attack("loss"), unit="record", relation="add_or_remove_one", method="dpsgd") is None
        True
    """
    if attack.tests(unit):
        return None
    tested = " or ".join(sorted(attack.units))
    what = f"membership of a {tested}" if attack.units <= MEMBERSHIP_UNITS else f"the guarantee of a {tested}"
    return f"not run: {attack.name} tests {what}, but {method}'s guarantee covers one {unit} ({relation}) only"


def needed_for_unit(unit: str, names: Iterable[str] | None = None) -> frozenset[str]:
    """What the attacks ``names`` (default: every registered one) need trained for a run of privacy unit ``unit``.

    Only the attacks that test ``unit`` count: a need of an attack that will be skipped is not trained.

    Example:
        >>> sorted(needed_for_unit("label", ["loss", "rmia", "one_run"])), sorted(needed_for_unit("record", ["rmia"]))
        (['canaries'], ['reference_models'])
    """
    attacks = [get_attack(n) for n in (available_attacks() if names is None else names)]
    return frozenset().union(*(a.needs for a in attacks if a.tests(unit)))
