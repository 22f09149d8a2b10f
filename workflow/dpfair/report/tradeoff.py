"""Trade-off numbers of the report: AUROC cost of each ε against ε = ∞, headline gaps, the Pareto front.

Every estimate is a mean over seeds with :func:`dpfair.report.figures.mean_interval`'s interval (seed spread and
the runs' test-set bootstrap variance). The AUROC cost's interval pairs seeds across ε where both arms
have the same seeds and adds both arms' test-set variances: the two models are scored on the same test
rows, whose errors are positively correlated, so leaving that covariance out makes the interval wide
rather than narrow.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from dpfair.report.frames import CELL_KEYS, RUN_KEYS
from dpfair.tables.columns import PRIMARY_METRIC
from dpfair.tables.seeds import seed_summary

TRADEOFF_COLUMNS = [
    *CELL_KEYS,
    "attribute",
    "epsilon",
    "auroc",
    "auroc_low",
    "auroc_high",
    "gap",
    "gap_low",
    "gap_high",
    "n_seeds",
    "pareto",
]
COST_COLUMNS = [*CELL_KEYS, "epsilon", "auroc", "reference", "cost", "cost_low", "cost_high", "n_seeds"]


def headline_gaps(metrics: pd.DataFrame, gaps: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """Per run and attribute, the headline (AUROC) gap with its per-run interval, and where it came from.

    ``gaps.csv`` in the fairness-statistics form (``gap, ci_low, ci_high`` per run, attribute and metric)
    is preferred; older runs give ``auroc_gap`` and its interval from ``metrics.csv``.
    """
    if gaps is not None and {"ci_low", "ci_high", "gap", "metric"} <= set(gaps.columns):
        part = gaps[gaps["metric"] == PRIMARY_METRIC]
        table = part[[*RUN_KEYS, "attribute", "gap", "ci_low", "ci_high"]].rename(
            columns={"ci_low": "gap_ci_low", "ci_high": "gap_ci_high"}
        )
        return table.reset_index(drop=True), "gaps.csv (AUROC gap)"
    part = metrics[metrics["attribute"] != "none"]
    columns = {"auroc_gap": "gap", "auroc_gap_ci_low": "gap_ci_low", "auroc_gap_ci_high": "gap_ci_high"}
    table = part[[*RUN_KEYS, "attribute", *[c for c in columns if c in part.columns]]].rename(columns=columns)
    return table.reset_index(drop=True), "metrics.csv (auroc_gap)"


def pareto_mask(auroc: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """True for points no other point beats on both axes (higher AUROC, smaller gap; one strictly).

    Example:
        >>> pareto_mask(np.array([0.8, 0.7, 0.75, 0.6]), np.array([0.10, 0.05, 0.12, 0.05])).tolist()
        [True, True, False, False]
    """
    keep = np.ones(len(auroc), dtype=bool)
    for i in range(len(auroc)):
        if math.isnan(auroc[i]) or math.isnan(gap[i]):
            keep[i] = False
            continue
        better = (auroc >= auroc[i]) & (gap <= gap[i]) & ((auroc > auroc[i]) | (gap < gap[i]))
        keep[i] = not better.any()
    return keep


def tradeoff_points(metrics: pd.DataFrame, gaps: pd.DataFrame | None = None, *, level: float = 0.95) -> pd.DataFrame:
    """One row per (dataset, model, method, attribute, ε): AUROC and headline gap with intervals.

    ``pareto`` marks the private points on the front of their (dataset, model, attribute) panel; ε = ∞
    is the reference and never on it.
    """
    runs = metrics.drop_duplicates(RUN_KEYS)
    utility = seed_summary(runs, "auroc", [*CELL_KEYS, "epsilon"], level).rename(
        columns={"mean": "auroc", "low": "auroc_low", "high": "auroc_high"}
    )
    gap_table, _ = headline_gaps(metrics, gaps)
    if gap_table.empty or gap_table["gap"].notna().sum() == 0:
        return pd.DataFrame(columns=TRADEOFF_COLUMNS)
    gap = (
        seed_summary(gap_table, "gap", [*CELL_KEYS, "attribute", "epsilon"], level)
        .rename(columns={"mean": "gap", "low": "gap_low", "high": "gap_high"})
        .drop(columns="n_seeds")
    )
    points = gap.merge(utility, on=[*CELL_KEYS, "epsilon"], how="left")
    points["pareto"] = False
    for _, panel in points.groupby(["dataset", "model", "attribute"], sort=False):
        private = panel[np.isfinite(panel["epsilon"])]
        mask = pareto_mask(private["auroc"].to_numpy(float), private["gap"].to_numpy(float))
        points.loc[private.index[mask], "pareto"] = True
    return points[TRADEOFF_COLUMNS].sort_values([*CELL_KEYS, "attribute", "epsilon"]).reset_index(drop=True)


def _reference_runs(runs: pd.DataFrame, model: str, method: str) -> pd.DataFrame:
    """ε = ∞ runs of the same method, else of the same model under any method (one per seed)."""
    plain = runs[np.isinf(runs["epsilon"]) & (runs["model"] == model)]
    same = plain[plain["method"] == method]
    return (same if not same.empty else plain).drop_duplicates("seed")


def auroc_costs(metrics: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    """AUROC at each finite ε minus AUROC at ε = ∞, per (dataset, model, method), with an interval.

    Seed term: Student t on the seed-paired differences when both arms have the same seeds, else Welch.
    Test-set term: z·√(mean se_ε² + mean se_∞²), se from each run's bootstrap interval.
    """
    z = stats.norm.ppf(0.5 + level / 2)
    runs = metrics.drop_duplicates(RUN_KEYS)
    rows = []
    for (dataset, model, method, eps), arm in runs.groupby([*CELL_KEYS, "epsilon"], sort=True):
        if math.isinf(eps):
            continue
        base = _reference_runs(runs[runs["dataset"] == dataset], model, method)
        if base.empty:
            continue
        a, b = arm.set_index("seed")["auroc"].astype(float), base.set_index("seed")["auroc"].astype(float)
        cost = float(a.mean() - b.mean())
        if set(a.index) == set(b.index) and len(a) > 1:
            d = (a - b.reindex(a.index)).to_numpy()
            seed_half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        elif len(a) > 1 and len(b) > 1:
            va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
            df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else 1.0
            seed_half = stats.t.ppf(0.5 + level / 2, df) * math.sqrt(va + vb)
        else:
            seed_half = math.nan
        test_half = math.nan
        if {"auroc_ci_low", "auroc_ci_high"} <= set(runs.columns):
            se_a = (arm["auroc_ci_high"] - arm["auroc_ci_low"]) / (2 * z)
            se_b = (base["auroc_ci_high"] - base["auroc_ci_low"]) / (2 * z)
            if se_a.notna().any() and se_b.notna().any():
                test_half = z * math.sqrt(float((se_a.dropna() ** 2).mean() + (se_b.dropna() ** 2).mean()))
        terms = [h for h in (seed_half, test_half) if not math.isnan(h)]
        half = math.sqrt(sum(h * h for h in terms)) if terms else math.nan
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "method": method,
                "epsilon": eps,
                "auroc": float(a.mean()),
                "reference": float(b.mean()),
                "cost": cost,
                "cost_low": cost - half,
                "cost_high": cost + half,
                "n_seeds": len(a),
            }
        )
    return pd.DataFrame(rows, columns=COST_COLUMNS)
