"""How the grid is cut into jobs: the seeds one train, evaluate or audit_train job runs in one process.

``execution.seeds_per_job`` of a benchmark: ``"all"`` (one job per (dataset, model, method, ε) cell), ``1`` (one
job per seed) or ``N``. A job's label names its seeds; it is the stem of its log and of Snakemake's benchmark
record inside the cell's folder, so the compute-cost table can tell which runs a record covers.
"""

from __future__ import annotations

from dataclasses import dataclass


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
