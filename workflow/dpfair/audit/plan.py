"""What the audit stage schedules for a benchmark: which cells, which seeds get reference models and canaries."""

from __future__ import annotations

from dataclasses import dataclass

from dpfair.audit.registry import DEFAULT_METHOD, available_attacks, get_attack
from dpfair.errors import ConfigError

#: Files the audit_train rule writes per reference seed.
TRAINED_FILES = ("references.csv.gz", "canaries.csv", "models.json")


@dataclass
class AuditPlan:
    settings: dict                 # the benchmark's audit settings (attacks empty when switched off)
    cells: list[dict]              # dataset, model, method, epsilon of every audited cell
    trained_seeds: list[int]       # seeds whose runs get reference models and a canary run
    methods: list[str]

    @property
    def trained_files(self) -> tuple[str, ...]:
        return TRAINED_FILES if self.trained_seeds else ()

    @property
    def training_settings(self) -> dict:
        return {"n_reference": self.settings["reference_models"] if "rmia" in self.settings["attacks"] else 0,
                "n_canaries": self.settings["canaries"] if "one_run" in self.settings["attacks"] else 0}


def audit_plan(config: dict, *, seeds: list[int], epsilons: list[str], cells: list[tuple],
               methods: tuple[str, ...] = (DEFAULT_METHOD,)) -> AuditPlan:
    """The audit's schedule from a validated config (schema defaults filled).

    Example:
        >>> plan = audit_plan({"audit": {"attacks": ["loss", "rmia"], "reference_seeds": [0], "reference_models": 2,
        ...                    "canaries": 100}, "evaluation": {}}, seeds=[0, 1], epsilons=["1"], cells=[("d", "mlp")])
        >>> plan.cells, plan.trained_seeds, plan.training_settings
        ([{'dataset': 'd', 'model': 'mlp', 'method': 'dpsgd', 'epsilon': '1'}], [0], {'n_reference': 2, 'n_canaries': 0})
    """
    settings = dict(config["audit"])
    if not config.get("evaluation", {}).get("membership_inference", True):
        settings["attacks"] = []
    known = available_attacks()
    for i, name in enumerate(settings["attacks"]):
        if name not in known:
            raise ConfigError(f"audit.attacks[{i}] = {name!r} is not a known attack; allowed: {known}")
    for i, seed in enumerate(settings["reference_seeds"]):
        if seed not in seeds:
            raise ConfigError(f"audit.reference_seeds[{i}] = {seed} is not one of seeds {seeds}; pick seeds the benchmark trains")
    needs_training = any(get_attack(a).needs != "scores" for a in settings["attacks"])
    # a cell is (dataset, model) run by every method, or (dataset, model, method) as the benchmark pairs them
    triples = [c if len(c) == 3 else (*c, meth) for c in cells for meth in ((None,) if len(c) == 3 else methods)]
    audited = [{"dataset": d, "model": m, "method": meth, "epsilon": e} for d, m, meth in triples for e in epsilons]
    methods = tuple(dict.fromkeys(t[2] for t in triples)) or tuple(methods)
    return AuditPlan(
        settings=settings, cells=audited if settings["attacks"] else [],
        trained_seeds=list(settings["reference_seeds"]) if needs_training else [], methods=list(methods),
    )
