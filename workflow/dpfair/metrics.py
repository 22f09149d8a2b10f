"""Metric building blocks shared by the fairness evaluation and the privacy audit.

The evaluation itself (subgroups through fairlearn's MetricFrame, bootstrap intervals, gaps) lives in
:mod:`dpfair.fairness`; the membership-inference audit in :mod:`dpfair.audit`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import roc_auc_score

#: The ``attribute`` value of metrics rows for a dataset that has no sensitive attributes.
NO_ATTRIBUTE = "none"


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
    """Number of rows (a ``MetricFrame`` function: it takes the scores and ignores them)."""
    return int(len(y_true))


def count_positive(y_true, y_score) -> int:
    """Number of positive rows (a ``MetricFrame`` function: it takes the scores and ignores them)."""
    return int(np.sum(np.asarray(y_true) == 1))
