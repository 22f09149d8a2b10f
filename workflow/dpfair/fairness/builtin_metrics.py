"""The metrics dpfair ships, as registry entries: their vectorised kernels and fairlearn/sklearn references.

Importing :mod:`dpfair.fairness` registers them (its face imports this module first). A new metric is
one more entry like these, here or in a module of its own (``docs/adding-a-metric.md``).

Permutation nulls (:mod:`dpfair.fairness.metrics_registry`, ``permute_within``): AUROC, TPR, FPR and
balanced accuracy permute within label strata, PPV within predicted-positive strata, ECE within its
calibration bins, AUPRC and selection rate freely (conditional permutation tests against the weak-null
problem of free permutation; Chung & Romano, Ann Stat 2013).
"""

from __future__ import annotations

import math

import numpy as np
from fairlearn.metrics import false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import average_precision_score, balanced_accuracy_score, precision_score

from dpfair.fairness.calibration import bin_index, expected_calibration_error
from dpfair.fairness.metrics_registry import (
    EQUALIZED_ODDS,
    Counts,
    DerivedGap,
    Metric,
    register_derived_gap,
    register_metric,
)
from dpfair.metrics import safe_auroc

# --------------------------------------------------------------------------- kernels


def _auroc_kernel(c: Counts) -> np.ndarray:
    """Σ_i w_i · (weighted negatives below positive i + ½ weighted ties) / (n_pos · n_neg)."""
    pos_scores, neg_scores = c.s[c.pos], c.s[~c.pos]
    w_pos, w_neg = c.w[:, c.pos], c.w[:, ~c.pos]
    order = np.argsort(neg_scores, kind="stable")
    sorted_neg = neg_scores[order]
    cum = np.zeros((w_neg.shape[0], len(sorted_neg) + 1))
    np.cumsum(w_neg[:, order], axis=1, out=cum[:, 1:])
    lo = np.searchsorted(sorted_neg, pos_scores, side="left")
    hi = np.searchsorted(sorted_neg, pos_scores, side="right")
    below = cum[:, lo]
    pairs = (w_pos * (below + 0.5 * (cum[:, hi] - below))).sum(axis=1)
    return np.where(c.both, pairs / (c.n_pos * c.n_neg), np.nan)


def _auprc_kernel(c: Counts) -> np.ndarray:
    """Average precision: Σ_k ΔTP_k · precision_k over distinct thresholds (highest first) / positives."""
    order = np.argsort(-c.s, kind="stable")
    ranked, y_ranked, w_ranked = c.s[order], c.y[order], c.w[:, order]
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]  # last row of each tie block
    tp = np.cumsum(w_ranked * y_ranked, axis=1)[:, ends]
    fp = np.cumsum(w_ranked * (1 - y_ranked), axis=1)[:, ends]
    precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1), 0.0)
    return np.where(c.both, (np.diff(tp, axis=1, prepend=0.0) * precision).sum(axis=1) / c.n_pos, np.nan)


def _ece_kernel(c: Counts) -> np.ndarray:
    onehot = np.eye(c.n_bins)[bin_index(c.s, c.n_bins)]
    gap = np.abs((c.w * c.s) @ onehot - (c.w * c.y) @ onehot).sum(axis=1)
    return np.where(c.total > 0, gap / c.total, np.nan)


# --------------------------------------------------------------------------- references (MetricFrame)


def _predict(score, threshold: float) -> np.ndarray:
    return (np.asarray(score, dtype=float) >= threshold).astype(int)


def _two_classes(y) -> bool:
    return len(np.unique(y)) == 2


def _ref_auroc(y_true, y_score, **_) -> float:
    return safe_auroc(y_true, y_score)


def _ref_auprc(y_true, y_score, **_) -> float:
    return float(average_precision_score(y_true, y_score)) if _two_classes(y_true) else math.nan


def _ref_tpr(y_true, y_score, *, threshold, **_) -> float:
    y = np.asarray(y_true).astype(int)
    return float(true_positive_rate(y, _predict(y_score, threshold), pos_label=1)) if (y == 1).any() else math.nan


def _ref_fpr(y_true, y_score, *, threshold, **_) -> float:
    y = np.asarray(y_true).astype(int)
    return float(false_positive_rate(y, _predict(y_score, threshold), pos_label=1)) if (y == 0).any() else math.nan


def _ref_ppv(y_true, y_score, *, threshold, **_) -> float:
    pred = _predict(y_score, threshold)
    return (
        float(precision_score(np.asarray(y_true).astype(int), pred, zero_division=np.nan)) if pred.any() else math.nan
    )


def _ref_balanced_accuracy(y_true, y_score, *, threshold, **_) -> float:
    if not _two_classes(y_true):
        return math.nan
    return float(balanced_accuracy_score(np.asarray(y_true).astype(int), _predict(y_score, threshold)))


def _ref_selection_rate(y_true, y_score, *, threshold, **_) -> float:
    return (
        float(selection_rate(np.asarray(y_true).astype(int), _predict(y_score, threshold), pos_label=1))
        if len(y_true)
        else math.nan
    )


def _ref_ece(y_true, y_score, *, n_bins, **_) -> float:
    return expected_calibration_error(y_true=y_true, score=y_score, n_bins=n_bins)


_PREVALENCE = "prevalence-confounded: differs between groups with different prevalence even at equal ranking quality"

for _m in (
    Metric("auroc", "AUROC", "higher", False, "label", _auroc_kernel, _ref_auroc, headline=True),
    Metric(
        "auprc",
        "AUPRC",
        "higher",
        False,
        "none",
        _auprc_kernel,
        _ref_auprc,
        caveat=_PREVALENCE + " (a random ranking scores the prevalence)",
    ),
    # equal opportunity: its gap is the equal-opportunity difference
    Metric("tpr", "TPR", "higher", True, "label", lambda c: c.tpr, _ref_tpr, headline=True, wide_gap="eod"),
    Metric("fpr", "FPR", "lower", True, "label", lambda c: c.fpr, _ref_fpr, wide_gap=None),
    Metric(
        "ppv",
        "PPV",
        "higher",
        True,
        "none",
        lambda c: np.where(c.tp + c.fp > 0, c.tp / (c.tp + c.fp), np.nan),
        _ref_ppv,
        caveat=_PREVALENCE,
        wide_gap=None,
        # PPV is a proportion among the predicted positives: its null keeps each group's count of them
        permute_within="predicted",
    ),
    Metric(
        "balanced_accuracy",
        "balanced accuracy",
        "higher",
        True,
        "label",
        lambda c: np.where(c.both, (c.tpr + 1 - c.fpr) / 2, np.nan),
        _ref_balanced_accuracy,
        wide_gap=None,
    ),
    # demographic parity: its gap is the demographic-parity difference
    Metric(
        "selection_rate",
        "selection rate",
        None,
        True,
        "none",
        lambda c: np.where(c.total > 0, (c.tp + c.fp) / c.total, np.nan),
        _ref_selection_rate,
        wide_overall=False,
        wide_gap="dpd",
    ),
    Metric(
        "ece",
        "ECE",
        "lower",
        False,
        "none",
        _ece_kernel,
        _ref_ece,
        caveat="binned ECE is biased upwards in small groups: read the gap against null_gap",
        # binned ECE's bias depends on how a group's scores fill the bins: its null keeps each group's histogram
        permute_within="score_bin",
    ),
):
    register_metric(_m)
register_derived_gap(DerivedGap(EQUALIZED_ODDS, "equalized odds", ("tpr", "fpr"), wide_gap="eqodds_diff"))
