"""How the grid is cut into jobs: the runs one train, evaluate or audit_train job runs in one process.

``execution.seeds_per_job`` of a benchmark: ``"all"`` (every seed of a cell), ``1`` (one job per seed) or ``N``;
``execution.epsilons_per_job``: ``"all"`` (one job for every ε of a (dataset, model, method)) or ``1``. Train and
evaluate jobs follow both, audit_train jobs the seeds only. A job's labels name its ε and its seeds; they are
the folder and stem of its log and of Snakemake's benchmark record, so the compute-cost table can tell which
runs a record covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dpfair.errors import ConfigError


@dataclass(frozen=True)
class SeedGroup:
    """The seeds one job runs, one after another in one process (``execution.seeds_per_job``).

    ``seeds`` is ``None`` for one job per seed: the rule then has a ``{seed}`` wildcard, as a cluster giving each
    job its own GPU wants. ``whole`` says the group is every seed of its cell (the default), which keeps the
    stage's plain rule name (``train``), so profiles that set resources by rule name need no change.
    """

    seeds: tuple[int, ...] | None
    whole: bool = True

    @property
    def label(self) -> str:
        """The job's log and benchmark-record stem inside its cell folder: ``seed-{seed}`` or ``seeds-0-1-2``."""
        return "seed-{seed}" if self.seeds is None else "seeds-" + "-".join(map(str, self.seeds))

    def rule_name(self, stage: str) -> str:
        """``stage`` for one job per cell or per seed; ``<stage>_seeds_<a>_<b>…`` for a part of a cell's seeds."""
        if self.seeds is None or self.whole:
            return stage
        return f"{stage}_seeds_" + "_".join(map(str, self.seeds))

    def seeds_of(self, wildcards) -> list[int]:
        """The seeds of one of the group's jobs (its wildcards give the seed of a per-seed job)."""
        return [int(wildcards.seed)] if self.seeds is None else list(self.seeds)


def seed_groups(seeds: list[int], per_job: int | str) -> list[SeedGroup]:
    """Cut ``seeds`` into the groups one job each runs; ``per_job`` is ``"all"`` or a whole number ≥ 1.

    Example:
        >>> [g.label for g in seed_groups([0, 1, 2], "all")], [g.label for g in seed_groups([0, 1, 2], 2)]
        (['seeds-0-1-2'], ['seeds-0-1', 'seeds-2'])
        >>> [g.rule_name("train") for g in seed_groups([0, 1, 2], 2)], seed_groups([0, 1, 2], 1)[0].label
        (['train_seeds_0_1', 'train_seeds_2'], 'seed-{seed}')
    """
    if not seeds:
        return []
    if per_job == 1:
        return [SeedGroup(None)]
    size = len(seeds) if per_job == "all" else int(per_job)
    chunks = [tuple(seeds[i : i + size]) for i in range(0, len(seeds), size)]
    return [SeedGroup(c, whole=len(chunks) == 1) for c in chunks]


def group_label(seed: int, groups: list[SeedGroup]) -> str:
    """The label (log and benchmark-record stem) of the job that runs ``seed``."""
    for group in groups:
        if group.seeds is None:
            return group.label.format(seed=seed)
        if seed in group.seeds:
            return group.label
    raise KeyError(f"seed {seed} is in no job's seeds {[g.seeds for g in groups]}")


def label_seeds(label: str) -> list[int]:
    """The seeds a job label names (the inverse of :attr:`SeedGroup.label`).

    Example:
        >>> label_seeds("seed-3"), label_seeds("seeds-0-1-2")
        ([3], [0, 1, 2])
    """
    kind, _, rest = label.partition("-")
    if kind not in ("seed", "seeds") or not rest:
        raise ValueError(f"{label!r} is not a job label (seed-<s> or seeds-<a>-<b>-…)")
    return [int(s) for s in rest.split("-")]


@dataclass(frozen=True)
class EpsilonGroup:
    """The ε values one job runs for its (dataset, model, method), in the grid's ε order (``execution.epsilons_per_job``).

    ``epsilons`` is ``None`` for one job per ε: the rule then has an ``{epsilon}`` wildcard. With one job for
    all ε, a grid whose methods all run every ε has one group; a method that shares another's ε = ∞ arm (the
    fairness mitigations run dpsgd's) runs the finite ε only, in a group of its own, whose rule is named
    ``<stage>_<name>``. ``datasets`` and ``methods`` are what the group's rule constrains its wildcards to.
    """

    epsilons: tuple[str, ...] | None
    datasets: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    name: str = ""

    @property
    def label(self) -> str:
        """The job's folder in its (dataset, model, method) folder of logs and records: ``eps-{epsilon}`` or ``eps-1_3_inf``."""
        return "eps-{epsilon}" if self.epsilons is None else "eps-" + "_".join(self.epsilons)

    def constraints(self) -> dict[str, str]:
        """Wildcard constraints of the group's rule (none for one job per ε)."""
        if self.epsilons is None:
            return {}
        return {"dataset": "|".join(map(re.escape, self.datasets)), "method": "|".join(map(re.escape, self.methods))}


@dataclass(frozen=True)
class JobGroup:
    """What one train or evaluate job runs: its ε group times its seed group, ε-major (the runs of an ε together)."""

    epsilons: EpsilonGroup
    seeds: SeedGroup

    def rule_name(self, stage: str) -> str:
        """The seed group's rule name (``train``, ``train_seeds_0_1``), with the ε group's name after the stage."""
        name = self.seeds.rule_name(stage)
        return name if not self.epsilons.name else f"{stage}_{self.epsilons.name}{name[len(stage) :]}"

    @property
    def label(self) -> str:
        """``<ε label>/<seed label>``: the job's log and benchmark-record stem inside its (dataset, model, method)."""
        return f"{self.epsilons.label}/{self.seeds.label}"

    def patterns(self) -> list[tuple[str, str]]:
        """The (ε, seed) of each of the job's runs as path patterns: a value, or ``{epsilon}`` / ``{seed}``."""
        epsilons = ["{epsilon}"] if self.epsilons.epsilons is None else list(self.epsilons.epsilons)
        seeds = ["{seed}"] if self.seeds.seeds is None else [str(s) for s in self.seeds.seeds]
        return [(e, s) for e in epsilons for s in seeds]

    def epsilons_of(self, wildcards) -> list[str]:
        """Each run's ε, in the order of :meth:`patterns` (the rule script pairs outputs with runs by index)."""
        return [wildcards.epsilon if e == "{epsilon}" else e for e, _ in self.patterns()]

    def seeds_of(self, wildcards) -> list[int]:
        """Each run's seed, in the order of :meth:`patterns`."""
        return [int(wildcards.seed) if s == "{seed}" else int(s) for _, s in self.patterns()]


def epsilon_groups(epsilons_of: dict[tuple[str, str], list[str]], per_job: int | str) -> list[EpsilonGroup]:
    """The ε groups of a grid whose (dataset, method) pairs run ``epsilons_of[pair]``; ``per_job`` is ``"all"`` or 1.

    Pairs running the same ε share a group; the group of the most ε (then the most pairs) keeps the plain rule
    name, one running the others' ε less ∞ is ``private``, any other ``eps<k>``. Each group's rule constrains
    ``dataset`` and ``method`` to its pairs' values, so no two rules may match one run: a grid where that would
    happen (a method running other ε on another dataset) is refused with the key to set.

    Example:
        >>> groups = epsilon_groups({("d", "dpsgd"): ["1", "inf"], ("d", "dpsgd_f"): ["1"]}, "all")
        >>> [(g.epsilons, g.methods, g.name, g.label) for g in groups]
        [(('1', 'inf'), ('dpsgd',), '', 'eps-1_inf'), (('1',), ('dpsgd_f',), 'private', 'eps-1')]
        >>> epsilon_groups({("d", "dpsgd"): ["1", "inf"]}, 1)
        [EpsilonGroup(epsilons=None, datasets=(), methods=(), name='')]
    """
    if per_job == 1 or not epsilons_of:
        return [EpsilonGroup(None)]
    by_epsilons: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for pair, epsilons in epsilons_of.items():
        by_epsilons.setdefault(tuple(epsilons), []).append(pair)
    order = sorted(by_epsilons, key=lambda e: (-len(e), -len(by_epsilons[e])))
    main = order[0]
    groups = []
    for k, epsilons in enumerate(order):
        pairs = by_epsilons[epsilons]
        name = "" if k == 0 else "private" if epsilons == tuple(e for e in main if e != "inf") else f"eps{k}"
        datasets, methods = tuple(dict.fromkeys(d for d, _ in pairs)), tuple(dict.fromkeys(m for _, m in pairs))
        groups.append(EpsilonGroup(epsilons, datasets, methods, name))
    for group in groups:
        for other in groups:
            clash = [
                p
                for p in by_epsilons[other.epsilons]
                if other is not group and p[0] in group.datasets and p[1] in group.methods
            ]
            if clash:
                raise ConfigError(
                    f"execution.epsilons_per_job = all: {clash[0][1]} runs epsilons {list(other.epsilons)} on "
                    f"{clash[0][0]} but {list(group.epsilons)} on another dataset, which one job per (dataset, model, "
                    "method) cannot tell apart; set execution.epsilons_per_job: 1"
                )
    return groups


def label_epsilons(label: str) -> list[str]:
    """The ε values an ε label names (the inverse of :attr:`EpsilonGroup.label`).

    Example:
        >>> label_epsilons("eps-3"), label_epsilons("eps-1_3_10_inf")
        (['3'], ['1', '3', '10', 'inf'])
    """
    kind, _, rest = label.partition("-")
    if kind != "eps" or not rest or "" in rest.split("_"):
        raise ValueError(f"{label!r} is not an epsilon label (eps-<e> or eps-<a>_<b>_…)")
    return rest.split("_")
