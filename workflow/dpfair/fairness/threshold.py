"""The operating point: a decision threshold chosen on validation rows only, applied unchanged to test."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_curve

from dpfair.fairness._inputs import labels, scores


def choose_threshold(*, y_val, score_val, method: str = "sensitivity", target_sensitivity: float = 0.9) -> float:
    """Decision threshold from VALIDATION labels and scores; predict positive when ``score >= threshold``.

    ``method="sensitivity"``: the highest threshold whose validation sensitivity is at least
    ``target_sensitivity``, i.e. the k-th highest positive score with k = ⌈target · n_positive⌉.
    ``method="youden"``: the threshold maximising TPR − FPR over the distinct validation scores
    (ties go to the highest threshold). Test data is not an argument, so it cannot move the threshold.

    Example:
        >>> y, s = [0, 0, 1, 1, 1, 1], [0.1, 0.6, 0.3, 0.5, 0.7, 0.9]
        >>> choose_threshold(y_val=y, score_val=s, target_sensitivity=0.75)  # 3 of 4 positives >= 0.5
        0.5
        >>> choose_threshold(y_val=y, score_val=s, method="youden")  # J = 0.5 at 0.7 and at 0.3
        0.7
    """
    y = labels(y_val)
    s = scores(score_val, len(y))
    n_pos = int(y.sum())
    if method == "sensitivity":
        if not 0 < target_sensitivity <= 1:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
        if n_pos == 0:
            raise ValueError("choose_threshold needs at least one positive validation row")
        k = max(1, math.ceil(target_sensitivity * n_pos - 1e-9))  # the tolerance absorbs 0.9 * 30 = 27.000…04
        return float(np.sort(s[y == 1])[::-1][k - 1])
    if method == "youden":
        if n_pos == 0 or n_pos == len(y):
            raise ValueError("the Youden threshold needs both classes in the validation rows")
        fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
        j = np.where(np.isfinite(thresholds), tpr - fpr, -np.inf)  # drop the 'predict nothing' point
        return float(thresholds[int(np.argmax(j))])  # thresholds decrease: argmax takes the highest tie
    raise ValueError(f"method must be 'sensitivity' or 'youden', got {method!r}")
