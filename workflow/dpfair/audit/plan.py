"""What the audit stage schedules for a benchmark: which cells, which seeds get audit models, and how many.

The configured attacks' ``needs`` (:mod:`dpfair.audit.registry`) decide it, never their names: no need, no
``audit_train`` job; each need trains only its own count (``audit.reference_models``, ``audit.canaries``).
Which of those a method's runs can use (none of the reference models for a label-DP method, whose
membership attacks are skipped) is decided in the ``audit_train`` job
(:func:`dpfair.audit.train_models.train_audit_models`): it needs the mechanism's privacy unit, and looking a
mechanism up imports opacus, which the workflow must not import while it is parsed.
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
        ConfigError: an unknown attack, or (with the audit on) a reference seed the benchmark does not train.

    Example:
        >>> plan = audit_plan({"audit": {"attacks": ["loss", "rmia"], "reference_seeds": [0], "reference_models": 2,
        ...                    "canaries": 100}, "evaluation": {}}, seeds=[0, 1], epsilons=["1"], cells=[("d", "mlp")])
        >>> plan.cells, plan.trained_seeds, plan.training_settings
        ([{'dataset': 'd', 'model': 'mlp', 'method': 'dpsgd', 'epsilon': '1'}], [0], {'n_reference': 2, 'n_canaries': 0})
    """
    settings = dict(config["audit"])
    if not audit_is_on(config):
        settings["attacks"] = []
    check_attack_names(settings["attacks"])
    settings["reference_seeds"] = reference_seeds(config, seeds)
    check_reference_seeds(config, seeds)
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


def audit_is_on(config: dict) -> bool:
    """Whether the benchmark audits anything: ``evaluation.membership_inference`` true and ``audit.attacks`` not empty.

    Example:
        >>> audit_is_on({"audit": {"attacks": ["loss"]}, "evaluation": {"membership_inference": False}})
        False
    """
    attacks = (config.get("audit") or {}).get("attacks", True)
    return bool((config.get("evaluation") or {}).get("membership_inference", True)) and bool(attacks)


def reference_seeds(config: dict, seeds: list[int]) -> list[int]:
    """``audit.reference_seeds`` as set, else the benchmark's first seed (the schema sets no fixed default).

    Example:
        >>> reference_seeds({"audit": {}}, [3, 4]), reference_seeds({"audit": {"reference_seeds": [4]}}, [3, 4])
        ([3], [4])
    """
    audit = config.get("audit") or {}
    return list(audit["reference_seeds"]) if "reference_seeds" in audit else list(seeds[:1])


def check_reference_seeds(config: dict, seeds: list[int]) -> None:
    """Refuse reference seeds the benchmark does not train, or listed twice; nothing is checked with the audit off.

    Raises:
        ConfigError: one line naming ``audit.reference_seeds[i]``, its value and the benchmark's seeds.

    Example:
        >>> check_reference_seeds({"audit": {"attacks": [], "reference_seeds": [7]}}, [0, 1])  # audit off
        >>> check_reference_seeds({"audit": {"attacks": ["loss"], "reference_seeds": [7]}}, [0, 1])
        Traceback (most recent call last):
        ...
        dpfair.errors.ConfigError: audit.reference_seeds[0] = 7 is not one of seeds [0, 1]; pick seeds the benchmark trains, or leave audit.reference_seeds unset (the first seed, 0)
    """
    if not audit_is_on(config):
        return
    chosen = reference_seeds(config, seeds)
    for i, seed in enumerate(chosen):
        if seed not in seeds:
            raise ConfigError(
                f"audit.reference_seeds[{i}] = {seed} is not one of seeds {list(seeds)}; pick seeds the benchmark "
                f"trains, or leave audit.reference_seeds unset (the first seed, {seeds[0]})"
            )
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"audit.reference_seeds has duplicates: {chosen}; list each seed once")
