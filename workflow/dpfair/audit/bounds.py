"""Confidence bounds shared by the attacks: exact binomial intervals and the (ε, δ) hypothesis-test bound.

* **Intervals.** One-sided Clopper–Pearson bounds (``scipy.stats.beta``).
* **The (ε, δ) bound.** Any test of "member" against "non-member" on an (ε, δ)-DP mechanism obeys
  ``TPR ≤ e^ε·FPR + δ`` and ``1 − FPR ≤ e^ε·(1 − TPR) + δ`` (Kairouz et al. 2015). :func:`check_privacy_bound`
  checks measured points against it with a lower bound on TPR and an upper bound on FPR at every point, with a
  Bonferroni split of ``1 − confidence`` over all of them.
* **The empirical ε.** ``max(0, max over points of log((TPR_lo − δ)/FPR_hi) and log((1 − FPR_hi − δ)/(1 − TPR_lo)))``.
  It is an *empirical estimate for one trained model*: the points come from many examples scored by one model,
  and members are not independently included at random (a stratified split picks them), so it is not a
  certified lower bound on the mechanism's ε. The certified bound is the one-run audit's
  (:mod:`dpfair.audit.one_run`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import beta

#: Family-wise confidence of all the Clopper–Pearson bounds of one audit together.
DEFAULT_CONFIDENCE = 0.95


def clopper_pearson(*, successes, trials, confidence: float = DEFAULT_CONFIDENCE, alternative: str = "two-sided"):
    """Exact (Clopper–Pearson) binomial interval ``(low, high)``; arrays are broadcast.

    ``alternative="lower"`` gives a one-sided lower bound at ``confidence`` (``high`` is 1),
    ``"upper"`` a one-sided upper bound (``low`` is 0).

    Example:
        >>> [round(float(b), 4) for b in clopper_pearson(successes=5, trials=10)]
        [0.1871, 0.8129]
        >>> round(float(clopper_pearson(successes=0, trials=10, alternative="upper")[1]), 4)  # 1 − 0.05^(1/10)
        0.2589
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= successes <= trials")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if alternative not in ("two-sided", "lower", "upper"):
        raise ValueError(f"alternative must be 'two-sided', 'lower' or 'upper', got {alternative!r}")
    alpha = (1 - confidence) / 2 if alternative == "two-sided" else 1 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k == 0, 0.0, beta.ppf(alpha, k, n - k + 1))
        high = np.where(k == n, 1.0, beta.ppf(1 - alpha, k + 1, n - k))
    if alternative == "lower":
        high = np.ones_like(low)
    elif alternative == "upper":
        low = np.zeros_like(high)
    return low, high


@dataclass
class BoundCheck:
    """Outcome of :func:`check_privacy_bound`: ``points`` has one row per operating point."""

    violated: bool
    epsilon_empirical: float
    confidence: float
    points: pd.DataFrame


def check_privacy_bound(
    *, tp, fp, n_members, n_nonmembers, epsilon: float, delta: float, confidence: float = DEFAULT_CONFIDENCE
) -> BoundCheck:
    """Check measured (TPR, FPR) counts against ``TPR ≤ e^ε·FPR + δ`` and ``1 − FPR ≤ e^ε·(1 − TPR) + δ``.

    Each point gets a one-sided Clopper–Pearson lower bound on TPR and upper bound on FPR, at a Bonferroni
    level ``(1 − confidence) / (2 · n_points)`` each. The bound is violated iff some point has
    ``TPR_lo > e^ε·FPR_hi + δ`` or ``1 − FPR_hi > e^ε·(1 − TPR_lo) + δ``; ``epsilon_empirical`` is the
    largest ε that the points rule out (0 if none), ``max log((TPR_lo − δ)/FPR_hi)`` over both directions.

    Example:
        >>> # 90 of 100 members flagged at 0 of 100 non-members: TPR_lo ≈ 0.824, FPR_hi ≈ 0.036
        >>> check = check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=1.0, delta=1e-5)
        >>> check.violated, round(check.epsilon_empirical, 2)
        (True, 3.12)
        >>> check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=3.5, delta=1e-5).violated
        False
    """
    tp, fp = np.atleast_1d(np.asarray(tp, dtype=int)), np.atleast_1d(np.asarray(fp, dtype=int))
    n_m = np.broadcast_to(np.asarray(n_members, dtype=int), tp.shape)
    n_n = np.broadcast_to(np.asarray(n_nonmembers, dtype=int), fp.shape)
    if tp.shape != fp.shape or len(tp) == 0:
        raise ValueError("tp and fp must be non-empty and of one length")
    if not 0 <= delta < 1 or epsilon < 0 or math.isnan(epsilon):
        raise ValueError(f"need epsilon >= 0 and 0 <= delta < 1, got epsilon={epsilon}, delta={delta}")
    level = 1 - (1 - confidence) / (2 * len(tp))
    tpr_low, _ = clopper_pearson(successes=tp, trials=n_m, confidence=level, alternative="lower")
    _, fpr_high = clopper_pearson(successes=fp, trials=n_n, confidence=level, alternative="upper")
    with np.errstate(divide="ignore", invalid="ignore"):
        # FPR_hi > 0 and TPR_lo < 1 always, so only a non-positive numerator needs care (it rules out nothing)
        eps_tpr = np.where(tpr_low > delta, np.log(np.maximum(tpr_low - delta, 1e-300) / fpr_high), -np.inf)
        tnr_low, fnr_high = 1 - fpr_high, 1 - tpr_low
        eps_tnr = np.where(tnr_low > delta, np.log(np.maximum(tnr_low - delta, 1e-300) / fnr_high), -np.inf)
    if math.isinf(epsilon):
        violated = np.zeros(len(tp), dtype=bool)
    else:
        e = math.exp(min(epsilon, 700.0))
        violated = (tpr_low > e * fpr_high + delta) | (tnr_low > e * fnr_high + delta)
    points = pd.DataFrame(
        {
            "tp": tp,
            "fp": fp,
            "n_members": n_m,
            "n_nonmembers": n_n,
            "tpr": tp / n_m,
            "fpr": fp / n_n,
            "tpr_low": tpr_low,
            "fpr_high": fpr_high,
            "epsilon_lower": np.maximum(np.maximum(eps_tpr, eps_tnr), 0.0),
            "violated": violated,
        }
    )
    return BoundCheck(
        violated=bool(violated.any()),
        epsilon_empirical=float(points["epsilon_lower"].max()),
        confidence=confidence,
        points=points,
    )


def dp_max_auroc(*, epsilon: float, delta: float) -> float:
    """The largest attack AUROC any test can reach against an (ε, δ)-DP mechanism.

    It is the area under ``min(1, e^ε·x + δ, 1 − e^−ε·(1 − δ − x))`` over FPR ``x`` in [0, 1], the
    trade-off curve (ε, δ)-DP allows; for δ = 0 it is e^ε / (1 + e^ε). Useful as a ceiling next to a
    measured AUROC.

    Example:
        >>> round(dp_max_auroc(epsilon=0.0, delta=0.0), 4), round(dp_max_auroc(epsilon=1.0, delta=0.0), 4)
        (0.5, 0.7311)
        >>> dp_max_auroc(epsilon=float("inf"), delta=1e-5)
        1.0
    """
    if math.isinf(epsilon):
        return 1.0
    e = math.exp(epsilon)

    def ceiling(x):
        return np.minimum.reduce([np.ones_like(x), e * x + delta, 1 - (1 - delta - x) / e])

    # the curve is piecewise linear, so the trapezoid rule over its kinks is exact
    kinks = [0.0, 1.0, (1 - delta) / e, 1 - delta, (1 - delta) * (1 - 1 / e) / (e - 1 / e) if e > 1 else 0.0]
    x = np.unique(np.clip(kinks, 0.0, 1.0))
    y = ceiling(x)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
