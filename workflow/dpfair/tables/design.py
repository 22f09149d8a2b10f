"""Size a benchmark: the MDE of each primary row at the benchmark's seeds and test rows, and the seeds a target needs.

Every primary row of ``results/summary/gap_changes.csv`` is a seed-mean contrast over one shared test set
(:mod:`dpfair.fairness.contrasts`): se² = S²/k + c̄, S² the between-seed variance of the per-seed differences
(``var_seed``), c̄ the mean bootstrap covariance of two seeds' differences (``cov_test``), v the bootstrap
variance of one seed's difference (``var_test``). S² holds the training (seed) variance σ_t² and the part of the test noise the seeds do not share, v − c, so

    σ_t² = max(0, S² − (v − c)).

**Scaling model.** σ_t² does not depend on the test set; v and c are test-sampling variances and scale as
1/n_test (n₀ the pilot's test rows, n the design's). At k seeds and n test rows

    se²(k, n) = (σ_t² + (v − c)·n₀/n)/k + c·n₀/n,

and MDE(k, n) = (c_a + q_power)·se(k, n) (:func:`~dpfair.fairness.contrasts.minimum_detectable`): the
δ the contrast's own small-k test detects with that power at ν = k − 1 and the plan's nuisance ratio
r = c·n₀/n / ((σ_t² + (v − c)·n₀/n)/k) (:func:`design_ratio`), its power exact over the seed spread, with a = alpha/m for a primary row (m the dataset's primary family size: Holm's first step, the level the
smallest p must reach) and a = alpha otherwise. At the pilot's own k and n this gives back the pilot's se
(unless S² < v − c, where σ_t² is truncated at 0 and the design's se is the larger).

**Seeds needed** for a target: the smallest k in 2..200 with MDE(k, n) ≤ target. The shared test noise
c·n₀/n does not shrink with seeds: when (z_{1−a/2} + z_{power})·sqrt(c·n₀/n), the MDE with infinitely many
seeds, exceeds the target, no number of seeds reaches it at these test rows, and :func:`design_table` gives
the test rows that would instead (at the design's seeds, or at more where the seed noise alone is too large).

**Without a pilot** (or for a row the pilot lacks) the components are stated assumptions
(:class:`Assumptions`), for a two-group signed AUROC gap only:

* the test variance of one run's gap, V = Var(AUROC_A) + Var(AUROC_B), each group's from Hanley & McNeil
  (Radiology 1982;143:29-36) at an assumed AUROC and the group's positives and negatives
  (:func:`hanley_mcneil_variance`); the groups' sizes from the pilot's subgroups table or the prepared
  dataset when there is one, else two equal groups at a stated prevalence. (Its Q₁, Q₂ come from exponential
  scores; against a bootstrap of simulated binormal scores at AUROC 0.8 it is within 5% with balanced classes
  and with a binormal slope b = 0.67 at 30% prevalence, but 22% above it with equal variances at 30%
  prevalence: tests/test_design.py);
* v = 2V for one seed's difference (the ε and ∞ runs' test errors treated as uncorrelated: the larger v),
  c = ρ·v with ρ an assumed between-seed correlation of the differences' test errors;
* σ_t = an assumed seed standard deviation of one seed's gap change.

τ² rows (three or more groups) and other metrics get no assumed components: they need a pilot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dpfair.fairness.contrasts import minimum_detectable
from dpfair.fairness.gap_changes import DEFAULT_METHOD, SIGNED, TAU2, margin_for
from dpfair.privacy.params import format_epsilon

#: Columns a pilot gap_changes.csv (:data:`~dpfair.fairness.gap_changes.GAP_CHANGE_COLUMNS`) must have.
PILOT_COLUMNS = [
    "dataset",
    "model",
    "attribute",
    "metric",
    "epsilon",
    "estimand",
    "n_seeds",
    "var_seed",
    "var_test",
    "cov_test",
]
#: The key of a primary row (a pilot without ``method`` is read as gap_changes' default method's).
ROW_KEYS = ["dataset", "model", "method", "attribute", "metric", "epsilon"]
MAX_SEEDS = 200
DESIGN_COLUMNS = [
    *ROW_KEYS,
    "estimand",
    "source",
    "family_size",
    "row_alpha",
    "seeds",
    "test_rows",
    "pilot_seeds",
    "pilot_test_rows",
    "var_seed_train",
    "var_test",
    "cov_test",
    "se",
    "df",
    "mde",
    "mde_limit",
    "target",
    "margin",
    "seeds_needed",
    "reachable",
    "test_rows_needed",
    "test_rows_needed_seeds",
    "note",
]


@dataclass(frozen=True)
class Assumptions:
    """Stated values for a row without a pilot (see the module docstring).

    ``auroc``: every group's AUROC in every run; ``prevalence``: positives' share of each group when the
    group sizes are unknown (two equal groups); ``seed_sd``: σ_t, the seed standard deviation of one
    seed's gap change (AUROC units); ``test_correlation``: ρ, c = ρ·v.
    """

    auroc: float = 0.8
    prevalence: float = 0.3
    seed_sd: float = 0.02
    test_correlation: float = 0.5


@dataclass(frozen=True)
class GroupSizes:
    """One dataset's test groups as a source counted them: ``groups[attribute][group] = (n, n_positive)``.

    ``test_rows``: the size of the test set they were counted on (group sizes scale with the design's test
    rows); ``groups`` lists the usable groups only (not flagged); ``source``: where they come from, in words.
    """

    test_rows: int
    groups: Mapping[str, Mapping[str, tuple[int, int]]]
    source: str


def hanley_mcneil_variance(auroc: float, n_positive: float, n_negative: float) -> float:
    """Var(AUROC) of Hanley & McNeil (Radiology 1982), eq. 2, with their Q₁ = A/(2 − A), Q₂ = 2A²/(1 + A).

    Var = [A(1 − A) + (n₊ − 1)(Q₁ − A²) + (n₋ − 1)(Q₂ − A²)] / (n₊ n₋).

    Example:
        >>> round(hanley_mcneil_variance(0.8, 50, 150) ** 0.5, 4)
        0.0401
    """
    a = float(auroc)
    if not (0 < a < 1) or n_positive < 1 or n_negative < 1:
        return math.nan
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a)) / (n_positive * n_negative)


def signed_gap_variance(groups: Sequence[tuple[float, float]], *, auroc: float) -> float:
    """Test variance of one run's two-group AUROC gap: the two groups' Hanley–McNeil variances summed.

    ``groups``: (n, n_positive) of each of the two groups (disjoint rows, so independent test errors).

    Example:
        >>> v = signed_gap_variance([(400, 120), (200, 60)], auroc=0.8)
        >>> round(v, 6) == round(hanley_mcneil_variance(0.8, 120, 280) + hanley_mcneil_variance(0.8, 60, 140), 6)
        True
    """
    if len(groups) != 2:
        raise ValueError(f"a signed gap has two groups, got {len(groups)}")
    return float(sum(hanley_mcneil_variance(auroc, pos, n - pos) for n, pos in groups))


def components_from_pilot(row: Mapping, *, assumptions: Assumptions) -> dict:
    """σ_t², v, c and the pilot's k from one pilot row (``var_seed``, ``var_test``, ``cov_test``, ``n_seeds``).

    With fewer than two pilot seeds S² does not exist (σ_t from ``assumptions.seed_sd``, signed rows only)
    and c̄ has no seed pairs (c = ρ·v).

    Example:
        >>> c = components_from_pilot({"var_seed": 5e-4, "var_test": 3e-4, "cov_test": 1e-4, "n_seeds": 3,
        ...                            "estimand": "signed"}, assumptions=Assumptions())
        >>> round(c["var_seed_train"], 6), c["note"]
        (0.0003, '')
    """
    k0 = int(row["n_seeds"]) if _finite(row.get("n_seeds")) else 0
    s2, v, c = (
        float(row[name]) if _finite(row.get(name)) else math.nan for name in ("var_seed", "var_test", "cov_test")
    )
    notes = []
    if k0 < 2 or not math.isfinite(c):
        c = assumptions.test_correlation * v
        notes.append(f"pilot has one seed: c = {assumptions.test_correlation:g}·v (assumed)")
    if k0 < 2 or not math.isfinite(s2):
        if row.get("estimand") == SIGNED:
            train = assumptions.seed_sd**2
            notes.append(f"seed sd {assumptions.seed_sd:g} (assumed)")
        else:
            train = math.nan
            notes.append("pilot has one seed: no seed variance for this estimand")
    else:
        c = max(c, 0.0) if math.isfinite(c) else c  # floored as the contrast floors it, so the pilot's se comes back
        train = s2 - (v - c)
        if train < 0:
            notes.append("S² < v − c in the pilot: seed variance taken as 0")
            train = 0.0
    return {"var_seed_train": float(train), "var_test": v, "cov_test": c, "pilot_seeds": k0, "note": "; ".join(notes)}


def assumed_components(groups: Sequence[tuple[float, float]], *, assumptions: Assumptions) -> dict:
    """σ_t², v, c of a signed AUROC gap change from :class:`Assumptions` (module docstring), at ``groups``' sizes.

    Example:
        >>> c = assumed_components([(300, 90), (300, 90)], assumptions=Assumptions())
        >>> round(c["cov_test"] / c["var_test"], 2), round(c["var_seed_train"], 6)
        (0.5, 0.0004)
    """
    v = 2 * signed_gap_variance(groups, auroc=assumptions.auroc)
    return {
        "var_seed_train": assumptions.seed_sd**2,
        "var_test": v,
        "cov_test": assumptions.test_correlation * v,
        "pilot_seeds": 0,
        "note": "",
    }


def design_se(*, var_seed_train: float, var_test: float, cov_test: float, seeds: int, scale: float = 1.0) -> float:
    """se(k, n) = sqrt((σ_t² + (v − c)·s)/k + c·s), s = n₀/n the test-size scale (module docstring).

    Example:
        >>> round(design_se(var_seed_train=3e-4, var_test=3e-4, cov_test=1e-4, seeds=3), 6)  # = sqrt(5e-4/3 + 1e-4)
        0.01633
    """
    values = (var_seed_train, var_test, cov_test, scale)
    if seeds < 1 or not all(_finite(x) for x in values):
        return math.nan
    cov_test = max(cov_test, 0.0)  # floored as the contrast floors it
    se2 = (var_seed_train + (var_test - cov_test) * scale) / seeds + cov_test * scale
    return math.sqrt(se2) if se2 > 0 else math.nan


def design_df(*, seeds: int, **_) -> float:
    """ν = k − 1, the df of the seed spread the contrast's test refers to (NaN below two seeds)."""
    return float(seeds - 1) if seeds >= 2 else math.nan


def design_ratio(*, var_seed_train: float, var_test: float, cov_test: float, seeds: int, scale: float = 1.0) -> float:
    """The plan's nuisance ratio r = c·s/(σ²/k), σ² = σ_t² + (v − c)·s the seed spread's expectation."""
    if seeds < 2 or not all(_finite(x) for x in (var_seed_train, var_test, cov_test, scale)):
        return math.nan
    cov_test = max(cov_test, 0.0)
    spread = var_seed_train + (var_test - cov_test) * scale
    return float(cov_test * scale * seeds / spread) if spread > 0 else math.inf


def design_mde(*, seeds: int, alpha: float, power: float, **components) -> float:
    """MDE(k, n) at level ``alpha`` (already divided by m for a primary row) and ``power``."""
    if seeds < 2:
        return math.nan
    se = design_se(seeds=seeds, **components)
    ratio = design_ratio(seeds=seeds, **components)
    return minimum_detectable(se, design_df(seeds=seeds), alpha=alpha, power=power, ratio=ratio)


def seeds_needed(*, target: float, alpha: float, power: float, max_seeds: int = MAX_SEEDS, **components) -> float:
    """The smallest k in 2..``max_seeds`` with MDE(k, n) ≤ ``target``; NaN when none (see :func:`mde_limit`).

    Example:
        >>> parts = dict(var_seed_train=4e-4, var_test=2e-4, cov_test=5e-5)
        >>> seeds_needed(target=0.05, alpha=0.05, power=0.8, **parts), seeds_needed(target=0.03, alpha=0.05, power=0.8, **parts)
        (5, 12)
    """

    def reaches(k: int) -> bool:
        mde = design_mde(seeds=k, alpha=alpha, power=power, **components)
        return math.isfinite(mde) and mde <= target

    if not reaches(max_seeds):
        return math.nan
    low, high = 1, max_seeds  # the MDE falls with k: bisect for the first k that reaches the target
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


def mde_limit(*, cov_test: float, alpha: float, power: float, scale: float = 1.0, **_) -> float:
    """The MDE with infinitely many seeds, (z_{1−a/2} + z_power)·sqrt(c·s): the floor the shared test noise sets."""
    if not (_finite(cov_test) and _finite(scale)):
        return math.nan
    return float((_t(1 - alpha / 2, math.inf) + _t(power, math.inf)) * math.sqrt(max(cov_test * scale, 0.0)))


def rows_needed(*, target: float, seeds: int, alpha: float, power: float, test_rows: float, **components) -> float:
    """Test rows n' with MDE(k, n') ≤ ``target`` at ``seeds`` = k (NaN when seed noise alone exceeds it).

    ``test_rows``: the design's n (at which ``components`` and their ``scale`` apply). n' enters through
    the scale s' = s·n/n' of the test terms; the MDE falls as n' grows, towards the seed noise's own
    (c_a + q_power at r = 0)·σ_t/√k, so n' is found by bisection on log n'.
    """
    if seeds < 2 or not _finite(test_rows):
        return math.nan
    scale = components.pop("scale", 1.0)
    if not all(_finite(components.get(k)) for k in ("var_seed_train", "var_test", "cov_test")) or not _finite(scale):
        return math.nan

    def mde_at(rows: float) -> float:
        return design_mde(seeds=seeds, alpha=alpha, power=power, scale=scale * test_rows / rows, **components)

    floor = minimum_detectable(
        math.sqrt(max(components["var_seed_train"], 0.0) / seeds), seeds - 1, alpha=alpha, power=power
    )
    if not (math.isfinite(floor) and floor < target) and components["var_seed_train"] > 0:
        return math.nan
    low, high = 1.0, 1.0
    while not mde_at(high) <= target:
        high *= 2
        if high > 1e12:
            return math.nan
    while high - low > max(1.0, 1e-4 * high):
        mid = math.sqrt(low * high) if high / low > 2 else (low + high) / 2
        low, high = (low, mid) if mde_at(mid) <= target else (mid, high)
    return float(math.ceil(high))


def _rows_for_target(*, target, seeds, alpha, power, test_rows, **components) -> tuple[float, float]:
    """(k, test rows reaching ``target`` at k): k = ``seeds`` when possible, else the half-budget k (see design_table)."""
    rows = rows_needed(target=target, seeds=seeds, alpha=alpha, power=power, test_rows=test_rows, **components)
    if math.isfinite(rows) or not _finite(components.get("var_seed_train")):
        return (float(seeds) if math.isfinite(rows) else math.nan), rows
    train = components["var_seed_train"]
    for k in range(max(seeds, 2), MAX_SEEDS + 1):
        if minimum_detectable(math.sqrt(train / k), k - 1, alpha=alpha, power=power) <= target / math.sqrt(2):
            return float(k), rows_needed(
                target=target, seeds=k, alpha=alpha, power=power, test_rows=test_rows, **components
            )
    return math.nan, math.nan


def pilot_test_rows(subgroups: pd.DataFrame) -> dict[str, int]:
    """Test rows per dataset from a subgroups table: one run's groups of an attribute, their ``n`` summed.

    The largest sum over the run's attributes (an attribute's groups cover the test set, ``unknown``
    included; an intersection may miss empty cells).

    Example:
        >>> sg = pd.DataFrame({"dataset": "d", "model": "m", "method": "dpsgd", "epsilon": 1.0, "seed": 0,
        ...                    "attribute": ["sex", "sex", "race"], "group": ["f", "m", "w"], "n": [40, 60, 100]})
        >>> pilot_test_rows(sg)
        {'d': 100}
    """
    out = {}
    run_keys = [c for c in ("model", "method", "epsilon", "seed") if c in subgroups.columns]
    for dataset, part in subgroups.groupby("dataset", sort=False):
        first = part.iloc[0]
        run = part
        for key in run_keys:
            run = run[run[key] == first[key]]
        out[str(dataset)] = int(run.groupby("attribute")["n"].sum().max())
    return out


def group_sizes_from_subgroups(
    subgroups: pd.DataFrame, *, source: str, min_class_size: int = 0
) -> dict[str, GroupSizes]:
    """Per dataset, one run's usable groups as :class:`GroupSizes`.

    Usable: ``flagged`` false where the column exists, and at least ``min_class_size`` positives and negatives
    (``evaluation.min_class_size``: AUROC is label-conditional).
    """
    out = {}
    rows = pilot_test_rows(subgroups)
    run_keys = [c for c in ("model", "method", "epsilon", "seed") if c in subgroups.columns]
    for dataset, part in subgroups.groupby("dataset", sort=False):
        first = part.iloc[0]
        for key in run_keys:
            part = part[part[key] == first[key]]
        if "flagged" in part.columns:
            part = part[~part["flagged"].astype(str).str.lower().isin(["true", "1"])]
        groups: dict[str, dict[str, tuple[int, int]]] = {}
        for r in part.to_dict("records"):
            if "n_positive" not in r or not _finite(r["n_positive"]):
                continue
            if min(int(r["n_positive"]), int(r["n"]) - int(r["n_positive"])) < min_class_size:
                continue
            groups.setdefault(str(r["attribute"]), {})[str(r["group"])] = (int(r["n"]), int(r["n_positive"]))
        out[str(dataset)] = GroupSizes(test_rows=rows[str(dataset)], groups=groups, source=source)
    return out


def group_sizes_from_meta(
    meta: Mapping, *, min_group_size: int, source: str, min_class_size: int = 0
) -> GroupSizes | None:
    """A prepared dataset's ``dataset.json`` test groups (``group_sizes``, ``group_positives``) as :class:`GroupSizes`.

    Usable groups: at least ``min_group_size`` rows and ``min_class_size`` positives and negatives.
    """
    try:
        rows = int(meta["n"]["test"])
    except (KeyError, TypeError, ValueError):
        return None
    groups = {}
    positives = meta.get("group_positives") or {}
    for attribute, sizes in (meta.get("group_sizes") or {}).items():
        test, pos = sizes.get("test", {}), (positives.get(attribute) or {}).get("test")
        if pos is None:
            continue
        groups[attribute] = {
            g: (int(n), int(pos[g]))
            for g, n in test.items()
            if g in pos and int(n) >= min_group_size and min(int(pos[g]), int(n) - int(pos[g])) >= min_class_size
        }
    return GroupSizes(test_rows=rows, groups=groups, source=source)


def design_table(
    *,
    primary_rows: pd.DataFrame,
    pilot: pd.DataFrame | None,
    seeds: int,
    test_rows: Mapping[str, int | None],
    pilot_test_rows: Mapping[str, int | None] | None = None,
    groups: Mapping[str, GroupSizes] | None = None,
    assumptions: Assumptions = Assumptions(),
    alpha: float = 0.05,
    power: float = 0.8,
    target_mde: float = 0.05,
    margin: float = 0.03,
) -> pd.DataFrame:
    """One row per primary row: se, MDE and the seeds a target MDE needs, at ``seeds`` and ``test_rows``.

    Args:
        primary_rows: the benchmark's primary rows (``dataset, model, method, attribute, metric, epsilon``),
            the family of each dataset (its size m sets the level alpha/m).
        pilot: a gap_changes table (:data:`PILOT_COLUMNS`) or None; rows it lacks use ``assumptions``.
        seeds: the design's k.
        test_rows: the design's n per dataset (None: unknown; a pilot row is then scaled as the pilot's
            own, s = 1).
        pilot_test_rows: the pilot's n₀ per dataset.
        groups: per dataset, its test groups for the assumed components (missing: two equal groups at
            ``assumptions.prevalence``).
        assumptions: the stated values of rows without a pilot (:class:`Assumptions`).
        alpha: the two-sided level before the family's division by m.
        power: the power of the MDE.
        target_mde: the MDE to size for, in the row's units (for a τ² row its square halved: the τ² of a two-group
            gap of that size).
        margin: the equivalence margin, in the same units (m²/2 for τ²).

    Returns:
        :data:`DESIGN_COLUMNS`; ``seeds_needed`` NaN with ``reachable`` false when the shared test noise alone
        puts the MDE above the target. ``test_rows_needed``: the test rows that reach the target at
        ``test_rows_needed_seeds`` seeds, the design's k where the seed noise leaves room, else the fewest
        seeds whose seed part alone is at most target/√2 (half the variance budget).
    """
    pilot_test_rows = dict(pilot_test_rows or {})
    groups = dict(groups or {})
    lookup = _pilot_lookup(pilot) if pilot is not None else {}
    family_size = primary_rows.groupby("dataset")["model"].transform("size")
    out = []
    for (_, spec), m in zip(primary_rows.iterrows(), family_size):
        key = tuple(spec[k] if k != "epsilon" else float(spec[k]) for k in ROW_KEYS)
        dataset = spec["dataset"]
        n, n0 = test_rows.get(dataset), pilot_test_rows.get(dataset)
        row = {k: spec[k] for k in ROW_KEYS}
        row_alpha = alpha / m
        notes = []
        found = lookup.get(key)
        if found is not None:
            estimand = str(found["estimand"])
            parts = components_from_pilot(found, assumptions=assumptions)
            source = "pilot"
            if n is None or n0 is None:
                scale = 1.0
                if n is not None and n0 is None:
                    scale = math.nan
                    notes.append("the pilot's test rows are unknown: cannot scale to other test rows")
            else:
                scale = n0 / n
        else:
            estimand, parts, source, scale = _assumed(spec, n, groups.get(dataset), assumptions, notes)
        if parts.get("note"):
            notes.insert(0, parts["note"])
        comps = {k: parts[k] for k in ("var_seed_train", "var_test", "cov_test")}
        target, row_margin = margin_for(estimand, target_mde), margin_for(estimand, margin)
        se = design_se(seeds=seeds, scale=scale, **comps)
        mde = design_mde(seeds=seeds, alpha=row_alpha, power=power, scale=scale, **comps)
        limit = mde_limit(alpha=row_alpha, power=power, scale=scale, **comps)
        k_needed = seeds_needed(target=target, alpha=row_alpha, power=power, scale=scale, **comps)
        reachable = bool(math.isfinite(limit) and limit < target)
        if math.isfinite(se) and not math.isfinite(k_needed) and reachable:
            notes.append(f"more than {MAX_SEEDS} seeds")
        if seeds < 2:
            notes.append("one seed: no MDE (a verdict needs two or more seeds)")
        k_rows, rows = _rows_for_target(
            target=target, seeds=seeds, alpha=row_alpha, power=power, test_rows=n if n is not None else n0,
            scale=scale, **comps,
        )  # fmt: skip
        out.append(
            {
                **row,
                "estimand": estimand,
                "source": source,
                "family_size": int(m),
                "row_alpha": row_alpha,
                "seeds": int(seeds),
                "test_rows": n if n is not None else n0,
                "pilot_seeds": parts["pilot_seeds"] or math.nan,
                "pilot_test_rows": n0 if source == "pilot" else math.nan,
                **comps,
                "se": se,
                "df": design_df(seeds=seeds),
                "mde": mde,
                "mde_limit": limit,
                "target": target,
                "margin": row_margin,
                "seeds_needed": k_needed,
                "reachable": reachable,
                "test_rows_needed": rows,
                "test_rows_needed_seeds": k_rows,
                "note": "; ".join(notes),
            }
        )
    return pd.DataFrame(out, columns=DESIGN_COLUMNS)


def family_answers(table: pd.DataFrame) -> tuple[bool | None, str]:
    """Whether every primary row's MDE is within its margin (the report's caveats fire otherwise), and a line saying so.

    None when some row has no MDE (unknown variance).
    """
    if table.empty:
        return None, "no primary rows"
    unknown = table[~np.isfinite(table["mde"].astype(float))]
    over = table[table["mde"].astype(float) > table["margin"].astype(float)]
    margin_text = _margin_text(table)
    if not over.empty:
        worst = over.loc[(over["mde"].astype(float) / over["margin"].astype(float)).idxmax()]  # in margins
        return False, (
            f"NO: {len(over)} of {len(table)} primary rows have an MDE above the equivalence margin {margin_text} "
            f"(the report's caveats will fire; the furthest {_num(worst['mde'], worst['estimand'])} for "
            f"{worst['dataset']}/{worst['model']} {worst['attribute']} at ε = {format_epsilon(worst['epsilon'])}): "
            "an inconclusive row could not be read as equivalence. Add seeds or test rows (seeds needed above)."
        )
    if not unknown.empty:
        return None, f"UNKNOWN: {len(unknown)} of {len(table)} primary rows have no variance to size them (notes above)"
    return True, (
        f"YES: every primary row's MDE is within the equivalence margin {margin_text} "
        f"(largest {table['mde'].astype(float).max():.4g})"
    )


def render(
    table: pd.DataFrame,
    *,
    header: Sequence[str] = (),
    assumptions_text: Sequence[str] = (),
    sources: Sequence[str] = (),
    power: float = 0.8,
) -> str:
    """The design as plain text: a header, one line per primary row, the family's answer, assumptions and notes."""
    lines = list(header)
    columns = ["dataset", "model", "attribute", "eps", "estimand", "source", "m", "seeds", "test rows", "se", "MDE", "seeds needed"]  # fmt: skip
    body = []
    notes: dict[tuple, list[str]] = {}
    for r in table.to_dict("records"):
        if r["note"]:
            notes.setdefault((r["dataset"], r["model"], r["attribute"], r["note"]), []).append(
                format_epsilon(r["epsilon"])
            )
        body.append(
            [
                str(r["dataset"]),
                str(r["model"]),
                str(r["attribute"]),
                format_epsilon(r["epsilon"]),
                str(r["estimand"]),
                str(r["source"]),
                str(r["family_size"]),
                str(r["seeds"]),
                str(int(r["test_rows"])) if _finite(r["test_rows"]) else "?",
                _num(r["se"], r["estimand"]),
                _num(r["mde"], r["estimand"]),
                _needed_text(r),
            ]
        )
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    lines += ["", fmt(columns), fmt(["-" * w for w in widths]), *(fmt(b) for b in body), ""]
    for dataset, part in table.groupby("dataset", sort=False):
        lines.append(
            f"{dataset}: primary family m = {part['family_size'].iloc[0]}, MDE at {100 * power:g}% power and "
            f"alpha/m = {part['row_alpha'].iloc[0]:.4g}"
        )
    lines.append("can the primary family answer its question: " + family_answers(table)[1])
    for title, items in (("assumptions", assumptions_text), ("sources", sources)):
        if items:
            lines += ["", f"{title}:", *(f"  {a}" for a in items)]
    if notes:
        lines += ["", "notes:"]
        lines += [f"  {d}/{m} {a} (ε = {', '.join(eps)}): {note}" for (d, m, a, note), eps in notes.items()]
    return "\n".join(lines) + "\n"


def _needed_text(r: Mapping) -> str:
    if _finite(r["seeds_needed"]):
        return str(int(r["seeds_needed"]))
    if not _finite(r["se"]):
        return "?"
    if not r["reachable"]:
        if _finite(r["test_rows_needed"]):
            more = "" if r["test_rows_needed_seeds"] == r["seeds"] else f" and {int(r['test_rows_needed_seeds'])} seeds"
            return f"not reachable at these test sizes (needs {int(r['test_rows_needed'])} test rows{more})"
        return "not reachable at these test sizes (nor at 200 seeds)"
    return f"> {MAX_SEEDS}"


def _assumed(spec, n, sizes: GroupSizes | None, assumptions: Assumptions, notes: list) -> tuple:
    """(estimand, components, source, scale) of a row the pilot lacks."""
    nan_parts = {"var_seed_train": math.nan, "var_test": math.nan, "cov_test": math.nan, "pilot_seeds": 0, "note": ""}
    attribute = str(spec["attribute"])
    if sizes is not None and attribute in sizes.groups:
        usable = list(sizes.groups[attribute].values())
        described = ", ".join(f"{g} {c} ({p} positive)" for g, (c, p) in sizes.groups[attribute].items())
        notes.append(f"usable groups in {sizes.source} ({sizes.test_rows} test rows): {described}")
        if n is None:
            n = sizes.test_rows
        factor = n / sizes.test_rows
        usable = [(g * factor, p * factor) for g, p in usable]
    elif n is not None:
        usable = [(n / 2, n / 2 * assumptions.prevalence)] * 2
        notes.append(f"groups assumed: two of {n / 2:g} rows, prevalence {assumptions.prevalence:g}")
    else:
        notes.append("test rows unknown: pass --test-rows DATASET=N")
        return SIGNED, nan_parts, "assumed", 1.0
    if len(usable) < 2:
        notes.append("fewer than two usable groups: no gap")
        return SIGNED, nan_parts, "assumed", 1.0
    if len(usable) > 2:
        notes.append(f"{len(usable)} groups (τ²): no stated assumption, run a pilot")
        return TAU2, nan_parts, "assumed", 1.0
    if spec["metric"] != "auroc":
        notes.append(f"metric {spec['metric']}: no stated assumption (Hanley–McNeil is for AUROC), run a pilot")
        return SIGNED, nan_parts, "assumed", 1.0
    return SIGNED, assumed_components(usable, assumptions=assumptions), "assumed", 1.0


def _pilot_lookup(pilot: pd.DataFrame) -> dict[tuple, dict]:
    frame = pilot.copy()
    if "method" not in frame.columns:
        frame["method"] = DEFAULT_METHOD
    frame["epsilon"] = frame["epsilon"].astype(float)
    return {tuple(r[k] for k in ROW_KEYS): r for r in frame.to_dict("records")}


def _margin_text(table: pd.DataFrame) -> str:
    margins = {(_num(r["margin"], r["estimand"])) for r in table.to_dict("records")}
    return " / ".join(sorted(margins)) + (" (squared for τ² rows)" if (table["estimand"] == TAU2).any() else "")


def _num(x, estimand: str) -> str:
    if not _finite(x):
        return "?"
    return f"{float(x):.2e}" if estimand == TAU2 else f"{float(x):.4f}"


def _t(q: float, df: float) -> float:
    return float(stats.norm.ppf(q) if not math.isfinite(df) else stats.t.ppf(q, df))


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
