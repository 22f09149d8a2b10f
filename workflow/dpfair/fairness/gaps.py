"""Between-group gaps of one run: max − min with its null reference, a signed difference, the spread τ.

The signed difference is for two groups, the random-effects spread τ for any number of groups.
Over the groups that are usable for a metric (not flagged, value defined), per (attribute, metric):

* ``gap`` = max − min (fairlearn's ``difference(method="between_groups")``), ``ratio`` = min / max and
  ``worst_group`` (min where higher is better, max where lower is better). Its percentile interval
  ``ci_low, ci_high`` describes the resampling spread of this statistic but never contains 0: max − min
  of noisy estimates is positive even when every group has the same true value.
* ``null_gap``: the mean gap over ``n_perm`` permutations of the group labels (within label strata for
  label-conditional metrics, freely otherwise; see :mod:`dpfair.fairness.metrics_registry`), i.e. the
  gap this test set and model show when no disparity exists. ``p_value`` = (1 + #{permuted gap ≥
  observed}) / (1 + n_perm), the permutation test of "no disparity" (exact level for any number of
  groups, any group sizes and any AUROC level; the noise gap grows as AUROC falls, and the null moves
  with it). **This pair is the per-run headline**: it answers "is there a gap beyond noise?" with the
  statistic people read, max − min, and its own noise floor next to it.
* Two usable groups: ``signed_gap`` = value(comparison group) − value(``reference_group``), the larger
  group being the reference, with a percentile interval that can contain 0 (the difference of two
  estimates is unbiased for the true difference).
* Two or more usable groups: ``spread`` = the DerSimonian–Laird random-effects τ of the group values
  (DerSimonian & Laird, Control Clin Trials 1986), within-group variances from the bootstrap, τ² truncated
  at 0, so it is 0 (not positive) when the groups agree beyond their noise; interval by the Q-profile
  method (Viechtbauer, Stat Med 2007), which contains 0 whenever Cochran's Q is below its upper χ²
  quantile. ``spread`` is the effect size to quote for three or more groups. ``tau2`` is the same moment
  estimator **untruncated**, (Q − (k − 1)) / c, which can be negative: truncation biases τ² upwards when the
  groups agree, so the *change* of τ² across ε is compared untruncated (:mod:`dpfair.fairness.gap_changes`).
* Derived gaps (:class:`~dpfair.fairness.metrics_registry.DerivedGap`), e.g. ``equalized_odds``: gap =
  max of the parts' gaps (TPR and FPR), ratio the smallest of their ratios (fairlearn's definitions),
  each part over its own usable groups, null from the same permutations; no signed gap, spread or worst
  group.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import reduce

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.stats import chi2

from dpfair.fairness._inputs import interval
from dpfair.fairness.metrics_registry import derived_gaps, get_metric, metric_names

GAP_COLUMNS = [
    "attribute",
    "metric",
    "gap",
    "ci_low",
    "ci_high",
    "null_gap",
    "p_value",
    "n_groups",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "worst_group",
    "worst_group_ci_low",
    "worst_group_ci_high",
    "signed_gap",
    "signed_ci_low",
    "signed_ci_high",
    "reference_group",
    "comparison_group",
    "spread",
    "spread_ci_low",
    "spread_ci_high",
    "tau2",
    "caveat",
]
#: Per metric, the bootstrap replicates :func:`gap_rows` returns: max − min, signed difference, untruncated τ².
REPLICATE_STATISTICS = ("gap", "signed_gap", "tau2")


def spread(values: np.ndarray) -> dict[str, np.ndarray]:
    """Row-wise gap, ratio, min and max of a (rows, groups) array, ignoring NaN.

    A gap compares groups: with fewer than two defined values it is NaN (not 0, which would read as
    "no disparity"), while min and max still report the one group there is.
    """
    if values.shape[1] == 0:
        nan = np.full(values.shape[0], np.nan)
        return {"gap": nan, "ratio": nan, "min": nan, "max": nan}
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
        ratio = np.where(high > 0, low / np.where(high > 0, high, 1), np.nan)
    comparable = np.sum(~np.isnan(values), axis=1) >= 2
    return {
        "gap": np.where(comparable, high - low, np.nan),
        "ratio": np.where(comparable, ratio, np.nan),
        "min": low,
        "max": high,
    }


def dersimonian_laird_tau2(values: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """Untruncated DerSimonian–Laird moment estimate (Q − (k − 1)) / c per row of ``values`` (rows, k).

    Unbiased for τ² under the random-effects model; negative when the groups agree more closely than
    their noise says, which is why differences of it stay unbiased where differences of τ do not.
    """
    values = np.atleast_2d(values)
    k = values.shape[1]
    if k < 2 or not np.all(np.isfinite(variances)) or np.any(variances <= 0):
        return np.full(values.shape[0], np.nan)
    w = 1 / variances
    mean = values @ w / w.sum()
    q = ((values - mean[:, None]) ** 2 * w).sum(axis=1)
    c = w.sum() - (w**2).sum() / w.sum()
    return (q - (k - 1)) / c


def dersimonian_laird_tau(values: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """τ per row of ``values`` (rows, k), within-group ``variances`` (k,): √max(0, (Q − (k − 1)) / c).

    Example:
        >>> float(dersimonian_laird_tau(np.array([[0.7, 0.7, 0.7]]), np.array([1e-3] * 3))[0])
        0.0
        >>> round(float(dersimonian_laird_tau(np.array([[0.6, 0.8]]), np.array([1e-4, 1e-4]))[0]), 3)  # (Q − 1)/c = 0.0199
        0.141
    """
    return np.sqrt(np.maximum(0.0, dersimonian_laird_tau2(values, variances)))


def q_profile_interval(values: np.ndarray, variances: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Q-profile interval for τ (Viechtbauer 2007): τ² where the generalised Q meets its χ²(k − 1) quantiles.

    Q(τ²) = Σ (θ_g − θ̄_τ)² / (v_g + τ²) decreases in τ²; the lower bound is 0 when Q(0) is below the
    upper quantile, the upper bound 0 when Q(0) is below the lower quantile.
    """
    k = len(values)
    if k < 2 or not np.all(np.isfinite(variances)) or np.any(variances <= 0) or not np.all(np.isfinite(values)):
        return math.nan, math.nan

    def q_of(tau2: float) -> float:
        w = 1 / (variances + tau2)
        mean = (w * values).sum() / w.sum()
        return float((w * (values - mean) ** 2).sum())

    def solve(target: float) -> float:
        if q_of(0.0) <= target:
            return 0.0
        high = max(np.var(values) * 10, 1e-8)
        while q_of(high) > target:
            high *= 10
        return brentq(lambda t: q_of(t) - target, 0.0, high, xtol=1e-12)

    upper_q, lower_q = chi2.ppf(1 - (1 - level) / 2, k - 1), chi2.ppf((1 - level) / 2, k - 1)
    return math.sqrt(solve(upper_q)), math.sqrt(solve(lower_q))


def gap_rows(
    *,
    attribute: str,
    table: pd.DataFrame,
    flagged: pd.Series,
    boot: dict,
    perm: dict,
    q,
    level: float,
    metrics: Sequence[str] | None = None,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Rows of :data:`GAP_COLUMNS` for one attribute, and each metric's bootstrap replicates.

    ``table``: groups × (``n`` and metrics) point values; ``boot[group][metric]`` and
    ``perm[group][metric]``: replicates from the bootstrap and from the group permutations.
    ``metrics``: default every registered metric; a derived gap (equalized odds) is added when all its
    parts are among them. Replicates: per metric a dict of :data:`REPLICATE_STATISTICS` arrays (NaN where
    the statistic does not apply: a signed gap needs exactly two usable groups).
    """
    metrics = tuple(metric_names() if metrics is None else metrics)
    rows, replicates = [], {}
    usable_of = {m: [g for g in table.index if not flagged[g] and not np.isnan(table.at[g, m])] for m in metrics}
    parts = {}
    for m in metrics:
        usable = usable_of[m]
        values = table.loc[usable, m].to_numpy(dtype=float)
        reps = _stack(boot, usable, m)
        nulls = _stack(perm, usable, m)
        parts[m] = (spread(values[None, :]), spread(reps), spread(nulls))
        metric = get_metric(m)
        worst = {"higher": "min", "lower": "max"}.get(metric.direction)
        point, rep, null = parts[m]
        row = _common(attribute, m, point, rep, null, q, len(usable))
        row["worst_group"] = float(point[worst][0]) if worst else math.nan
        row["worst_group_ci_low"], row["worst_group_ci_high"] = (
            interval(rep[worst], q) if worst else (math.nan, math.nan)
        )
        row.update(_signed(usable, table, m, reps, q))
        variances = np.nanvar(reps, axis=0, ddof=1) if len(usable) >= 2 else np.full(len(usable), np.nan)
        row["spread"] = float(dersimonian_laird_tau(values[None, :], variances)[0]) if len(usable) >= 2 else math.nan
        row["spread_ci_low"], row["spread_ci_high"] = q_profile_interval(values, variances, level)
        row["tau2"] = float(dersimonian_laird_tau2(values[None, :], variances)[0]) if len(usable) >= 2 else math.nan
        row["caveat"] = metric.caveat
        rows.append(row)
        nan = np.full(len(rep["gap"]), np.nan)
        replicates[m] = {
            "gap": rep["gap"],
            "signed_gap": _signed_replicates(usable, table, reps) if len(usable) == 2 else nan,
            "tau2": dersimonian_laird_tau2(reps, variances) if len(usable) >= 2 else nan,
        }
    # derived gaps (equalized odds): max of the parts' gaps, min of their ratios, on the same resamples
    # and permutations, so their intervals and nulls pair with the parts'
    for derived in derived_gaps():
        if not set(derived.parts) <= set(metrics):
            continue
        point, rep, null = ([parts[p][i] for p in derived.parts] for i in range(3))
        n_used = len(set().union(*(usable_of[p] for p in derived.parts)))
        row = _common(attribute, derived.name, _combine(point), _combine(rep), _combine(null), q, n_used)
        row.update(caveat=derived.caveat, reference_group="", comparison_group="")
        rows.append(row)
        gap = _combine(rep)["gap"]
        replicates[derived.name] = {
            "gap": gap,
            "signed_gap": np.full(len(gap), np.nan),
            "tau2": np.full(len(gap), np.nan),
        }
    return [{c: r.get(c, math.nan) for c in GAP_COLUMNS} for r in rows], replicates


def _combine(spreads: list[dict]) -> dict[str, np.ndarray]:
    """A derived gap from its parts' :func:`spread` results: the largest gap and the smallest ratio."""
    return {
        "gap": reduce(np.fmax, (s["gap"] for s in spreads)),
        "ratio": reduce(np.fmin, (s["ratio"] for s in spreads)),
    }


def _stack(reps: dict, usable: list, metric: str) -> np.ndarray:
    """(replicates, groups) array; one NaN row when there are no replicates (e.g. no permutations run)."""
    if not usable or any(metric not in reps.get(g, {}) for g in usable):
        return np.full((1, len(usable)), np.nan)
    return np.column_stack([reps[g][metric] for g in usable])


def _common(attribute, metric, point, rep, null, q, n_groups) -> dict:
    gap = float(point["gap"][0])
    null_gaps = null["gap"][~np.isnan(null["gap"])]
    if math.isnan(gap) or len(null_gaps) == 0:
        null_gap, p_value = math.nan, math.nan
    else:
        null_gap = float(null_gaps.mean())
        p_value = float((1 + np.sum(null_gaps >= gap - 1e-12)) / (1 + len(null_gaps)))
    low, high = interval(rep["gap"], q)
    r_low, r_high = interval(rep["ratio"], q)
    return {
        "attribute": attribute,
        "metric": metric,
        "gap": gap,
        "ci_low": low,
        "ci_high": high,
        "null_gap": null_gap,
        "p_value": p_value,
        "n_groups": n_groups,
        "ratio": float(point["ratio"][0]),
        "ratio_ci_low": r_low,
        "ratio_ci_high": r_high,
    }


def _reference_index(usable: list, table: pd.DataFrame) -> int:
    """Index (0 or 1) of the reference of two usable groups: the larger one, the first on a tie."""
    sizes = table.loc[usable, "n"].to_numpy()
    return 0 if sizes[0] >= sizes[1] else 1


def _signed_replicates(usable: list, table: pd.DataFrame, reps: np.ndarray) -> np.ndarray:
    ref = _reference_index(usable, table)
    return reps[:, 1 - ref] - reps[:, ref]


def _signed(usable: list, table: pd.DataFrame, metric: str, reps: np.ndarray, q) -> dict:
    """Comparison minus reference for exactly two usable groups; the larger group is the reference."""
    if len(usable) != 2:
        return {"reference_group": "", "comparison_group": ""}
    ref = _reference_index(usable, table)
    other = 1 - ref
    diff = float(table.at[usable[other], metric] - table.at[usable[ref], metric])
    low, high = interval(reps[:, other] - reps[:, ref], q)
    return {
        "signed_gap": diff,
        "signed_ci_low": low,
        "signed_ci_high": high,
        "reference_group": usable[ref],
        "comparison_group": usable[other],
    }
