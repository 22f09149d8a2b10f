"""Utility and subgroup metrics: AUROC with a bootstrap CI, and per-group AUROC through fairlearn.

Subgroups below ``min_group_size`` test rows are reported but flagged, and left out of the gap and the
worst-group value, whose noise they would dominate.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

#: The ``attribute`` value of metrics rows for a dataset that has no sensitive attributes.
NO_ATTRIBUTE = "none"
GROUP_COLUMNS = ["group", "n", "n_positive", "auroc", "flagged"]


def safe_auroc(y_true, y_score) -> float:
    """AUROC, or NaN when ``y_true`` holds one class (fairlearn's ``errors='coerce'`` does not catch raises).

    Example:
        >>> safe_auroc([0, 1, 1], [0.1, 0.8, 0.3]), safe_auroc([1, 1], [0.2, 0.9])
        (1.0, nan)
    """
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(roc_auc_score(y_true, y_score))


def count(y_true, y_score) -> int:
    return int(len(y_true))


def count_positive(y_true, y_score) -> int:
    return int(np.sum(np.asarray(y_true) == 1))


def bootstrap_auroc(y_true, y_score, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """AUROC of ``n_boot`` bootstrap resamples, stratified by label, computed at once by ranks.

    Resampling positives and negatives separately keeps both classes in every resample, so the
    distribution has no undefined draws.
    """
    y_true = np.asarray(y_true).astype(int)
    y_score = np.asarray(y_score, dtype=float)
    pos, neg = y_score[y_true == 1], y_score[y_true == 0]
    n1, n0 = len(pos), len(neg)
    if n1 == 0 or n0 == 0:
        return np.full(n_boot, math.nan)
    rng = np.random.default_rng(seed)
    draws = np.concatenate([pos[rng.integers(0, n1, (n_boot, n1))], neg[rng.integers(0, n0, (n_boot, n0))]], axis=1)
    ranks = rankdata(draws, axis=1)
    return (ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def auroc_with_ci(y_true, y_score, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """AUROC and its percentile bootstrap interval.

    Example:
        >>> rng = np.random.default_rng(0); y = rng.integers(0, 2, 500); s = y + rng.normal(0, 1, 500)
        >>> auc, low, high = auroc_with_ci(y, s)
        >>> low < auc < high
        True
    """
    auc = safe_auroc(y_true, y_score)
    boots = bootstrap_auroc(y_true, y_score, n_boot=n_boot, seed=seed)
    if math.isnan(auc):
        return auc, math.nan, math.nan
    alpha = (1 - level) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return auc, float(low), float(high)


def subgroup_table(y_true, y_score, groups: pd.Series, *, min_group_size: int) -> pd.DataFrame:
    """Per-group ``n``, ``n_positive``, ``auroc`` and ``flagged`` (``n < min_group_size``), via MetricFrame."""
    frame = MetricFrame(
        metrics={"n": count, "n_positive": count_positive, "auroc": safe_auroc},
        y_true=np.asarray(y_true),
        y_pred=np.asarray(y_score),
        sensitive_features=groups.astype(str).rename(groups.name),
    )
    table = frame.by_group.reset_index().rename(columns={groups.name: "group"})
    table["n"] = table["n"].astype(int)
    table["n_positive"] = table["n_positive"].astype(int)
    table["auroc"] = table["auroc"].astype(float)
    table["flagged"] = table["n"] < min_group_size
    return table[GROUP_COLUMNS]


def gap_summary(table: pd.DataFrame) -> dict:
    """``worst_group_auroc`` and ``auroc_gap`` (max − min) over unflagged groups with a defined AUROC."""
    usable = table[~table["flagged"].astype(bool) & table["auroc"].notna()]
    if len(usable) == 0:
        return {"worst_group_auroc": math.nan, "auroc_gap": math.nan, "n_groups_in_gap": 0}
    return {
        "worst_group_auroc": float(usable["auroc"].min()),
        "auroc_gap": float(usable["auroc"].max() - usable["auroc"].min()),
        "n_groups_in_gap": int(len(usable)),
    }


def evaluate_scores(
    scores: pd.DataFrame,
    *,
    attributes: list[str],
    min_group_size: int = 30,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate test-set scores: one metrics row per attribute, one subgroup row per (attribute, group).

    ``scores`` holds ``label``, ``score`` and one column per sensitive attribute, test rows only.
    """
    y, s = scores["label"].to_numpy(), scores["score"].to_numpy()
    auc, low, high = auroc_with_ci(y, s, n_boot=n_boot, level=level, seed=seed)
    overall = {"auroc": auc, "auroc_ci_low": low, "auroc_ci_high": high}
    metric_rows, group_rows = [], []
    for attr in attributes:
        table = subgroup_table(y, s, scores[attr].rename(attr), min_group_size=min_group_size)
        metric_rows.append({"attribute": attr, **overall, **gap_summary(table)})
        group_rows.append(table.assign(attribute=attr))
    if not attributes:  # a dataset without demographics still reports its utility
        metric_rows.append({"attribute": NO_ATTRIBUTE, **overall, **gap_summary(pd.DataFrame(columns=GROUP_COLUMNS))})
    groups = pd.concat(group_rows, ignore_index=True) if group_rows else pd.DataFrame(columns=["attribute", *GROUP_COLUMNS])
    return pd.DataFrame(metric_rows), groups[["attribute", *GROUP_COLUMNS]]
