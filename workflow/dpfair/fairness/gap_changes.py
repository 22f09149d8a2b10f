"""Change of each gap from ε = ∞ to each finite ε: estimate, interval, p, MDE and a three-way verdict.

**Estimand** (per dataset, model, method, attribute, metric), chosen from what every run of the row has:

* ``signed``: two usable groups, value(comparison) − value(reference), the larger group the reference in
  every run (:mod:`dpfair.fairness.gaps`). The difference of two estimates is unbiased, so its change is
  too; max − min is not (it understates a change of 0.10 by 39% and drifts towards "narrowing" as noise
  grows, in a statistics review of this code).
* ``tau2``: three or more usable groups, the untruncated DerSimonian–Laird τ² (unbiased; τ truncated at
  0 is not).
* ``excess``: otherwise (derived gaps such as equalized odds, older tables): max − min minus the run's
  permutation ``null_gap``. Max − min stays in every row as a description: ``excess_gap_change`` and
  ``raw_gap_change``.

**Groups**: a signed or τ² row is defined only when every run of the row (both arms, every seed) has the
same usable groups: for ``signed`` the same ``reference_group`` and ``comparison_group``; for ``tau2`` the
same ``n_groups`` (else, without that column, the same groups with a value in the ``groups`` table). A row
whose runs differ is ``undefined``, with the difference in ``reason`` (it never falls back silently to
another estimand over other groups).

**Variance**: :func:`dpfair.fairness.contrasts.seed_contrast` — seed means over one shared test set,
se² = S²/k + the mean between-seed bootstrap covariance (floored at 0), ν = k − 1 df and the nuisance ratio
bound ``ratio`` (r_low) from which :func:`~dpfair.fairness.contrasts.interval_of` rebuilds any interval.
(Adding the bootstrap variance to the seed spread, as before, counted the test noise twice: 1.8× the true
variance.) p-values come from the contrast's test, not from counting replicates.

**Family**: a declared *primary* family per dataset (:class:`PrimaryFamily`; default ``dpsgd``, AUROC,
every single attribute, every finite ε against ∞, every model) that does not grow when exploratory arms are
added. Holm's step-down adjustment (Holm, Scand J Stat 1979; any dependence) runs over the primary family of
each dataset only; everything else is *exploratory*, with its unadjusted p.

**Verdict** (:func:`dpfair.fairness.contrasts.classify`): "widens"/"narrows" when the (adjusted) p is below
α — widens meaning the arm's gap is further from 0 than the baseline's; "reverses" for a signed gap whose
baseline and arm gaps are each nonzero (``p_baseline_gap``, ``p_arm_gap``: the one-arm test of each seed
mean against 0, p < α) with opposite signs; "equivalent within ±m" when the TOST p (``p_equivalence``,
Holm-adjusted over the primary family as ``p_equivalence_adjusted``) is below α, i.e. the 1 − 2α interval
lies inside ±m, m = :func:`margin_for` (``margin``; for τ², margin²/2: the DerSimonian–Laird τ² of two
groups whose values differ by δ has expectation δ²/2); otherwise "inconclusive" with the row's minimum
detectable change (``mde``) at ``power``: at α/m for a primary row (m the family size; Holm's first step,
so a conservative figure), α otherwise. A detected change whose 1 − 2α interval lies inside ±m
(``within_margin``) keeps its class and its sentence says it is practically negligible. One seed: no
verdict (the interval would carry the test noise of one trained model only).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dpfair.fairness._inputs import require
from dpfair.fairness.contrasts import (
    DOWN,
    EQUIVALENT,
    INCONCLUSIVE,
    ONE_MODEL,
    UNDEFINED,
    UP,
    Contrast,
    classify,
    seed_contrast,
)
from dpfair.fairness.metrics_registry import gap_label, get_metric
from dpfair.privacy.params import format_epsilon

log = logging.getLogger(__name__)

#: Key columns in order; ``method`` is used when the inputs have it.
KEY_COLUMNS = ("dataset", "model", "method", "attribute", "metric")
GAP_CHANGE_COLUMNS = [
    "dataset",
    "model",
    "attribute",
    "metric",
    "epsilon",
    "family",
    "estimand",
    "reference_group",
    "comparison_group",
    "baseline_value",
    "arm_value",
    "gap_change",
    "ci_low",
    "ci_high",
    "se",
    "df",
    "ratio",
    "n_seeds",
    "p_value",
    "p_adjusted",
    "p_equivalence",
    "p_equivalence_adjusted",
    "within_margin",
    "p_baseline_gap",
    "p_arm_gap",
    "mde",
    "verdict_class",
    "verdict",
    "reason",
    "reference_change",
    "comparison_change",
    "excess_gap_change",
    "raw_gap_change",
    "var_seed",
    "var_test",
    "cov_test",
]
PRIMARY, EXPLORATORY = "primary", "exploratory"
SIGNED, TAU2, EXCESS = "signed", "tau2", "excess"
WIDENS, NARROWS, REVERSES = "widens", "narrows", "reverses"
#: The baseline method when the inputs have no ``method`` column.
DEFAULT_METHOD = "dpsgd"


@dataclass(frozen=True)
class PrimaryFamily:
    """A dataset's primary family: ``method``'s ``metric`` gap of ``attributes`` at every finite ε vs ∞.

    ``attributes`` None: every single attribute (not intersections) the runs have.

    Example:
        >>> PrimaryFamily(attributes=("site",)).covers(method="dpsgd", attribute="site", metric="auroc")
        True
    """

    method: str = DEFAULT_METHOD
    metric: str = "auroc"
    attributes: tuple[str, ...] | None = None

    def covers(self, *, method: str, attribute: str, metric: str) -> bool:
        """Whether a gap-change row of this method, attribute and metric belongs to the family."""
        named = attribute in self.attributes if self.attributes is not None else ":" not in attribute
        return method == self.method and metric == self.metric and named

    @classmethod
    def from_config(cls, spec: Mapping | None) -> PrimaryFamily:
        """From a dataset's ``primary`` block of the benchmark YAML (missing keys take the defaults)."""
        spec = dict(spec or {})
        attributes = spec.get("attributes")
        return cls(
            method=spec.get("method", DEFAULT_METHOD),
            metric=spec.get("metric", "auroc"),
            attributes=tuple(attributes) if attributes is not None else None,
        )


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count towards the family size).

    Example:
        >>> holm([0.01, 0.04, 0.03, np.nan]).round(3).tolist()
        [0.03, 0.06, 0.06, nan]
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def margin_for(estimand: str, margin: float) -> float:
    """The equivalence margin of a row of ``estimand`` for a gap margin ``margin``: margin²/2 for τ², else margin.

    The untruncated DerSimonian–Laird τ² of two groups whose values differ by δ (within-group variances
    v → 0) is (Q − 1)/c = δ²/2 − v, so a gap of ``margin`` is a τ² of margin²/2 (not margin²).

    Example:
        >>> margin_for("signed", 0.03), round(margin_for("tau2", 0.03), 6)
        (0.03, 0.00045)
    """
    return margin * margin / 2 if estimand == TAU2 else margin


def gap_changes(
    *,
    estimates: pd.DataFrame,
    replicates: pd.DataFrame,
    groups: pd.DataFrame | None = None,
    primary: Mapping[str, PrimaryFamily] | None = None,
    margin: float = 0.03,
    alpha: float = 0.05,
    power: float = 0.8,
    level: float = 0.95,
    digits: int = 2,
) -> pd.DataFrame:
    """Gap changes vs ε = ∞ (see the module docstring) from the runs' gaps and their replicates.

    ``estimates``: dataset, model, [method,] epsilon, seed, attribute, metric, gap, null_gap and, where
    the runs have them, signed_gap, reference_group, comparison_group, tau2 (the runs' gaps tables);
    ``replicates``: the same keys, group, replicate and the replicated statistics (the runs' gap
    replicates, all runs of a dataset evaluated with one bootstrap seed). ``groups`` (the runs' subgroups
    tables) adds each group's own change of the metric beside a two-group row. ``primary``: per dataset
    its :class:`PrimaryFamily` (default for any dataset not named). ``epsilon`` is a float, ``inf`` for
    non-private.

    Example:
        >>> rng = np.random.default_rng(0); seeds = range(5)
        >>> est = pd.DataFrame([{"dataset": "d", "model": "m", "epsilon": e, "seed": s, "attribute": "site",
        ...     "metric": "auroc", "gap": abs(g), "null_gap": 0.01, "signed_gap": g, "reference_group": "A",
        ...     "comparison_group": "B", "tau2": np.nan} for e in (np.inf, 1.0) for s in seeds
        ...     for g in [(-0.05 if e == np.inf else -0.15) + rng.normal(0, 0.01)]])
        >>> shared = rng.normal(0, 0.01, 1000)
        >>> rep = pd.concat([est.assign(replicate=b, signed_gap=est["signed_gap"] + shared[b]) for b in range(1000)])
        >>> gap_changes(estimates=est, replicates=rep.assign(group=np.nan)).loc[0, "verdict_class"]
        'widens'
    """
    keys = [k for k in KEY_COLUMNS if k in estimates.columns]
    require(estimates, [*keys, "epsilon", "seed", "gap", "null_gap"], "estimates")
    require(replicates, [*keys, "epsilon", "seed", "replicate", "gap"], "replicates")
    primary = dict(primary or {})
    estimates = estimates.assign(
        epsilon=estimates["epsilon"].astype(float),
        excess=estimates["gap"].astype(float) - estimates["null_gap"].astype(float),
    )
    if estimates.duplicated([*keys, "epsilon", "seed"]).any():
        raise ValueError(f"estimates has more than one row for a ({', '.join(keys)}, epsilon, seed)")
    tables = _Replicates(_gap_replicates(replicates), [*keys, "epsilon", "seed"])
    group_table = _GroupValues(groups, keys) if groups is not None and not groups.empty else None
    rows = []
    for key, cell in estimates.groupby(keys, sort=True):
        named = dict(zip(keys, key))
        base = cell[np.isinf(cell["epsilon"])].set_index("seed").sort_index()
        if base.empty:
            log.warning("gap_changes: no epsilon=inf run for %s; skipped", named)
            continue
        family = primary.get(named["dataset"], PrimaryFamily())
        covered = family.covers(
            method=named.get("method", DEFAULT_METHOD), attribute=named["attribute"], metric=named["metric"]
        )
        for eps in sorted(e for e in cell["epsilon"].unique() if not math.isinf(e)):
            arm = cell[cell["epsilon"] == eps].set_index("seed").sort_index()
            runs = pd.concat([base, arm])
            estimand = _estimand(runs)
            reason = _group_difference(runs, estimand, key, group_table)
            if not reason and estimand != EXCESS and runs[_COLUMN[estimand]].isna().any():
                # some runs lack the value over the same groups (e.g. a rate undefined in one run): describe
                # the row by what every run has, the excess max − min, as before the group check
                estimand = EXCESS
            paired = list(arm.index) == list(base.index)
            excess = _contrast_estimate(arm["excess"], base["excess"])
            raw = _contrast_estimate(arm["gap"].astype(float), base["gap"].astype(float))
            row = {
                **named,
                "epsilon": eps,
                "family": PRIMARY if estimand != EXCESS and covered else EXPLORATORY,
                "estimand": estimand,
                "reference_group": "",
                "comparison_group": "",
                "reason": reason,
                "excess_gap_change": excess,
                "raw_gap_change": raw,
                "p_baseline_gap": math.nan,
                "p_arm_gap": math.nan,
            }
            if reason:  # the runs measure different groups: no contrast to draw
                nan = math.nan
                k = min(len(arm), len(base))
                row.update(
                    baseline_value=nan, arm_value=nan, contrast=Contrast(nan, nan, nan, k, paired, nan, nan, nan)
                )
                rows.append(row)
                continue
            base_point, arm_point = _point(base, estimand), _point(arm, estimand)
            base_reps = tables.get(key, math.inf, base.index, estimand, base)
            arm_reps = tables.get(key, eps, arm.index, estimand, arm)
            row.update(
                baseline_value=float(np.mean(base_point)),
                arm_value=float(np.mean(arm_point)),
                contrast=seed_contrast(arm_point, base_point, arm_reps, base_reps, paired=paired),
            )
            if estimand == SIGNED:
                row.update(
                    reference_group=_label(runs, "reference_group"),
                    comparison_group=_label(runs, "comparison_group"),
                    p_baseline_gap=gap_p_value(base_point, base_reps),
                    p_arm_gap=gap_p_value(arm_point, arm_reps),
                )
                if group_table is not None:
                    row["reference_change"] = group_table.change(key, eps, row["reference_group"])
                    row["comparison_change"] = group_table.change(key, eps, row["comparison_group"])
            rows.append(row)
    return _finish(rows, keys, margin=margin, alpha=alpha, power=power, level=level, digits=digits)


def gap_p_value(point, reps) -> float:
    """Two-sided p of "the seed mean of these gaps is 0": the one-arm contrast of ``point`` against zero.

    ``point``: (k,) per-seed gaps; ``reps``: (k, B) their replicates. NaN with fewer than two seeds.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> point = -0.05 + rng.normal(0, 0.005, 5)
        >>> reps = point[:, None] + rng.normal(0, 0.005, 300)
        >>> gap_p_value(point, reps) < 0.01, gap_p_value(point - point.mean(), reps - point.mean()) > 0.5
        (True, True)
    """
    point = np.asarray(point, dtype=float)
    reps = np.atleast_2d(np.asarray(reps, dtype=float))
    if len(point) < 2:
        return math.nan
    contrast = seed_contrast(point, np.zeros_like(point), reps, np.zeros_like(reps), paired=True)
    return contrast.p_value


def _finish(rows: list[dict], keys: list[str], *, margin, alpha, power, level, digits) -> pd.DataFrame:
    columns = [*keys, *GAP_CHANGE_COLUMNS[4:]]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    for name in ("reference_change", "comparison_change"):
        if name not in table:
            table[name] = math.nan
    contrasts: list[Contrast] = list(table.pop("contrast"))
    judged = [c.n_seeds > 1 and c.defined for c in contrasts]
    margins = [margin_for(e, margin) for e in table["estimand"]]
    table["gap_change"] = [c.estimate for c in contrasts]
    table[["ci_low", "ci_high"]] = [c.interval(level) for c in contrasts]
    table["se"] = [c.se for c in contrasts]
    table["df"] = [c.df for c in contrasts]
    table["ratio"] = [c.ratio for c in contrasts]
    table["n_seeds"] = [c.n_seeds for c in contrasts]
    table["p_value"] = [c.p_value if c.n_seeds > 1 else math.nan for c in contrasts]
    table["p_equivalence"] = [c.equivalence_p(m) if ok else math.nan for c, m, ok in zip(contrasts, margins, judged)]
    table["within_margin"] = [
        ok and _inside(c.interval(1 - 2 * alpha), m) for c, m, ok in zip(contrasts, margins, judged)
    ]
    table["var_seed"] = [c.var_seed for c in contrasts]
    table["var_test"] = [c.var_test for c in contrasts]
    table["cov_test"] = [c.cov_test for c in contrasts]
    table["p_adjusted"] = math.nan
    table["p_equivalence_adjusted"] = math.nan
    family_size = {}
    for dataset, part in table[table["family"] == PRIMARY].groupby("dataset", sort=False):
        table.loc[part.index, "p_adjusted"] = holm(part["p_value"].to_numpy())
        table.loc[part.index, "p_equivalence_adjusted"] = holm(part["p_equivalence"].to_numpy())
        family_size[dataset] = len(part)
    classes, mdes = [], []
    for row, contrast, m in zip(table.to_dict("records"), contrasts, margins):
        primary = row["family"] == PRIMARY
        row_alpha = alpha / family_size[row["dataset"]] if primary else alpha
        mdes.append(contrast.mde(alpha=row_alpha, power=power))
        verdict = classify(
            contrast,
            p_value=row["p_adjusted"] if primary else None,
            alpha=alpha,
            margin=m,
            p_equivalence=row["p_equivalence_adjusted"] if primary else None,
        )
        if verdict in (UP, DOWN):
            verdict = _direction(row, verdict, alpha=alpha)
        classes.append(verdict)
    table["mde"] = mdes
    table["verdict_class"] = classes
    unexplained = (table["verdict_class"] == UNDEFINED) & (table["reason"].fillna("") == "")
    table.loc[unexplained, "reason"] = [
        "no estimate: a run has no value" if not math.isfinite(c.estimate) else "no standard error from the replicates"
        for c, flag in zip(contrasts, unexplained)
        if flag
    ]
    table["verdict"] = [
        _sentence(r, contrast, margin=margin, alpha=alpha, power=power, digits=digits)
        for r, contrast in zip(table.to_dict("records"), contrasts)
    ]
    return table[columns]


def _direction(row: dict, verdict: str, *, alpha: float) -> str:
    """A detected change's class: reverses (signed gap, both ends nonzero, opposite signs), widens or narrows.

    A signed gap widens when it moves away from 0, wherever it started.
    """
    if row["estimand"] != SIGNED:
        return WIDENS if verdict == UP else NARROWS
    base, arm = row["baseline_value"], row["arm_value"]
    p_base, p_arm = row["p_baseline_gap"], row["p_arm_gap"]
    if p_base < alpha and p_arm < alpha and base * arm < 0:
        return REVERSES
    return WIDENS if abs(arm) > abs(base) else NARROWS


def _inside(interval: tuple[float, float], margin: float) -> bool:
    low, high = interval
    return bool(math.isfinite(low) and math.isfinite(high) and -margin < low and high < margin)


class _Replicates:
    """Seed × replicate arrays of one statistic, looked up by (row key, ε); pivoted once per statistic."""

    def __init__(self, replicates: pd.DataFrame, index: list[str]):
        self._frame, self._index, self._wide = replicates, index, {}

    def get(self, key: tuple, eps: float, seeds: pd.Index, estimand: str, runs: pd.DataFrame) -> np.ndarray:
        column = {SIGNED: "signed_gap", TAU2: "tau2", EXCESS: "gap"}[estimand]
        if column not in self._wide:
            self._wide[column] = self._frame.set_index([*self._index, "replicate"])[column].astype(float).unstack()
        wide = self._wide[column]
        rows = [(*key, eps, s) for s in seeds]
        missing = [r for r in rows if r not in wide.index]
        if missing:
            raise ValueError(f"replicates lack seeds {[r[-1] for r in missing]} for {key} at ε = {eps}")
        values = wide.loc[rows].to_numpy(dtype=float)
        if estimand == EXCESS:  # the run's null gap is a constant of the run: shift every replicate alike
            values = values - runs["null_gap"].astype(float).to_numpy()[:, None]
        return values


class _GroupValues:
    """Each group's own change of the row's metric: mean over seeds at ε minus mean at ∞ (a description).

    It sits beside a two-group row so that levelling down (both groups falling) is visible. ``groups``:
    the runs' subgroups tables, one column per metric (``subgroups.csv``).
    """

    def __init__(self, groups: pd.DataFrame, keys: list[str]):
        self._all, self._keys = keys, [k for k in keys if k != "metric"]
        self._groups = groups.assign(epsilon=groups["epsilon"].astype(float), group=groups["group"].astype(str))
        self._means: dict[str, pd.Series] = {}

    def change(self, key: tuple, eps: float, group: str) -> float:
        named = dict(zip(self._all, key))
        metric = named["metric"]
        if metric not in self._groups.columns:
            return math.nan
        if metric not in self._means:
            self._means[metric] = self._groups.groupby([*self._keys, "epsilon", "group"])[metric].mean()
        means = self._means[metric]
        prefix = tuple(named[k] for k in self._keys)
        arm, base = (*prefix, eps, group), (*prefix, math.inf, group)
        if arm not in means.index or base not in means.index:
            return math.nan
        return float(means[arm] - means[base])

    def usable_sets(self, key: tuple, runs: pd.DataFrame) -> list[str] | None:
        """Per run of ``runs`` (index seed, column epsilon) the groups with a value of the row's metric, as text.

        Groups ``flagged`` in the table are left out (as the gaps leave them out). None when the table lacks
        the metric or one of the runs (nothing to compare).
        """
        named = dict(zip(self._all, key))
        metric = named["metric"]
        if metric not in self._groups.columns:
            return None
        part = self._groups
        for k in self._keys:
            part = part[part[k] == named[k]]
        if "flagged" in part:
            part = part[~part["flagged"].astype(str).str.lower().eq("true")]
        part = part[part[metric].notna()]
        by_run = part.groupby(["epsilon", "seed"])["group"].agg(lambda g: "{" + ", ".join(sorted(set(g))) + "}")
        out = []
        for eps, seed in zip(runs["epsilon"].astype(float), runs.index):
            if (eps, seed) not in by_run.index:
                return None
            out.append(by_run[(eps, seed)])
        return out


def _gap_replicates(replicates: pd.DataFrame) -> pd.DataFrame:
    """The gap rows of a stacked replicates table (group empty); older tables have gap rows only."""
    replicates = replicates.assign(epsilon=replicates["epsilon"].astype(float))
    if "group" not in replicates.columns:
        return replicates
    return replicates[replicates["group"].isna() | (replicates["group"].astype(str) == "")]


def _estimand(runs: pd.DataFrame) -> str:
    """The estimand the runs of a row carry: signed (a signed gap), else tau2 (τ²), else excess.

    Every run having it comes first; a row where only some runs have a signed gap (or τ²) keeps that
    estimand, and :func:`_group_difference` says whether its runs measured different groups.
    """
    signed = runs["signed_gap"].notna() if "signed_gap" in runs else pd.Series(False, index=runs.index)
    tau2 = runs["tau2"].notna() if "tau2" in runs else pd.Series(False, index=runs.index)
    for have, estimand in ((signed.all(), SIGNED), (tau2.all(), TAU2), (signed.any(), SIGNED), (tau2.any(), TAU2)):
        if have:
            return estimand
    return EXCESS


def _group_difference(runs: pd.DataFrame, estimand: str, key: tuple, groups: _GroupValues | None) -> str:
    """Why a signed or τ² row is undefined: its runs (both arms, every seed) have different usable groups; "" if not.

    Signed: one ``reference_group`` and ``comparison_group`` in every run. τ²: one ``n_groups`` (without that
    column: one set of groups with a value in the ``groups`` table, where it has the row's runs). A run with a
    signed gap has two usable groups, one with τ² but no signed gap more, so a mix of the two differs too.
    """
    if estimand == EXCESS:
        return ""
    prefix = "groups differ across runs: "
    if "n_groups" in runs and runs["n_groups"].notna().all():
        counts = runs["n_groups"].astype(float).astype(int)
        if counts.nunique() > 1:
            return prefix + _tally(f"{n} usable groups" for n in counts)
    elif "signed_gap" in runs and "tau2" in runs:
        signed, tau2 = runs["signed_gap"].notna(), runs["tau2"].notna()
        if signed.any() and (~signed & tau2).any():
            kinds = np.where(signed, "2 usable groups", np.where(tau2, "3 or more usable groups", "no value"))
            return prefix + _tally(kinds)
    if estimand == TAU2 and "n_groups" not in runs and groups is not None:
        sets = groups.usable_sets(key, runs)
        if sets is not None and len(set(sets)) > 1:
            return prefix + _tally(sets)
    if estimand == SIGNED:
        have = runs[runs["signed_gap"].notna()]
        pairs = [
            f"reference {r}, comparison {c}"
            for r, c in zip(_column(have, "reference_group"), _column(have, "comparison_group"))
        ]
        if len(set(pairs)) > 1:
            return prefix + _tally(pairs)
    return ""


def _column(runs: pd.DataFrame, name: str) -> list[str]:
    if name not in runs:
        return [""] * len(runs)
    return ["" if isinstance(v, float) and math.isnan(v) else str(v) for v in runs[name]]


def _tally(labels) -> str:
    """Each label with how many runs have it, the commonest first: "a in 5 runs, b in 2 runs"."""
    counts = pd.Series(list(labels), dtype=object).value_counts(sort=True)
    return ", ".join(f"{label} in {n} run{'' if n == 1 else 's'}" for label, n in counts.items())


_COLUMN = {SIGNED: "signed_gap", TAU2: "tau2", EXCESS: "excess"}


def _point(runs: pd.DataFrame, estimand: str) -> np.ndarray:
    return runs[_COLUMN[estimand]].astype(float).to_numpy()


def _label(cell: pd.DataFrame, column: str) -> str:
    return str(cell[column].iloc[0]) if column in cell else ""


def _contrast_estimate(arm: pd.Series, base: pd.Series) -> float:
    return float(arm.mean(skipna=False) - base.mean(skipna=False))


def _sentence(row: dict, contrast: Contrast, *, margin, alpha, power, digits) -> str:
    """One sentence per row; never a bare "no change"."""
    where = f"DP at ε = {format_epsilon(row['epsilon'])}"
    what = _what(row)
    margin = margin_for(row["estimand"], margin)
    if row["estimand"] == TAU2:
        digits = digits + 2
    f = lambda x: _number(x, digits=digits)  # noqa: E731
    verdict = row["verdict_class"]
    primary = row["family"] == PRIMARY
    prefix = "" if primary else "exploratory: "
    if row.get("reason"):
        return f"{prefix}{where}: no verdict on the {what}: {row['reason']}"
    if verdict == UNDEFINED or not math.isfinite(row["gap_change"]):
        return f"{prefix}{where}: the {what} could not be estimated"
    low, high = row["ci_low"], row["ci_high"]
    interval = f"{f(row['gap_change'])} [{f(low)}, {f(high)}]"
    p_text = f"Holm-adjusted p = {_p(row['p_adjusted'])}" if primary else f"unadjusted p = {_p(row['p_value'])}"
    if verdict == ONE_MODEL:
        return (
            f"{prefix}{where}: one trained model per arm, no verdict on the {what} "
            f"({f(row['gap_change'])}; its interval would hold the test noise of one model only)"
        )
    if verdict in (WIDENS, NARROWS, REVERSES):
        text = f"{prefix}{where} {verdict} the {what}: {interval} ({p_text})"
        if verdict == REVERSES:
            text += (
                f"; the gap reversed sign, from {_leader(row, row['baseline_value'])} "
                f"to {_leader(row, row['arm_value'])}"
            )
        if row["within_margin"]:
            text += f", detected but within ±{_margin(margin)} (practically negligible)"
        return text
    if verdict == EQUIVALENT:
        tost_low, tost_high = contrast.interval(1 - 2 * alpha)
        return (
            f"{prefix}{where} leaves the {what} equivalent within ±{_margin(margin)}: "
            f"{f(row['gap_change'])}, {100 * (1 - 2 * alpha):g}% interval [{f(tost_low)}, {f(tost_high)}]"
        )
    assert verdict == INCONCLUSIVE, verdict
    return (
        f"{prefix}{where}: the {what} changed by {interval} ({p_text}); "
        f"inconclusive: would detect a change of ≥ {f(row['mde'])} at {power:.0%} power"
    )


def _leader(row: dict, signed: float) -> str:
    """Who leads when the signed gap (comparison − reference) is ``signed``: "B ahead" by the metric's direction."""
    higher, lower = row["comparison_group"], row["reference_group"]
    if signed < 0:
        higher, lower = lower, higher
    try:
        direction = get_metric(row["metric"]).direction
    except (KeyError, ValueError):
        direction = None
    if direction == "lower":
        return f"{lower} ahead"
    return f"{higher} ahead" if direction == "higher" else f"{higher} higher"


def _margin(m: float) -> str:
    return f"{m:.3g}"


def _what(row: dict) -> str:
    label = gap_label(row["metric"])
    if row["estimand"] == SIGNED:
        groups = f" ({row['comparison_group']} − {row['reference_group']})" if row["reference_group"] else ""
        return f"{row['attribute']} gap in {label}{groups}"
    if row["estimand"] == TAU2:
        return f"{row['attribute']} spread τ² of {label}"
    return f"{row['attribute']} excess gap in {label} (max − min beyond its null)"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1g}"


def _number(x: float, *, digits: int) -> str:
    text = f"{x:.{digits}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", "−")


def primary_families(datasets: Mapping[str, Mapping] | Sequence[str]) -> dict[str, PrimaryFamily]:
    """Per dataset its :class:`PrimaryFamily` from the benchmark's ``datasets`` block (``primary`` key)."""
    if not isinstance(datasets, Mapping):
        return {name: PrimaryFamily() for name in datasets}
    return {name: PrimaryFamily.from_config((spec or {}).get("primary")) for name, spec in datasets.items()}
