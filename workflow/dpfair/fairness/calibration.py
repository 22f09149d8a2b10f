"""Calibration: expected calibration error and reliability-diagram bins.

ECE with ``n_bins`` (default 10) equal-width bins on [0, 1]: bin k holds scores in [k/B, (k+1)/B), the
last bin also holds 1.0; ECE = Σ_k (n_k / n) · |mean score_k − positive rate_k|. Empty bins contribute
nothing and appear in the reliability table with count 0 and NaN. Binned ECE is biased upwards in small
samples (noise in each bin's rate adds to |·|), more so in small groups; ECE gaps are therefore read
against their permutation null (``null_gap`` in the gaps table), which carries the same small-group bias.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dpfair.fairness._inputs import labels, scores


def bin_index(score: np.ndarray, n_bins: int) -> np.ndarray:
    """Each score's bin, 0..n_bins-1, of equal width on [0, 1]; 1.0 is in the last bin, scores outside in the nearer end one."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    return np.clip(np.floor(score * n_bins).astype(int), 0, n_bins - 1)


def expected_calibration_error(*, y_true, score, n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-width bins on [0, 1]: Σ_k (n_k / n) · |mean score_k − positive rate_k|.

    Example:
        >>> # bin [0.2, 0.3): mean 0.2, rate 0.5; bin [0.8, 0.9): mean 0.8, rate 1.0
        >>> round(expected_calibration_error(y_true=[0, 1, 1, 1], score=[0.2, 0.2, 0.8, 0.8]), 6)
        0.25
    """
    y = labels(y_true)
    s = scores(score, len(y))
    if len(y) == 0:
        return math.nan
    bins = bin_index(s, n_bins)
    gap = np.abs(
        np.bincount(bins, weights=s, minlength=n_bins) - np.bincount(bins, weights=y.astype(float), minlength=n_bins)
    )
    return float(gap.sum() / len(y))


def reliability_table(*, y_true, score, n_bins: int = 10) -> pd.DataFrame:
    r"""Reliability-diagram data: one row per bin, NaN mean and frequency for an empty bin.

    Columns ``bin``, ``bin_low``, ``bin_high``, ``count``, ``mean_predicted``, ``observed_frequency``. Bins
    as in :func:`expected_calibration_error`.

    Example:
        >>> t = reliability_table(y_true=[0, 1, 1, 1], score=[0.2, 0.2, 0.8, 0.8], n_bins=5)
        >>> t[["bin", "count", "mean_predicted", "observed_frequency"]].to_string(index=False)
        ' bin  count  mean_predicted  observed_frequency\n   0      0             NaN                 NaN\n   1      2             0.2                 0.5\n   2      0             NaN                 NaN\n   3      0             NaN                 NaN\n   4      2             0.8                 1.0'
    """
    y = labels(y_true)
    s = scores(score, len(y))
    bins = bin_index(s, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(bins, weights=s, minlength=n_bins) / counts
        observed = np.bincount(bins, weights=y.astype(float), minlength=n_bins) / counts
    edges = np.arange(n_bins + 1) / n_bins
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "count": counts.astype(int),
            "mean_predicted": mean_pred,
            "observed_frequency": observed,
        }
    )
