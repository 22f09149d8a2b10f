"""What the audit stage schedules for a benchmark: which cells, which seeds get audit models, and how many.

The configured attacks' ``needs`` (:mod:`dpfair.audit.registry`) decide it, never their names: no need, no
``audit_train`` job; each need trains only its own count (``audit.reference_models``, ``audit.canaries``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dpfair.audit.registry import DEFAULT_METHOD, NEEDS, check_attack_names, needs_of
from dpfair.errors import ConfigError

#: Files the audit_train rule writes per reference seed: one per need, and the trained models' records.
TRAINED_FILES = (*(need.file for need in NEEDS.values()), "models.json")


@dataclass
class AuditPlan:
    """The audit's schedule (:func:`audit_plan`).

    Attributes:
        settings: the benchmark's audit settings (``attacks`` empty when the audit is switched off).
        cells: dataset, model, method, epsilon of every audited cell.
        trained_seeds: seeds whose runs get audit models (empty when no configured attack needs any).
        methods: the audited methods.
        needs: what the configured attacks need trained, together (:data:`dpfair.audit.registry.NEEDS`).
    """

    settings: dict
    cells: list[dict]
    trained_seeds: list[int]
    methods: list[str]
    needs: frozenset[str] = field(default_factory=frozenset)

    @property
    def trained_files(self) -> tuple[str, ...]:
        """The files each trained seed's ``audit_train`` job writes (none without trained seeds)."""
        return TRAINED_FILES if self.trained_seeds else ()

    @property
    def training_settings(self) -> dict:
        """The ``audit_train`` counts: each need's setting where an attack needs it, else 0 (nothing trained)."""
        return {need.parameter: self.settings[name] if name in self.needs else 0 for name, need in NEEDS.items()}


def audit_plan(
    config: dict,
    *,
    seeds: list[int],
    epsilons: list[str],
    cells: list[tuple],
    methods: tuple[str, ...] = (DEFAULT_METHOD,),
) -> AuditPlan:
    """The audit's schedule from a validated config (schema defaults filled).

    Args:
        config: the benchmark config (its ``audit:`` and ``evaluation:`` sections are read).
        seeds: the benchmark's training seeds (``audit.reference_seeds`` must be among them).
        epsilons: the formatted ε grid.
        cells: (dataset, model) pairs run by every one of ``methods``, or (dataset, model, method) triples.
        methods: the methods of (dataset, model) cells.

    Raises:
        ConfigError: an unknown attack, or a reference seed the benchmark does not train.

    Example:
        >>> plan = audit_plan({"audit": {"attacks": ["loss", "rmia"], "reference_seeds": [0], "reference_models": 2,
        ...                    "canaries": 100}, "evaluation": {}}, seeds=[0, 1], epsilons=["1"], cells=[("d", "mlp")])
        >>> plan.cells, plan.trained_seeds, plan.training_settings
        ([{'dataset': 'd', 'model': 'mlp', 'method': 'dpsgd', 'epsilon': '1'}], [0], {'n_reference': 2, 'n_canaries': 0})
    """
    settings = dict(config["audit"])
    if not config.get("evaluation", {}).get("membership_inference", True):
        settings["attacks"] = []
    check_attack_names(settings["attacks"])
    for i, seed in enumerate(settings["reference_seeds"]):
        if seed not in seeds:
            raise ConfigError(
                f"audit.reference_seeds[{i}] = {seed} is not one of seeds {seeds}; pick seeds the benchmark trains"
            )
    needs = needs_of(settings["attacks"])
    # a cell is (dataset, model) run by every method, or (dataset, model, method) as the benchmark pairs them
    triples = [c if len(c) == 3 else (*c, meth) for c in cells for meth in ((None,) if len(c) == 3 else methods)]
    audited = [{"dataset": d, "model": m, "method": meth, "epsilon": e} for d, m, meth in triples for e in epsilons]
    methods = tuple(dict.fromkeys(t[2] for t in triples)) or tuple(methods)
    return AuditPlan(
        settings=settings,
        cells=audited if settings["attacks"] else [],
        trained_seeds=list(settings["reference_seeds"]) if needs else [],
        methods=list(methods),
        needs=needs,
    )
