"""The metric registry: one definition per metric, which every table, gap and the report iterate over.

A :class:`Metric` holds its name, how it reads (``label``), its direction, whether it needs the
operating threshold, how it is resampled (``stratify``), its vectorised ``kernel`` (every bootstrap
resample or permutation at once, as case weights) and its ``reference``: the plain per-group function
fairlearn's :class:`~fairlearn.metrics.MetricFrame` evaluates for the point estimates (the kernel is
tested against it). Adding a metric (FNR, Brier score, …) is one :func:`register_metric` call::

    register_metric(Metric(name="fnr", label="FNR", direction="lower", needs_threshold=True,
                           stratify="label", kernel=lambda c: 1 - c.tpr, reference=...))

Resampling (``stratify``):

* ``"label"``: the metric is conditional on the label (AUROC, TPR, FPR, balanced accuracy). Resamples
  keep each group's positive and negative counts (strata = group × label) and the permutation null
  permutes groups within label strata: the label mix of a group is not part of what is measured.
* ``"none"``: the metric depends on the prevalence (selection rate, PPV, AUPRC, ECE). Resamples keep
  only each group's size (strata = group), so the positive count varies as it does between test sets
  (holding it fixed removed real variance: measured coverage 0.88 instead of 0.95), and the
  permutation null permutes groups freely.

``headline=True`` marks the metrics whose gap changes form the multiplicity-controlled family of each
dataset (AUROC and TPR: equal opportunity); see :mod:`dpfair.fairness.gap_changes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Callable, Literal

import numpy as np
from fairlearn.metrics import false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import average_precision_score, balanced_accuracy_score, precision_score

from dpfair.fairness.calibration import bin_index, expected_calibration_error
from dpfair.metrics import safe_auroc


class Counts:
    """Weighted counts for a kernel: ``y`` (n,), ``s`` (n,), ``w`` (rows, n); each row one resample.

    Quantities are computed on first use and shared by every kernel (one pass over the weights).
    """

    def __init__(self, *, y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float | None, n_bins: int):
        self.y, self.s, self.w, self.threshold, self.n_bins = y, s, w, threshold, n_bins
        self.pos = y == 1

    @cached_property
    def n_pos(self):
        return self.w[:, self.pos].sum(axis=1)

    @cached_property
    def n_neg(self):
        return self.w[:, ~self.pos].sum(axis=1)

    @cached_property
    def total(self):
        return self.w.sum(axis=1)

    @cached_property
    def both(self):
        return (self.n_pos > 0) & (self.n_neg > 0)

    @cached_property
    def pred(self):
        if self.threshold is None:
            raise ValueError("threshold metrics need a threshold")
        return self.s >= self.threshold

    @cached_property
    def tp(self):
        return self.w @ (self.pos & self.pred).astype(float)

    @cached_property
    def fp(self):
        return self.w @ (~self.pos & self.pred).astype(float)

    @cached_property
    def tpr(self):
        return np.where(self.n_pos > 0, self.tp / self.n_pos, np.nan)

    @cached_property
    def fpr(self):
        return np.where(self.n_neg > 0, self.fp / self.n_neg, np.nan)


@dataclass(frozen=True)
class Metric:
    """One metric. ``direction``: ``"higher"`` or ``"lower"`` is better, ``None`` for neither
    (selection rate); ``worst_group`` follows it. ``caveat``: a note carried into the gaps table."""

    name: str
    label: str
    direction: Literal["higher", "lower"] | None
    needs_threshold: bool
    stratify: Literal["label", "none"]
    kernel: Callable[[Counts], np.ndarray] = field(repr=False)
    reference: Callable = field(repr=False)
    headline: bool = False
    caveat: str = ""


_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric, *, force: bool = False) -> Metric:
    if metric.name in _METRICS and not force:
        raise ValueError(f"metric {metric.name!r} is already registered")
    if metric.stratify not in ("label", "none"):
        raise ValueError(f"metric {metric.name!r}: stratify must be 'label' or 'none', got {metric.stratify!r}")
    _METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {sorted(_METRICS)}") from None


def metric_names() -> tuple[str, ...]:
    """Registered metrics in registration order (the order of every table)."""
    return tuple(_METRICS)


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
    return float(precision_score(np.asarray(y_true).astype(int), pred, zero_division=np.nan)) if pred.any() else math.nan


def _ref_balanced_accuracy(y_true, y_score, *, threshold, **_) -> float:
    if not _two_classes(y_true):
        return math.nan
    return float(balanced_accuracy_score(np.asarray(y_true).astype(int), _predict(y_score, threshold)))


def _ref_selection_rate(y_true, y_score, *, threshold, **_) -> float:
    return float(selection_rate(np.asarray(y_true).astype(int), _predict(y_score, threshold), pos_label=1)) if len(y_true) else math.nan


def _ref_ece(y_true, y_score, *, n_bins, **_) -> float:
    return expected_calibration_error(y_true=y_true, score=y_score, n_bins=n_bins)


def reference_functions(*, threshold: float, n_bins: int, names=None) -> dict[str, Callable]:
    """The MetricFrame metric dict for ``names`` (default: every registered metric)."""
    return {n: partial(get_metric(n).reference, threshold=threshold, n_bins=n_bins) for n in (names or metric_names())}


_PREVALENCE = "prevalence-confounded: differs between groups with different prevalence even at equal ranking quality"

for _m in (
    Metric("auroc", "AUROC", "higher", False, "label", _auroc_kernel, _ref_auroc, headline=True),
    Metric("auprc", "AUPRC", "higher", False, "none", _auprc_kernel, _ref_auprc,
           caveat=_PREVALENCE + " (a random ranking scores the prevalence)"),
    Metric("tpr", "TPR", "higher", True, "label", lambda c: c.tpr, _ref_tpr, headline=True),
    Metric("fpr", "FPR", "lower", True, "label", lambda c: c.fpr, _ref_fpr),
    Metric("ppv", "PPV", "higher", True, "none",
           lambda c: np.where(c.tp + c.fp > 0, c.tp / (c.tp + c.fp), np.nan), _ref_ppv, caveat=_PREVALENCE),
    Metric("balanced_accuracy", "balanced accuracy", "higher", True, "label",
           lambda c: np.where(c.both, (c.tpr + 1 - c.fpr) / 2, np.nan), _ref_balanced_accuracy),
    Metric("selection_rate", "selection rate", None, True, "none",
           lambda c: np.where(c.total > 0, (c.tp + c.fp) / c.total, np.nan), _ref_selection_rate),
    Metric("ece", "ECE", "lower", False, "none", _ece_kernel, _ref_ece,
           caveat="binned ECE is biased upwards in small groups: read the gap against null_gap"),
):
    register_metric(_m)
