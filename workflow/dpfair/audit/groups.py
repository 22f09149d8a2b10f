"""Attack success with intervals, overall and per subgroup: does DP protect some groups less?

The attack AUROC of a group compares that group's members with that group's non-members. Intervals are
percentile bootstraps stratified by membership (members and non-members resampled separately, as the
audit fixes both counts), computed for all resamples at once from ranks (AUROC = Mann–Whitney U / n₁n₀).
A group with no member or no non-member has no AUROC (NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

GROUP_ROW_COLUMNS = ["attribute", "group", "value", "ci_low", "ci_high", "n"]


def _auroc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of each row of (B, n₁) positive against (B, n₀) negative scores, ties counting ½."""
    n1, n0 = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    u = ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


def auroc_with_interval(
    *, membership, scores, n_boot: int = 200, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Attack AUROC and its percentile-bootstrap interval (resampling members and non-members separately).

    Example:
        >>> m = np.r_[np.ones(200, int), np.zeros(200, int)]
        >>> s = np.r_[np.random.default_rng(0).normal(1, 1, 200), np.random.default_rng(1).normal(0, 1, 200)]
        >>> auc, low, high = auroc_with_interval(membership=m, scores=s)
        >>> low < auc < high, round(auc, 2)
        (True, 0.79)
    """
    membership = np.asarray(membership).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[membership == 1], scores[membership == 0]
    if len(pos) == 0 or len(neg) == 0:
        return np.nan, np.nan, np.nan
    value = float(_auroc_rows(pos[None], neg[None])[0])
    rng = np.random.default_rng(seed)
    boot = _auroc_rows(
        pos[rng.integers(0, len(pos), (n_boot, len(pos)))], neg[rng.integers(0, len(neg), (n_boot, len(neg)))]
    )
    alpha = (1 - level) / 2
    return value, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def auroc_by_group(
    *, membership, scores, groups: pd.DataFrame, n_boot: int = 200, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Attack AUROC with an interval for every (attribute, group); ``groups`` has one column per attribute.

    Example:
        >>> g = pd.DataFrame({"sex": ["F", "F", "M", "M", "M"]})
        >>> auroc_by_group(membership=[1, 0, 1, 0, 0], scores=[0.9, 0.1, 0.2, 0.5, 0.1], groups=g, n_boot=50)[["group", "value", "n"]]
          group  value  n
        0     F    1.0  2
        1     M    0.5  3
    """
    membership = np.asarray(membership).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    if len(groups) != len(membership):
        raise ValueError(f"groups has {len(groups)} rows for {len(membership)} examples")
    rows = []
    for attribute in groups.columns:
        labels = groups[attribute].astype(str).to_numpy()
        for group in sorted(set(labels)):
            mask = labels == group
            value, low, high = auroc_with_interval(
                membership=membership[mask], scores=scores[mask], n_boot=n_boot, level=level, seed=seed
            )
            rows.append(
                {
                    "attribute": attribute,
                    "group": group,
                    "value": value,
                    "ci_low": low,
                    "ci_high": high,
                    "n": int(mask.sum()),
                }
            )
    return pd.DataFrame(rows, columns=GROUP_ROW_COLUMNS)
